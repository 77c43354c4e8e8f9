/* CUDA kernels of the optimizer update ops (ops/optim.c): Increment, SGD, Adam, AdamW and
 * ClipGlobalNorm, in place on the device mirrors of the parameters and state.
 *
 * The learning rate and the step counter stay on the device (the counter is state that
 * Increment advanced there): each block derives the bias corrections from them in double, as the
 * CPU. The per-element updates use round-to-nearest intrinsics (no fused multiply-add), so they
 * round exactly as the CPU's plain float arithmetic does. */
#include <math.h>

#include "runtime/cuda/cuda_common.cuh"

/* A scalar input as the CPU's scalar_f32: int64 converted through float. */
__device__ inline float scalar_f32(const void *p, bool i64) {
    return i64 ? (float)*(const int64_t *)p : *(const float *)p;
}

/* ---- Increment ---- */

__global__ void increment_kernel(const void *x, void *y, int64_t n, bool i64) {
    AT_GRID_LOOP(i, n) {
        if (i64)
            ((int64_t *)y)[i] = ((const int64_t *)x)[i] + 1;
        else
            ((float *)y)[i] = ((const float *)x)[i] + 1.0f;
    }
}

static at_status increment_cuda(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->in[0].shape);
    if (n <= 0) return AT_OK;
    increment_kernel<<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        k->in[0].data, k->out[0].data, n, k->in[0].dtype == AT_I64);
    AT_CU_LAUNCHED(k, "increment_kernel");
    return AT_OK;
}

/* ---- SGD ---- */

__global__ void sgd_kernel(const float *p, const float *gr, const float *lr_p, bool lr_i64,
                           const float *v, float *po, float *vo, int64_t n, float momentum,
                           float wd, bool nesterov) {
    float lr = scalar_f32(lr_p, lr_i64);
    AT_GRID_LOOP(i, n) {
        float pi = p[i], g = gr[i];
        if (wd != 0.0f) g = __fadd_rn(g, __fmul_rn(wd, pi));
        if (v) {
            float b = __fadd_rn(__fmul_rn(momentum, v[i]), g);
            vo[i] = b;
            g = nesterov ? __fadd_rn(g, __fmul_rn(momentum, b)) : b;
        }
        po[i] = __fsub_rn(pi, __fmul_rn(lr, g));
    }
}

static at_status sgd_cuda(at_kernel_ctx *k) {
    const at_node_rec *nd = k->node;
    float momentum = at_attr_float(nd, "momentum", 0.0f);
    float wd = at_attr_float(nd, "weight_decay", 0.0f);
    bool nesterov = at_attr_int(nd, "nesterov", 0) != 0;
    int64_t n = at_shape_numel(&k->in[0].shape);
    if (n <= 0) return AT_OK;
    bool vel = k->n_in > 3 && k->in[3].data && k->n_out > 1;
    sgd_kernel<<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const float *)k->in[0].data, (const float *)k->in[1].data, (const float *)k->in[2].data,
        k->in[2].dtype == AT_I64, vel ? (const float *)k->in[3].data : NULL,
        (float *)k->out[0].data, vel ? (float *)k->out[1].data : NULL, n, momentum, wd, nesterov);
    AT_CU_LAUNCHED(k, "sgd_kernel");
    return AT_OK;
}

/* ---- Adam / AdamW ---- */

struct adam_args {
    const float *p, *g, *m, *v;
    float *po, *mo, *vo;
    const void *t, *lr;
    bool t_i64, lr_i64, decoupled;
    float b1, b2, eps, wd;
    int64_t n;
    at_cuda_errword *derr;
    int node;
};

__global__ void adam_kernel(adam_args a) {
    __shared__ float step_size, bc2_sqrt, decay;
    __shared__ int bad;
    if (threadIdx.x == 0) {
        double t = scalar_f32(a.t, a.t_i64), lr = scalar_f32(a.lr, a.lr_i64);
        bad = !(t >= 1.0);
        if (bad) {
            if (blockIdx.x == 0) {
                long long bits;
                memcpy(&bits, &t, sizeof bits);
                at_dev_fail(a.derr, a.node, AT_DERR_STEP, bits, 0, 0, 0);
            }
        } else {
            step_size = (float)(lr / (1.0 - pow((double)a.b1, t)));
            bc2_sqrt = (float)sqrt(1.0 - pow((double)a.b2, t));
            decay = (float)(1.0 - lr * (double)a.wd);
        }
    }
    __syncthreads();
    if (bad) return;
    float omb1 = 1.0f - a.b1, omb2 = 1.0f - a.b2;
    AT_GRID_LOOP(i, a.n) {
        float pi = a.p[i], g = a.g[i], m = a.m[i], v = a.v[i];
        if (a.decoupled) {
            if (a.wd != 0.0f) pi = __fmul_rn(pi, decay);
        } else if (a.wd != 0.0f) {
            g = __fadd_rn(g, __fmul_rn(a.wd, pi));
        }
        float mi = __fadd_rn(m, __fmul_rn(omb1, __fsub_rn(g, m)));
        float vi = __fadd_rn(__fmul_rn(v, a.b2), __fmul_rn(__fmul_rn(omb2, g), g));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), a.eps);
        a.mo[i] = mi;
        a.vo[i] = vi;
        a.po[i] = __fsub_rn(pi, __fmul_rn(step_size, __fdiv_rn(mi, denom)));
    }
}

