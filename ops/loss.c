/* SoftmaxCrossEntropyLoss (ONNX 13+) and its fused backward op.
 *
 * scores [N, C, D...] float, labels [N, D...] int64 or int32, weights [C] optional. Seen as
 * [N, C, S] with S = prod(D...): position (n, s) has class scores at stride S. Per position,
 * log_prob = scores - logsumexp over C, and loss_i = -w[label_i] * log_prob[label_i] (w = 1
 * without weights); positions whose label equals ignore_index (when that attribute is set)
 * give 0 and count nowhere. reduction "none" gives loss_i, "sum" their sum, "mean" their sum
 * divided by the sum of w[label_i] over non-ignored positions, as ONNX specifies (without
 * weights: the number of non-ignored positions). When every position is ignored, "mean" gives
 * 0 (ONNX's formula would give 0/0 = NaN) and a zero gradient. A label outside [0, C) that is
 * not ignore_index is a kernel error naming the label and its position.
 *
 * SoftmaxCrossEntropyLossGrad (ai.attune): dLoss, X, labels, weights? -> dScores, where X is
 * log_prob (attribute input_is_log_prob = 1, the default) or the scores (0: recomputed);
 *   dScores[n, c, s] = dLoss_i * w_i / denom * (softmax[n, c, s] - [c == label_i]).
 * The weights input carries no gradient (class weights are constants).
 *
 * Per-position losses go to the workspace and are summed in position order, so the result
 * does not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "ops/op.h"

#define CE_BLK 64

enum { RED_NONE, RED_SUM, RED_MEAN };

static int nthreads(const at_kernel_ctx *k) {
    return k->threads > 0 ? k->threads : omp_get_max_threads();
}

static int reduction_of(const at_node_rec *n) {
    const char *r = at_attr_str(n, "reduction", "mean");
    if (strcmp(r, "none") == 0) return RED_NONE;
    if (strcmp(r, "sum") == 0) return RED_SUM;
    if (strcmp(r, "mean") == 0) return RED_MEAN;
    return -1;
}

typedef struct ce_ctx {
    int64_t N, C, S, P; /* P = N * S positions */
    const float *x;
    const void *labels;
    bool lab64;
    const float *w;
    bool has_ignore;
    int64_t ignore;
} ce_ctx;

static inline int64_t label_at(const ce_ctx *c, int64_t pos) {
    return c->lab64 ? ((const int64_t *)c->labels)[pos] : ((const int32_t *)c->labels)[pos];
}

static inline bool ignored(const ce_ctx *c, int64_t label) {
    return c->has_ignore && label == c->ignore;
}

/* Reads shapes and checks every label (serially, so the first bad one is reported). */
static at_status ce_setup(at_kernel_ctx *k, int xi, int li, int wi, ce_ctx *c) {
    const at_tensor *x = &k->in[xi], *l = &k->in[li];
    c->N = x->shape.dim[0];
    c->C = x->shape.dim[1];
    c->S = at_dims_prod(&x->shape, 2, x->shape.rank);
    c->P = c->N * c->S;
    c->x = AT_F32P(x);
    c->labels = l->data;
    c->lab64 = l->dtype == AT_I64;
    c->w = k->n_in > wi && k->in[wi].data ? AT_F32P(&k->in[wi]) : NULL;
    const at_attr_rec *ig = at_attr_find(k->node, "ignore_index");
    c->has_ignore = ig != NULL;
    c->ignore = ig ? ig->i : 0;
    for (int64_t p = 0; p < c->P; p++) {
        int64_t lab = label_at(c, p);
        if (ignored(c, lab)) continue;
        if (lab < 0 || lab >= c->C)
            return at_kernel_fail(k, AT_E_INVALID,
                                  "label %lld at position %lld out of range [0, %lld)",
                                  (long long)lab, (long long)p, (long long)c->C);
    }
    return AT_OK;
}

/* Max and log-sum-exp offset of w positions starting at x (class stride S). */
static void lse_block(const float *x, int64_t C, int64_t S, int64_t w, float *m, float *ls) {
    double s[CE_BLK];
    for (int64_t i = 0; i < w; i++) m[i] = -INFINITY, s[i] = 0;
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < w; i++) m[i] = x[c * S + i] > m[i] ? x[c * S + i] : m[i];
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < w; i++) s[i] += expf(x[c * S + i] - m[i]);
    for (int64_t i = 0; i < w; i++) ls[i] = (float)log(s[i]);
}

/* ---- forward ---- */

