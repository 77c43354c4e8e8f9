/* LayerNormalization (ONNX 17) and its fused backward op.
 *
 * Forward: X is seen as [rows, D] with D the product of X.shape[axis:]; per row,
 *   mean = sum(x) / D, var = sum((x - mean)^2) / D, inv = 1 / sqrt(var + epsilon),
 *   Y = (x - mean) * inv * Scale + B,
 * with optional outputs Mean and InvStdDev of shape X.shape[:axis] + [1] * (rank - axis).
 *
 * LayerNormGrad (ai.attune): inputs dY?, X, Scale, Mean?, InvStdDev?, dMean?, dInvStdDev?;
 * outputs dX, dScale, dBias?. Mean and InvStdDev are recomputed when not given. With
 * xhat = (x - mean) * inv and g = dY * Scale:
 *   dX = inv * (g - mean(g) - xhat * mean(g * xhat)) + dMean / D - dInv * inv^2 * xhat / D
 *   dScale = sum over rows of dY * xhat, dBias = sum over rows of dY.
 * The row sums are accumulated per fixed chunk of rows into the workspace and the chunks are
 * added in order, so they do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "ops/lanes.h"
#include "ops/op.h"
#include "ops/parallel.h"

#define LN_CHUNKS 32 /* row chunks of the dScale / dBias reduction */

static bool present(const at_kernel_ctx *k, int i) {
    return k->n_in > i && k->in[i].data;
}
static bool out_present(const at_kernel_ctx *k, int j) {
    return k->n_out > j && k->out[j].data;
}

/* rows and D of X for the node's axis; -1 axis when invalid. */
static int ln_split(const at_node_rec *n, const at_shape *x, int64_t *rows, int64_t *D) {
    int axis = at_norm_axis(at_attr_int(n, "axis", -1), x->rank);
    if (axis < 0) return -1;
    *rows = at_dims_prod(x, 0, axis);
    *D = at_dims_prod(x, axis, x->rank);
    return axis;
}

/* mean and 1/sqrt(var + eps) of one row, two passes over lanes (ops/lanes.h). */
static void row_stats(const float *x, int64_t D, double eps, float *mean, float *inv) {
    double m = D ? at_lanes_sum(x, D) / (double)D : 0;
    float mf = (float)m;
    double v = at_lanes_sumsq_dev(x, D, mf);
    *mean = mf;
    *inv = (float)(1.0 / sqrt((D ? v / (double)D : 0) + eps));
}

/* ---- forward ---- */

typedef struct {
    const float *x, *scale, *bias;
    float *y, *mo, *io;
    int64_t D;
    double eps;
} ln_job;

static void ln_rows(void *arg, int64_t lo, int64_t hi) {
    const ln_job *j = arg;
    const int64_t D = j->D;
    const float *scale = j->scale, *bias = j->bias;
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = j->x + r * D;
        float *yr = j->y + r * D;
        float mean, inv;
        row_stats(xr, D, j->eps, &mean, &inv);
        if (bias)
            for (int64_t c = 0; c < D; c++) yr[c] = (xr[c] - mean) * inv * scale[c] + bias[c];
        else
            for (int64_t c = 0; c < D; c++) yr[c] = (xr[c] - mean) * inv * scale[c];
        if (j->mo) j->mo[r] = mean;
        if (j->io) j->io[r] = inv;
    }
}

static at_status ln_cpu(at_kernel_ctx *k) {
    const at_tensor *X = &k->in[0];
    int64_t rows, D;
    if (ln_split(k->node, &X->shape, &rows, &D) < 0)
        return at_kernel_fail(k, AT_E_INVALID, "axis out of range");
    double eps = at_attr_float(k->node, "epsilon", 1e-5f);
    const float *x = AT_F32P(X), *scale = AT_F32P(&k->in[1]);
    const float *bias = present(k, 2) ? AT_F32P(&k->in[2]) : NULL;
    float *y = AT_F32P(&k->out[0]);
    float *mo = out_present(k, 1) ? AT_F32P(&k->out[1]) : NULL;
    float *io = out_present(k, 2) ? AT_F32P(&k->out[2]) : NULL;
    ln_job j = {x, scale, bias, y, mo, io, D, eps};
    at_par_range(k, rows, 16384 / (D ? D : 1) + 1, 1, ln_rows, &j);
    return AT_OK;
}

