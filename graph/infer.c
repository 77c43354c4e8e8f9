/* Running shape rules (symbolic and concrete), shared shape helpers, and
 * the error formatting that names node, op and shapes. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops/op.h"

at_status at_infer_fail(at_infer_ctx *c, at_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    return code;
}

at_status at_kernel_fail(at_kernel_ctx *k, at_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->msg, sizeof k->msg, fmt, ap);
    va_end(ap);
    return code;
}

int64_t at_dims_prod(const at_shape *s, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= s->dim[i];
    return p;
}

at_status at_broadcast_shapes(const at_shape *a, const at_shape *b, at_shape *out, char *msg,
                              size_t cap) {
    int r = a->rank > b->rank ? a->rank : b->rank;
    out->rank = r;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        int64_t d;
        if (da == db || db == 1)
            d = da;
        else if (da == 1)
            d = db;
        else if (da < 0 && db < 0)
            d = da; /* two symbols: equal at run time or caught then */
        else if (da < 0)
            d = db; /* a symbol meets a size: the size wins (symbol 1 or it) */
        else if (db < 0)
            d = da;
        else {
            if (msg)
                snprintf(msg, cap, "cannot broadcast dim %d: %lld vs %lld", i, (long long)da,
                         (long long)db);
            return AT_E_SHAPE;
        }
        out->dim[i] = d;
    }
    return AT_OK;
}

/* Shapes computed from data (Reshape, Expand, ...) can be absurd; the same
 * limits as the file loader's apply, so what loads also saves and reloads. */
#define AT_MAX_DIM   ((int64_t)1 << 31)
#define AT_MAX_ELEMS ((int64_t)1 << 40)

static at_status check_size(at_infer_ctx *c, const at_shape *s, int j) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        if (s->dim[i] < 0) continue;
        if (s->dim[i] > AT_MAX_DIM)
            return at_infer_fail(c, AT_E_SHAPE,
                                 "output %d: dimension too large (dim %d is %lld, "
                                 "limit 2^31)",
                                 j, i, (long long)s->dim[i]);
        if (__builtin_mul_overflow(n, s->dim[i], &n) || n > AT_MAX_ELEMS)
            return at_infer_fail(c, AT_E_SHAPE, "output %d: too many elements (limit 2^40)", j);
    }
    return AT_OK;
}

static size_t describe_inputs(const at_graph *names, const at_node_rec *n, const at_shape *sh,
                              const at_dtype *dt, char *buf, size_t cap) {
    size_t k = 0;
    for (int i = 0; i < n->n_in && k < cap; i++) {
        char s[128];
        if (dt[i] == AT_UNDEFINED) {
            k += (size_t)snprintf(buf + k, cap - k, "%s-", i ? ", " : "");
            continue;
        }
        at_graph_shape_str(names, &sh[i], s, sizeof s);
        k += (size_t)snprintf(buf + k, cap - k, "%s%s%s", i ? ", " : "", at_dtype_name(dt[i]), s);
    }
    return k;
}

at_status at_infer_run(at_graph *g, const at_graph *names, const at_node_rec *n, bool concrete,
                       const at_shape *in_shape, const at_dtype *in_dtype,
                       const void *const *in_data, at_shape *out_shape, at_dtype *out_dtype,
                       const void **out_data, void *out_buf, char *msg, size_t cap) {
    const at_op_def *def = at_op_table[n->op];
    at_infer_ctx c;
    memset(&c, 0, sizeof c);
    c.g = concrete ? NULL : g;
    c.node = n;
    c.concrete = concrete;
    c.n_in = n->n_in;
    c.n_out = n->n_out;
    c.in_shape = in_shape;
    c.in_dtype = in_dtype;
    c.in_data = in_data;
    c.out_shape = out_shape;
    c.out_dtype = out_dtype;
    c.out_data = out_data;
    c.out_buf = (unsigned char(*)[AT_INFER_BUF])out_buf;
    for (int j = 0; j < n->n_out; j++) {
        out_dtype[j] = AT_UNDEFINED;
        out_shape[j].rank = 0;
        out_data[j] = NULL;
    }
    at_status st;
    if (!def->infer) {
        st = at_infer_fail(&c, AT_E_UNSUPPORTED, "op has no shape rule (not implemented yet)");
    } else {
        st = def->infer(&c);
        for (int j = 0; st == AT_OK && j < n->n_out; j++) {
            if (!at_dtype_valid(out_dtype[j]) || out_shape[j].rank < 0 ||
                out_shape[j].rank > AT_MAX_RANK)
                st = at_infer_fail(&c, AT_E_INTERNAL, "shape rule left output %d undefined", j);
            else if (concrete && !at_shape_is_concrete(&out_shape[j]))
                st = at_infer_fail(&c, AT_E_SHAPE, "output %d has an unbound dim", j);
            else
                st = check_size(&c, &out_shape[j], j);
        }
    }
    if (st != AT_OK && msg) {
        size_t k =
            (size_t)snprintf(msg, cap, "node '%s' (%s%s%s), inputs (", n->name,
                             n->domain[0] ? n->domain : "", n->domain[0] ? "::" : "", n->op_type);
        if (k < cap) k += describe_inputs(names, n, in_shape, in_dtype, msg + k, cap - k);
        if (k < cap) snprintf(msg + k, cap - k, "): %s", c.msg);
    }
    return st;
}