static size_t ce_ws(const at_kernel_ctx *k) {
    const at_shape *x = &k->in[0].shape;
    int64_t P = x->dim[0] * at_dims_prod(x, 2, x->rank);
    return (size_t)(P > 0 ? P : 1) * 2u * sizeof(double);
}

static at_status ce_cpu(at_kernel_ctx *k) {
    int red = reduction_of(k->node);
    if (red < 0) return at_kernel_fail(k, AT_E_INVALID, "bad reduction");
    ce_ctx c;
    at_status st = ce_setup(k, 0, 1, 2, &c);
    if (st) return st;
    size_t need = (size_t)(c.P > 0 ? c.P : 1) * 2u * sizeof(double);
    if (!k->ws || k->ws_size < need)
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", need);
    double *li = k->ws, *wi = li + c.P;
    float *lp = k->n_out > 1 && k->out[1].data ? AT_F32P(&k->out[1]) : NULL;
    int64_t nb = (c.S + CE_BLK - 1) / CE_BLK;
    int nt = nthreads(k);
#pragma omp parallel for num_threads(nt) schedule(static) if (c.P * c.C > 16384)
    for (int64_t t = 0; t < c.N * nb; t++) {
        int64_t n = t / nb, s0 = (t % nb) * CE_BLK, w = c.S - s0 < CE_BLK ? c.S - s0 : CE_BLK;
        const float *x = c.x + n * c.C * c.S + s0;
        float m[CE_BLK], ls[CE_BLK];
        lse_block(x, c.C, c.S, w, m, ls);
        if (lp) {
            float *o = lp + n * c.C * c.S + s0;
            for (int64_t cl = 0; cl < c.C; cl++)
                for (int64_t i = 0; i < w; i++) o[cl * c.S + i] = (x[cl * c.S + i] - m[i]) - ls[i];
        }
        for (int64_t i = 0; i < w; i++) {
            int64_t pos = n * c.S + s0 + i, lab = label_at(&c, pos);
            if (ignored(&c, lab)) {
                li[pos] = wi[pos] = 0;
                continue;
            }
            double wt = c.w ? c.w[lab] : 1.0;
            double lpv = (double)((x[lab * c.S + i] - m[i]) - ls[i]);
            li[pos] = -wt * lpv;
            wi[pos] = wt;
        }
    }
    float *out = AT_F32P(&k->out[0]);
    if (red == RED_NONE) {
        for (int64_t p = 0; p < c.P; p++) out[p] = (float)li[p];
        return AT_OK;
    }
    double sl = 0, sw = 0;
    for (int64_t p = 0; p < c.P; p++) sl += li[p], sw += wi[p];
    out[0] = (float)(red == RED_SUM ? sl : (sw != 0 ? sl / sw : 0.0));
    return AT_OK;
}

/* ---- backward ---- */

static at_status ce_grad_cpu(at_kernel_ctx *k) {
    int red = reduction_of(k->node);
    if (red < 0) return at_kernel_fail(k, AT_E_INVALID, "bad reduction");
    ce_ctx c;
    at_status st = ce_setup(k, 1, 2, 3, &c);
    if (st) return st;
    bool is_lp = at_attr_int(k->node, "input_is_log_prob", 1) != 0;
    const float *dl = AT_F32P(&k->in[0]);
    float *dx = AT_F32P(&k->out[0]);
    double scale = 1.0;
    if (red == RED_MEAN) {
        double sw = 0;
        for (int64_t p = 0; p < c.P; p++) {
            int64_t lab = label_at(&c, p);
            if (!ignored(&c, lab)) sw += c.w ? c.w[lab] : 1.0;
        }
        scale = sw != 0 ? 1.0 / sw : 0.0;
    }
    int64_t nb = (c.S + CE_BLK - 1) / CE_BLK;
    int nt = nthreads(k);
#pragma omp parallel for num_threads(nt) schedule(static) if (c.P * c.C > 16384)
    for (int64_t t = 0; t < c.N * nb; t++) {
        int64_t n = t / nb, s0 = (t % nb) * CE_BLK, w = c.S - s0 < CE_BLK ? c.S - s0 : CE_BLK;
        const float *x = c.x + n * c.C * c.S + s0;
        float *d = dx + n * c.C * c.S + s0;
        float m[CE_BLK], ls[CE_BLK], coef[CE_BLK];
        int64_t lab[CE_BLK];
        if (is_lp) {
            for (int64_t i = 0; i < w; i++) m[i] = 0, ls[i] = 0;
        } else {
            lse_block(x, c.C, c.S, w, m, ls);
        }
        for (int64_t i = 0; i < w; i++) {
            int64_t pos = n * c.S + s0 + i;
            lab[i] = label_at(&c, pos);
            if (ignored(&c, lab[i])) {
                coef[i] = 0;
                lab[i] = -1;
                continue;
            }
            double g = red == RED_NONE ? dl[pos] : dl[0];
            coef[i] = (float)(g * (c.w ? c.w[lab[i]] : 1.0) * scale);
        }
        for (int64_t cl = 0; cl < c.C; cl++)
            for (int64_t i = 0; i < w; i++) {
                float p = expf((x[cl * c.S + i] - m[i]) - ls[i]);
                d[cl * c.S + i] = coef[i] * (p - (cl == lab[i] ? 1.0f : 0.0f));
            }
    }
    return AT_OK;
}