/* ---- backward ---- */

enum { G_DY, G_X, G_SCALE, G_MEAN, G_INV, G_DMEAN, G_DINV };

static int64_t ln_chunks(int64_t rows) {
    return rows < LN_CHUNKS ? (rows ? rows : 1) : LN_CHUNKS;
}

static size_t ln_grad_ws(const at_kernel_ctx *k) {
    int64_t rows, D;
    if (ln_split(k->node, &k->in[G_X].shape, &rows, &D) < 0) return 0;
    return (size_t)ln_chunks(rows) * 2u * (size_t)D * sizeof(float);
}

/* One row of the backward: with xhat = (x - mean) inv and g = dY Scale, adds dY xhat and dY to
 * the chunk's dScale and dBias sums and returns sum(g) and sum(g xhat), in AT_LANES running
 * float sums (a chain of double adds does not vectorize) added in double. */
static void grad_row_sums(const float *xr, const float *gr, const float *scale, int64_t D,
                          float mean, float inv, float *ps, float *pb, double *sg, double *sgx) {
    float ag[AT_LANES] = {0}, agx[AT_LANES] = {0};
    int64_t j = 0;
    for (; j + AT_LANES <= D; j += AT_LANES)
        for (int l = 0; l < AT_LANES; l++) {
            float xh = (xr[j + l] - mean) * inv, g = gr[j + l] * scale[j + l];
            ag[l] += g;
            agx[l] += g * xh;
            ps[j + l] += gr[j + l] * xh;
            pb[j + l] += gr[j + l];
        }
    double s = 0, sx = 0;
    for (int l = 0; l < AT_LANES; l++) s += ag[l], sx += agx[l];
    for (; j < D; j++) {
        float xh = (xr[j] - mean) * inv, g = gr[j] * scale[j];
        s += g;
        sx += (double)g * xh;
        ps[j] += gr[j] * xh;
        pb[j] += gr[j];
    }
    *sg = s, *sgx = sx;
}

typedef struct {
    const float *dy, *x, *scale, *mean_in, *inv_in, *dmean, *dinv;
    float *dx, *dscale, *dbias, *part;
    int64_t rows, D, per, P;
    double eps;
    bool saved;
} lng_job;

/* Chunks [lo, hi) of rows: dX, and the chunk's partial dScale and dBias sums in part (fixed
 * chunks, so the sums do not depend on the thread count). */
static void lng_chunks(void *arg, int64_t lo, int64_t hi) {
    const lng_job *j = arg;
    const int64_t D = j->D;
    const float *scale = j->scale;
    for (int64_t c = lo; c < hi; c++) {
        float *ps = j->part + c * 2 * D, *pb = ps + D;
        for (int64_t q = 0; q < 2 * D; q++) ps[q] = 0;
        int64_t r1 = (c + 1) * j->per < j->rows ? (c + 1) * j->per : j->rows;
        for (int64_t r = c * j->per; r < r1; r++) {
            const float *xr = j->x + r * D, *gr = j->dy ? j->dy + r * D : NULL;
            float mean, inv;
            if (j->saved)
                mean = j->mean_in[r], inv = j->inv_in[r];
            else
                row_stats(xr, D, j->eps, &mean, &inv);
            double sg = 0, sgx = 0;
            if (gr) grad_row_sums(xr, gr, scale, D, mean, inv, ps, pb, &sg, &sgx);
            if (!j->dx) continue;
            float *dxr = j->dx + r * D;
            double invD = D ? 1.0 / (double)D : 0;
            float mg = (float)(sg * invD), mgx = (float)(sgx * invD);
            float cm = j->dmean ? (float)(j->dmean[r] * invD) : 0.0f;
            float ci = j->dinv ? (float)(-(double)j->dinv[r] * inv * inv * invD) : 0.0f;
            if (gr)
                for (int64_t q = 0; q < D; q++) {
                    float xh = (xr[q] - mean) * inv;
                    dxr[q] = inv * (gr[q] * scale[q] - mg - xh * mgx) + cm + ci * xh;
                }
            else
                for (int64_t q = 0; q < D; q++) {
                    float xh = (xr[q] - mean) * inv;
                    dxr[q] = inv * (-mg - xh * mgx) + cm + ci * xh;
                }
        }
    }
}

