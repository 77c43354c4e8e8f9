/* Softmax and LogSoftmax (ONNX 13+: one axis, default -1) and their fused backward ops in
 * ai.attune:
 *   SoftmaxGrad(dY, Y)    -> dX = Y * (dY - sum(dY * Y))
 *   LogSoftmaxGrad(dY, Y) -> dX = dY - exp(Y) * sum(dY)
 * (sums along the axis). The tensor is seen as [outer, C, inner]; with inner == 1 each row is
 * contiguous, otherwise a task takes a block of up to SM_BLK inner positions and sweeps C with
 * unit-stride inner loops. Each row is handled by one thread, so results do not depend on the
 * thread count. */
#include <math.h>
#include <string.h>

#include "ops/lanes.h"
#include "ops/op.h"
#include "ops/parallel.h"
#include "runtime/cpu/vec.h"

#define SM_BLK 64

typedef struct sm_dims {
    int64_t outer, C, inner;
} sm_dims;

static at_status sm_dims_of(at_kernel_ctx *k, const at_shape *s, sm_dims *d) {
    int axis = at_norm_axis(at_attr_int(k->node, "axis", -1), s->rank);
    if (axis < 0) return at_kernel_fail(k, AT_E_INVALID, "axis out of range");
    d->outer = at_dims_prod(s, 0, axis);
    d->C = s->dim[axis];
    d->inner = at_dims_prod(s, axis + 1, s->rank);
    return AT_OK;
}

/* ---- forward ---- */

/* Rows go through ops/vmath.h's vector exp (about 1 ulp of expf; a scalar expf call an element
 * and one double accumulator were 3 ns an element), in chunks of SM_CHUNK; max and sum in
 * AT_LANES running lanes, the sum added in double. */
enum { SM_CHUNK = 256 };

typedef void (*exp_span)(const float *x, float *y, int64_t n, bool approx);

static float row_max(const float *x, int64_t C) {
    float m[AT_LANES];
    for (int l = 0; l < AT_LANES; l++) m[l] = -INFINITY;
    int64_t c = 0;
    for (; c + AT_LANES <= C; c += AT_LANES)
        for (int l = 0; l < AT_LANES; l++) m[l] = x[c + l] > m[l] ? x[c + l] : m[l];
    float r = -INFINITY;
    for (int l = 0; l < AT_LANES; l++) r = m[l] > r ? m[l] : r;
    for (; c < C; c++) r = x[c] > r ? x[c] : r;
    return r;
}

static void softmax_row(const float *x, float *y, int64_t C, bool logsm) {
    exp_span ex = AT_VM_PICK(at_vm_exp);
    float m = row_max(x, C), buf[SM_CHUNK];
    double s = 0;
    for (int64_t c0 = 0; c0 < C; c0 += SM_CHUNK) {
        int64_t n = C - c0 < SM_CHUNK ? C - c0 : SM_CHUNK;
        float *e = logsm ? buf : y + c0; /* softmax keeps e in y; log-softmax needs only sums */
        for (int64_t c = 0; c < n; c++) e[c] = x[c0 + c] - m;
        ex(e, e, n, false);
        s += at_lanes_sum(e, n);
    }
    if (logsm) {
        /* (x - m) first: exact near the max, where x - lse would cancel */
        float ls = (float)log(s);
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) - ls;
    } else {
        float inv = (float)(1.0 / s);
        for (int64_t c = 0; c < C; c++) y[c] *= inv;
    }
}

/* A block of w inner positions: x and y point at (o, 0, i0); stride is inner. */
static void softmax_block(const float *x, float *y, int64_t C, int64_t stride, int64_t w,
                          bool logsm) {
    float m[SM_BLK];
    double s[SM_BLK];
    for (int64_t i = 0; i < w; i++) m[i] = -INFINITY, s[i] = 0;
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < w; i++) m[i] = x[c * stride + i] > m[i] ? x[c * stride + i] : m[i];
    if (logsm) {
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < w; i++) s[i] += expf(x[c * stride + i] - m[i]);
        float ls[SM_BLK];
        for (int64_t i = 0; i < w; i++) ls[i] = (float)log(s[i]);
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < w; i++) y[c * stride + i] = (x[c * stride + i] - m[i]) - ls[i];
    } else {
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < w; i++) {
                float e = expf(x[c * stride + i] - m[i]);
                y[c * stride + i] = e;
                s[i] += e;
            }
        float inv[SM_BLK];
        for (int64_t i = 0; i < w; i++) inv[i] = (float)(1.0 / s[i]);
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < w; i++) y[c * stride + i] *= inv[i];
    }
}

