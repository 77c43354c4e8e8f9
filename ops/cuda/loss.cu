/* CUDA kernels of SoftmaxCrossEntropyLoss and its fused backward op (ops/loss.c).
 *
 * scores [N, C, D...] are seen as [N, C, S]; a warp takes one position (n, s) and sweeps its C
 * class scores (stride S). Per-position losses and weights go to the workspace in double and a
 * single block adds them in a fixed tree, so the reduction is the same on every run. Labels the
 * host knows (fed) are checked there first, naming the first bad one as the CPU does; others
 * are checked on the device (recorded for the session, never read out of bounds). */
#include <math.h>
#include <string.h>

#include "runtime/cuda/cuda_common.cuh"

enum { RED_NONE, RED_SUM, RED_MEAN };

static int reduction_of(const at_node_rec *n) {
    const char *r = at_attr_str(n, "reduction", "mean");
    if (strcmp(r, "none") == 0) return RED_NONE;
    if (strcmp(r, "sum") == 0) return RED_SUM;
    if (strcmp(r, "mean") == 0) return RED_MEAN;
    return -1;
}

struct ce_args {
    int64_t N, C, S, P;
    const float *x;
    const void *labels;
    bool lab64;
    const float *w;
    bool has_ignore;
    long long ignore;
    at_cuda_errword *derr;
    int node;
};

__device__ inline long long ce_label(const ce_args &a, int64_t pos) {
    return a.lab64 ? (long long)((const int64_t *)a.labels)[pos]
                   : (long long)((const int32_t *)a.labels)[pos];
}

/* The label at pos, or -1 when ignored or bad (bad ones recorded). */
__device__ inline long long ce_checked_label(const ce_args &a, int64_t pos, bool report) {
    long long lab = ce_label(a, pos);
    if (a.has_ignore && lab == a.ignore) return -1;
    if (lab < 0 || lab >= a.C) {
        if (report) at_dev_fail(a.derr, a.node, AT_DERR_LABEL, lab, pos, a.C, 0);
        return -1;
    }
    return lab;
}

static at_status ce_setup(at_kernel_ctx *k, int xi, int li, int wi, ce_args *c) {
    const at_tensor *x = &k->in[xi], *l = &k->in[li];
    c->N = x->shape.dim[0];
    c->C = x->shape.dim[1];
    c->S = at_dims_prod(&x->shape, 2, x->shape.rank);
    c->P = c->N * c->S;
    c->x = (const float *)x->data;
    c->labels = l->data;
    c->lab64 = l->dtype == AT_I64;
    c->w = k->n_in > wi && k->in[wi].data ? (const float *)k->in[wi].data : NULL;
    const at_attr_rec *ig = at_attr_find(k->node, "ignore_index");
    c->has_ignore = ig != NULL;
    c->ignore = ig ? (long long)ig->i : 0;
    c->derr = at_cu(k)->derr;
    c->node = k->node_id;
    const void *h = at_cu_host_peek(k, li);
    if (h) {
        for (int64_t p = 0; p < c->P; p++) {
            int64_t lab = c->lab64 ? ((const int64_t *)h)[p] : ((const int32_t *)h)[p];
            if (c->has_ignore && lab == c->ignore) continue;
            if (lab < 0 || lab >= c->C)
                return at_kernel_fail(k, AT_E_INVALID,
                                      "label %lld at position %lld out of range [0, %lld)",
                                      (long long)lab, (long long)p, (long long)c->C);
        }
    }
    return AT_OK;
}

#define WARP_LOOP(p, n)                                                                            \
    for (int64_t p = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); p < (n);        \
         p += (int64_t)gridDim.x * (blockDim.x >> 5))

/* Max and log-sum-exp offset of one position's class scores, by the whole warp. */
__device__ inline void warp_lse(const float *x, int64_t C, int64_t S, float *m_out, float *ls_out) {
    int lane = threadIdx.x & 31;
    float m = -INFINITY;
    for (int64_t c = lane; c < C; c += 32) m = fmaxf(m, x[c * S]);
    m = at_warp_max(m);
    double s = 0;
    for (int64_t c = lane; c < C; c += 32) s += expf(x[c * S] - m);
    s = at_warp_sum(s);
    *m_out = m;
    *ls_out = (float)log(s);
}

/* ---- forward ---- */

__global__ void ce_fwd_kernel(ce_args a, float *lp, double *li, double *wi) {
    int lane = threadIdx.x & 31;
    WARP_LOOP(pos, a.P) {
        int64_t n = pos / a.S, s = pos % a.S;
        const float *x = a.x + n * a.C * a.S + s;
        float m, ls;
        warp_lse(x, a.C, a.S, &m, &ls);
        if (lp) {
            float *o = lp + n * a.C * a.S + s;
            for (int64_t c = lane; c < a.C; c += 32) o[c * a.S] = (x[c * a.S] - m) - ls;
        }
        if (lane == 0) {
            long long lab = ce_checked_label(a, pos, true);
            if (lab < 0) {
                li[pos] = wi[pos] = 0;
            } else {
                double wt = a.w ? a.w[lab] : 1.0;
                li[pos] = -wt * (double)((x[lab * a.S] - m) - ls);
                wi[pos] = wt;
            }
        }
    }
}

#define SUM_THREADS 1024