/* Columns [lo, hi) of dScale and dBias: the chunks' partial sums, in chunk order. */
static void lng_params(void *arg, int64_t lo, int64_t hi) {
    const lng_job *j = arg;
    for (int64_t q = lo; q < hi; q++) {
        double s = 0, b = 0;
        for (int64_t c = 0; c < j->P; c++) {
            s += j->part[c * 2 * j->D + q];
            b += j->part[c * 2 * j->D + j->D + q];
        }
        if (j->dscale) j->dscale[q] = (float)s;
        if (j->dbias) j->dbias[q] = (float)b;
    }
}

static at_status ln_grad_cpu(at_kernel_ctx *k) {
    const at_tensor *X = &k->in[G_X];
    int64_t rows, D;
    if (ln_split(k->node, &X->shape, &rows, &D) < 0)
        return at_kernel_fail(k, AT_E_INVALID, "axis out of range");
    int64_t P = ln_chunks(rows);
    size_t need = (size_t)P * 2u * (size_t)D * sizeof(float);
    if (need && (!k->ws || k->ws_size < need))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", need);
    double eps = at_attr_float(k->node, "epsilon", 1e-5f);
    const float *dy = present(k, G_DY) ? AT_F32P(&k->in[G_DY]) : NULL;
    const float *x = AT_F32P(X), *scale = AT_F32P(&k->in[G_SCALE]);
    bool saved = present(k, G_MEAN) && present(k, G_INV);
    const float *mean_in = saved ? AT_F32P(&k->in[G_MEAN]) : NULL;
    const float *inv_in = saved ? AT_F32P(&k->in[G_INV]) : NULL;
    const float *dmean = present(k, G_DMEAN) ? AT_F32P(&k->in[G_DMEAN]) : NULL;
    const float *dinv = present(k, G_DINV) ? AT_F32P(&k->in[G_DINV]) : NULL;
    float *dx = out_present(k, 0) ? AT_F32P(&k->out[0]) : NULL;
    float *dscale = out_present(k, 1) ? AT_F32P(&k->out[1]) : NULL;
    float *dbias = out_present(k, 2) ? AT_F32P(&k->out[2]) : NULL;
    lng_job j = {dy, x,      scale, mean_in, inv_in, dmean, dinv,
                 dx, dscale, dbias, k->ws,   rows,   D,     (rows + P - 1) / P,
                 P,  eps,    saved};
    at_par_range(k, P, 1, 1, lng_chunks, &j);
    if (dscale || dbias) at_par_range(k, D, 8192 / P + 1, 16, lng_params, &j);
    return AT_OK;
}

/* ---- shape rules ---- */

static bool dims_conflict(int64_t a, int64_t b) {
    return a >= 0 && b >= 0 && a != b;
}

/* Checks that input i has the normalized shape X.shape[axis:]. */
static at_status check_norm_shape(at_infer_ctx *c, int i, const char *what, const at_shape *x,
                                  int axis) {
    const at_shape *s = &c->in_shape[i];
    if (c->in_dtype[i] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "%s must be float32, got %s", what,
                             at_dtype_name(c->in_dtype[i]));
    if (s->rank != x->rank - axis)
        return at_infer_fail(c, AT_E_SHAPE, "%s has rank %d, want %d (X.shape[%d:])", what,
                             (int)s->rank, (int)(x->rank - axis), axis);
    for (int d = 0; d < s->rank; d++)
        if (dims_conflict(s->dim[d], x->dim[axis + d]))
            return at_infer_fail(c, AT_E_SHAPE, "%s dim %d is %lld, X dim %d is %lld", what, d,
                                 (long long)s->dim[d], axis + d, (long long)x->dim[axis + d]);
    return AT_OK;
}

