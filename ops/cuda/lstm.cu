/* CUDA kernels of LSTM and LSTMGrad (ops/lstm.c), own kernels rather than cuDNN's RNN API:
 * the model's sequences are short and batches small, where a cuBLAS GEMM per step plus one fused
 * gate kernel is simple and keeps the CPU kernel's exact structure (and so its numbers).
 *
 * Forward, per direction: x W^T for every timestep in one GEMM; then per step h R^T (one GEMM
 * over the batch) and a fused kernel for the gates, the cell and hidden update, Y and the tape.
 * LSTMGrad recomputes the forward into its workspace (tape: activations, new cells, previous
 * states), then backpropagates through time: per step a fused gate-gradient kernel and one GEMM
 * for dh R; after the loop one GEMM each for dW, dR and dX, and a column sum for dB. */
#include <math.h>
#include <string.h>

#include "runtime/cuda/cuda_common.cuh"

enum { IN_X, IN_W, IN_R, IN_B, IN_SEQ, IN_H0, IN_C0 };
enum { GI_DY = 7, GI_DYH = 8, GI_DYC = 9 };
enum { DIR_FORWARD, DIR_REVERSE, DIR_BIDI };

static int parse_direction(const char *s) {
    if (!strcmp(s, "forward")) return DIR_FORWARD;
    if (!strcmp(s, "reverse")) return DIR_REVERSE;
    if (!strcmp(s, "bidirectional")) return DIR_BIDI;
    return -1;
}

struct lstm_dims {
    int64_t T, B, In, H, N;
    int D, layout, dir;
};

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

__host__ __device__ inline int64_t xrow(const lstm_dims &m, int64_t t, int64_t b) {
    return m.layout ? b * m.T + t : t * m.B + b;
}
__host__ __device__ inline int64_t yoff(const lstm_dims &m, int64_t t, int d, int64_t b) {
    return (m.layout ? (b * m.T + t) * m.D + d : (t * m.D + d) * m.B + b) * m.H;
}
__host__ __device__ inline int64_t soff(const lstm_dims &m, int d, int64_t b) {
    return (m.layout ? b * m.D + d : d * m.B + b) * m.H;
}

__device__ inline float sigm(float x) {
    return 1.0f / (1.0f + expf(-x));
}

static const void *kin(const at_kernel_ctx *k, int i) {
    return i < k->n_in ? k->in[i].data : NULL;
}

/* Under capture: lengths outside [0, T] recorded for the session (the kernels clamp them). */
__global__ void check_lens_kernel(const int32_t *lens, int64_t B, int64_t T, at_cuda_errword *derr,
                                  int node) {
    AT_GRID_LOOP(b, B) {
        if (lens[b] < 0 || lens[b] > T) at_dev_fail(derr, node, AT_DERR_SEQLEN, b, lens[b], T, 0);
    }
}

/* sequence_lens on the host (fed, or read back) for the step count; the device copy serves the
 * kernels. As the CPU, a length outside [0, T] is an error naming the item. Under capture the
 * graph must serve any lengths: all T steps run (steps past an item's length leave it as it
 * is, so the results are the same) and the device checks the lengths. */
static at_status read_lens(at_kernel_ctx *k, const lstm_dims &m, const int32_t **dlens,
                           int64_t *maxlen) {
    *dlens = (const int32_t *)kin(k, IN_SEQ);
    *maxlen = m.T;
    if (!*dlens) return AT_OK;
    if (at_cu(k)->capturing) {
        if (m.B > 0) {
            check_lens_kernel<<<at_cu_grid(k, m.B), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
                *dlens, m.B, m.T, at_cu(k)->derr, k->node_id);
            AT_CU_LAUNCHED(k, "check_lens_kernel");
        }
        return AT_OK;
    }
    const void *h;
    AT_CU_TRY(at_cu_read_input(k, IN_SEQ, &h));
    const int32_t *lens = (const int32_t *)h;
    *maxlen = 0;
    for (int64_t b = 0; b < m.B; b++) {
        int32_t l = lens[b];
        if (l < 0 || l > m.T)
            return at_kernel_fail(k, AT_E_INVALID, "sequence_lens[%lld] = %d outside [0, %lld]",
                                  (long long)b, (int)l, (long long)m.T);
        if (l > *maxlen) *maxlen = l;
    }
    return AT_OK;
}

