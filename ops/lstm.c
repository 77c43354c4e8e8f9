/* ONNX LSTM (layouts 0 and 1; default activations, no peepholes, no clip) and its backward op
 * LSTMGrad (ai.attune).
 *
 * Gates in ONNX order i, o, f, c:
 *   a = x_t W^T + h_{t-1} R^T + Wb + Rb
 *   i = sigmoid(a_i), o = sigmoid(a_o), f = sigmoid(a_f), g = tanh(a_c)
 *   c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)
 * With sequence_lens, batch item b runs len_b steps: the forward direction over t = 0 ..
 * len_b - 1, the reverse direction over t = len_b - 1 .. 0; Y is zero at t >= len_b and the
 * state is held, so Y_h / Y_c are the state after the last real step (initial_h / initial_c
 * for len_b = 0).
 *
 * Kernels: one GEMM computes x W^T for every timestep at once, then one GEMM a step computes
 * h R^T for the whole batch; the gate math is elementwise, parallel over the batch.
 *
 * LSTMGrad recomputes the forward pass into its own workspace (gate activations, cells and
 * previous states for every (t, b)), so the forward op stays ONNX-clean and keeps nothing
 * alive between the passes; then backpropagation through time: one GEMM a step for dh R,
 * and one GEMM each for dW, dR and dX over all timesteps. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ops/op.h"

enum { IN_X, IN_W, IN_R, IN_B, IN_SEQ, IN_H0, IN_C0, IN_P };
enum { GI_DY = 7, GI_DYH = 8, GI_DYC = 9 };
enum { DIR_FORWARD, DIR_REVERSE, DIR_BIDI };

static int parse_direction(const char *s) {
    if (!strcmp(s, "forward")) return DIR_FORWARD;
    if (!strcmp(s, "reverse")) return DIR_REVERSE;
    if (!strcmp(s, "bidirectional")) return DIR_BIDI;
    return -1;
}

static bool dir_is_reverse(int dir, int d) {
    return dir == DIR_REVERSE || (dir == DIR_BIDI && d == 1);
}

/* ---- shape rule (shared by LSTM and LSTMGrad) ---- */

typedef struct lstm_shapes {
    int64_t T, B, In, H;
    int D, layout, dir;
    at_shape y, state; /* Y and Y_h / Y_c / initial_h / initial_c */
} lstm_shapes;

static bool has(const at_infer_ctx *c, int i) {
    return i < c->n_in && c->in_dtype[i] != AT_UNDEFINED;
}

/* Dims that may still be symbols agree unless both are sizes and differ. */
static bool agree(int64_t a, int64_t b) {
    return a < 0 || b < 0 || a == b;
}

static at_status expect(at_infer_ctx *c, int i, const char *what, at_dtype dt, int rank,
                        const int64_t *dims) {
    if (c->in_dtype[i] != dt)
        return at_infer_fail(c, AT_E_SHAPE, "%s must be %s, got %s", what, at_dtype_name(dt),
                             at_dtype_name(c->in_dtype[i]));
    const at_shape *s = &c->in_shape[i];
    if (s->rank != rank)
        return at_infer_fail(c, AT_E_SHAPE, "%s must have rank %d, got %d", what, rank,
                             (int)s->rank);
    for (int d = 0; d < rank; d++)
        if (!agree(s->dim[d], dims[d]))
            return at_infer_fail(c, AT_E_SHAPE, "%s dim %d is %lld, expected %lld", what, d,
                                 (long long)s->dim[d], (long long)dims[d]);
    return AT_OK;
}

/* A dim that inference cannot express (4H from a symbolic H). */
static int64_t dim_or_fresh(at_infer_ctx *c, int64_t known, int64_t mult) {
    if (known >= 0) return known * mult;
    return c->concrete ? -1 : at_sym_fresh(c->g);
}

