/* CUDA kernels of the 1-D convolution family (ops/conv.c): Conv, ConvGradInput, ConvGradWeight,
 * as im2col + one cuBLAS GEMM per group over a chunk of batch items, the CPU kernel's structure
 * (and so its summation order in dX, which is gathered per element in kernel-tap order rather
 * than scattered with atomics). cuDNN's convolution is the alternative for later measurement. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "ops/conv_index.h"
#include "runtime/cuda/cuda_common.cuh"

/* Floats of scratch a chunk may use (im2col columns + the GEMM's staging block). */
#define CONV_WS_BUDGET ((int64_t)1 << 23)

struct conv_dims {
    int64_t N, C, L, M, K, Lo, Cg, Mg, G;
    int64_t nb;
    int64_t pb, pe, s, d;
};

static at_status conv_dims_of(const at_node_rec *n, const at_shape *x, const at_shape *w,
                              const at_shape *y, conv_dims *d, char *msg, size_t cap) {
    d->pb = d->pe = 0;
    d->s = d->d = 1;
    const char *ap = at_attr_str(n, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") != 0) {
        snprintf(msg, cap, "auto_pad '%s' is not supported", ap);
        return AT_E_UNSUPPORTED;
    }
    const at_attr_rec *a;
    if ((a = at_attr_find(n, "pads")) && a->n == 2) d->pb = a->ints[0], d->pe = a->ints[1];
    if ((a = at_attr_find(n, "strides")) && a->n == 1) d->s = a->ints[0];
    if ((a = at_attr_find(n, "dilations")) && a->n == 1) d->d = a->ints[0];
    d->G = at_attr_int(n, "group", 1);
    if (d->pb < 0 || d->pe < 0 || d->s < 1 || d->d < 1 || d->G < 1) {
        snprintf(msg, cap, "bad attributes");
        return AT_E_INVALID;
    }
    if (x->rank != 3 || w->rank != 3 || y->rank != 3) {
        snprintf(msg, cap, "X, W and Y must be rank 3");
        return AT_E_SHAPE;
    }
    d->N = x->dim[0];
    d->C = x->dim[1];
    d->L = x->dim[2];
    d->M = w->dim[0];
    d->Cg = w->dim[1];
    d->K = w->dim[2];
    d->Mg = d->M / d->G;
    d->Lo = y->dim[2];
    int64_t span = d->L + d->pb + d->pe - d->d * (d->K - 1) - 1;
    if (d->C != d->Cg * d->G || d->M % d->G || y->dim[0] != d->N || y->dim[1] != d->M || span < 0 ||
        d->Lo != span / d->s + 1) {
        snprintf(msg, cap, "inconsistent shapes");
        return AT_E_SHAPE;
    }
    int64_t per_item = (d->Cg * d->K + d->Mg) * d->Lo;
    int64_t nb = per_item > 0 ? CONV_WS_BUDGET / per_item : d->N;
    if (nb < 1) nb = 1;
    if (nb > d->N) nb = d->N > 0 ? d->N : 1;
    d->nb = nb;
    if (d->Mg > INT_MAX || d->Cg * d->K > INT_MAX || d->nb * d->Lo > INT_MAX) {
        snprintf(msg, cap, "dims exceed the cuBLAS int range");
        return AT_E_UNSUPPORTED;
    }
    return AT_OK;
}

static size_t conv_ws_bytes(const conv_dims *d) {
    if (d->N == 0) return 0;
    return (size_t)(d->nb * (d->Cg * d->K + d->Mg) * d->Lo) * sizeof(float);
}

/* col[(c, k), (i, o)] = X[n0 + i, g*Cg + c, o*s - pb + k*d], zero in the padding. */
__global__ void im2col_kernel(conv_dims d, const float *x, int64_t g, int64_t n0, int64_t cnt,
                              float *col) {
    int64_t cols = cnt * d.Lo;
    AT_GRID_LOOP(e, d.Cg * d.K * cols) {
        int64_t r = e / cols, q = e % cols, i = q / d.Lo, o = q % d.Lo, ci = r / d.K;
        int64_t l = at_conv_src(o, at_conv_tap_off(r % d.K, d.d, d.pb), d.s, d.L);
        col[e] = l >= 0 ? x[((n0 + i) * d.C + g * d.Cg + ci) * d.L + l] : 0.0f;
    }
}

/* y[n0 + i, g*Mg + m, o] = blk[m, (i, o)] + bias[g*Mg + m]. */
__global__ void conv_out_kernel(conv_dims d, const float *blk, const float *bias, int64_t g,
                                int64_t n0, int64_t cnt, float *y) {
    int64_t cols = cnt * d.Lo;
    AT_GRID_LOOP(e, d.Mg * cols) {
        int64_t m = e / cols, q = e % cols, i = q / d.Lo, o = q % d.Lo;
        float b = bias ? bias[g * d.Mg + m] : 0.0f;
        y[((n0 + i) * d.M + g * d.Mg + m) * d.Lo + o] = blk[e] + b;
    }
}