static at_status adam_common(at_kernel_ctx *k, bool decoupled, float wd_default) {
    const at_node_rec *nd = k->node;
    adam_args a;
    a.b1 = at_attr_float(nd, "beta1", 0.9f);
    a.b2 = at_attr_float(nd, "beta2", 0.999f);
    a.eps = at_attr_float(nd, "epsilon", 1e-8f);
    a.wd = at_attr_float(nd, "weight_decay", wd_default);
    a.decoupled = decoupled;
    a.n = at_shape_numel(&k->in[0].shape);
    a.p = (const float *)k->in[0].data;
    a.g = (const float *)k->in[1].data;
    a.m = (const float *)k->in[2].data;
    a.v = (const float *)k->in[3].data;
    a.t = k->in[4].data;
    a.t_i64 = k->in[4].dtype == AT_I64;
    a.lr = k->in[5].data;
    a.lr_i64 = k->in[5].dtype == AT_I64;
    a.po = (float *)k->out[0].data;
    a.mo = (float *)k->out[1].data;
    a.vo = (float *)k->out[2].data;
    a.derr = at_cu(k)->derr;
    a.node = k->node_id;
    /* Host-known step counters fail here with the CPU's message, before any launch. */
    const void *ht = at_cu_host_peek(k, 4);
    if (ht) {
        double t = a.t_i64 ? (float)*(const int64_t *)ht : *(const float *)ht;
        if (!(t >= 1.0))
            return at_kernel_fail(
                k, AT_E_INVALID,
                "step t is %g; Adam needs t >= 1 (feed it the incremented counter)", t);
    }
    /* Launched even for n == 0 so a bad step is still recorded, as the CPU reports it. */
    adam_kernel<<<at_cu_grid(k, a.n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(a);
    AT_CU_LAUNCHED(k, "adam_kernel");
    return AT_OK;
}

static at_status adam_cuda(at_kernel_ctx *k) {
    return adam_common(k, false, 0.0f);
}
static at_status adamw_cuda(at_kernel_ctx *k) {
    return adam_common(k, true, 0.01f);
}

/* ---- ClipGlobalNorm ---- */

#define CLIP_CHUNK   4096
#define CLIP_THREADS 256

static int64_t clip_chunks(int64_t numel) {
    return (numel + CLIP_CHUNK - 1) / CLIP_CHUNK;
}

/* Workspace: one double per chunk, then the scale (a float). */
static size_t clip_workspace(const at_kernel_ctx *k) {
    int64_t total = 0;
    for (int i = 0; i < k->n_in; i++) total += clip_chunks(at_shape_numel(&k->in[i].shape));
    return (size_t)(total + 1) * sizeof(double);
}

/* Block c sums the squares of chunk c in a fixed tree. */
__global__ void clip_partial_kernel(const float *x, int64_t numel, double *part) {
    __shared__ double sh[CLIP_THREADS];
    int64_t lo = (int64_t)blockIdx.x * CLIP_CHUNK;
    int64_t hi = lo + CLIP_CHUNK < numel ? lo + CLIP_CHUNK : numel;
    double s = 0;
    for (int64_t e = lo + threadIdx.x; e < hi; e += CLIP_THREADS) s += (double)x[e] * (double)x[e];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = CLIP_THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

/* The chunk sums added in order by one thread, as the CPU; the norm and the scale. */
__global__ void clip_norm_kernel(const double *part, int64_t total, float max_norm, float *norm_out,
                                 float *scale_out) {
    if (threadIdx.x || blockIdx.x) return;
    double sumsq = 0.0;
    for (int64_t c = 0; c < total; c++) sumsq += part[c];
    float norm = (float)sqrt(sumsq);
    float scale = max_norm / (norm + 1e-6f);
    if (scale > 1.0f) scale = 1.0f;
    *norm_out = norm;
    *scale_out = scale;
}

__global__ void clip_scale_kernel(const float *x, float *y, int64_t n, const float *scale) {
    float s = *scale;
    AT_GRID_LOOP(i, n) y[i] = x[i] * s;
}

static at_status clip_cuda(at_kernel_ctx *k) {
    int n = k->n_in;
    size_t need = clip_workspace(k);
    if (!k->ws || k->ws_size < need)
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes, need %zu", k->ws_size,
                              need);
    double *part = (double *)k->ws;
    cudaStream_t s = at_cu_stream(k);
    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel = at_shape_numel(&k->in[i].shape), c = clip_chunks(numel);
        if (c > 0) {
            if (c > 0x7fffffff) return at_kernel_fail(k, AT_E_UNSUPPORTED, "tensor too large");
            clip_partial_kernel<<<(unsigned)c, CLIP_THREADS, 0, s>>>((const float *)k->in[i].data,
                                                                     numel, part + start);
            AT_CU_LAUNCHED(k, "clip_partial_kernel");
        }
        start += c;
    }
    float *scale = (float *)(part + start);
    float max_norm = at_attr_float(k->node, "max_norm", 1.0f);
    clip_norm_kernel<<<1, 32, 0, s>>>(part, start, max_norm, (float *)k->out[n].data, scale);
    AT_CU_LAUNCHED(k, "clip_norm_kernel");
    for (int i = 0; i < n; i++) {
        int64_t numel = at_shape_numel(&k->in[i].shape);
        if (numel <= 0) continue;
        clip_scale_kernel<<<at_cu_grid(k, numel), AT_CU_THREADS, 0, s>>>(
            (const float *)k->in[i].data, (float *)k->out[i].data, numel, scale);
        AT_CU_LAUNCHED(k, "clip_scale_kernel");
    }
    return AT_OK;
}

void at_cuda_register_optim(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, Increment, increment_cuda, NULL);
    AT_CUDA_REG(t, SGD, sgd_cuda, NULL);
    AT_CUDA_REG(t, Adam, adam_cuda, NULL);
    AT_CUDA_REG(t, AdamW, adamw_cuda, NULL);
    AT_CUDA_REG(t, ClipGlobalNorm, clip_cuda, clip_workspace);
}