/* grad: the node is LSTMGrad, whose input 7 is dY, not P. */
static at_status lstm_check(at_infer_ctx *c, lstm_shapes *s, bool grad) {
    const at_node_rec *n = c->node;
    const char *dir = at_attr_str(n, "direction", "forward");
    s->dir = parse_direction(dir);
    if (s->dir < 0)
        return at_infer_fail(c, AT_E_INVALID,
                             "direction '%s' is not forward, reverse or bidirectional", dir);
    s->D = s->dir == DIR_BIDI ? 2 : 1;
    int64_t layout = at_attr_int(n, "layout", 0);
    if (layout != 0 && layout != 1)
        return at_infer_fail(c, AT_E_INVALID, "layout %lld is not 0 or 1", (long long)layout);
    s->layout = (int)layout;
    if (at_attr_find(n, "clip"))
        return at_infer_fail(c, AT_E_UNSUPPORTED, "attribute clip is not supported");
    if (at_attr_int(n, "input_forget", 0) != 0)
        return at_infer_fail(c, AT_E_UNSUPPORTED, "input_forget = 1 is not supported");
    if (at_attr_find(n, "activation_alpha") || at_attr_find(n, "activation_beta"))
        return at_infer_fail(c, AT_E_UNSUPPORTED,
                             "only the default activations (Sigmoid, Tanh, Tanh) are supported");
    /* Exporters may spell the defaults out: one (Sigmoid, Tanh, Tanh) per direction. */
    const at_attr_rec *act = at_attr_find(n, "activations");
    if (act) {
        static const char *const dflt[3] = {"Sigmoid", "Tanh", "Tanh"};
        int want = 3 * s->D;
        bool ok = act->n == want;
        for (int i = 0; ok && i < act->n; i++)
            ok = act->strs[i] && strcasecmp(act->strs[i], dflt[i % 3]) == 0;
        if (!ok) {
            char got[160];
            size_t k = 0;
            got[0] = 0;
            for (int i = 0; i < act->n && k < sizeof got; i++)
                k += (size_t)snprintf(got + k, sizeof got - k, "%s%s", i ? ", " : "",
                                      act->strs[i] ? act->strs[i] : "");
            return at_infer_fail(c, AT_E_UNSUPPORTED,
                                 "activations [%s] are not supported: only the defaults "
                                 "(Sigmoid, Tanh, Tanh for each of %d direction%s)",
                                 got, s->D, s->D > 1 ? "s" : "");
        }
    }
    if (!grad && has(c, IN_P))
        return at_infer_fail(c, AT_E_UNSUPPORTED, "peepholes (input P) are not supported");

    const at_shape *x = &c->in_shape[IN_X];
    if (c->in_dtype[IN_X] != AT_F32 || x->rank != 3)
        return at_infer_fail(c, AT_E_SHAPE, "X must be float32 of rank 3");
    s->T = x->dim[layout ? 1 : 0];
    s->B = x->dim[layout ? 0 : 1];
    s->In = x->dim[2];
    const at_shape *r = &c->in_shape[IN_R];
    int64_t hid = at_attr_int(n, "hidden_size", -1);
    if (at_attr_find(n, "hidden_size") && hid <= 0)
        return at_infer_fail(c, AT_E_INVALID, "hidden_size %lld must be positive", (long long)hid);
    s->H = hid > 0 ? hid : (r->rank == 3 ? r->dim[2] : -1);
    int64_t h4 = s->H >= 0 ? 4 * s->H : -1;
    at_status st;
    if ((st = expect(c, IN_W, "W", AT_F32, 3, (int64_t[]){s->D, h4, s->In})) != AT_OK) return st;
    if ((st = expect(c, IN_R, "R", AT_F32, 3, (int64_t[]){s->D, h4, s->H})) != AT_OK) return st;
    if (s->H < 0) s->H = r->dim[2];
    if (has(c, IN_B) && (st = expect(c, IN_B, "B", AT_F32, 2,
                                     (int64_t[]){s->D, s->H >= 0 ? 8 * s->H : -1})) != AT_OK)
        return st;
    if (has(c, IN_SEQ) &&
        (st = expect(c, IN_SEQ, "sequence_lens", AT_I32, 1, (int64_t[]){s->B})) != AT_OK)
        return st;
    int64_t sd[3] = {layout ? s->B : s->D, layout ? s->D : s->B, s->H};
    s->state = at_shape_make(3, sd);
    if (has(c, IN_H0) && (st = expect(c, IN_H0, "initial_h", AT_F32, 3, sd)) != AT_OK) return st;
    if (has(c, IN_C0) && (st = expect(c, IN_C0, "initial_c", AT_F32, 3, sd)) != AT_OK) return st;
    s->y = layout ? AT_SHAPE(s->B, s->T, s->D, s->H) : AT_SHAPE(s->T, s->D, s->B, s->H);
    return AT_OK;
}

