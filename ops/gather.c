/* Gather (ONNX) and its backward op GatherGrad (ai.attune): an embedding lookup and the
 * scatter-add of its gradient. */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "ops/op.h"

/* Defined in ops/shape.c: reads a shape-like input as (possibly symbolic) dims. */

#define PAR_MIN 32768

static int nthreads(const at_kernel_ctx *k) {
    return k->threads > 0 ? k->threads : omp_get_max_threads();
}

static int64_t prod_range(const int64_t *d, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= d[i];
    return p;
}

static const at_attr_schema gather_attrs[] = {{"axis", AT_ATTR_INT, false}, {NULL, 0, false}};

/* The position of the first index outside [-dim, dim) (ONNX allows negative ones), or -1. */
static int64_t first_bad_index(const at_tensor *idx, int64_t n, int64_t dim) {
    if (idx->dtype == AT_I32) {
        const int32_t *p = idx->data;
        for (int64_t j = 0; j < n; j++)
            if (p[j] < -dim || p[j] >= dim) return j;
    } else {
        const int64_t *p = idx->data;
        for (int64_t j = 0; j < n; j++)
            if (p[j] < -dim || p[j] >= dim) return j;
    }
    return -1;
}

static inline int64_t index_at(const at_tensor *idx, int64_t j, int64_t dim) {
    int64_t v =
        idx->dtype == AT_I32 ? ((const int32_t *)idx->data)[j] : ((const int64_t *)idx->data)[j];
    return v < 0 ? v + dim : v;
}

static at_status bad_index(at_kernel_ctx *k, const at_tensor *idx, int64_t j, int64_t dim,
                           int axis) {
    int64_t v =
        idx->dtype == AT_I32 ? ((const int32_t *)idx->data)[j] : ((const int64_t *)idx->data)[j];
    return at_kernel_fail(
        k, AT_E_INVALID, "index %lld (indices element %lld) out of range [-%lld, %lld) for axis %d",
        (long long)v, (long long)j, (long long)dim, (long long)dim, axis);
}

/* output = data[:axis] + indices.shape + data[axis+1:] */
static at_status gather_shape(at_infer_ctx *c, const at_shape *data, const at_shape *idx,
                              at_dtype idt, at_shape *out) {
    if (idt != AT_I64 && idt != AT_I32)
        return at_infer_fail(c, AT_E_SHAPE, "indices must be int32 or int64, got %s",
                             at_dtype_name(idt));
    int r = data->rank;
    if (r < 1) return at_infer_fail(c, AT_E_SHAPE, "data must have rank >= 1");
    int axis = at_norm_axis(at_attr_int(c->node, "axis", 0), r);
    if (axis < 0) return at_infer_fail(c, AT_E_SHAPE, "axis out of range for rank %d", r);
    int q = idx->rank;
    if (q + r - 1 > AT_MAX_RANK)
        return at_infer_fail(c, AT_E_SHAPE, "output rank %d exceeds %d", q + r - 1, AT_MAX_RANK);
    out->rank = q + r - 1;
    int o = 0;
    for (int d = 0; d < axis; d++) out->dim[o++] = data->dim[d];
    for (int d = 0; d < q; d++) out->dim[o++] = idx->dim[d];
    for (int d = axis + 1; d < r; d++) out->dim[o++] = data->dim[d];
    return AT_OK;
}

static at_status gather_cpu(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[0], *idx = &k->in[1];
    at_tensor *y = &k->out[0];
    int r = x->shape.rank;
    int axis = at_norm_axis(at_attr_int(k->node, "axis", 0), r);
    if (axis < 0) return at_kernel_fail(k, AT_E_SHAPE, "axis out of range");
    int64_t outer = prod_range(x->shape.dim, 0, axis), dim = x->shape.dim[axis];
    int64_t inner = prod_range(x->shape.dim, axis + 1, r);
    int64_t n = prod_range(idx->shape.dim, 0, idx->shape.rank);
    int64_t bad = first_bad_index(idx, n, dim);
    if (bad >= 0) return bad_index(k, idx, bad, dim, axis);
    size_t es = at_dtype_size(x->dtype), row = (size_t)inner * es;
    int64_t units = outer * n;
    if (!units || !inner) return AT_OK;
    const char *xp = x->data;
    char *yp = y->data;
    bool par = units * inner > PAR_MIN && units > 1;
    if (es == 4 && inner == 1) {
        const uint32_t *xs = x->data;
        uint32_t *ys = y->data;
#pragma omp parallel for num_threads(nthreads(k)) if (par) schedule(static)
        for (int64_t u = 0; u < units; u++) ys[u] = xs[(u / n) * dim + index_at(idx, u % n, dim)];
        return AT_OK;
    }
#pragma omp parallel for num_threads(nthreads(k)) if (par) schedule(static)
    for (int64_t u = 0; u < units; u++) {
        int64_t o = u / n, j = u % n;
        memcpy(yp + (size_t)u * row, xp + (size_t)(o * dim + index_at(idx, j, dim)) * row, row);
    }
    return AT_OK;
}

