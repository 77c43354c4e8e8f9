/* CUDA kernels of the reduce family (ops/reduce.c): ReduceSum / ReduceMean / ReduceMax and their
 * backward ops, plus the float sum that SumToShape shares.
 *
 * The input is seen as kept and reduced groups of merged dims (as the CPU's rplan). Two ways to
 * walk it, both with a summation order fixed by the shapes alone, so results are the same on
 * every run:
 *   - the innermost (unit-stride) group is reduced: a warp (or, for few outputs, a block) per
 *     output strides over the reduced elements, and combines its lanes in a fixed tree;
 *   - otherwise: a thread per output walks a chunk of the reduced elements, neighbouring threads
 *     reading neighbouring addresses; with few outputs the reduced range is cut into chunks
 *     whose partial results go to the workspace and are added in chunk order by a second pass.
 * Sums accumulate in double, as the CPU does. */
#include <math.h>
#include <string.h>

#include "runtime/cuda/cuda_common.cuh"

/* ---- traversal plan ---- */

struct rplan {
    int nk, nr;
    int64_t ksz[AT_MAX_RANK], kst[AT_MAX_RANK];
    int64_t rsz[AT_MAX_RANK], rst[AT_MAX_RANK];
    int64_t n_out, n_red;
};

static void rplan_make(const at_shape *s, uint32_t mask, rplan *p) {
    int64_t gsz[AT_MAX_RANK], gst[AT_MAX_RANK];
    int gred[AT_MAX_RANK], ng = 0;
    for (int d = 0; d < s->rank; d++) {
        if (s->dim[d] == 1) continue;
        int r = (mask >> d) & 1u;
        if (ng && gred[ng - 1] == r) {
            gsz[ng - 1] *= s->dim[d];
        } else {
            gsz[ng] = s->dim[d];
            gred[ng++] = r;
        }
    }
    int64_t st = 1;
    for (int i = ng - 1; i >= 0; i--) {
        gst[i] = st;
        st *= gsz[i];
    }
    memset(p, 0, sizeof *p);
    p->n_out = 1;
    p->n_red = 1;
    for (int i = 0; i < ng; i++) {
        if (gred[i]) {
            p->rsz[p->nr] = gsz[i];
            p->rst[p->nr++] = gst[i];
            p->n_red *= gsz[i];
        } else {
            p->ksz[p->nk] = gsz[i];
            p->kst[p->nk++] = gst[i];
            p->n_out *= gsz[i];
        }
    }
}

/* Whether the unit-stride group is a reduced one. */
static bool inner_reduced(const rplan *p) {
    return p->nr > 0 && p->rst[p->nr - 1] == 1;
}

__device__ inline int64_t kept_offset(const rplan &p, int64_t o) {
    int64_t off = 0;
    for (int i = p.nk - 1; i >= 0; i--) {
        off += (o % p.ksz[i]) * p.kst[i];
        o /= p.ksz[i];
    }
    return off;
}

__device__ inline int64_t red_offset(const rplan &p, int64_t r) {
    int64_t off = 0;
    for (int i = p.nr - 1; i >= 0; i--) {
        off += (r % p.rsz[i]) * p.rst[i];
        r /= p.rsz[i];
    }
    return off;
}

/* ---- accumulators ---- */

enum { RK_SUM, RK_MAX };

/* NaN wins a float max, as in numpy and PyTorch (and the CPU kernel). */
__device__ inline bool max_better(float v, float best) {
    return v > best || (v != v && best == best);
}

template <typename T, int KIND> struct acc;