static at_status lstm_infer(at_infer_ctx *c) {
    lstm_shapes s;
    at_status st = lstm_check(c, &s, false);
    if (st != AT_OK) return st;
    for (int j = 0; j < c->n_out; j++) {
        c->out_dtype[j] = AT_F32;
        c->out_shape[j] = j == 0 ? s.y : s.state;
    }
    return AT_OK;
}

static at_status lstm_grad_infer(at_infer_ctx *c) {
    lstm_shapes s;
    at_status st = lstm_check(c, &s, true);
    if (st != AT_OK) return st;
    if (has(c, GI_DY) && (st = expect(c, GI_DY, "dY", AT_F32, 4, s.y.dim)) != AT_OK) return st;
    if (has(c, GI_DYH) && (st = expect(c, GI_DYH, "dY_h", AT_F32, 3, s.state.dim)) != AT_OK)
        return st;
    if (has(c, GI_DYC) && (st = expect(c, GI_DYC, "dY_c", AT_F32, 3, s.state.dim)) != AT_OK)
        return st;
    at_shape db = AT_SHAPE(s.D, dim_or_fresh(c, s.H, 8));
    if (has(c, IN_B)) db = c->in_shape[IN_B];
    const at_shape outs[6] = {
        c->in_shape[IN_X], c->in_shape[IN_W], c->in_shape[IN_R], db, s.state, s.state};
    for (int j = 0; j < c->n_out && j < 6; j++) {
        c->out_dtype[j] = AT_F32;
        c->out_shape[j] = outs[j];
    }
    return AT_OK;
}

/* ---- kernels ---- */

typedef struct lstm_dims {
    int64_t T, B, In, H, N; /* N = T * B rows of X, in X's own row order */
    int D, layout, dir;
} lstm_dims;

static const void *kin(const at_kernel_ctx *k, int i) {
    return i < k->n_in ? k->in[i].data : NULL;
}

static lstm_dims kernel_dims(const at_kernel_ctx *k) {
    lstm_dims m;
    m.layout = (int)at_attr_int(k->node, "layout", 0);
    m.dir = parse_direction(at_attr_str(k->node, "direction", "forward"));
    const at_shape *x = &k->in[IN_X].shape;
    m.T = x->dim[m.layout ? 1 : 0];
    m.B = x->dim[m.layout ? 0 : 1];
    m.In = x->dim[2];
    m.H = k->in[IN_R].shape.dim[2];
    m.D = (int)k->in[IN_W].shape.dim[0];
    m.N = m.T * m.B;
    return m;
}

static inline int64_t xrow(const lstm_dims *m, int64_t t, int64_t b) {
    return m->layout ? b * m->T + t : t * m->B + b;
}
static inline int64_t yoff(const lstm_dims *m, int64_t t, int d, int64_t b) {
    return (m->layout ? (b * m->T + t) * m->D + d : (t * m->D + d) * m->B + b) * m->H;
}
static inline int64_t soff(const lstm_dims *m, int d, int64_t b) {
    return (m->layout ? b * m->D + d : d * m->B + b) * m->H;
}

/* Gate elements (B * H) a step needs before its elementwise work is split over threads. */
#define PAR_MIN_STEP 16384

static int nthreads(const at_kernel_ctx *k) {
    return k->threads > 0 ? k->threads : omp_get_max_threads();
}