/* ---- shape rules ---- */

static bool dims_conflict(int64_t a, int64_t b) {
    return a >= 0 && b >= 0 && a != b;
}

/* Checks scores (input xi), labels (li) and weights (wi, optional). */
static at_status ce_check(at_infer_ctx *c, int xi, int li, int wi) {
    const at_shape *x = &c->in_shape[xi], *l = &c->in_shape[li];
    if (c->in_dtype[xi] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "scores must be float32, got %s",
                             at_dtype_name(c->in_dtype[xi]));
    if (x->rank < 2)
        return at_infer_fail(c, AT_E_SHAPE, "scores must be [N, C, D...], got rank %d",
                             (int)x->rank);
    if (c->in_dtype[li] != AT_I64 && c->in_dtype[li] != AT_I32)
        return at_infer_fail(c, AT_E_SHAPE, "labels must be int64 or int32, got %s",
                             at_dtype_name(c->in_dtype[li]));
    if (l->rank != x->rank - 1)
        return at_infer_fail(c, AT_E_SHAPE, "labels must have rank %d ([N, D...]), got %d",
                             (int)x->rank - 1, (int)l->rank);
    for (int d = 0; d < l->rank; d++) {
        int xd = d == 0 ? 0 : d + 1;
        if (dims_conflict(l->dim[d], x->dim[xd]))
            return at_infer_fail(c, AT_E_SHAPE, "labels dim %d is %lld, scores dim %d is %lld", d,
                                 (long long)l->dim[d], xd, (long long)x->dim[xd]);
    }
    if (c->n_in > wi && c->in_dtype[wi] != AT_UNDEFINED) {
        const at_shape *w = &c->in_shape[wi];
        if (c->in_dtype[wi] != AT_F32 || w->rank != 1 || dims_conflict(w->dim[0], x->dim[1]))
            return at_infer_fail(c, AT_E_SHAPE, "weights must be float32 [C]");
    }
    if (reduction_of(c->node) < 0)
        return at_infer_fail(c, AT_E_INVALID, "reduction '%s' (want none, sum or mean)",
                             at_attr_str(c->node, "reduction", "mean"));
    return AT_OK;
}

static at_status ce_infer(at_infer_ctx *c) {
    at_status st = ce_check(c, 0, 1, 2);
    if (st) return st;
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = reduction_of(c->node) == RED_NONE ? c->in_shape[1] : AT_SCALAR;
    if (c->n_out > 1) {
        c->out_dtype[1] = AT_F32;
        c->out_shape[1] = c->in_shape[0];
    }
    return AT_OK;
}

static at_status ce_grad_infer(at_infer_ctx *c) {
    at_status st = ce_check(c, 1, 2, 3);
    if (st) return st;
    const at_shape *d = &c->in_shape[0];
    if (c->in_dtype[0] != AT_F32) return at_infer_fail(c, AT_E_SHAPE, "dLoss must be float32");
    if (reduction_of(c->node) == RED_NONE) {
        const at_shape *l = &c->in_shape[2];
        bool bad = d->rank != l->rank;
        for (int i = 0; !bad && i < d->rank; i++) bad = dims_conflict(d->dim[i], l->dim[i]);
        if (bad) return at_infer_fail(c, AT_E_SHAPE, "dLoss must have the labels' shape");
    } else if (at_shape_numel(d) != 1) {
        return at_infer_fail(c, AT_E_SHAPE, "dLoss must be a scalar");
    }
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = c->in_shape[1];
    return AT_OK;
}

/* ---- gradient rule ---- */

