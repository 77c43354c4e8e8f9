/* CUDA kernels of CRFLoss, CRFLossGrad and CRFDecode (ops/crf.c: the definitions and the math).
 *
 * One thread block a sentence; threads stride over the K tags (K of the slot vocabulary, ~100),
 * the state vectors in shared memory, in double like the CPU kernels. A first one-block kernel
 * writes tmax = max(transitions) and E = exp(transitions - tmax) to the workspace. The backward
 * op keeps alpha and beta per sentence in the workspace, and each sentence's transition, start
 * and end gradients in its own slice; a last kernel sums the slices in batch order, so results
 * are the same on every run. A tag outside [0, K) at a real token is recorded as a device error
 * (the host checks fed tags first, naming the position as the CPU does) and constrains
 * nothing. Compiled here but not yet run on a GPU. */
#include <math.h>

#include "runtime/cuda/cuda_common.cuh"

#define CRF_THREADS     128
#define CRF_IGNORE_DFLT (-100)
#define CRF_RED_SLOTS   33

struct crf_args {
    int64_t B, T, K;
    const float *x, *mask, *trans, *start, *end;
    const int64_t *tags; /* NULL: decoding */
    long long ignore;
    const double *E; /* [0]: tmax, then [K,K] */
    at_cuda_errword *derr;
    int node;
};

__device__ inline double block_reduce(double v, bool is_max, double *red) {
    for (int o = 16; o > 0; o >>= 1) {
        double u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmax(v, u) : v + u;
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        double r = red[0];
        for (int w = 1; w < nw; w++) r = is_max ? fmax(r, red[w]) : r + red[w];
        red[32] = r;
    }
    __syncthreads();
    return red[32];
}

__device__ inline int64_t crf_len(const crf_args &a, int64_t b) {
    int64_t L = 0;
    for (int64_t t = 0; t < a.T; t++) L += a.mask[b * a.T + t] > 0.5f;
    return L;
}

/* The tag at (b, t) as a constraint: -1 for none (ignored, or bad and reported). */
__device__ inline long long crf_tag(const crf_args &a, int64_t b, int64_t t, bool report) {
    if (!a.tags) return -1;
    long long v = a.tags[b * a.T + t];
    if (v == a.ignore) return -1;
    if (v < 0 || v >= a.K) {
        if (report) at_dev_fail(a.derr, a.node, AT_DERR_LABEL, v, b * a.T + t, a.K, 0);
        return -1;
    }
    return v;
}

/* Whether sentence b has a tag among its first L tokens (reports bad ones). */
__device__ inline bool crf_tagged(const crf_args &a, int64_t b, int64_t L) {
    bool any = false;
    for (int64_t t = 0; t < L; t++) any |= crf_tag(a, b, t, threadIdx.x == 0) >= 0;
    return any;
}

__device__ inline bool crf_allowed(const crf_args &a, bool constrained, int64_t b, int64_t t,
                                   int64_t j) {
    if (!constrained) return true;
    long long y = crf_tag(a, b, t, false);
    return y < 0 || y == j;
}

/* tmax and E = exp(transitions - tmax): one block. */
__global__ void crf_prep_kernel(const float *trans, int64_t KK, double *E) {
    __shared__ double red[CRF_RED_SLOTS];
    double m = -INFINITY;
    for (int64_t i = threadIdx.x; i < KK; i += blockDim.x) m = fmax(m, (double)trans[i]);
    m = block_reduce(m, true, red);
    if (!isfinite(m)) m = 0;
    for (int64_t i = threadIdx.x; i < KK; i += blockDim.x) E[1 + i] = exp(trans[i] - m);
    if (threadIdx.x == 0) E[0] = m;
}

/* log Z over the paths of sentence b (length L > 0), constrained by its tags or not. alpha:
 * [L,K] when keep, else 2 rolling rows [2,K]; u: [K] shared scratch. */