template <> struct acc<float, RK_SUM> {
    typedef double A;
    __device__ static A init() { return 0.0; }
    __device__ static A add(A a, float x) { return a + (double)x; }
    __device__ static A comb(A a, A b) { return a + b; }
    __device__ static float fin(A a, double scale) { return (float)(a * scale); }
};
template <> struct acc<float, RK_MAX> {
    typedef float A;
    __device__ static A init() { return -INFINITY; }
    __device__ static A add(A a, float x) { return max_better(x, a) ? x : a; }
    __device__ static A comb(A a, A b) { return max_better(b, a) ? b : a; }
    __device__ static float fin(A a, double) { return a; }
};
template <> struct acc<int64_t, RK_SUM> {
    typedef unsigned long long A; /* wraps on overflow instead of being undefined */
    __device__ static A init() { return 0; }
    __device__ static A add(A a, int64_t x) { return a + (unsigned long long)x; }
    __device__ static A comb(A a, A b) { return a + b; }
    __device__ static int64_t fin(A a, double) { return (int64_t)a; }
};
template <> struct acc<int64_t, RK_MAX> {
    typedef long long A; /* ONNX: the type's minimum for an empty set */
    __device__ static A init() { return (long long)(-9223372036854775807LL - 1); }
    __device__ static A add(A a, int64_t x) { return (long long)x > a ? (long long)x : a; }
    __device__ static A comb(A a, A b) { return b > a ? b : a; }
    __device__ static int64_t fin(A a, double) { return (int64_t)a; }
};

template <typename A> __device__ inline A shfl_xor(A v, int o) {
    return __shfl_xor_sync(0xffffffffu, v, o);
}

/* ---- innermost group reduced: a warp or a block per output ---- */

template <typename T, int KIND>
__global__ void reduce_warp_kernel(const T *x, T *y, rplan p, double scale) {
    typedef acc<T, KIND> AC;
    int lane = threadIdx.x & 31;
    int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t o = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); o < p.n_out;
         o += warps) {
        int64_t base = kept_offset(p, o);
        typename AC::A a = AC::init();
        for (int64_t r = lane; r < p.n_red; r += 32) a = AC::add(a, x[base + red_offset(p, r)]);
        for (int s = 16; s > 0; s >>= 1) a = AC::comb(a, shfl_xor(a, s));
        if (lane == 0) y[o] = AC::fin(a, scale);
    }
}

#define RB_THREADS 256

template <typename T, int KIND>
__global__ void reduce_block_kernel(const T *x, T *y, rplan p, double scale) {
    typedef acc<T, KIND> AC;
    __shared__ typename AC::A part[RB_THREADS];
    for (int64_t o = blockIdx.x; o < p.n_out; o += gridDim.x) {
        int64_t base = kept_offset(p, o);
        typename AC::A a = AC::init();
        for (int64_t r = threadIdx.x; r < p.n_red; r += RB_THREADS)
            a = AC::add(a, x[base + red_offset(p, r)]);
        part[threadIdx.x] = a;
        __syncthreads();
        for (int s = RB_THREADS / 2; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s)
                part[threadIdx.x] = AC::comb(part[threadIdx.x], part[threadIdx.x + s]);
            __syncthreads();
        }
        if (threadIdx.x == 0) y[o] = AC::fin(part[0], scale);
        __syncthreads();
    }
}

/* ---- innermost group kept: a thread per (chunk, output) ---- */

/* Chunks of the reduced range: enough (output, chunk) pairs to fill a large GPU, but chunks of
 * at least 32 elements. A function of the shapes alone, like the summation order it sets. */
static int64_t red_chunks(const rplan *p) {
    const int64_t target = 65536;
    if (p->n_out >= target || p->n_red <= 64) return 1;
    int64_t c = (target + p->n_out - 1) / p->n_out, most = (p->n_red + 31) / 32;
    return c < most ? c : most;
}

template <typename T, int KIND>
__global__ void reduce_cols_kernel(const T *x, typename acc<T, KIND>::A *part, T *y, rplan p,
                                   int64_t chunks, double scale) {
    typedef acc<T, KIND> AC;
    int64_t len = (p.n_red + chunks - 1) / chunks;
    AT_GRID_LOOP(t, p.n_out * chunks) {
        int64_t c = t / p.n_out, o = t % p.n_out;
        int64_t base = kept_offset(p, o), r0 = c * len,
                r1 = r0 + len < p.n_red ? r0 + len : p.n_red;
        typename AC::A a = AC::init();
        for (int64_t r = r0; r < r1; r++) a = AC::add(a, x[base + red_offset(p, r)]);
        if (chunks == 1)
            y[o] = AC::fin(a, scale);
        else
            part[c * p.n_out + o] = a;
    }
}