/* buf[m, (i, o)] = dY[n0 + i, g*Mg + m, o]. */
__global__ void gather_dy_kernel(conv_dims d, const float *dy, int64_t g, int64_t n0, int64_t cnt,
                                 float *buf) {
    int64_t cols = cnt * d.Lo;
    AT_GRID_LOOP(e, d.Mg * cols) {
        int64_t m = e / cols, q = e % cols, i = q / d.Lo, o = q % d.Lo;
        buf[e] = dy[((n0 + i) * d.M + g * d.Mg + m) * d.Lo + o];
    }
}

/* dX[n0 + i, g*Cg + c, l] = sum over taps k (ascending) of dcol[(c, k), (i, o)] with
 * o*s - pb + k*d = l: each element gathered by one thread, in the CPU's order. */
__global__ void col2im_kernel(conv_dims d, const float *dcol, int64_t g, int64_t n0, int64_t cnt,
                              float *dx) {
    int64_t cols = cnt * d.Lo;
    AT_GRID_LOOP(e, cnt * d.Cg * d.L) {
        int64_t l = e % d.L, ci = (e / d.L) % d.Cg, i = e / (d.L * d.Cg);
        float acc = 0.0f;
        for (int64_t kk = 0; kk < d.K; kk++) {
            int64_t o = at_conv_dst(l, at_conv_tap_off(kk, d.d, d.pb), d.s, d.Lo);
            if (o >= 0) acc += dcol[(ci * d.K + kk) * cols + i * d.Lo + o];
        }
        dx[((n0 + i) * d.C + g * d.Cg + ci) * d.L + l] = acc;
    }
}

/* ---- Conv ---- */

static size_t conv_workspace(const at_kernel_ctx *k) {
    conv_dims d;
    char msg[256];
    if (conv_dims_of(k->node, &k->in[0].shape, &k->in[1].shape, &k->out[0].shape, &d, msg,
                     sizeof msg) != AT_OK)
        return 0;
    return conv_ws_bytes(&d);
}

static at_status conv_cuda(at_kernel_ctx *k) {
    conv_dims d;
    at_status st = conv_dims_of(k->node, &k->in[0].shape, &k->in[1].shape, &k->out[0].shape, &d,
                                k->msg, sizeof k->msg);
    if (st != AT_OK) return st;
    if (k->ws_size < conv_ws_bytes(&d))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace too small");
    const float *x = (const float *)k->in[0].data, *w = (const float *)k->in[1].data;
    const float *bias = k->n_in > 2 ? (const float *)k->in[2].data : NULL;
    float *y = (float *)k->out[0].data;
    int64_t ck = d.Cg * d.K;
    float *col = (float *)k->ws, *blk = col + d.nb * ck * d.Lo;
    cudaStream_t s = at_cu_stream(k);
    for (int64_t n0 = 0; n0 < d.N; n0 += d.nb) {
        int64_t cnt = d.N - n0 < d.nb ? d.N - n0 : d.nb, cols = cnt * d.Lo;
        for (int64_t g = 0; g < d.G; g++) {
            if (ck * cols > 0) {
                im2col_kernel<<<at_cu_grid(k, ck * cols), AT_CU_THREADS, 0, s>>>(d, x, g, n0, cnt,
                                                                                 col);
                AT_CU_LAUNCHED(k, "im2col_kernel");
            }
            AT_CU_TRY(at_cu_gemm(k, false, false, d.Mg, cols, ck, 1.0f, w + g * d.Mg * ck, ck, col,
                                 cols, 0.0f, blk, cols));
            if (d.Mg * cols > 0) {
                conv_out_kernel<<<at_cu_grid(k, d.Mg * cols), AT_CU_THREADS, 0, s>>>(d, blk, bias,
                                                                                     g, n0, cnt, y);
                AT_CU_LAUNCHED(k, "conv_out_kernel");
            }
        }
    }
    return AT_OK;
}

/* ---- ConvGradInput: dY [N, M, Lo], W, X (for its shape) -> dX ---- */

static size_t conv_gi_workspace(const at_kernel_ctx *k) {
    conv_dims d;
    char msg[256];
    if (conv_dims_of(k->node, &k->in[2].shape, &k->in[1].shape, &k->in[0].shape, &d, msg,
                     sizeof msg) != AT_OK)
        return 0;
    return conv_ws_bytes(&d);
}