__device__ double crf_forward(const crf_args &a, int64_t b, int64_t L, bool constrained,
                              double *alpha, bool keep, double *u, double *red) {
    const int64_t K = a.K;
    const float *x = a.x + b * a.T * K;
    const double tmax = a.E[0], *E = a.E + 1;
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x)
        alpha[j] = crf_allowed(a, constrained, b, 0, j) ? (double)a.start[j] + x[j] : -INFINITY;
    __syncthreads();
    for (int64_t t = 1; t < L; t++) {
        double *prev = alpha + (keep ? t - 1 : (t - 1) % 2) * K;
        double *cur = alpha + (keep ? t : t % 2) * K;
        double m = -INFINITY;
        for (int64_t i = threadIdx.x; i < K; i += blockDim.x) m = fmax(m, prev[i]);
        m = block_reduce(m, true, red);
        if (!isfinite(m)) m = 0;
        for (int64_t i = threadIdx.x; i < K; i += blockDim.x) u[i] = exp(prev[i] - m);
        __syncthreads();
        for (int64_t j = threadIdx.x; j < K; j += blockDim.x) {
            double s = 0;
            for (int64_t i = 0; i < K; i++) s += u[i] * E[i * K + j];
            cur[j] =
                crf_allowed(a, constrained, b, t, j) ? x[t * K + j] + m + tmax + log(s) : -INFINITY;
        }
        __syncthreads();
    }
    const double *last = alpha + (keep ? L - 1 : (L - 1) % 2) * K;
    double m = -INFINITY;
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x) m = fmax(m, last[j] + a.end[j]);
    m = block_reduce(m, true, red);
    if (!isfinite(m)) return m;
    double s = 0;
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x) s += exp(last[j] + a.end[j] - m);
    return m + log(block_reduce(s, false, red));
}

/* beta [L,K]: beta[t][i] = log-sum of the scores after t given y_t = i. w: [K] shared. */
__device__ void crf_backward(const crf_args &a, int64_t b, int64_t L, bool constrained,
                             double *beta, double *w, double *red) {
    const int64_t K = a.K;
    const float *x = a.x + b * a.T * K;
    const double tmax = a.E[0], *E = a.E + 1;
    for (int64_t i = threadIdx.x; i < K; i += blockDim.x)
        beta[(L - 1) * K + i] =
            crf_allowed(a, constrained, b, L - 1, i) ? (double)a.end[i] : -INFINITY;
    __syncthreads();
    for (int64_t t = L - 2; t >= 0; t--) {
        const double *nx = beta + (t + 1) * K;
        double m = -INFINITY;
        for (int64_t j = threadIdx.x; j < K; j += blockDim.x) {
            w[j] = nx[j] + x[(t + 1) * K + j];
            m = fmax(m, w[j]);
        }
        m = block_reduce(m, true, red);
        if (!isfinite(m)) m = 0;
        for (int64_t j = threadIdx.x; j < K; j += blockDim.x) w[j] = exp(w[j] - m);
        __syncthreads();
        for (int64_t i = threadIdx.x; i < K; i += blockDim.x) {
            double s = 0;
            for (int64_t j = 0; j < K; j++) s += E[i * K + j] * w[j];
            beta[t * K + i] = crf_allowed(a, constrained, b, t, i) ? m + tmax + log(s) : -INFINITY;
        }
        __syncthreads();
    }
}

/* ---- CRFLoss ---- */

__global__ void crf_loss_kernel(crf_args a, float *out) {
    extern __shared__ double sh[];
    double *alpha = sh, *u = alpha + 2 * a.K, *red = u + a.K;
    int64_t b = blockIdx.x;
    int64_t L = crf_len(a, b);
    if (L == 0 || !crf_tagged(a, b, L)) {
        if (threadIdx.x == 0) out[b] = 0;
        return;
    }
    double z = crf_forward(a, b, L, false, alpha, false, u, red);
    double zc = crf_forward(a, b, L, true, alpha, false, u, red);
    if (threadIdx.x == 0) out[b] = (float)(z - zc);
}