/* out[0] from the per-position losses: one block, a fixed tree. */
__global__ void ce_total_kernel(const double *li, const double *wi, int64_t P, int red,
                                float *out) {
    __shared__ double sl[SUM_THREADS], sw[SUM_THREADS];
    double a = 0, b = 0;
    for (int64_t p = threadIdx.x; p < P; p += SUM_THREADS) a += li[p], b += wi[p];
    sl[threadIdx.x] = a;
    sw[threadIdx.x] = b;
    __syncthreads();
    for (int s = SUM_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            sl[threadIdx.x] += sl[threadIdx.x + s];
            sw[threadIdx.x] += sw[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0)
        out[0] = (float)(red == RED_SUM ? sl[0] : (sw[0] != 0 ? sl[0] / sw[0] : 0.0));
}

__global__ void ce_none_kernel(const double *li, float *out, int64_t P) {
    AT_GRID_LOOP(p, P) out[p] = (float)li[p];
}

static size_t ce_ws(const at_kernel_ctx *k) {
    const at_shape *x = &k->in[0].shape;
    int64_t P = x->dim[0] * at_dims_prod(x, 2, x->rank);
    return (size_t)(P > 0 ? P : 1) * 2u * sizeof(double);
}

static at_status ce_cuda(at_kernel_ctx *k) {
    int red = reduction_of(k->node);
    if (red < 0) return at_kernel_fail(k, AT_E_INVALID, "bad reduction");
    ce_args a;
    AT_CU_TRY(ce_setup(k, 0, 1, 2, &a));
    size_t need = (size_t)(a.P > 0 ? a.P : 1) * 2u * sizeof(double);
    if (!k->ws || k->ws_size < need)
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", need);
    double *li = (double *)k->ws, *wi = li + a.P;
    float *lp = k->n_out > 1 ? (float *)k->out[1].data : NULL;
    float *out = (float *)k->out[0].data;
    cudaStream_t s = at_cu_stream(k);
    if (a.P > 0) {
        ce_fwd_kernel<<<at_cu_grid(k, a.P * 32), AT_CU_THREADS, 0, s>>>(a, lp, li, wi);
        AT_CU_LAUNCHED(k, "ce_fwd_kernel");
    }
    if (red == RED_NONE) {
        if (a.P > 0) {
            ce_none_kernel<<<at_cu_grid(k, a.P), AT_CU_THREADS, 0, s>>>(li, out, a.P);
            AT_CU_LAUNCHED(k, "ce_none_kernel");
        }
        return AT_OK;
    }
    ce_total_kernel<<<1, SUM_THREADS, 0, s>>>(li, wi, a.P, red, out);
    AT_CU_LAUNCHED(k, "ce_total_kernel");
    return AT_OK;
}

/* ---- backward ---- */

/* scale = 1 / (sum of weights of non-ignored positions), 0 when none (mean), else 1. */
__global__ void ce_scale_kernel(ce_args a, int red, double *scale) {
    __shared__ double sw[SUM_THREADS];
    double b = 0;
    if (red == RED_MEAN)
        for (int64_t p = threadIdx.x; p < a.P; p += SUM_THREADS) {
            long long lab = ce_checked_label(a, p, false);
            if (lab >= 0) b += a.w ? a.w[lab] : 1.0;
        }
    sw[threadIdx.x] = b;
    __syncthreads();
    for (int s = SUM_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sw[threadIdx.x] += sw[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) scale[0] = red != RED_MEAN ? 1.0 : (sw[0] != 0 ? 1.0 / sw[0] : 0.0);
}

__global__ void ce_grad_kernel(ce_args a, const float *dl, int red, bool is_lp, const double *scale,
                               float *dx) {
    int lane = threadIdx.x & 31;
    WARP_LOOP(pos, a.P) {
        int64_t n = pos / a.S, s = pos % a.S;
        const float *x = a.x + n * a.C * a.S + s;
        float *d = dx + n * a.C * a.S + s;
        float m = 0, ls = 0;
        if (!is_lp) warp_lse(x, a.C, a.S, &m, &ls);
        long long lab = ce_checked_label(a, pos, lane == 0);
        float coef = 0;
        if (lab >= 0) {
            double g = red == RED_NONE ? dl[pos] : dl[0];
            coef = (float)(g * (a.w ? a.w[lab] : 1.0) * scale[0]);
        }
        for (int64_t c = lane; c < a.C; c += 32) {
            float p = expf((x[c * a.S] - m) - ls);
            d[c * a.S] = coef * (p - (c == lab ? 1.0f : 0.0f));
        }
    }
}

static size_t ce_grad_ws(const at_kernel_ctx *k) {
    (void)k;
    return sizeof(double);
}

static at_status ce_grad_cuda(at_kernel_ctx *k) {
    int red = reduction_of(k->node);
    if (red < 0) return at_kernel_fail(k, AT_E_INVALID, "bad reduction");
    ce_args a;
    AT_CU_TRY(ce_setup(k, 1, 2, 3, &a));
    if (!k->ws || k->ws_size < sizeof(double))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", sizeof(double));
    bool is_lp = at_attr_int(k->node, "input_is_log_prob", 1) != 0;
    double *scale = (double *)k->ws;
    cudaStream_t s = at_cu_stream(k);
    ce_scale_kernel<<<1, SUM_THREADS, 0, s>>>(a, red, scale);
    AT_CU_LAUNCHED(k, "ce_scale_kernel");
    if (a.P == 0) return AT_OK;
    ce_grad_kernel<<<at_cu_grid(k, a.P * 32), AT_CU_THREADS, 0, s>>>(
        a, (const float *)k->in[0].data, red, is_lp, scale, (float *)k->out[0].data);
    AT_CU_LAUNCHED(k, "ce_grad_kernel");
    return AT_OK;
}

void at_cuda_register_loss(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, SoftmaxCrossEntropyLoss, ce_cuda, ce_ws);
    AT_CUDA_REG(t, SoftmaxCrossEntropyLossGrad, ce_grad_cuda, ce_grad_ws);
}