static at_shape stats_shape(const at_shape *x, int axis) {
    at_shape s = *x;
    for (int d = axis; d < x->rank; d++) s.dim[d] = 1;
    return s;
}

static at_status ln_infer(at_infer_ctx *c) {
    const at_shape *x = &c->in_shape[0];
    if (c->in_dtype[0] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "X must be float32, got %s",
                             at_dtype_name(c->in_dtype[0]));
    int64_t ax = at_attr_int(c->node, "axis", -1);
    int axis = at_norm_axis(ax, x->rank);
    if (axis < 0)
        return at_infer_fail(c, AT_E_SHAPE, "axis %lld out of range for rank %d", (long long)ax,
                             (int)x->rank);
    if (at_attr_int(c->node, "stash_type", 1) != 1)
        return at_infer_fail(c, AT_E_UNSUPPORTED, "stash_type %lld (only 1, float32)",
                             (long long)at_attr_int(c->node, "stash_type", 1));
    at_status st = check_norm_shape(c, 1, "Scale", x, axis);
    if (st) return st;
    if (c->n_in > 2 && c->in_dtype[2] != AT_UNDEFINED) {
        st = check_norm_shape(c, 2, "B", x, axis);
        if (st) return st;
    }
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = *x;
    for (int j = 1; j < c->n_out; j++) {
        c->out_dtype[j] = AT_F32;
        c->out_shape[j] = stats_shape(x, axis);
    }
    return AT_OK;
}

static at_status ln_grad_infer(at_infer_ctx *c) {
    if (c->n_in < 3) return at_infer_fail(c, AT_E_SHAPE, "needs dY?, X and Scale");
    const at_shape *x = &c->in_shape[G_X];
    if (c->in_dtype[G_X] != AT_F32) return at_infer_fail(c, AT_E_SHAPE, "X must be float32");
    int64_t ax = at_attr_int(c->node, "axis", -1);
    int axis = at_norm_axis(ax, x->rank);
    if (axis < 0)
        return at_infer_fail(c, AT_E_SHAPE, "axis %lld out of range for rank %d", (long long)ax,
                             (int)x->rank);
    at_status st = check_norm_shape(c, G_SCALE, "Scale", x, axis);
    if (st) return st;
    if (c->in_dtype[G_DY] != AT_UNDEFINED) {
        const at_shape *d = &c->in_shape[G_DY];
        if (c->in_dtype[G_DY] != AT_F32 || d->rank != x->rank)
            return at_infer_fail(c, AT_E_SHAPE, "dY must be float32 with X's rank");
        for (int i = 0; i < d->rank; i++)
            if (dims_conflict(d->dim[i], x->dim[i]))
                return at_infer_fail(c, AT_E_SHAPE, "dY and X differ in dim %d", i);
    }
    at_shape ss = stats_shape(x, axis);
    for (int i = G_MEAN; i < c->n_in && i <= G_DINV; i++) {
        if (c->in_dtype[i] == AT_UNDEFINED) continue;
        const at_shape *s = &c->in_shape[i];
        if (c->in_dtype[i] != AT_F32 || s->rank != ss.rank)
            return at_infer_fail(c, AT_E_SHAPE, "input %d must be float32 X.shape[:axis] + 1s", i);
        for (int d = 0; d < s->rank; d++)
            if (dims_conflict(s->dim[d], ss.dim[d]))
                return at_infer_fail(c, AT_E_SHAPE, "input %d differs from the row-stat shape", i);
    }
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = *x;
    for (int j = 1; j < c->n_out; j++) {
        c->out_dtype[j] = AT_F32;
        c->out_shape[j] = c->in_shape[G_SCALE];
    }
    return AT_OK;
}