/* ---- backward ---- */

static void smgrad_row(const float *dy, const float *y, float *dx, int64_t C, bool logsm) {
    double s = 0;
    if (logsm) {
        for (int64_t c = 0; c < C; c++) s += dy[c];
        float sf = (float)s;
        for (int64_t c = 0; c < C; c++) dx[c] = dy[c] - expf(y[c]) * sf;
    } else {
        for (int64_t c = 0; c < C; c++) s += (double)dy[c] * y[c];
        float sf = (float)s;
        for (int64_t c = 0; c < C; c++) dx[c] = y[c] * (dy[c] - sf);
    }
}

static void smgrad_block(const float *dy, const float *y, float *dx, int64_t C, int64_t stride,
                         int64_t w, bool logsm) {
    double s[SM_BLK];
    float sf[SM_BLK];
    for (int64_t i = 0; i < w; i++) s[i] = 0;
    if (logsm) {
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < w; i++) s[i] += dy[c * stride + i];
        for (int64_t i = 0; i < w; i++) sf[i] = (float)s[i];
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < w; i++) {
                int64_t j = c * stride + i;
                dx[j] = dy[j] - expf(y[j]) * sf[i];
            }
    } else {
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < w; i++) s[i] += (double)dy[c * stride + i] * y[c * stride + i];
        for (int64_t i = 0; i < w; i++) sf[i] = (float)s[i];
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < w; i++) {
                int64_t j = c * stride + i;
                dx[j] = y[j] * (dy[j] - sf[i]);
            }
    }
}

/* Softmax and its gradient over rows (inner == 1) or blocks of SM_BLK columns: units [lo, hi)
 * of either. */
typedef struct {
    sm_dims d;
    const float *x, *dy; /* dy: the gradient's, else NULL */
    float *y;
    int64_t nb; /* column blocks a row (inner > 1) */
    bool logsm;
} sm_job;

static void sm_units(void *arg, int64_t lo, int64_t hi) {
    const sm_job *j = arg;
    const int64_t C = j->d.C, inner = j->d.inner;
    for (int64_t t = lo; t < hi; t++) {
        if (inner == 1) {
            if (j->dy)
                smgrad_row(j->dy + t * C, j->x + t * C, j->y + t * C, C, j->logsm);
            else
                softmax_row(j->x + t * C, j->y + t * C, C, j->logsm);
            continue;
        }
        int64_t o = t / j->nb, i0 = (t % j->nb) * SM_BLK;
        int64_t w = inner - i0 < SM_BLK ? inner - i0 : SM_BLK;
        int64_t off = o * C * inner + i0;
        if (j->dy)
            smgrad_block(j->dy + off, j->x + off, j->y + off, C, inner, w, j->logsm);
        else
            softmax_block(j->x + off, j->y + off, C, inner, w, j->logsm);
    }
}

/* dy NULL: y = softmax(x); else y = the gradient dx from dy and x = the forward's output. */
static void sm_run(at_kernel_ctx *k, const sm_dims *d, const float *x, const float *dy, float *y,
                   bool logsm) {
    int64_t n = d->outer * d->C * d->inner;
    if (n == 0) return;
    sm_job j = {*d, x, dy, y, (d->inner + SM_BLK - 1) / SM_BLK, logsm};
    int64_t units = d->inner == 1 ? d->outer : d->outer * j.nb;
    int64_t per_unit = d->inner == 1 ? d->C : d->C * SM_BLK;
    at_par_range(k, units, 8192 / per_unit + 1, 1, sm_units, &j);
}