static at_status gather_infer(at_infer_ctx *c) {
    c->out_dtype[0] = c->in_dtype[0];
    return gather_shape(c, &c->in_shape[0], &c->in_shape[1], c->in_dtype[1], &c->out_shape[0]);
}

static at_status gather_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    at_graph *g = c->g;
    int64_t axis = at_attr_int(at_grad_node(c), "axis", 0);
    at_val data = at_grad_in(c, 0), indices = at_grad_in(c, 1);
    at_val in[3] = {c->dy[0], indices, at_shape_of(g, data)};
    at_attr a = AT_ATTR_I("axis", axis);
    at_val out = AT_NONE;
    if (in[2] == AT_NONE ||
        at_node_add(g, "GatherGrad", AT_DOMAIN_ATTUNE, in, 3, &out, 1, &a, 1) < 0)
        out = AT_NONE;
    c->dx[0] = out;
    if (out != AT_NONE) return AT_OK;
    at_status st = at_graph_status(g);
    return st != AT_OK ? st : AT_E_INTERNAL;
}

const at_op_def at_op_def_Gather = {
    .name = "Gather",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 2,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .attrs = gather_attrs,
    .infer = gather_infer,
    .cpu = gather_cpu,
    .grad = gather_grad,
    .nondiff = 1u << 1,
};