__device__ inline int64_t len_of(const int32_t *lens, const lstm_dims &m, int64_t b) {
    if (!lens) return m.T;
    int64_t l = lens[b];
    return l < 0 ? 0 : l > m.T ? m.T : l;
}

struct lstm_tape {
    float *act, *cs, *hp, *cp; /* NULL act: no tape */
};

struct lstm_scratch {
    float *xw, *g, *h, *c, *bias;
};

/* ---- forward pieces ---- */

__global__ void bias_kernel(const float *B, int d, int64_t H4, float *bias) {
    AT_GRID_LOOP(r, H4) bias[r] = B ? B[d * 2 * H4 + r] + B[d * 2 * H4 + H4 + r] : 0.0f;
}

__global__ void init_state_kernel(lstm_dims m, int d, const float *h0, const float *c0, float *h,
                                  float *c) {
    AT_GRID_LOOP(i, m.B * m.H) {
        int64_t b = i / m.H, j = i % m.H;
        h[i] = h0 ? h0[soff(m, d, b) + j] : 0.0f;
        c[i] = c0 ? c0[soff(m, d, b) + j] : 0.0f;
    }
}

/* Y is zero at t >= len_b. */
__global__ void zero_tail_kernel(lstm_dims m, int d, const int32_t *lens, float *Y) {
    AT_GRID_LOOP(i, m.T * m.B * m.H) {
        int64_t j = i % m.H, b = (i / m.H) % m.B, t = i / (m.H * m.B);
        if (t >= len_of(lens, m, b)) Y[yoff(m, t, d, b) + j] = 0.0f;
    }
}

__global__ void gates_kernel(lstm_dims m, int d, bool rev, int64_t s, const int32_t *lens,
                             lstm_scratch w, lstm_tape tape, float *Y) {
    const int64_t H = m.H, H4 = 4 * H;
    AT_GRID_LOOP(i, m.B * H) {
        int64_t b = i / H, j = i % H;
        int64_t len = len_of(lens, m, b);
        if (s >= len) continue;
        int64_t t = rev ? len - 1 - s : s, row = xrow(m, t, b);
        const float *gb = w.g + b * H4;
        float *xb = w.xw + row * H4, *hb = w.h + b * H, *cb = w.c + b * H;
        if (tape.act) {
            tape.hp[row * H + j] = hb[j];
            tape.cp[row * H + j] = cb[j];
        }
        float gi = sigm(gb[j] + xb[j] + w.bias[j]);
        float go = sigm(gb[H + j] + xb[H + j] + w.bias[H + j]);
        float gf = sigm(gb[2 * H + j] + xb[2 * H + j] + w.bias[2 * H + j]);
        float gc = tanhf(gb[3 * H + j] + xb[3 * H + j] + w.bias[3 * H + j]);
        float cn = gf * cb[j] + gi * gc;
        float hn = go * tanhf(cn);
        cb[j] = cn;
        hb[j] = hn;
        if (Y) Y[yoff(m, t, d, b) + j] = hn;
        if (tape.act) {
            /* act may alias xw: this thread read its four entries above */
            float *a = tape.act + row * H4;
            a[j] = gi, a[H + j] = go, a[2 * H + j] = gf, a[3 * H + j] = gc;
            tape.cs[row * H + j] = cn;
        }
    }
}

__global__ void final_state_kernel(lstm_dims m, int d, const float *h, const float *c, float *Yh,
                                   float *Yc) {
    AT_GRID_LOOP(i, m.B * m.H) {
        int64_t b = i / m.H, j = i % m.H;
        if (Yh) Yh[soff(m, d, b) + j] = h[i];
        if (Yc) Yc[soff(m, d, b) + j] = c[i];
    }
}