/* ---- gradient rule ---- */

static at_status ln_grad(at_grad_ctx *c) {
    const at_node_rec *n = at_grad_node(c);
    bool has_bias = n->n_in > 2 && n->in[2] != AT_NONE;
    at_val dyv = c->dy[0], dm = n->n_out > 1 ? c->dy[1] : AT_NONE;
    at_val di = n->n_out > 2 ? c->dy[2] : AT_NONE;
    if (dyv == AT_NONE && dm == AT_NONE && di == AT_NONE) return AT_OK;
    bool want_x = c->need[0], want_s = c->need[1], want_b = has_bias && c->need[2];
    if (!want_x && !want_s && !want_b) return AT_OK;
    at_val in[7] = {dyv,
                    n->in[0],
                    n->in[1],
                    n->n_out > 2 ? n->out[1] : AT_NONE,
                    n->n_out > 2 ? n->out[2] : AT_NONE,
                    dm,
                    di};
    int n_in = 7;
    while (n_in > 3 && in[n_in - 1] == AT_NONE) n_in--;
    at_attr attrs[2] = {AT_ATTR_I("axis", at_attr_int(n, "axis", -1)),
                        AT_ATTR_F("epsilon", at_attr_float(n, "epsilon", 1e-5f))};
    at_val out[3];
    int n_out = want_b ? 3 : 2;
    /* dY may be absent (only Mean or InvStdDev carry a gradient): input 0 is optional */
    if (at_node_add(c->g, "LayerNormGrad", AT_DOMAIN_ATTUNE, in, n_in, out, n_out, attrs, 2) < 0) {
        at_status st = at_graph_status(c->g);
        return st ? st : AT_E_INTERNAL;
    }
    if (want_x) c->dx[0] = out[0];
    if (want_s) c->dx[1] = out[1];
    if (want_b) c->dx[2] = out[2];
    return AT_OK;
}

/* ---- records ---- */

static const at_attr_schema ln_attrs[] = {{"axis", AT_ATTR_INT, false},
                                          {"epsilon", AT_ATTR_FLOAT, false},
                                          {"stash_type", AT_ATTR_INT, false},
                                          {NULL}};
static const at_attr_schema ln_grad_attrs[] = {
    {"axis", AT_ATTR_INT, false}, {"epsilon", AT_ATTR_FLOAT, false}, {NULL}};

const at_op_def at_op_def_LayerNormalization = {
    .name = "LayerNormalization",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 2,
    .max_in = 3,
    .min_out = 1,
    .max_out = 3,
    .attrs = ln_attrs,
    .infer = ln_infer,
    .cpu = ln_cpu,
    .grad = ln_grad,
};
const at_op_def at_op_def_LayerNormGrad = {
    .name = "LayerNormGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 0,
    .max_in = 7,
    .min_out = 1,
    .max_out = 3,
    .attrs = ln_grad_attrs,
    .infer = ln_grad_infer,
    .cpu = ln_grad_cpu,
    .workspace = ln_grad_ws,
    .nondiff = (1u << G_MEAN) | (1u << G_INV),
};

/* ---- builder ---- */

at_val at_layer_norm(at_graph *g, at_val x, at_val scale, at_val bias, int axis, float epsilon) {
    if (x == AT_NONE || scale == AT_NONE) return AT_NONE;
    at_val in[3] = {x, scale, bias};
    at_attr attrs[2] = {AT_ATTR_I("axis", axis), AT_ATTR_F("epsilon", epsilon)};
    at_val out[3];
    /* Mean and InvStdDev are made too: the backward op reads them instead of recomputing */
    if (at_node_add(g, "LayerNormalization", AT_DOMAIN_ONNX, in, bias == AT_NONE ? 2 : 3, out, 3,
                    attrs, 2) < 0)
        return AT_NONE;
    return out[0];
}