/* C = op(A) op(B) + beta C, row-major (ops/matmul.c's at_sgemm). */
static void gemm(const at_kernel_ctx *k, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc) {
    at_sgemm(k, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

static inline float sigm(float x) {
    return 1.0f / (1.0f + expf(-x));
}

static at_status read_lens(at_kernel_ctx *k, const lstm_dims *m, const int32_t **lens,
                           int64_t *maxlen) {
    *lens = kin(k, IN_SEQ);
    *maxlen = m->T;
    if (!*lens) return AT_OK;
    *maxlen = 0;
    for (int64_t b = 0; b < m->B; b++) {
        int32_t l = (*lens)[b];
        if (l < 0 || l > m->T)
            return at_kernel_fail(k, AT_E_INVALID, "sequence_lens[%lld] = %d outside [0, %lld]",
                                  (long long)b, (int)l, (long long)m->T);
        if (l > *maxlen) *maxlen = l;
    }
    return AT_OK;
}

static inline int64_t len_of(const int32_t *lens, const lstm_dims *m, int64_t b) {
    return lens ? lens[b] : m->T;
}

/* What the backward pass needs of the forward, per X row (t, b): activations (i, o, f, g),
 * the new cell, the previous hidden state and cell. Rows never run hold zeros in hp. */
typedef struct lstm_tape {
    float *act, *cs, *hp, *cp;
} lstm_tape;

typedef struct lstm_scratch {
    float *xw;    /* [N, 4H]: x W^T; the tape's act may alias it */
    float *g;     /* [B, 4H] */
    float *h, *c; /* [B, H] */
    float *bias;  /* [4H]: Wb + Rb */
} lstm_scratch;

/* Runs direction d; writes Y / Y_h / Y_c where non-NULL and the tape where non-NULL. */
static void lstm_forward_dir(const at_kernel_ctx *k, const lstm_dims *m, int d, const int32_t *lens,
                             int64_t maxlen, const lstm_scratch *w, const lstm_tape *tape, float *Y,
                             float *Yh, float *Yc) {
    const int64_t H = m->H, H4 = 4 * H, B = m->B;
    const float *X = kin(k, IN_X), *Bias = kin(k, IN_B);
    const float *h0 = kin(k, IN_H0), *c0 = kin(k, IN_C0);
    const float *Wd = (const float *)kin(k, IN_W) + d * H4 * m->In;
    const float *Rd = (const float *)kin(k, IN_R) + d * H4 * H;
    const bool rev = dir_is_reverse(m->dir, d);
    const int nt = nthreads(k);

    for (int64_t r = 0; r < H4; r++)
        w->bias[r] = Bias ? Bias[d * 2 * H4 + r] + Bias[d * 2 * H4 + H4 + r] : 0.0f;
    gemm(k, false, true, m->N, H4, m->In, X, m->In, Wd, m->In, 0.0f, w->xw, H4);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < H; j++) {
            w->h[b * H + j] = h0 ? h0[soff(m, d, b) + j] : 0.0f;
            w->c[b * H + j] = c0 ? c0[soff(m, d, b) + j] : 0.0f;
        }
        if (Y)
            for (int64_t t = len_of(lens, m, b); t < m->T; t++)
                memset(Y + yoff(m, t, d, b), 0, (size_t)H * sizeof(float));
    }
    for (int64_t s = 0; s < maxlen; s++) {
        gemm(k, false, true, B, H4, H, w->h, H, Rd, H, 0.0f, w->g, H4);
        /* A step's gate math is short and sits between two BLAS calls whose threads may still
         * be spinning: a team pays off only for wide steps (measured: B = 32, H = 128 ran 3x
         * slower on 2 threads than on 1). */
#pragma omp parallel for num_threads(nt) schedule(static) if (B * H >= PAR_MIN_STEP)
        for (int64_t b = 0; b < B; b++) {
            int64_t len = len_of(lens, m, b);
            if (s >= len) continue;
            int64_t t = rev ? len - 1 - s : s, row = xrow(m, t, b);
            const float *gb = w->g + b * H4;
            float *xb = w->xw + row * H4, *hb = w->h + b * H, *cb = w->c + b * H;
            if (tape) {
                memcpy(tape->hp + row * H, hb, (size_t)H * sizeof(float));
                memcpy(tape->cp + row * H, cb, (size_t)H * sizeof(float));
            }
            for (int64_t j = 0; j < H; j++) {
                float gi = sigm(gb[j] + xb[j] + w->bias[j]);
                float go = sigm(gb[H + j] + xb[H + j] + w->bias[H + j]);
                float gf = sigm(gb[2 * H + j] + xb[2 * H + j] + w->bias[2 * H + j]);
                float gc = tanhf(gb[3 * H + j] + xb[3 * H + j] + w->bias[3 * H + j]);
                float cn = gf * cb[j] + gi * gc;
                float hn = go * tanhf(cn);
                cb[j] = cn;
                hb[j] = hn;
                if (Y) Y[yoff(m, t, d, b) + j] = hn;
                if (tape) {
                    float *a = tape->act + row * H4; /* may be xb: its inputs are read above */
                    a[j] = gi, a[H + j] = go, a[2 * H + j] = gf, a[3 * H + j] = gc;
                    tape->cs[row * H + j] = cn;
                }
            }
        }
    }
    for (int64_t b = 0; b < B; b++) {
        if (Yh) memcpy(Yh + soff(m, d, b), w->h + b * H, (size_t)H * sizeof(float));
        if (Yc) memcpy(Yc + soff(m, d, b), w->c + b * H, (size_t)H * sizeof(float));
    }
}