static at_status forward_dir(at_kernel_ctx *k, const lstm_dims &m, int d, const int32_t *lens,
                             int64_t maxlen, const lstm_scratch &w, const lstm_tape &tape, float *Y,
                             float *Yh, float *Yc) {
    const int64_t H = m.H, H4 = 4 * H, B = m.B;
    const float *X = (const float *)kin(k, IN_X), *Bias = (const float *)kin(k, IN_B);
    const float *Wd = (const float *)kin(k, IN_W) + d * H4 * m.In;
    const float *Rd = (const float *)kin(k, IN_R) + d * H4 * H;
    const bool rev = m.dir == DIR_REVERSE || (m.dir == DIR_BIDI && d == 1);
    cudaStream_t s = at_cu_stream(k);
    bias_kernel<<<at_cu_grid(k, H4), AT_CU_THREADS, 0, s>>>(Bias, d, H4, w.bias);
    AT_CU_LAUNCHED(k, "bias_kernel");
    AT_CU_TRY(at_cu_gemm(k, false, true, m.N, H4, m.In, 1.0f, X, m.In, Wd, m.In, 0.0f, w.xw, H4));
    if (B * H > 0) {
        init_state_kernel<<<at_cu_grid(k, B * H), AT_CU_THREADS, 0, s>>>(
            m, d, (const float *)kin(k, IN_H0), (const float *)kin(k, IN_C0), w.h, w.c);
        AT_CU_LAUNCHED(k, "init_state_kernel");
    }
    if (Y && m.T * B * H > 0) {
        zero_tail_kernel<<<at_cu_grid(k, m.T * B * H), AT_CU_THREADS, 0, s>>>(m, d, lens, Y);
        AT_CU_LAUNCHED(k, "zero_tail_kernel");
    }
    for (int64_t st = 0; st < maxlen; st++) {
        AT_CU_TRY(at_cu_gemm(k, false, true, B, H4, H, 1.0f, w.h, H, Rd, H, 0.0f, w.g, H4));
        gates_kernel<<<at_cu_grid(k, B * H), AT_CU_THREADS, 0, s>>>(m, d, rev, st, lens, w, tape,
                                                                    Y);
        AT_CU_LAUNCHED(k, "gates_kernel");
    }
    if ((Yh || Yc) && B * H > 0) {
        final_state_kernel<<<at_cu_grid(k, B * H), AT_CU_THREADS, 0, s>>>(m, d, w.h, w.c, Yh, Yc);
        AT_CU_LAUNCHED(k, "final_state_kernel");
    }
    return AT_OK;
}

static size_t lstm_workspace(const at_kernel_ctx *k) {
    lstm_dims m = kernel_dims(k);
    size_t f = (size_t)(m.N * 4 * m.H + m.B * 4 * m.H + 2 * m.B * m.H + 4 * m.H);
    return f * sizeof(float);
}