at_val at_gather(at_graph *g, at_val data, at_val indices, int axis) {
    if (data == AT_NONE || indices == AT_NONE) return AT_NONE;
    at_val in[2] = {data, indices};
    at_attr a = AT_ATTR_I("axis", axis);
    return at_node1(g, "Gather", in, 2, &a, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* GatherGrad(dy, indices, shape(data)) -> zeros of data's shape, dy rows added where they
 * were read. */

static at_status gather_grad_infer(at_infer_ctx *c) {
    if (c->in_dtype[0] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "dy must be float32, got %s",
                             at_dtype_name(c->in_dtype[0]));
    if (c->in_dtype[2] != AT_I64) return at_infer_fail(c, AT_E_SHAPE, "shape must be int64");
    const at_shape *ss = &c->in_shape[2];
    if (ss->rank != 1 || ss->dim[0] < 1 || ss->dim[0] > AT_MAX_RANK)
        return at_infer_fail(c, AT_E_SHAPE, "shape must be 1-D with a known length in 1..%d",
                             AT_MAX_RANK);
    int n = (int)ss->dim[0];
    at_shape *y = &c->out_shape[0];
    c->out_dtype[0] = AT_F32;
    y->rank = n;
    int64_t v[AT_MAX_RANK];
    bool sym[AT_MAX_RANK];
    if (!at_infer_shape_input(c, 2, n, v, sym)) {
        if (c->concrete)
            return at_infer_fail(c, AT_E_UNSUPPORTED, "shape input 2 must be constant");
        for (int k = 0; k < n; k++) y->dim[k] = at_sym_fresh(c->g);
        return AT_OK;
    }
    for (int k = 0; k < n; k++) {
        if (!sym[k] && v[k] < 0)
            return at_infer_fail(c, AT_E_SHAPE, "shape[%d] = %lld", k, (long long)v[k]);
        y->dim[k] = v[k];
    }
    at_shape want = {0}; /* set by gather_shape; initialized for -Wmaybe-uninitialized */
    at_status st = gather_shape(c, y, &c->in_shape[1], c->in_dtype[1], &want);
    if (st != AT_OK) return st;
    const at_shape *dy = &c->in_shape[0];
    if (dy->rank != want.rank)
        return at_infer_fail(c, AT_E_SHAPE, "dy has rank %d, the gather output %d", dy->rank,
                             want.rank);
    for (int d = 0; d < want.rank; d++)
        if (dy->dim[d] >= 0 && want.dim[d] >= 0 && dy->dim[d] != want.dim[d])
            return at_infer_fail(c, AT_E_SHAPE, "dy dim %d is %lld, the gather output's %lld", d,
                                 (long long)dy->dim[d], (long long)want.dim[d]);
    return AT_OK;
}

/* Deterministic without atomics: every output element is owned by one thread, which adds
 * its contributions in index order. Work is split over (outer, column block); when that gives
 * too few blocks (narrow rows), over ranges of destination rows instead, each thread scanning
 * all indices and keeping its own. */
static at_status gather_grad_cpu(at_kernel_ctx *k) {
    const at_tensor *dy = &k->in[0], *idx = &k->in[1];
    at_tensor *dx = &k->out[0];
    int r = dx->shape.rank;
    int axis = at_norm_axis(at_attr_int(k->node, "axis", 0), r);
    if (axis < 0) return at_kernel_fail(k, AT_E_SHAPE, "axis out of range");
    int64_t outer = prod_range(dx->shape.dim, 0, axis), dim = dx->shape.dim[axis];
    int64_t inner = prod_range(dx->shape.dim, axis + 1, r);
    int64_t n = prod_range(idx->shape.dim, 0, idx->shape.rank);
    int64_t bad = first_bad_index(idx, n, dim);
    if (bad >= 0) return bad_index(k, idx, bad, dim, axis);
    float *o = AT_F32P(dx);
    const float *g = (const float *)dy->data;
    int nt = nthreads(k);
    int64_t total = outer * dim * inner;
    bool par = total > PAR_MIN || outer * n * inner > PAR_MIN;
#pragma omp parallel for num_threads(nt) if (par) schedule(static)
    for (int64_t i = 0; i < total; i++) o[i] = 0.0f;
    if (!n || !inner || !outer) return AT_OK;

    enum { COLS = 256 };
    int64_t cb = (inner + COLS - 1) / COLS;
    if (outer * cb >= nt || !par || dim < 2 * nt) {
        int64_t width = inner;
        if (outer * cb >= nt)
            width = COLS;
        else if (par)
            width = (inner + nt - 1) / nt;
        int64_t blocks = (inner + width - 1) / width, units = outer * blocks;
#pragma omp parallel for num_threads(nt) if (par && units > 1) schedule(static)
        for (int64_t u = 0; u < units; u++) {
            int64_t ob = u / blocks, c0 = (u % blocks) * width;
            int64_t c1 = c0 + width < inner ? c0 + width : inner;
            float *ob_out = o + ob * dim * inner;
            const float *ob_dy = g + ob * n * inner;
            for (int64_t j = 0; j < n; j++) {
                float *dst = ob_out + index_at(idx, j, dim) * inner;
                const float *src = ob_dy + j * inner;
                for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
            }
        }
        return AT_OK;
    }
    /* narrow rows, few of them: split the destination rows */
    int64_t units = outer * nt;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t u = 0; u < units; u++) {
        int64_t ob = u / nt, t = u % nt;
        int64_t r0 = dim * t / nt, r1 = dim * (t + 1) / nt;
        float *ob_out = o + ob * dim * inner;
        const float *ob_dy = g + ob * n * inner;
        for (int64_t j = 0; j < n; j++) {
            int64_t row = index_at(idx, j, dim);
            if (row < r0 || row >= r1) continue;
            float *dst = ob_out + row * inner;
            const float *src = ob_dy + j * inner;
            for (int64_t c = 0; c < inner; c++) dst[c] += src[c];
        }
    }
    return AT_OK;
}

/* GatherGrad is linear in dy: its gradient gathers again. */
static at_status gather_grad_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    int axis = (int)at_attr_int(at_grad_node(c), "axis", 0);
    c->dx[0] = at_gather(c->g, c->dy[0], at_grad_in(c, 1), axis);
    if (c->dx[0] != AT_NONE) return AT_OK;
    at_status st = at_graph_status(c->g);
    return st != AT_OK ? st : AT_E_INTERNAL;
}

const at_op_def at_op_def_GatherGrad = {
    .name = "GatherGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 3,
    .max_in = 3,
    .min_out = 1,
    .max_out = 1,
    .attrs = gather_attrs,
    .infer = gather_grad_infer,
    .cpu = gather_grad_cpu,
    .grad = gather_grad_grad,
    .nondiff = (1u << 1) | (1u << 2),
};