static at_status softmax_cpu_common(at_kernel_ctx *k, bool logsm) {
    sm_dims d;
    at_status st = sm_dims_of(k, &k->in[0].shape, &d);
    if (st) return st;
    sm_run(k, &d, AT_F32P(&k->in[0]), NULL, AT_F32P(&k->out[0]), logsm);
    return AT_OK;
}
static at_status softmax_cpu(at_kernel_ctx *k) {
    return softmax_cpu_common(k, false);
}
static at_status log_softmax_cpu(at_kernel_ctx *k) {
    return softmax_cpu_common(k, true);
}

static at_status smgrad_cpu_common(at_kernel_ctx *k, bool logsm) {
    sm_dims d;
    at_status st = sm_dims_of(k, &k->in[1].shape, &d);
    if (st) return st;
    sm_run(k, &d, AT_F32P(&k->in[1]), AT_F32P(&k->in[0]), AT_F32P(&k->out[0]), logsm);
    return AT_OK;
}

static at_status softmax_grad_cpu(at_kernel_ctx *k) {
    return smgrad_cpu_common(k, false);
}
static at_status log_softmax_grad_cpu(at_kernel_ctx *k) {
    return smgrad_cpu_common(k, true);
}

/* ---- shape rules ---- */

static at_status check_axis(at_infer_ctx *c, const at_shape *s) {
    int64_t axis = at_attr_int(c->node, "axis", -1);
    if (at_norm_axis(axis, s->rank) < 0)
        return at_infer_fail(c, AT_E_SHAPE, "axis %lld out of range for rank %d", (long long)axis,
                             (int)s->rank);
    return AT_OK;
}

static at_status softmax_infer(at_infer_ctx *c) {
    if (c->in_dtype[0] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "unsupported dtype %s", at_dtype_name(c->in_dtype[0]));
    at_status st = check_axis(c, &c->in_shape[0]);
    if (st) return st;
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = c->in_shape[0];
    return AT_OK;
}

static at_status smgrad_infer(at_infer_ctx *c) {
    if (c->in_dtype[0] != AT_F32 || c->in_dtype[1] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "dY and Y must be float32");
    const at_shape *a = &c->in_shape[0], *b = &c->in_shape[1];
    if (a->rank != b->rank) return at_infer_fail(c, AT_E_SHAPE, "dY and Y ranks differ");
    for (int d = 0; d < a->rank; d++)
        if (a->dim[d] >= 0 && b->dim[d] >= 0 && a->dim[d] != b->dim[d])
            return at_infer_fail(c, AT_E_SHAPE, "dY and Y differ in dim %d", d);
    at_status st = check_axis(c, b);
    if (st) return st;
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = *b;
    return AT_OK;
}

/* ---- gradient rules ---- */

static at_status emit_axis_op(at_grad_ctx *c, const char *op, at_val a, at_val b, at_val *out) {
    at_attr attr = AT_ATTR_I("axis", at_attr_int(at_grad_node(c), "axis", -1));
    at_val in[2] = {a, b};
    if (at_node_add(c->g, op, AT_DOMAIN_ATTUNE, in, 2, out, 1, &attr, 1) < 0) {
        at_status st = at_graph_status(c->g);
        return st ? st : AT_E_INTERNAL;
    }
    return AT_OK;
}

static at_status softmax_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    return emit_axis_op(c, "SoftmaxGrad", c->dy[0], at_grad_out(c, 0), &c->dx[0]);
}

static at_status log_softmax_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    return emit_axis_op(c, "LogSoftmaxGrad", c->dy[0], at_grad_out(c, 0), &c->dx[0]);
}

/* Sum of v along the node's axis, kept as a size-1 dim so it broadcasts back. */
static at_val axis_sum(at_grad_ctx *c, at_val v, int64_t axis) {
    return at_reduce_sum(c->g, v, 1, &axis, 1);
}

static at_status graph_st(at_grad_ctx *c) {
    at_status st = at_graph_status(c->g);
    return st ? st : AT_E_INTERNAL;
}

