/* A linear-chain CRF over tag sequences (ai.attune): the loss, its fused backward op, and Viterbi
 * decoding. Shapes: logits [B,T,K] float, tags [B,T] int64, mask [B,T] float (1 token, 0
 * padding; the tokens of a sentence come first, so its length is the count of mask > 0.5),
 * transitions [K,K] (from row i to column j), start [K], end [K]. A path y over a sentence of
 * length L scores
 *   s(y) = start[y_0] + sum_t logits[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t] + end[y_{L-1}].
 *
 * CRFLoss(logits, tags, mask, transitions, start, end) -> nll [B]: per sentence
 *   nll = logsumexp over all paths of s(y) - logsumexp over the paths that agree with the tags.
 * Positions whose tag is ignore_index (attribute, default -100) constrain nothing, so a fully
 * tagged sentence gives the usual -log p(gold), a partly tagged one marginalizes the untagged
 * positions, and a sentence without a tag (unlabelled; padding only) gives exactly 0. A tag
 * outside [0, K) that is not ignore_index is a kernel error.
 *
 * CRFLossGrad(dnll, logits, tags, mask, transitions, start, end) -> dlogits, dtransitions,
 * dstart, dend: dnll[b] times (the marginals of the free model - those of the tag-constrained
 * one), both from forward-backward: token marginals for logits (0 at padding), pair marginals
 * summed over t for transitions, first / last token marginals for start / end.
 *
 * CRFDecode(logits, mask, transitions, start, end) -> tags int64 [B,T]: the best path (Viterbi;
 * ties to the lower tag), 0 at padding.
 *
 * Forward-backward runs in double and as matrix-vector products with E = exp(transitions - max)
 * and shifted exp'd states, so a step costs K exps and K^2 multiply-adds, not K^2 exps. Each
 * sentence writes its own slice of the workspace (transition gradients too), summed in batch
 * order afterwards, so results do not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops/op.h"

#define CRF_IGNORE_DEFAULT (-100)

enum { I_LOGITS, I_TAGS, I_MASK, I_TRANS, I_START, I_END };

static int nthreads(const at_kernel_ctx *k) {
    return k->threads > 0 ? k->threads : omp_get_max_threads();
}

typedef struct crf {
    int64_t B, T, K;
    const float *x, *mask, *trans, *start, *end;
    const int64_t *tags; /* NULL: decoding */
    int64_t ignore;
    double tmax;
    double *E; /* [K,K] exp(trans - tmax) */
} crf;

static int64_t sent_len(const crf *c, int64_t b) {
    int64_t L = 0;
    for (int64_t t = 0; t < c->T; t++) L += c->mask[b * c->T + t] > 0.5f;
    return L;
}

/* Tag row of sentence b when it constrains anything within its length, else NULL. */
static const int64_t *tag_row(const crf *c, int64_t b, int64_t L) {
    const int64_t *r = c->tags + b * c->T;
    for (int64_t t = 0; t < L; t++)
        if (r[t] != c->ignore) return r;
    return NULL;
}

static bool allowed(const int64_t *tags, int64_t ignore, int64_t t, int64_t j) {
    return !tags || tags[t] == ignore || tags[t] == j;
}

/* Reads the inputs (ti < 0: no tags); checks tags serially so the first bad one is named. */
static at_status crf_setup(at_kernel_ctx *k, int base, int ti, crf *c, double *E) {
    const at_tensor *x = &k->in[base];
    c->B = x->shape.dim[0];
    c->T = x->shape.dim[1];
    c->K = x->shape.dim[2];
    int off = ti >= 0 ? 1 : 0; /* decode has no tags input */
    c->x = AT_F32P(x);
    c->tags = ti >= 0 ? AT_I64P(&k->in[ti]) : NULL;
    c->mask = AT_F32P(&k->in[base + 1 + off]);
    c->trans = AT_F32P(&k->in[base + 2 + off]);
    c->start = AT_F32P(&k->in[base + 3 + off]);
    c->end = AT_F32P(&k->in[base + 4 + off]);
    c->ignore = at_attr_int(k->node, "ignore_index", CRF_IGNORE_DEFAULT);
    c->E = E;
    if (c->tags)
        for (int64_t p = 0; p < c->B * c->T; p++) {
            int64_t v = c->tags[p];
            if (v != c->ignore && (v < 0 || v >= c->K) && c->mask[p] > 0.5f)
                return at_kernel_fail(k, AT_E_INVALID,
                                      "tag %lld at position %lld out of range [0, %lld)",
                                      (long long)v, (long long)p, (long long)c->K);
        }
    if (E) {
        int64_t KK = c->K * c->K;
        c->tmax = -INFINITY;
        for (int64_t i = 0; i < KK; i++) c->tmax = fmax(c->tmax, c->trans[i]);
        if (!isfinite(c->tmax)) c->tmax = 0;
        for (int64_t i = 0; i < KK; i++) E[i] = exp(c->trans[i] - c->tmax);
    }
    return AT_OK;
}