static at_status conv_gi_cuda(at_kernel_ctx *k) {
    conv_dims d;
    at_status st = conv_dims_of(k->node, &k->in[2].shape, &k->in[1].shape, &k->in[0].shape, &d,
                                k->msg, sizeof k->msg);
    if (st != AT_OK) return st;
    if (k->ws_size < conv_ws_bytes(&d))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace too small");
    const float *dy = (const float *)k->in[0].data, *w = (const float *)k->in[1].data;
    float *dx = (float *)k->out[0].data;
    int64_t ck = d.Cg * d.K;
    float *dcol = (float *)k->ws, *blk = dcol + d.nb * ck * d.Lo;
    cudaStream_t s = at_cu_stream(k);
    for (int64_t n0 = 0; n0 < d.N; n0 += d.nb) {
        int64_t cnt = d.N - n0 < d.nb ? d.N - n0 : d.nb, cols = cnt * d.Lo;
        for (int64_t g = 0; g < d.G; g++) {
            if (d.Mg * cols > 0) {
                gather_dy_kernel<<<at_cu_grid(k, d.Mg * cols), AT_CU_THREADS, 0, s>>>(d, dy, g, n0,
                                                                                      cnt, blk);
                AT_CU_LAUNCHED(k, "gather_dy_kernel");
            }
            AT_CU_TRY(at_cu_gemm(k, true, false, ck, cols, d.Mg, 1.0f, w + g * d.Mg * ck, ck, blk,
                                 cols, 0.0f, dcol, cols));
            if (cnt * d.Cg * d.L > 0) {
                col2im_kernel<<<at_cu_grid(k, cnt * d.Cg * d.L), AT_CU_THREADS, 0, s>>>(
                    d, dcol, g, n0, cnt, dx);
                AT_CU_LAUNCHED(k, "col2im_kernel");
            }
        }
    }
    return AT_OK;
}

/* ---- ConvGradWeight: dY [N, M, Lo], X, W (for its shape) -> dW ---- */

static size_t conv_gw_workspace(const at_kernel_ctx *k) {
    conv_dims d;
    char msg[256];
    if (conv_dims_of(k->node, &k->in[1].shape, &k->in[2].shape, &k->in[0].shape, &d, msg,
                     sizeof msg) != AT_OK)
        return 0;
    return conv_ws_bytes(&d);
}

static at_status conv_gw_cuda(at_kernel_ctx *k) {
    conv_dims d;
    at_status st = conv_dims_of(k->node, &k->in[1].shape, &k->in[2].shape, &k->in[0].shape, &d,
                                k->msg, sizeof k->msg);
    if (st != AT_OK) return st;
    if (k->ws_size < conv_ws_bytes(&d))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace too small");
    const float *dy = (const float *)k->in[0].data, *x = (const float *)k->in[1].data;
    float *dw = (float *)k->out[0].data;
    int64_t ck = d.Cg * d.K;
    float *col = (float *)k->ws, *blk = col + d.nb * ck * d.Lo;
    cudaStream_t s = at_cu_stream(k);
    if (d.N == 0 && d.M * ck > 0)
        AT_CU_CHECK(k, cudaMemsetAsync(dw, 0, sizeof(float) * (size_t)(d.M * ck), s));
    /* Chunks accumulate in a fixed order, so the sum is the same on every run. */
    for (int64_t n0 = 0; n0 < d.N; n0 += d.nb) {
        int64_t cnt = d.N - n0 < d.nb ? d.N - n0 : d.nb, cols = cnt * d.Lo;
        for (int64_t g = 0; g < d.G; g++) {
            if (ck * cols > 0) {
                im2col_kernel<<<at_cu_grid(k, ck * cols), AT_CU_THREADS, 0, s>>>(d, x, g, n0, cnt,
                                                                                 col);
                AT_CU_LAUNCHED(k, "im2col_kernel");
            }
            if (d.Mg * cols > 0) {
                gather_dy_kernel<<<at_cu_grid(k, d.Mg * cols), AT_CU_THREADS, 0, s>>>(d, dy, g, n0,
                                                                                      cnt, blk);
                AT_CU_LAUNCHED(k, "gather_dy_kernel");
            }
            AT_CU_TRY(at_cu_gemm(k, false, true, d.Mg, ck, cols, 1.0f, blk, cols, col, cols,
                                 n0 == 0 ? 0.0f : 1.0f, dw + g * d.Mg * ck, ck));
        }
    }
    return AT_OK;
}

void at_cuda_register_conv(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, Conv, conv_cuda, conv_workspace);
    AT_CUDA_REG(t, ConvGradInput, conv_gi_cuda, conv_gi_workspace);
    AT_CUDA_REG(t, ConvGradWeight, conv_gw_cuda, conv_gw_workspace);
}