/* ---- CRFLossGrad ---- */

__device__ inline int64_t crf_grad_stride(int64_t T, int64_t K) {
    return 2 * T * K + K * K + 2 * K;
}

/* Adds sign g (marginals) to the sentence's dx rows, dtr [K,K] and dse [2K]. */
__device__ void crf_add_marginals(const crf_args &a, int64_t b, int64_t L, bool constrained,
                                  double g, double *alpha, double *beta, float *dx, double *dtr,
                                  double *dse, double *u, double *w, double *red) {
    const int64_t K = a.K;
    const float *x = a.x + b * a.T * K;
    const double tmax = a.E[0], *E = a.E + 1;
    double logz = crf_forward(a, b, L, constrained, alpha, true, u, red);
    crf_backward(a, b, L, constrained, beta, w, red);
    if (!isfinite(logz)) return; /* uniform across the block */
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x)
        for (int64_t t = 0; t < L; t++) {
            double p = exp(alpha[t * K + j] + beta[t * K + j] - logz) * g;
            dx[t * K + j] += (float)p;
            if (t == 0) dse[j] += p;
            if (t == L - 1) dse[K + j] += p;
        }
    for (int64_t t = 1; t < L; t++) {
        double ma = -INFINITY, mw = -INFINITY;
        for (int64_t i = threadIdx.x; i < K; i += blockDim.x) {
            ma = fmax(ma, alpha[(t - 1) * K + i]);
            w[i] = beta[t * K + i] + x[t * K + i];
            mw = fmax(mw, w[i]);
        }
        ma = block_reduce(ma, true, red);
        mw = block_reduce(mw, true, red);
        if (!isfinite(ma)) ma = 0;
        if (!isfinite(mw)) mw = 0;
        for (int64_t i = threadIdx.x; i < K; i += blockDim.x) {
            u[i] = exp(alpha[(t - 1) * K + i] - ma);
            w[i] = exp(w[i] - mw);
        }
        __syncthreads();
        double s = exp(ma + mw + tmax - logz) * g;
        for (int64_t q = threadIdx.x; q < K * K; q += blockDim.x) {
            int64_t i = q / K, j = q % K;
            dtr[q] += u[i] * s * E[q] * w[j];
        }
        __syncthreads();
    }
}

__global__ void crf_grad_kernel(crf_args a, const float *dnll, double *per, float *dx) {
    extern __shared__ double sh[];
    const int64_t K = a.K, KK = K * K;
    double *u = sh, *w = u + K, *red = w + K;
    int64_t b = blockIdx.x;
    double *alpha = per + b * crf_grad_stride(a.T, K), *beta = alpha + a.T * K;
    double *dtr = beta + a.T * K, *dse = dtr + KK;
    float *dxb = dx + b * a.T * K;
    for (int64_t q = threadIdx.x; q < KK + 2 * K; q += blockDim.x) dtr[q] = 0;
    for (int64_t q = threadIdx.x; q < a.T * K; q += blockDim.x) dxb[q] = 0;
    __syncthreads();
    int64_t L = crf_len(a, b);
    if (L == 0 || !crf_tagged(a, b, L) || dnll[b] == 0) return;
    double g = dnll[b];
    crf_add_marginals(a, b, L, false, g, alpha, beta, dxb, dtr, dse, u, w, red);
    crf_add_marginals(a, b, L, true, -g, alpha, beta, dxb, dtr, dse, u, w, red);
}