static at_status lstm_cuda(at_kernel_ctx *k) {
    lstm_dims m = kernel_dims(k);
    const int32_t *lens;
    int64_t maxlen;
    AT_CU_TRY(read_lens(k, m, &lens, &maxlen));
    size_t need = lstm_workspace(k);
    if (need && (!k->ws || k->ws_size < need))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", need);
    float *ws = (float *)k->ws;
    lstm_scratch w;
    w.xw = ws, ws += m.N * 4 * m.H;
    w.g = ws, ws += m.B * 4 * m.H;
    w.h = ws, ws += m.B * m.H;
    w.c = ws, ws += m.B * m.H;
    w.bias = ws;
    lstm_tape none = {NULL, NULL, NULL, NULL};
    float *Y = k->n_out > 0 ? (float *)k->out[0].data : NULL;
    float *Yh = k->n_out > 1 ? (float *)k->out[1].data : NULL;
    float *Yc = k->n_out > 2 ? (float *)k->out[2].data : NULL;
    for (int d = 0; d < m.D; d++) AT_CU_TRY(forward_dir(k, m, d, lens, maxlen, w, none, Y, Yh, Yc));
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

__global__ void init_grad_state_kernel(lstm_dims m, int d, const float *dYh, const float *dYc,
                                       float *dh, float *dc) {
    AT_GRID_LOOP(i, m.B * m.H) {
        int64_t b = i / m.H, j = i % m.H;
        dh[i] = dYh ? dYh[soff(m, d, b) + j] : 0.0f;
        dc[i] = dYc ? dYc[soff(m, d, b) + j] : 0.0f;
    }
}

__global__ void gates_grad_kernel(lstm_dims m, int d, bool rev, int64_t s, const int32_t *lens,
                                  lstm_tape tape, const float *dY, float *dh, float *dc,
                                  float *dstep, float *dA) {
    const int64_t H = m.H, H4 = 4 * H;
    AT_GRID_LOOP(i, m.B * H) {
        int64_t b = i / H, j = i % H;
        float *da = dstep + b * H4;
        int64_t len = len_of(lens, m, b);
        if (s >= len) {
            /* a held state: the gradient passes through unchanged */
            da[j] = da[H + j] = da[2 * H + j] = da[3 * H + j] = 0.0f;
            continue;
        }
        int64_t t = rev ? len - 1 - s : s, row = xrow(m, t, b);
        const float *a = tape.act + row * H4;
        float gi = a[j], go = a[H + j], gf = a[2 * H + j], gc = a[3 * H + j];
        float ghj = dh[b * H + j] + (dY ? dY[yoff(m, t, d, b) + j] : 0.0f);
        float tc = tanhf(tape.cs[row * H + j]);
        float gcell = dc[b * H + j] + ghj * go * (1.0f - tc * tc);
        float v0 = gcell * gc * gi * (1.0f - gi);
        float v1 = ghj * tc * go * (1.0f - go);
        float v2 = gcell * tape.cp[row * H + j] * gf * (1.0f - gf);
        float v3 = gcell * gi * (1.0f - gc * gc);
        da[j] = v0, da[H + j] = v1, da[2 * H + j] = v2, da[3 * H + j] = v3;
        float *dr = dA + row * H4;
        dr[j] = v0, dr[H + j] = v1, dr[2 * H + j] = v2, dr[3 * H + j] = v3;
        dc[b * H + j] = gcell * gf;
    }
}

__global__ void take_dh_kernel(lstm_dims m, int64_t s, const int32_t *lens, const float *tmp,
                               float *dh) {
    AT_GRID_LOOP(i, m.B * m.H) {
        if (s < len_of(lens, m, i / m.H)) dh[i] = tmp[i];
    }
}

__global__ void store_grad_state_kernel(lstm_dims m, int d, const float *dh, const float *dc,
                                        float *dh0, float *dc0) {
    AT_GRID_LOOP(i, m.B * m.H) {
        int64_t b = i / m.H, j = i % m.H;
        dh0[soff(m, d, b) + j] = dh[i];
        dc0[soff(m, d, b) + j] = dc[i];
    }
}

/* dB's two halves: column sums of dA in row order, in float, as the CPU. */
__global__ void bias_grad_kernel(const float *dA, int64_t N, int64_t H4, float *db) {
    AT_GRID_LOOP(r, H4) {
        float acc = 0.0f;
        for (int64_t row = 0; row < N; row++) acc += dA[row * H4 + r];
        db[r] = acc;
        db[H4 + r] = acc;
    }
}

static at_status lstm_grad_cuda(at_kernel_ctx *k) {
    lstm_dims m = kernel_dims(k);
    const int32_t *lens;
    int64_t maxlen;
    AT_CU_TRY(read_lens(k, m, &lens, &maxlen));
    size_t need = lstm_grad_workspace(k);
    if (need && (!k->ws || k->ws_size < need))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", need);
    const int64_t H = m.H, H4 = 4 * H, B = m.B, N = m.N;
    float *ws = (float *)k->ws;
    lstm_scratch w;
    lstm_tape tape;
    w.xw = tape.act = ws, ws += N * H4;
    float *dA = ws;
    ws += N * H4;
    tape.cs = ws, ws += N * H;
    tape.hp = ws, ws += N * H;
    tape.cp = ws, ws += N * H;
    w.g = ws, ws += B * H4;
    float *dstep = ws;
    ws += B * H4;
    w.h = ws, ws += B * H;
    w.c = ws, ws += B * H;
    float *dh = ws, *dc = ws + B * H, *tmp = ws + 2 * B * H;
    ws += 3 * B * H;
    w.bias = ws;

    const float *X = (const float *)kin(k, IN_X);
    const float *dY = (const float *)kin(k, GI_DY), *dYh = (const float *)kin(k, GI_DYH),
                *dYc = (const float *)kin(k, GI_DYC);
    float *dX = (float *)k->out[0].data, *dW = (float *)k->out[1].data;
    float *dR = (float *)k->out[2].data, *dB = (float *)k->out[3].data;
    float *dh0 = (float *)k->out[4].data, *dc0 = (float *)k->out[5].data;
    cudaStream_t s = at_cu_stream(k);
    unsigned gbh = at_cu_grid(k, B * H);

    for (int d = 0; d < m.D; d++) {
        const float *Wd = (const float *)kin(k, IN_W) + d * H4 * m.In;
        const float *Rd = (const float *)kin(k, IN_R) + d * H4 * H;
        const bool rev = m.dir == DIR_REVERSE || (m.dir == DIR_BIDI && d == 1);
        /* Rows no step visits (t >= len) must read as zero in the GEMMs below. */
        if (N * H > 0)
            AT_CU_CHECK(k, cudaMemsetAsync(tape.hp, 0, (size_t)(N * H) * sizeof(float), s));
        if (N * H4 > 0) AT_CU_CHECK(k, cudaMemsetAsync(dA, 0, (size_t)(N * H4) * sizeof(float), s));
        AT_CU_TRY(forward_dir(k, m, d, lens, maxlen, w, tape, NULL, NULL, NULL));
        if (B * H > 0) {
            init_grad_state_kernel<<<gbh, AT_CU_THREADS, 0, s>>>(m, d, dYh, dYc, dh, dc);
            AT_CU_LAUNCHED(k, "init_grad_state_kernel");
        }
        for (int64_t st = maxlen - 1; st >= 0; st--) {
            gates_grad_kernel<<<gbh, AT_CU_THREADS, 0, s>>>(m, d, rev, st, lens, tape, dY, dh, dc,
                                                            dstep, dA);
            AT_CU_LAUNCHED(k, "gates_grad_kernel");
            AT_CU_TRY(at_cu_gemm(k, false, false, B, H, H4, 1.0f, dstep, H4, Rd, H, 0.0f, tmp, H));
            take_dh_kernel<<<gbh, AT_CU_THREADS, 0, s>>>(m, st, lens, tmp, dh);
            AT_CU_LAUNCHED(k, "take_dh_kernel");
        }
        if (B * H > 0) {
            store_grad_state_kernel<<<gbh, AT_CU_THREADS, 0, s>>>(m, d, dh, dc, dh0, dc0);
            AT_CU_LAUNCHED(k, "store_grad_state_kernel");
        }
        AT_CU_TRY(at_cu_gemm(k, true, false, H4, m.In, N, 1.0f, dA, H4, X, m.In, 0.0f,
                             dW + d * H4 * m.In, m.In));
        AT_CU_TRY(at_cu_gemm(k, true, false, H4, H, N, 1.0f, dA, H4, tape.hp, H, 0.0f,
                             dR + d * H4 * H, H));
        AT_CU_TRY(at_cu_gemm(k, false, false, N, m.In, H4, 1.0f, dA, H4, Wd, m.In, d ? 1.0f : 0.0f,
                             dX, m.In));
        if (H4 > 0) {
            bias_grad_kernel<<<at_cu_grid(k, H4), AT_CU_THREADS, 0, s>>>(dA, N, H4,
                                                                         dB + d * 2 * H4);
            AT_CU_LAUNCHED(k, "bias_grad_kernel");
        }
    }
    return AT_OK;
}

void at_cuda_register_lstm(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, LSTM, lstm_cuda, lstm_workspace);
    AT_CUDA_REG(t, LSTMGrad, lstm_grad_cuda, lstm_grad_workspace);
}