static at_status fail_st(at_grad_ctx *c) {
    at_status st = at_graph_status(c->g);
    return st ? st : AT_E_INTERNAL;
}

static at_status ce_grad(at_grad_ctx *c) {
    if (!c->need[0]) return AT_OK;
    const at_node_rec *n = at_grad_node(c);
    at_val dloss = c->dy[0], dlp = n->n_out > 1 ? c->dy[1] : AT_NONE;
    bool has_lp = n->n_out > 1;
    at_val lp = has_lp ? n->out[1] : AT_NONE;
    at_val scores = n->in[0], labels = n->in[1];
    at_val weights = n->n_in > 2 ? n->in[2] : AT_NONE;
    at_attr attrs[3];
    int na = 0;
    attrs[na++] = AT_ATTR_S("reduction", at_attr_str(n, "reduction", "mean"));
    const at_attr_rec *ig = at_attr_find(n, "ignore_index");
    if (ig) attrs[na++] = AT_ATTR_I("ignore_index", ig->i);
    attrs[na++] = AT_ATTR_I("input_is_log_prob", has_lp ? 1 : 0);
    at_val d = AT_NONE;
    if (dloss != AT_NONE) {
        at_val in[4] = {dloss, has_lp ? lp : scores, labels, weights};
        if (at_node_add(c->g, "SoftmaxCrossEntropyLossGrad", AT_DOMAIN_ATTUNE, in,
                        weights == AT_NONE ? 3 : 4, &d, 1, attrs, na) < 0)
            return fail_st(c);
    }
    if (dlp != AT_NONE) {
        /* log_prob is LogSoftmax(scores) along the class axis */
        at_attr ax = AT_ATTR_I("axis", 1);
        at_val in[2] = {dlp, lp}, t;
        if (at_node_add(c->g, "LogSoftmaxGrad", AT_DOMAIN_ATTUNE, in, 2, &t, 1, &ax, 1) < 0)
            return fail_st(c);
        d = d == AT_NONE ? t : at_add(c->g, d, t);
        if (d == AT_NONE) return fail_st(c);
    }
    c->dx[0] = d;
    return AT_OK;
}

/* ---- records ---- */

static const at_attr_schema ce_attrs[] = {
    {"reduction", AT_ATTR_STRING, false}, {"ignore_index", AT_ATTR_INT, false}, {NULL}};
static const at_attr_schema ce_grad_attrs[] = {{"reduction", AT_ATTR_STRING, false},
                                               {"ignore_index", AT_ATTR_INT, false},
                                               {"input_is_log_prob", AT_ATTR_INT, false},
                                               {NULL}};

const at_op_def at_op_def_SoftmaxCrossEntropyLoss = {
    .name = "SoftmaxCrossEntropyLoss",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 2,
    .max_in = 3,
    .min_out = 1,
    .max_out = 2,
    .attrs = ce_attrs,
    .infer = ce_infer,
    .cpu = ce_cpu,
    .workspace = ce_ws,
    .grad = ce_grad,
    .nondiff = (1u << 1) | (1u << 2),
};
/* inputs: dLoss, log_prob or scores, labels, weights? */
const at_op_def at_op_def_SoftmaxCrossEntropyLossGrad = {
    .name = "SoftmaxCrossEntropyLossGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 3,
    .max_in = 4,
    .min_out = 1,
    .max_out = 1,
    .attrs = ce_grad_attrs,
    .infer = ce_grad_infer,
    .cpu = ce_grad_cpu,
    .nondiff = (1u << 1) | (1u << 2) | (1u << 3),
};

/* ---- builder ---- */

at_val at_softmax_cross_entropy(at_graph *g, at_val scores, at_val labels, at_val weight,
                                const char *reduction, int64_t ignore_index) {
    if (scores == AT_NONE || labels == AT_NONE) return AT_NONE;
    at_attr attrs[2];
    int na = 0;
    attrs[na++] = AT_ATTR_S("reduction", reduction ? reduction : "mean");
    if (ignore_index != INT64_MIN) attrs[na++] = AT_ATTR_I("ignore_index", ignore_index);
    at_val in[3] = {scores, labels, weight}, out[2];
    /* log_prob is made too: the backward op reads it instead of recomputing the softmax */
    if (at_node_add(g, "SoftmaxCrossEntropyLoss", AT_DOMAIN_ONNX, in, weight == AT_NONE ? 2 : 3,
                    out, 2, attrs, na) < 0)
        return AT_NONE;
    return out[0];
}