static size_t lstm_workspace(const at_kernel_ctx *k) {
    lstm_dims m = kernel_dims(k);
    size_t f = (size_t)(m.N * 4 * m.H + m.B * 4 * m.H + 2 * m.B * m.H + 4 * m.H);
    return f * sizeof(float);
}

static at_status lstm_cpu(at_kernel_ctx *k) {
    lstm_dims m = kernel_dims(k);
    const int32_t *lens;
    int64_t maxlen;
    at_status st = read_lens(k, &m, &lens, &maxlen);
    if (st != AT_OK) return st;
    float *ws = k->ws;
    lstm_scratch w;
    w.xw = ws, ws += m.N * 4 * m.H;
    w.g = ws, ws += m.B * 4 * m.H;
    w.h = ws, ws += m.B * m.H;
    w.c = ws, ws += m.B * m.H;
    w.bias = ws;
    float *Y = k->n_out > 0 ? k->out[0].data : NULL;
    float *Yh = k->n_out > 1 ? k->out[1].data : NULL;
    float *Yc = k->n_out > 2 ? k->out[2].data : NULL;
    for (int d = 0; d < m.D; d++) lstm_forward_dir(k, &m, d, lens, maxlen, &w, NULL, Y, Yh, Yc);
    return AT_OK;
}

/* ---- LSTMGrad(X, W, R, B?, seq?, h0?, c0?, dY?, dY_h?, dY_c?)
 *        -> dX, dW, dR, dB, d_initial_h, d_initial_c ---- */

static size_t lstm_grad_workspace(const at_kernel_ctx *k) {
    lstm_dims m = kernel_dims(k);
    int64_t H = m.H, H4 = 4 * H;
    size_t f = (size_t)(2 * m.N * H4 + 3 * m.N * H + 2 * m.B * H4 + 5 * m.B * H + H4);
    return f * sizeof(float);
}