/* SoftmaxGrad is J^T dY with J^T = diag(Y) - Y Y^T symmetric, so its adjoint in dY is itself;
 * in Y: d/dY_k = g_k (dY_k - s) - dY_k sum(g Y), with s = sum(dY Y). */
static at_status softmax_grad_grad(at_grad_ctx *c) {
    at_val g = c->dy[0];
    if (g == AT_NONE) return AT_OK;
    int64_t axis = at_attr_int(at_grad_node(c), "axis", -1);
    at_val dy = at_grad_in(c, 0), y = at_grad_in(c, 1);
    if (c->need[0]) {
        at_status st = emit_axis_op(c, "SoftmaxGrad", g, y, &c->dx[0]);
        if (st) return st;
    }
    if (c->need[1]) {
        at_val s = axis_sum(c, at_mul(c->g, dy, y), axis);
        at_val gy = axis_sum(c, at_mul(c->g, g, y), axis);
        at_val t1 = at_mul(c->g, g, at_sub(c->g, dy, s));
        c->dx[1] = at_sub(c->g, t1, at_mul(c->g, dy, gy));
        if (c->dx[1] == AT_NONE) return graph_st(c);
    }
    return AT_OK;
}

/* dX = dY - exp(Y) * sum(dY): in dY, g - sum(g * exp(Y)); in Y, -g * exp(Y) * sum(dY). */
static at_status log_softmax_grad_grad(at_grad_ctx *c) {
    at_val g = c->dy[0];
    if (g == AT_NONE) return AT_OK;
    int64_t axis = at_attr_int(at_grad_node(c), "axis", -1);
    at_val dy = at_grad_in(c, 0), y = at_grad_in(c, 1);
    at_val p = at_exp(c->g, y);
    if (c->need[0]) {
        c->dx[0] = at_sub(c->g, g, axis_sum(c, at_mul(c->g, g, p), axis));
        if (c->dx[0] == AT_NONE) return graph_st(c);
    }
    if (c->need[1]) {
        at_val t = at_mul(c->g, at_mul(c->g, g, p), axis_sum(c, dy, axis));
        c->dx[1] = at_neg(c->g, t);
        if (c->dx[1] == AT_NONE) return graph_st(c);
    }
    return AT_OK;
}

/* ---- records ---- */

static const at_attr_schema axis_attrs[] = {{"axis", AT_ATTR_INT, false}, {NULL}};

const at_op_def at_op_def_Softmax = {
    .name = "Softmax",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 1,
    .min_out = 1,
    .max_out = 1,
    .attrs = axis_attrs,
    .infer = softmax_infer,
    .cpu = softmax_cpu,
    .grad = softmax_grad,
};
const at_op_def at_op_def_LogSoftmax = {
    .name = "LogSoftmax",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 1,
    .min_out = 1,
    .max_out = 1,
    .attrs = axis_attrs,
    .infer = softmax_infer,
    .cpu = log_softmax_cpu,
    .grad = log_softmax_grad,
};
/* inputs: dY, Y (the forward output) */
const at_op_def at_op_def_SoftmaxGrad = {
    .name = "SoftmaxGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 2,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .attrs = axis_attrs,
    .infer = smgrad_infer,
    .cpu = softmax_grad_cpu,
    .grad = softmax_grad_grad,
};
const at_op_def at_op_def_LogSoftmaxGrad = {
    .name = "LogSoftmaxGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 2,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .attrs = axis_attrs,
    .infer = smgrad_infer,
    .cpu = log_softmax_grad_cpu,
    .grad = log_softmax_grad_grad,
};

/* ---- builders ---- */

static at_val axis_build(at_graph *g, const char *op, at_val x, int axis) {
    if (x == AT_NONE) return AT_NONE;
    at_attr a = AT_ATTR_I("axis", axis);
    return at_node1(g, op, &x, 1, &a, 1);
}

at_val at_softmax(at_graph *g, at_val x, int axis) {
    return axis_build(g, "Softmax", x, axis);
}
at_val at_log_softmax(at_graph *g, at_val x, int axis) {
    return axis_build(g, "LogSoftmax", x, axis);
}