/* dtransitions, dstart, dend: the sentences' slices summed in batch order. */
__global__ void crf_grad_sum_kernel(const double *per, int64_t B, int64_t T, int64_t K, float *dtr,
                                    float *dst, float *den) {
    const int64_t KK = K * K, stride = crf_grad_stride(T, K);
    AT_GRID_LOOP(q, KK + 2 * K) {
        double s = 0;
        for (int64_t b = 0; b < B; b++) s += per[b * stride + 2 * T * K + q];
        if (q < KK)
            dtr[q] = (float)s;
        else if (q < KK + K)
            dst[q - KK] = (float)s;
        else
            den[q - KK - K] = (float)s;
    }
}

/* ---- CRFDecode ---- */

__global__ void crf_decode_kernel(crf_args a, int32_t *bp_all, int64_t *out) {
    extern __shared__ double sh[];
    const int64_t K = a.K;
    double *prev = sh, *cur = prev + K;
    int64_t b = blockIdx.x, L = crf_len(a, b);
    const float *x = a.x + b * a.T * K;
    int32_t *bp = bp_all + b * a.T * K;
    int64_t *o = out + b * a.T;
    for (int64_t t = threadIdx.x; t < a.T; t += blockDim.x) o[t] = 0;
    if (L == 0) return;
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x) prev[j] = (double)a.start[j] + x[j];
    __syncthreads();
    for (int64_t t = 1; t < L; t++) {
        for (int64_t j = threadIdx.x; j < K; j += blockDim.x) {
            double best = -INFINITY;
            int32_t arg = 0;
            for (int64_t i = 0; i < K; i++) {
                double v = prev[i] + a.trans[i * K + j];
                if (v > best) best = v, arg = (int32_t)i;
            }
            cur[j] = best + x[t * K + j];
            bp[t * K + j] = arg;
        }
        __syncthreads();
        double *tmp = prev;
        prev = cur, cur = tmp;
    }
    if (threadIdx.x != 0) return;
    int64_t y = 0;
    double best = -INFINITY;
    for (int64_t j = 0; j < K; j++)
        if (prev[j] + a.end[j] > best) best = prev[j] + a.end[j], y = j;
    for (int64_t t = L - 1; t >= 0; t--) {
        o[t] = y;
        if (t > 0) y = bp[t * K + y];
    }
}

/* ---- host side ---- */

/* Inputs from base (ti < 0: no tags). Fed tags are checked on the host first. */
static at_status crf_setup(at_kernel_ctx *k, int base, int ti, crf_args *a) {
    const at_tensor *x = &k->in[base];
    int off = ti >= 0 ? 1 : 0;
    a->B = x->shape.dim[0];
    a->T = x->shape.dim[1];
    a->K = x->shape.dim[2];
    a->x = (const float *)x->data;
    a->tags = ti >= 0 ? (const int64_t *)k->in[ti].data : NULL;
    a->mask = (const float *)k->in[base + 1 + off].data;
    a->trans = (const float *)k->in[base + 2 + off].data;
    a->start = (const float *)k->in[base + 3 + off].data;
    a->end = (const float *)k->in[base + 4 + off].data;
    a->ignore = (long long)at_attr_int(k->node, "ignore_index", CRF_IGNORE_DFLT);
    a->derr = at_cu(k)->derr;
    a->node = k->node_id;
    a->E = NULL;
    const int64_t *h = ti >= 0 ? (const int64_t *)at_cu_host_peek(k, ti) : NULL;
    const float *hm = h ? (const float *)at_cu_host_peek(k, base + 1 + off) : NULL;
    for (int64_t p = 0; hm && p < a->B * a->T; p++) {
        int64_t v = h[p];
        if (v != a->ignore && (v < 0 || v >= a->K) && hm[p] > 0.5f)
            return at_kernel_fail(k, AT_E_INVALID,
                                  "tag %lld at position %lld out of range [0, %lld)", (long long)v,
                                  (long long)p, (long long)a->K);
    }
    return AT_OK;
}

static at_status crf_prep(at_kernel_ctx *k, crf_args *a, double *E) {
    crf_prep_kernel<<<1, 256, 0, at_cu_stream(k)>>>(a->trans, a->K * a->K, E);
    AT_CU_LAUNCHED(k, "crf_prep_kernel");
    a->E = E;
    return AT_OK;
}