static double max_of(const double *v, int64_t n) {
    double m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

/* u[i] = exp(v[i] - m) with m = max v (m = 0 when every v is -inf); returns m. */
static double shift_exp(const double *v, int64_t n, double *u) {
    double m = max_of(v, n);
    if (!isfinite(m)) m = 0;
    for (int64_t i = 0; i < n; i++) u[i] = exp(v[i] - m);
    return m;
}

static double lse(const double *v, const float *add, int64_t n) {
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, v[i] + add[i]);
    if (!isfinite(m)) return m;
    for (int64_t i = 0; i < n; i++) s += exp(v[i] + add[i] - m);
    return m + log(s);
}

/* Forward pass over sentence b (length L > 0) restricted to paths allowed by tags (NULL:
 * all): alpha [L,K] when keep, else two rolling rows in alpha [2,K]. u: K doubles scratch.
 * Returns log Z. */
static double crf_forward(const crf *c, int64_t b, int64_t L, const int64_t *tags, double *alpha,
                          double *u, bool keep) {
    const int64_t K = c->K;
    const float *x = c->x + b * c->T * K;
    for (int64_t j = 0; j < K; j++)
        alpha[j] = allowed(tags, c->ignore, 0, j) ? (double)c->start[j] + x[j] : -INFINITY;
    for (int64_t t = 1; t < L; t++) {
        double *prev = alpha + (keep ? t - 1 : (t - 1) % 2) * K;
        double *cur = alpha + (keep ? t : t % 2) * K;
        double m = shift_exp(prev, K, u) + c->tmax;
        for (int64_t j = 0; j < K; j++) cur[j] = 0;
        for (int64_t i = 0; i < K; i++) {
            if (u[i] == 0) continue;
            const double *e = c->E + i * K;
            for (int64_t j = 0; j < K; j++) cur[j] += u[i] * e[j];
        }
        for (int64_t j = 0; j < K; j++)
            cur[j] = allowed(tags, c->ignore, t, j) ? x[t * K + j] + m + log(cur[j]) : -INFINITY;
    }
    return lse(alpha + (keep ? L - 1 : (L - 1) % 2) * K, c->end, K);
}

/* Backward pass: beta [L,K], beta[t][i] the log-sum of path scores after position t given
 * y_t = i (excluding logits[t]). w: K doubles scratch. */
static void crf_backward(const crf *c, int64_t b, int64_t L, const int64_t *tags, double *beta,
                         double *w) {
    const int64_t K = c->K;
    const float *x = c->x + b * c->T * K;
    for (int64_t i = 0; i < K; i++)
        beta[(L - 1) * K + i] = allowed(tags, c->ignore, L - 1, i) ? (double)c->end[i] : -INFINITY;
    for (int64_t t = L - 2; t >= 0; t--) {
        const double *nx = beta + (t + 1) * K;
        double *cur = beta + t * K;
        for (int64_t j = 0; j < K; j++) cur[j] = nx[j] + x[(t + 1) * K + j];
        double m = shift_exp(cur, K, w) + c->tmax;
        for (int64_t i = 0; i < K; i++) {
            if (!allowed(tags, c->ignore, t, i)) {
                cur[i] = -INFINITY;
                continue;
            }
            const double *e = c->E + i * K;
            double s = 0;
            for (int64_t j = 0; j < K; j++) s += e[j] * w[j];
            cur[i] = m + log(s);
        }
    }
}

/* Per-sentence scratch of the backward op, in doubles. */
static int64_t grad_stride(int64_t T, int64_t K) {
    return 2 * T * K + 2 * K + K * K + 2 * K;
}

/* Adds sign * g * (the marginals under the tags constraint) to the sentence's gradients:
 * dx [T,K] float (rows < L), dtr [K,K], dse [2K] (start, end). */