template <typename T, int KIND>
__global__ void reduce_chunks_kernel(const typename acc<T, KIND>::A *part, T *y, int64_t n_out,
                                     int64_t chunks, double scale) {
    typedef acc<T, KIND> AC;
    AT_GRID_LOOP(o, n_out) {
        typename AC::A a = part[o];
        for (int64_t c = 1; c < chunks; c++) a = AC::comb(a, part[c * n_out + o]);
        y[o] = AC::fin(a, scale);
    }
}

template <typename T, int KIND> static size_t reduce_ws_bytes(const rplan *p) {
    if (inner_reduced(p) || p->n_out == 0) return 0;
    int64_t c = red_chunks(p);
    return c > 1 ? (size_t)(c * p->n_out) * sizeof(typename acc<T, KIND>::A) : 0;
}

template <typename T, int KIND>
static at_status reduce_run(at_kernel_ctx *k, const T *x, const rplan *p, double scale, T *y,
                            void *ws, size_t ws_size) {
    typedef typename acc<T, KIND>::A A;
    if (p->n_out == 0) return AT_OK;
    cudaStream_t s = at_cu_stream(k);
    if (inner_reduced(p)) {
        int sms = at_cu(k)->sm_count > 0 ? at_cu(k)->sm_count : 16;
        if (p->n_out >= (int64_t)sms * 16) {
            int64_t blocks = (p->n_out + 7) / 8, cap = (int64_t)sms * 32;
            reduce_warp_kernel<T, KIND>
                <<<(unsigned)(blocks < cap ? blocks : cap), 256, 0, s>>>(x, y, *p, scale);
            AT_CU_LAUNCHED(k, "reduce_warp_kernel");
        } else {
            int64_t blocks = p->n_out < 65535 ? p->n_out : 65535;
            reduce_block_kernel<T, KIND><<<(unsigned)blocks, RB_THREADS, 0, s>>>(x, y, *p, scale);
            AT_CU_LAUNCHED(k, "reduce_block_kernel");
        }
        return AT_OK;
    }
    int64_t chunks = red_chunks(p);
    size_t need = reduce_ws_bytes<T, KIND>(p);
    if (need > ws_size || (need && !ws))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", need);
    reduce_cols_kernel<T, KIND><<<at_cu_grid(k, p->n_out * chunks), AT_CU_THREADS, 0, s>>>(
        x, (A *)ws, y, *p, chunks, scale);
    AT_CU_LAUNCHED(k, "reduce_cols_kernel");
    if (chunks > 1) {
        reduce_chunks_kernel<T, KIND><<<at_cu_grid(k, p->n_out), AT_CU_THREADS, 0, s>>>(
            (const A *)ws, y, p->n_out, chunks, scale);
        AT_CU_LAUNCHED(k, "reduce_chunks_kernel");
    }
    return AT_OK;
}

/* ---- shared with SumToShape ---- */

size_t at_cu_reduce_sum_ws(const at_shape *xs, uint32_t mask) {
    rplan p;
    rplan_make(xs, mask, &p);
    return reduce_ws_bytes<float, RK_SUM>(&p);
}

at_status at_cu_reduce_sum_f32(at_kernel_ctx *k, const float *x, const at_shape *xs, uint32_t mask,
                               double scale, float *y, void *ws, size_t ws_size) {
    rplan p;
    rplan_make(xs, mask, &p);
    return reduce_run<float, RK_SUM>(k, x, &p, scale, y, ws, ws_size);
}

/* ---- axes ---- */