static size_t shared_bytes(int64_t n_doubles) {
    return (size_t)(n_doubles + CRF_RED_SLOTS) * sizeof(double);
}

static size_t loss_ws(const at_kernel_ctx *k) {
    int64_t K = k->in[0].shape.dim[2];
    return (size_t)(1 + K * K) * sizeof(double);
}

static at_status loss_cuda(at_kernel_ctx *k) {
    crf_args a;
    AT_CU_TRY(crf_setup(k, 0, 1, &a));
    if (!k->ws || k->ws_size < loss_ws(k))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", loss_ws(k));
    if (a.B == 0) return AT_OK;
    AT_CU_TRY(crf_prep(k, &a, (double *)k->ws));
    crf_loss_kernel<<<(unsigned)a.B, CRF_THREADS, shared_bytes(3 * a.K), at_cu_stream(k)>>>(
        a, (float *)k->out[0].data);
    AT_CU_LAUNCHED(k, "crf_loss_kernel");
    return AT_OK;
}

static int64_t grad_ws_doubles(const at_kernel_ctx *k) {
    const at_shape *x = &k->in[1].shape;
    int64_t B = x->dim[0], T = x->dim[1], K = x->dim[2];
    return 1 + K * K + B * (2 * T * K + K * K + 2 * K);
}

static size_t grad_ws(const at_kernel_ctx *k) {
    return (size_t)grad_ws_doubles(k) * sizeof(double);
}

static at_status grad_cuda(at_kernel_ctx *k) {
    crf_args a;
    AT_CU_TRY(crf_setup(k, 1, 2, &a));
    if (!k->ws || k->ws_size < grad_ws(k))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", grad_ws(k));
    double *E = (double *)k->ws, *per = E + 1 + a.K * a.K;
    AT_CU_TRY(crf_prep(k, &a, E));
    cudaStream_t s = at_cu_stream(k);
    if (a.B > 0) {
        crf_grad_kernel<<<(unsigned)a.B, CRF_THREADS, shared_bytes(2 * a.K), s>>>(
            a, (const float *)k->in[0].data, per, (float *)k->out[0].data);
        AT_CU_LAUNCHED(k, "crf_grad_kernel");
    }
    int64_t n = a.K * a.K + 2 * a.K;
    crf_grad_sum_kernel<<<at_cu_grid(k, n), AT_CU_THREADS, 0, s>>>(
        per, a.B, a.T, a.K, (float *)k->out[1].data, (float *)k->out[2].data,
        (float *)k->out[3].data);
    AT_CU_LAUNCHED(k, "crf_grad_sum_kernel");
    return AT_OK;
}

static size_t decode_ws(const at_kernel_ctx *k) {
    const at_shape *x = &k->in[0].shape;
    return (size_t)(x->dim[0] * x->dim[1] * x->dim[2] + 1) * sizeof(int32_t);
}

static at_status decode_cuda(at_kernel_ctx *k) {
    crf_args a;
    AT_CU_TRY(crf_setup(k, 0, -1, &a));
    if (!k->ws || k->ws_size < decode_ws(k))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", decode_ws(k));
    if (a.B == 0) return AT_OK;
    crf_decode_kernel<<<(unsigned)a.B, CRF_THREADS, shared_bytes(2 * a.K), at_cu_stream(k)>>>(
        a, (int32_t *)k->ws, (int64_t *)k->out[0].data);
    AT_CU_LAUNCHED(k, "crf_decode_kernel");
    return AT_OK;
}

void at_cuda_register_crf(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, CRFLoss, loss_cuda, loss_ws);
    AT_CUDA_REG(t, CRFLossGrad, grad_cuda, grad_ws);
    AT_CUDA_REG(t, CRFDecode, decode_cuda, decode_ws);
}