static void crf_add_marginals(const crf *c, int64_t b, int64_t L, const int64_t *tags, double g,
                              double *sc, float *dx, double *dtr, double *dse) {
    const int64_t K = c->K;
    const float *x = c->x + b * c->T * K;
    double *alpha = sc, *beta = alpha + L * K, *u = beta + L * K, *w = u + K;
    double logz = crf_forward(c, b, L, tags, alpha, u, true);
    crf_backward(c, b, L, tags, beta, w);
    if (!isfinite(logz)) return; /* no allowed path: the loss is inf already */
    for (int64_t t = 0; t < L; t++)
        for (int64_t j = 0; j < K; j++) {
            double p = exp(alpha[t * K + j] + beta[t * K + j] - logz) * g;
            dx[t * K + j] += (float)p;
            if (t == 0) dse[j] += p;
            if (t == L - 1) dse[K + j] += p;
        }
    for (int64_t t = 1; t < L; t++) {
        double ma = shift_exp(alpha + (t - 1) * K, K, u);
        for (int64_t j = 0; j < K; j++) w[j] = beta[t * K + j] + x[t * K + j];
        double mw = shift_exp(w, K, w);
        double s = exp(ma + mw + c->tmax - logz) * g;
        for (int64_t i = 0; i < K; i++) {
            if (u[i] == 0) continue;
            double ui = u[i] * s;
            const double *e = c->E + i * K;
            double *d = dtr + i * K;
            for (int64_t j = 0; j < K; j++) d[j] += ui * e[j] * w[j];
        }
    }
}

/* ---- CRFLoss ---- */

static size_t loss_ws(const at_kernel_ctx *k) {
    const at_shape *x = &k->in[0].shape;
    int64_t B = x->dim[0], K = x->dim[2];
    return (size_t)(K * K + B * 3 * K + 1) * sizeof(double);
}

static at_status loss_cpu(at_kernel_ctx *k) {
    crf c;
    double *ws = k->ws;
    if (!ws || k->ws_size < loss_ws(k))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", loss_ws(k));
    at_status st = crf_setup(k, 0, I_TAGS, &c, ws);
    if (st) return st;
    float *out = AT_F32P(&k->out[0]);
    double *rows = ws + c.K * c.K;
    int nt = nthreads(k);
#pragma omp parallel for num_threads(nt) schedule(dynamic) if (c.B * c.T * c.K * c.K > 65536)
    for (int64_t b = 0; b < c.B; b++) {
        int64_t L = sent_len(&c, b);
        const int64_t *tags = L ? tag_row(&c, b, L) : NULL;
        if (!tags) {
            out[b] = 0;
            continue;
        }
        double *alpha = rows + b * 3 * c.K, *u = alpha + 2 * c.K;
        double z = crf_forward(&c, b, L, NULL, alpha, u, false);
        double zc = crf_forward(&c, b, L, tags, alpha, u, false);
        out[b] = (float)(z - zc);
    }
    return AT_OK;
}

/* ---- CRFLossGrad ---- */

static size_t grad_ws(const at_kernel_ctx *k) {
    const at_shape *x = &k->in[1].shape;
    int64_t B = x->dim[0], T = x->dim[1], K = x->dim[2];
    return (size_t)(K * K + B * grad_stride(T, K) + 1) * sizeof(double);
}

static at_status grad_cpu(at_kernel_ctx *k) {
    crf c;
    double *ws = k->ws;
    if (!ws || k->ws_size < grad_ws(k))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", grad_ws(k));
    at_status st = crf_setup(k, 1, 1 + I_TAGS, &c, ws);
    if (st) return st;
    const float *dnll = AT_F32P(&k->in[0]);
    float *dx = AT_F32P(&k->out[0]), *dtr = AT_F32P(&k->out[1]);
    float *dst = AT_F32P(&k->out[2]), *den = AT_F32P(&k->out[3]);
    const int64_t K = c.K, KK = K * K, stride = grad_stride(c.T, K);
    double *per = ws + KK;
    memset(dx, 0, (size_t)(c.B * c.T * K) * sizeof(float));
    int nt = nthreads(k);
#pragma omp parallel for num_threads(nt) schedule(dynamic) if (c.B * c.T * KK > 65536)
    for (int64_t b = 0; b < c.B; b++) {
        double *sc = per + b * stride, *dtb = sc + 2 * c.T * K + 2 * K, *dse = dtb + KK;
        memset(dtb, 0, (size_t)(KK + 2 * K) * sizeof(double));
        int64_t L = sent_len(&c, b);
        const int64_t *tags = L ? tag_row(&c, b, L) : NULL;
        if (!tags || dnll[b] == 0) continue;
        float *dxb = dx + b * c.T * K;
        crf_add_marginals(&c, b, L, NULL, dnll[b], sc, dxb, dtb, dse);
        crf_add_marginals(&c, b, L, tags, -(double)dnll[b], sc, dxb, dtb, dse);
    }
    for (int64_t i = 0; i < KK; i++) {
        double s = 0;
        for (int64_t b = 0; b < c.B; b++) s += per[b * stride + 2 * c.T * K + 2 * K + i];
        dtr[i] = (float)s;
    }
    for (int64_t j = 0; j < 2 * K; j++) {
        double s = 0;
        for (int64_t b = 0; b < c.B; b++) s += per[b * stride + 2 * c.T * K + 2 * K + KK + j];
        (j < K ? dst : den)[j % K] = (float)s;
    }
    return AT_OK;
}

