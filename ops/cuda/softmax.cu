/* CUDA kernels of the softmax family (ops/softmax.c): Softmax, LogSoftmax and the fused
 * SoftmaxGrad / LogSoftmaxGrad. The tensor is [outer, C, inner]: with inner == 1 a warp takes a
 * row (lanes stride over C, then a fixed shuffle tree), otherwise a thread takes one inner
 * position and sweeps C, neighbouring threads reading neighbouring addresses. Sums in double as
 * on the CPU. */
#include <math.h>

#include "runtime/cuda/cuda_common.cuh"

struct sm_dims {
    int64_t outer, C, inner;
};

static at_status sm_dims_of(at_kernel_ctx *k, const at_shape *s, sm_dims *d) {
    int axis = at_norm_axis(at_attr_int(k->node, "axis", -1), s->rank);
    if (axis < 0) return at_kernel_fail(k, AT_E_INVALID, "axis out of range");
    d->outer = at_dims_prod(s, 0, axis);
    d->C = s->dim[axis];
    d->inner = at_dims_prod(s, axis + 1, s->rank);
    return AT_OK;
}

/* ---- forward ---- */

__global__ void softmax_rows_kernel(const float *x, float *y, int64_t rows, int64_t C, bool logsm) {
    int lane = threadIdx.x & 31;
    int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
         r += warps) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float m = -INFINITY;
        for (int64_t c = lane; c < C; c += 32) m = fmaxf(m, xr[c]);
        m = at_warp_max(m);
        double s = 0;
        for (int64_t c = lane; c < C; c += 32) s += expf(xr[c] - m);
        s = at_warp_sum(s);
        if (logsm) {
            float ls = (float)log(s);
            for (int64_t c = lane; c < C; c += 32) yr[c] = (xr[c] - m) - ls;
        } else {
            float inv = (float)(1.0 / s);
            for (int64_t c = lane; c < C; c += 32) yr[c] = expf(xr[c] - m) * inv;
        }
    }
}

__global__ void softmax_cols_kernel(const float *x, float *y, int64_t outer, int64_t C,
                                    int64_t inner, bool logsm) {
    AT_GRID_LOOP(t, outer * inner) {
        int64_t o = t / inner, i = t % inner;
        const float *xp = x + o * C * inner + i;
        float *yp = y + o * C * inner + i;
        float m = -INFINITY;
        for (int64_t c = 0; c < C; c++) m = fmaxf(m, xp[c * inner]);
        double s = 0;
        for (int64_t c = 0; c < C; c++) s += expf(xp[c * inner] - m);
        if (logsm) {
            float ls = (float)log(s);
            for (int64_t c = 0; c < C; c++) yp[c * inner] = (xp[c * inner] - m) - ls;
        } else {
            float inv = (float)(1.0 / s);
            for (int64_t c = 0; c < C; c++) yp[c * inner] = expf(xp[c * inner] - m) * inv;
        }
    }
}

static unsigned warp_grid(const at_kernel_ctx *k, int64_t rows) {
    return at_cu_grid(k, rows * 32);
}

static at_status softmax_common(at_kernel_ctx *k, bool logsm) {
    sm_dims d = {}; /* set by sm_dims_of; -O3 cannot tell */
    AT_CU_TRY(sm_dims_of(k, &k->in[0].shape, &d));
    if (d.outer * d.C * d.inner == 0) return AT_OK;
    const float *x = (const float *)k->in[0].data;
    float *y = (float *)k->out[0].data;
    if (d.inner == 1) {
        softmax_rows_kernel<<<warp_grid(k, d.outer), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
            x, y, d.outer, d.C, logsm);
        AT_CU_LAUNCHED(k, "softmax_rows_kernel");
    } else {
        softmax_cols_kernel<<<at_cu_grid(k, d.outer * d.inner), AT_CU_THREADS, 0,
                              at_cu_stream(k)>>>(x, y, d.outer, d.C, d.inner, logsm);
        AT_CU_LAUNCHED(k, "softmax_cols_kernel");
    }
    return AT_OK;
}

static at_status softmax_cuda(at_kernel_ctx *k) {
    return softmax_common(k, false);
}
static at_status log_softmax_cuda(at_kernel_ctx *k) {
    return softmax_common(k, true);
}

/* ---- backward: SoftmaxGrad dx = y (dy - sum(dy y)); LogSoftmaxGrad dx = dy - exp(y) sum(dy) ----
 */

__global__ void smgrad_rows_kernel(const float *dy, const float *y, float *dx, int64_t rows,
                                   int64_t C, bool logsm) {
    int lane = threadIdx.x & 31;
    int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
         r += warps) {
        const float *g = dy + r * C, *yr = y + r * C;
        float *d = dx + r * C;
        double s = 0;
        if (logsm)
            for (int64_t c = lane; c < C; c += 32) s += g[c];
        else
            for (int64_t c = lane; c < C; c += 32) s += (double)g[c] * yr[c];
        float sf = (float)at_warp_sum(s);
        if (logsm)
            for (int64_t c = lane; c < C; c += 32) d[c] = g[c] - expf(yr[c]) * sf;
        else
            for (int64_t c = lane; c < C; c += 32) d[c] = yr[c] * (g[c] - sf);
    }
}

__global__ void smgrad_cols_kernel(const float *dy, const float *y, float *dx, int64_t outer,
                                   int64_t C, int64_t inner, bool logsm) {
    AT_GRID_LOOP(t, outer * inner) {
        int64_t o = t / inner, i = t % inner, base = o * C * inner + i;
        double s = 0;
        if (logsm)
            for (int64_t c = 0; c < C; c++) s += dy[base + c * inner];
        else
            for (int64_t c = 0; c < C; c++) s += (double)dy[base + c * inner] * y[base + c * inner];
        float sf = (float)s;
        for (int64_t c = 0; c < C; c++) {
            int64_t j = base + c * inner;
            dx[j] = logsm ? dy[j] - expf(y[j]) * sf : y[j] * (dy[j] - sf);
        }
    }
}

static at_status smgrad_common(at_kernel_ctx *k, bool logsm) {
    sm_dims d = {}; /* set by sm_dims_of; -O3 cannot tell */
    AT_CU_TRY(sm_dims_of(k, &k->in[1].shape, &d));
    if (d.outer * d.C * d.inner == 0) return AT_OK;
    const float *dy = (const float *)k->in[0].data, *y = (const float *)k->in[1].data;
    float *dx = (float *)k->out[0].data;
    if (d.inner == 1) {
        smgrad_rows_kernel<<<warp_grid(k, d.outer), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
            dy, y, dx, d.outer, d.C, logsm);
        AT_CU_LAUNCHED(k, "smgrad_rows_kernel");
    } else {
        smgrad_cols_kernel<<<at_cu_grid(k, d.outer * d.inner), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
            dy, y, dx, d.outer, d.C, d.inner, logsm);
        AT_CU_LAUNCHED(k, "smgrad_cols_kernel");
    }
    return AT_OK;
}

static at_status softmax_grad_cuda(at_kernel_ctx *k) {
    return smgrad_common(k, false);
}
static at_status log_softmax_grad_cuda(at_kernel_ctx *k) {
    return smgrad_common(k, true);
}

void at_cuda_register_softmax(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, Softmax, softmax_cuda, NULL);
    AT_CUDA_REG(t, LogSoftmax, log_softmax_cuda, NULL);
    AT_CUDA_REG(t, SoftmaxGrad, softmax_grad_cuda, NULL);
    AT_CUDA_REG(t, LogSoftmaxGrad, log_softmax_grad_cuda, NULL);
}