static at_status lstm_grad_cpu(at_kernel_ctx *k) {
    lstm_dims m = kernel_dims(k);
    const int32_t *lens;
    int64_t maxlen;
    at_status st = read_lens(k, &m, &lens, &maxlen);
    if (st != AT_OK) return st;
    const int64_t H = m.H, H4 = 4 * H, B = m.B, N = m.N;
    float *ws = k->ws;
    lstm_scratch w;
    lstm_tape tape;
    w.xw = tape.act = ws, ws += N * H4;
    float *dA = ws; /* [N, 4H]: gate pre-activation gradients in X's row order */
    ws += N * H4;
    tape.cs = ws, ws += N * H;
    tape.hp = ws, ws += N * H;
    tape.cp = ws, ws += N * H;
    w.g = ws, ws += B * H4;
    float *dstep = ws; /* [B, 4H]: this step's rows of dA, contiguous for the GEMM */
    ws += B * H4;
    w.h = ws, ws += B * H;
    w.c = ws, ws += B * H;
    float *dh = ws, *dc = ws + B * H, *tmp = ws + 2 * B * H;
    ws += 3 * B * H;
    w.bias = ws;

    const float *X = kin(k, IN_X);
    const float *dY = kin(k, GI_DY), *dYh = kin(k, GI_DYH), *dYc = kin(k, GI_DYC);
    float *dX = k->out[0].data, *dW = k->out[1].data, *dR = k->out[2].data;
    float *dB = k->out[3].data, *dh0 = k->out[4].data, *dc0 = k->out[5].data;
    const int nt = nthreads(k);

    for (int d = 0; d < m.D; d++) {
        const float *Wd = (const float *)kin(k, IN_W) + d * H4 * m.In;
        const float *Rd = (const float *)kin(k, IN_R) + d * H4 * H;
        const bool rev = dir_is_reverse(m.dir, d);
        /* Rows no step visits (t >= len) must read as zero in the GEMMs below. */
        memset(tape.hp, 0, (size_t)(N * H) * sizeof(float));
        memset(dA, 0, (size_t)(N * H4) * sizeof(float));
        lstm_forward_dir(k, &m, d, lens, maxlen, &w, &tape, NULL, NULL, NULL);

        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++) {
                dh[b * H + j] = dYh ? dYh[soff(&m, d, b) + j] : 0.0f;
                dc[b * H + j] = dYc ? dYc[soff(&m, d, b) + j] : 0.0f;
            }
        for (int64_t s = maxlen - 1; s >= 0; s--) {
#pragma omp parallel for num_threads(nt) schedule(static) if (B * H >= PAR_MIN_STEP)
            for (int64_t b = 0; b < B; b++) {
                float *da = dstep + b * H4;
                int64_t len = len_of(lens, &m, b);
                if (s >= len) {
                    /* a held state: the gradient passes through unchanged */
                    memset(da, 0, (size_t)H4 * sizeof(float));
                    continue;
                }
                int64_t t = rev ? len - 1 - s : s, row = xrow(&m, t, b);
                const float *a = tape.act + row * H4, *cs = tape.cs + row * H;
                const float *cp = tape.cp + row * H;
                float *dhb = dh + b * H, *dcb = dc + b * H;
                const float *dyb = dY ? dY + yoff(&m, t, d, b) : NULL;
                for (int64_t j = 0; j < H; j++) {
                    float gi = a[j], go = a[H + j], gf = a[2 * H + j], gc = a[3 * H + j];
                    float ghj = dhb[j] + (dyb ? dyb[j] : 0.0f);
                    float tc = tanhf(cs[j]);
                    float gcell = dcb[j] + ghj * go * (1.0f - tc * tc);
                    da[j] = gcell * gc * gi * (1.0f - gi);
                    da[H + j] = ghj * tc * go * (1.0f - go);
                    da[2 * H + j] = gcell * cp[j] * gf * (1.0f - gf);
                    da[3 * H + j] = gcell * gi * (1.0f - gc * gc);
                    dcb[j] = gcell * gf;
                }
                memcpy(dA + row * H4, da, (size_t)H4 * sizeof(float));
            }
            gemm(k, false, false, B, H, H4, dstep, H4, Rd, H, 0.0f, tmp, H);
            for (int64_t b = 0; b < B; b++)
                if (s < len_of(lens, &m, b))
                    memcpy(dh + b * H, tmp + b * H, (size_t)H * sizeof(float));
        }
        for (int64_t b = 0; b < B; b++) {
            memcpy(dh0 + soff(&m, d, b), dh + b * H, (size_t)H * sizeof(float));
            memcpy(dc0 + soff(&m, d, b), dc + b * H, (size_t)H * sizeof(float));
        }
        gemm(k, true, false, H4, m.In, N, dA, H4, X, m.In, 0.0f, dW + d * H4 * m.In, m.In);
        gemm(k, true, false, H4, H, N, dA, H4, tape.hp, H, 0.0f, dR + d * H4 * H, H);
        gemm(k, false, false, N, m.In, H4, dA, H4, Wd, m.In, d ? 1.0f : 0.0f, dX, m.In);
        float *db = dB + d * 2 * H4;
        memset(db, 0, (size_t)H4 * sizeof(float));
        for (int64_t row = 0; row < N; row++)
            for (int64_t r = 0; r < H4; r++) db[r] += dA[row * H4 + r];
        memcpy(db + H4, db, (size_t)H4 * sizeof(float));
    }
    return AT_OK;
}