/* ---- CRFDecode ---- */

static size_t decode_ws(const at_kernel_ctx *k) {
    const at_shape *x = &k->in[0].shape;
    int64_t B = x->dim[0], T = x->dim[1], K = x->dim[2];
    return (size_t)(B * (2 * K + T * K) + 1) * sizeof(double);
}

static void viterbi(const crf *c, int64_t b, int64_t L, double *delta, int32_t *bp, int64_t *out) {
    const int64_t K = c->K;
    const float *x = c->x + b * c->T * K;
    double *prev = delta, *cur = delta + K;
    for (int64_t j = 0; j < K; j++) prev[j] = (double)c->start[j] + x[j];
    for (int64_t t = 1; t < L; t++) {
        for (int64_t j = 0; j < K; j++) {
            double best = -INFINITY;
            int32_t arg = 0;
            for (int64_t i = 0; i < K; i++) {
                double v = prev[i] + c->trans[i * K + j];
                if (v > best) best = v, arg = (int32_t)i;
            }
            cur[j] = best + x[t * K + j];
            bp[t * K + j] = arg;
        }
        double *tmp = prev;
        prev = cur, cur = tmp;
    }
    int64_t y = 0;
    double best = -INFINITY;
    for (int64_t j = 0; j < K; j++)
        if (prev[j] + c->end[j] > best) best = prev[j] + c->end[j], y = j;
    for (int64_t t = L - 1; t >= 0; t--) {
        out[t] = y;
        if (t > 0) y = bp[t * K + y];
    }
}

static at_status decode_cpu(at_kernel_ctx *k) {
    crf c;
    double *ws = k->ws;
    if (!ws || k->ws_size < decode_ws(k))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", decode_ws(k));
    at_status st = crf_setup(k, 0, -1, &c, NULL);
    if (st) return st;
    int64_t *out = AT_I64P(&k->out[0]);
    const int64_t K = c.K, stride = 2 * K + c.T * K;
    int nt = nthreads(k);
#pragma omp parallel for num_threads(nt) schedule(dynamic) if (c.B * c.T * K * K > 65536)
    for (int64_t b = 0; b < c.B; b++) {
        int64_t *o = out + b * c.T, L = sent_len(&c, b);
        for (int64_t t = 0; t < c.T; t++) o[t] = 0;
        if (L) viterbi(&c, b, L, ws + b * stride, (int32_t *)(ws + b * stride + 2 * K), o);
    }
    return AT_OK;
}

/* ---- shape rules ---- */

static bool conflict(int64_t a, int64_t b) {
    return a >= 0 && b >= 0 && a != b;
}

/* logits at base, then tags (has_tags), mask, transitions, start, end. */
static at_status crf_check(at_infer_ctx *c, int base, bool has_tags) {
    const at_shape *x = &c->in_shape[base];
    if (c->in_dtype[base] != AT_F32 || x->rank != 3)
        return at_infer_fail(c, AT_E_SHAPE, "logits must be float32 [B, T, K]");
    int i = base + 1;
    if (has_tags) {
        const at_shape *t = &c->in_shape[i];
        if (c->in_dtype[i] != AT_I64 || t->rank != 2 || conflict(t->dim[0], x->dim[0]) ||
            conflict(t->dim[1], x->dim[1]))
            return at_infer_fail(c, AT_E_SHAPE, "tags must be int64 [B, T]");
        i++;
    }
    const at_shape *m = &c->in_shape[i];
    if (c->in_dtype[i] != AT_F32 || m->rank != 2 || conflict(m->dim[0], x->dim[0]) ||
        conflict(m->dim[1], x->dim[1]))
        return at_infer_fail(c, AT_E_SHAPE, "mask must be float32 [B, T]");
    const at_shape *tr = &c->in_shape[i + 1];
    if (c->in_dtype[i + 1] != AT_F32 || tr->rank != 2 || conflict(tr->dim[0], x->dim[2]) ||
        conflict(tr->dim[1], x->dim[2]))
        return at_infer_fail(c, AT_E_SHAPE, "transitions must be float32 [K, K]");
    for (int e = i + 2; e <= i + 3; e++)
        if (c->in_dtype[e] != AT_F32 || c->in_shape[e].rank != 1 ||
            conflict(c->in_shape[e].dim[0], x->dim[2]))
            return at_infer_fail(c, AT_E_SHAPE, "%s must be float32 [K]",
                                 e == i + 2 ? "start" : "end");
    return AT_OK;
}