/* As the CPU's kernel_mask: absent or empty axes reduce everything unless noop_with_empty_axes. */
static at_status kernel_mask(at_kernel_ctx *k, int idx, int rank, uint32_t *mask) {
    bool noop = at_attr_int(k->node, "noop_with_empty_axes", 0) != 0;
    bool present = false;
    int64_t n = 0;
    if (k->n_in > idx) {
        const at_tensor *t = &k->in[idx];
        present =
            t->data != NULL || (t->dtype == AT_I64 && t->shape.rank == 1 && t->shape.dim[0] == 0);
        if (present) n = t->shape.rank == 1 ? t->shape.dim[0] : 0;
    }
    *mask = 0;
    if (!present || n == 0) {
        if (!noop) *mask = rank ? (uint32_t)((1u << rank) - 1u) : 0u;
        return AT_OK;
    }
    if (k->in[idx].dtype != AT_I64 || n > AT_MAX_RANK)
        return at_kernel_fail(k, AT_E_INVALID, "axes must be int64 with at most %d entries",
                              AT_MAX_RANK);
    const void *h;
    AT_CU_TRY(at_cu_read_input(k, idx, &h));
    const int64_t *axes = (const int64_t *)h;
    for (int64_t i = 0; i < n; i++) {
        int a = at_norm_axis(axes[i], rank);
        if (a < 0)
            return at_kernel_fail(k, AT_E_INVALID, "axis %lld out of range for rank %d",
                                  (long long)axes[i], rank);
        if (*mask & (1u << a))
            return at_kernel_fail(k, AT_E_INVALID, "axis %lld repeated", (long long)axes[i]);
        *mask |= 1u << a;
    }
    return AT_OK;
}

/* Workspace functions run at plan time, where axes come from the plan's known data only. */
static bool ws_mask(const at_kernel_ctx *k, int idx, int rank, uint32_t *mask) {
    const void *h = k->n_in > idx && k->backend ? at_cu_host_in(k, idx) : NULL;
    bool noop = at_attr_int(k->node, "noop_with_empty_axes", 0) != 0;
    int64_t n = 0;
    bool present = false;
    if (k->n_in > idx && k->in[idx].dtype == AT_I64 && k->in[idx].shape.rank == 1) {
        n = k->in[idx].shape.dim[0];
        present = true;
    }
    *mask = 0;
    if (!present || n == 0) {
        if (!noop) *mask = rank ? (uint32_t)((1u << rank) - 1u) : 0u;
        return true;
    }
    if (!h || n > AT_MAX_RANK) return false;
    for (int64_t i = 0; i < n; i++) {
        int a = at_norm_axis(((const int64_t *)h)[i], rank);
        if (a < 0) return false;
        *mask |= 1u << a;
    }
    return true;
}

/* ---- forward ops ---- */

template <int KIND> static size_t reduce_ws(const at_kernel_ctx *k) {
    const at_tensor *x = &k->in[0];
    uint32_t mask;
    rplan p;
    if (!ws_mask(k, 1, x->shape.rank, &mask)) {
        /* Unknown axes: the most any mask could need. */
        size_t best = 0;
        for (uint32_t m = 0; m < (1u << x->shape.rank); m++) {
            rplan_make(&x->shape, m, &p);
            size_t b = x->dtype == AT_F32 ? reduce_ws_bytes<float, KIND>(&p)
                                          : reduce_ws_bytes<int64_t, KIND>(&p);
            if (b > best) best = b;
        }
        return best;
    }
    rplan_make(&x->shape, mask, &p);
    return x->dtype == AT_F32 ? reduce_ws_bytes<float, KIND>(&p)
                              : reduce_ws_bytes<int64_t, KIND>(&p);
}

template <int KIND> static at_status reduce_cuda_common(at_kernel_ctx *k, bool mean) {
    const at_tensor *x = &k->in[0];
    uint32_t mask;
    AT_CU_TRY(kernel_mask(k, 1, x->shape.rank, &mask));
    rplan p;
    rplan_make(&x->shape, mask, &p);
    if (p.n_out == 0) return AT_OK;
    if (x->dtype == AT_F32)
        return reduce_run<float, KIND>(k, (const float *)x->data, &p,
                                       mean ? 1.0 / (double)p.n_red : 1.0, (float *)k->out[0].data,
                                       k->ws, k->ws_size);
    if (x->dtype == AT_I64 && !mean)
        return reduce_run<int64_t, KIND>(k, (const int64_t *)x->data, &p, 1.0,
                                         (int64_t *)k->out[0].data, k->ws, k->ws_size);
    return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype %s", at_dtype_name(x->dtype));
}