/* One LSTMGrad node gives every input's gradient; the forward is recomputed inside it. */
static at_status lstm_grad(at_grad_ctx *c) {
    const at_node_rec *n = at_grad_node(c);
    at_val in[10];
    for (int i = 0; i < 7; i++) in[i] = i < n->n_in ? n->in[i] : AT_NONE;
    bool any = false;
    for (int j = 0; j < 3; j++) {
        in[GI_DY + j] = j < c->n_out ? c->dy[j] : AT_NONE;
        any |= in[GI_DY + j] != AT_NONE;
    }
    if (!any) return AT_OK;
    char dir[32];
    snprintf(dir, sizeof dir, "%s", at_attr_str(n, "direction", "forward"));
    at_attr attrs[3];
    int na = 0;
    attrs[na++] = AT_ATTR_S("direction", dir);
    attrs[na++] = AT_ATTR_I("layout", at_attr_int(n, "layout", 0));
    if (at_attr_find(n, "hidden_size"))
        attrs[na++] = AT_ATTR_I("hidden_size", at_attr_int(n, "hidden_size", 0));
    at_val out[6];
    if (at_node_add(c->g, "LSTMGrad", AT_DOMAIN_ATTUNE, in, 10, out, 6, attrs, na) < 0)
        return at_graph_status(c->g);
    static const int which[7] = {0, 1, 2, 3, -1, 4, 5};
    for (int i = 0; i < 7 && i < c->n_in; i++)
        if (c->need[i] && which[i] >= 0 && in[i] != AT_NONE) c->dx[i] = out[which[i]];
    return AT_OK;
}

static const at_attr_schema lstm_attrs[] = {
    {"activation_alpha", AT_ATTR_FLOATS, false},
    {"activation_beta", AT_ATTR_FLOATS, false},
    {"activations", AT_ATTR_STRINGS, false},
    {"clip", AT_ATTR_FLOAT, false},
    {"direction", AT_ATTR_STRING, false},
    {"hidden_size", AT_ATTR_INT, false},
    {"input_forget", AT_ATTR_INT, false},
    {"layout", AT_ATTR_INT, false},
    {NULL},
};

const at_op_def at_op_def_LSTM = {
    .name = "LSTM",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 3,
    .max_in = 8,
    .min_out = 1,
    .max_out = 3,
    .attrs = lstm_attrs,
    .infer = lstm_infer,
    .cpu = lstm_cpu,
    .workspace = lstm_workspace,
    .grad = lstm_grad,
    .nondiff = (1u << IN_SEQ) | (1u << IN_P),
};

static const at_attr_schema lstm_grad_attrs[] = {
    {"direction", AT_ATTR_STRING, false},
    {"hidden_size", AT_ATTR_INT, false},
    {"layout", AT_ATTR_INT, false},
    {NULL},
};

const at_op_def at_op_def_LSTMGrad = {
    .name = "LSTMGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 3,
    .max_in = 10,
    .min_out = 6,
    .max_out = 6,
    .attrs = lstm_grad_attrs,
    .infer = lstm_grad_infer,
    .cpu = lstm_grad_cpu,
    .workspace = lstm_grad_workspace,
    .nondiff = 0x3FFu,
};

/* ---- builder ---- */

at_status at_lstm(at_graph *g, at_val x, at_val w, at_val r, at_val b, at_val seq_lens,
                  at_val initial_h, at_val initial_c, int hidden, const char *direction, at_val *y,
                  at_val *y_h, at_val *y_c) {
    if (y) *y = AT_NONE;
    if (y_h) *y_h = AT_NONE;
    if (y_c) *y_c = AT_NONE;
    if (!g) return AT_E_INVALID;
    if (at_graph_status(g) != AT_OK) return at_graph_status(g);
    if (x == AT_NONE || w == AT_NONE || r == AT_NONE)
        return at_graph_fail(g, AT_E_INVALID, "at_lstm: X, W and R are required");
    if (hidden <= 0)
        return at_graph_fail(g, AT_E_INVALID, "at_lstm: hidden size %d must be positive", hidden);
    at_val in[7] = {x, w, r, b, seq_lens, initial_h, initial_c};
    int n_in = 7;
    while (n_in > 3 && in[n_in - 1] == AT_NONE) n_in--;
    at_attr attrs[2] = {AT_ATTR_I("hidden_size", hidden),
                        AT_ATTR_S("direction", direction ? direction : "forward")};
    at_val out[3];
    if (at_node_add(g, "LSTM", AT_DOMAIN_ONNX, in, n_in, out, 3, attrs, 2) < 0)
        return at_graph_status(g);
    if (y) *y = out[0];
    if (y_h) *y_h = out[1];
    if (y_c) *y_c = out[2];
    return AT_OK;
}