static at_status loss_infer(at_infer_ctx *c) {
    at_status st = crf_check(c, 0, true);
    if (st) return st;
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = (at_shape){.rank = 1, .dim = {c->in_shape[0].dim[0]}};
    return AT_OK;
}

static at_status grad_infer(at_infer_ctx *c) {
    at_status st = crf_check(c, 1, true);
    if (st) return st;
    const at_shape *d = &c->in_shape[0];
    if (c->in_dtype[0] != AT_F32 || d->rank != 1 || conflict(d->dim[0], c->in_shape[1].dim[0]))
        return at_infer_fail(c, AT_E_SHAPE, "dnll must be float32 [B]");
    for (int j = 0; j < 4; j++) {
        c->out_dtype[j] = AT_F32;
        c->out_shape[j] = c->in_shape[j == 0 ? 1 : 3 + j];
    }
    return AT_OK;
}

static at_status decode_infer(at_infer_ctx *c) {
    at_status st = crf_check(c, 0, false);
    if (st) return st;
    c->out_dtype[0] = AT_I64;
    c->out_shape[0] = c->in_shape[1];
    return AT_OK;
}

/* ---- gradient rule ---- */

static at_status loss_grad(at_grad_ctx *c) {
    if (c->dy[0] == AT_NONE) return AT_OK;
    const at_node_rec *n = at_grad_node(c);
    at_val in[7] = {c->dy[0]};
    for (int i = 0; i < 6; i++) in[i + 1] = n->in[i];
    at_attr ig = AT_ATTR_I("ignore_index", at_attr_int(n, "ignore_index", CRF_IGNORE_DEFAULT));
    at_val d[4];
    if (at_node_add(c->g, "CRFLossGrad", AT_DOMAIN_ATTUNE, in, 7, d, 4, &ig, 1) < 0) {
        at_status st = at_graph_status(c->g);
        return st ? st : AT_E_INTERNAL;
    }
    const int map[4] = {I_LOGITS, I_TRANS, I_START, I_END};
    for (int j = 0; j < 4; j++)
        if (c->need[map[j]]) c->dx[map[j]] = d[j];
    return AT_OK;
}

/* ---- records ---- */

static const at_attr_schema crf_attrs[] = {{"ignore_index", AT_ATTR_INT, false}, {NULL}};
static const at_attr_schema no_attrs[] = {{NULL}};

const at_op_def at_op_def_CRFLoss = {
    .name = "CRFLoss",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 6,
    .max_in = 6,
    .min_out = 1,
    .max_out = 1,
    .attrs = crf_attrs,
    .infer = loss_infer,
    .cpu = loss_cpu,
    .workspace = loss_ws,
    .grad = loss_grad,
    .nondiff = (1u << I_TAGS) | (1u << I_MASK),
};
/* inputs: dnll, logits, tags, mask, transitions, start, end */
const at_op_def at_op_def_CRFLossGrad = {
    .name = "CRFLossGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 7,
    .max_in = 7,
    .min_out = 4,
    .max_out = 4,
    .attrs = crf_attrs,
    .infer = grad_infer,
    .cpu = grad_cpu,
    .workspace = grad_ws,
    .nondiff = 0x7f,
};
const at_op_def at_op_def_CRFDecode = {
    .name = "CRFDecode",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 5,
    .max_in = 5,
    .min_out = 1,
    .max_out = 1,
    .attrs = no_attrs,
    .infer = decode_infer,
    .cpu = decode_cpu,
    .workspace = decode_ws,
    .nondiff = 0x1f,
};