static at_status reduce_sum_cuda(at_kernel_ctx *k) {
    return reduce_cuda_common<RK_SUM>(k, false);
}
static at_status reduce_mean_cuda(at_kernel_ctx *k) {
    return reduce_cuda_common<RK_SUM>(k, true);
}
static at_status reduce_max_cuda(at_kernel_ctx *k) {
    return reduce_cuda_common<RK_MAX>(k, false);
}

/* ---- backward ops ---- */

/* dx = dy broadcast back over the reduced dims, times s: a thread per element of dx. */
__global__ void bcast_grad_kernel(const float *dy, float *dx, int rank, at_shape xs, uint32_t mask,
                                  int64_t n, float s) {
    AT_GRID_LOOP(i, n) {
        int64_t rem = i, o = 0, mul = 1;
        for (int d = rank - 1; d >= 0; d--) {
            int64_t dim = xs.dim[d], idx = rem % dim;
            rem /= dim;
            if (!((mask >> d) & 1u)) {
                o += idx * mul;
                mul *= dim;
            }
        }
        dx[i] = dy[o] * s;
    }
}

static at_status bcast_grad_cuda(at_kernel_ctx *k, bool mean) {
    /* dX has the shape input's dims: read them off the output, no host copy needed. */
    const at_shape *xs = &k->out[0].shape;
    uint32_t mask;
    AT_CU_TRY(kernel_mask(k, 2, xs->rank, &mask));
    rplan p;
    rplan_make(xs, mask, &p);
    int64_t n = at_shape_numel(xs);
    if (p.n_out == 0 || p.n_red == 0 || n == 0) return AT_OK;
    float s = mean ? (float)(1.0 / (double)p.n_red) : 1.0f;
    bcast_grad_kernel<<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const float *)k->in[0].data, (float *)k->out[0].data, xs->rank, *xs, mask, n, s);
    AT_CU_LAUNCHED(k, "bcast_grad_kernel");
    return AT_OK;
}

static at_status reduce_sum_grad_cuda(at_kernel_ctx *k) {
    return bcast_grad_cuda(k, false);
}
static at_status reduce_mean_grad_cuda(at_kernel_ctx *k) {
    return bcast_grad_cuda(k, true);
}

/* dY routed to the first maximum of each reduced set (dx zeroed first): a thread per output,
 * walking its set in order, exactly as the CPU. */
__global__ void max_grad_kernel(const float *dy, const float *x, float *dx, rplan p) {
    AT_GRID_LOOP(o, p.n_out) {
        int64_t base = kept_offset(p, o), best = base;
        float m = x[base];
        for (int64_t r = 1; r < p.n_red; r++) {
            int64_t off = base + red_offset(p, r);
            if (max_better(x[off], m)) m = x[off], best = off;
        }
        dx[best] = dy[o];
    }
}

static at_status reduce_max_grad_cuda(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[1];
    uint32_t mask;
    AT_CU_TRY(kernel_mask(k, 2, x->shape.rank, &mask));
    rplan p;
    rplan_make(&x->shape, mask, &p);
    size_t bytes = at_tensor_nbytes(&k->out[0]);
    if (bytes) AT_CU_CHECK(k, cudaMemsetAsync(k->out[0].data, 0, bytes, at_cu_stream(k)));
    if (p.n_out == 0 || p.n_red == 0) return AT_OK;
    max_grad_kernel<<<at_cu_grid(k, p.n_out), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const float *)k->in[0].data, (const float *)x->data, (float *)k->out[0].data, p);
    AT_CU_LAUNCHED(k, "max_grad_kernel");
    return AT_OK;
}

void at_cuda_register_reduce(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, ReduceSum, reduce_sum_cuda, reduce_ws<RK_SUM>);
    AT_CUDA_REG(t, ReduceMean, reduce_mean_cuda, reduce_ws<RK_SUM>);
    AT_CUDA_REG(t, ReduceMax, reduce_max_cuda, reduce_ws<RK_MAX>);
    AT_CUDA_REG(t, ReduceSumGrad, reduce_sum_grad_cuda, NULL);
    AT_CUDA_REG(t, ReduceMeanGrad, reduce_mean_grad_cuda, NULL);
    AT_CUDA_REG(t, ReduceMaxGrad, reduce_max_grad_cuda, NULL);
}
