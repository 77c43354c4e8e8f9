/* CUDA kernels of the elementwise family (ops/elementwise.c): broadcasting binary arithmetic,
 * Equal, Where, unary math and activations, Cast, Clip, the identity-like ops, the activation
 * backward ops and SumToShape. Same formulas as the CPU kernels, element by element; CUDA's
 * expf / tanhf / erff may differ from glibc's by an ulp or two. */
#include <math.h>
#include <string.h>

#include "runtime/cuda/cuda_common.cuh"

/* ---- broadcasting ---- */

/* Strides of up to three operands aligned to the output's dims, 0 along broadcast dims. */
struct bcast3 {
    int rank;
    int64_t dim[AT_MAX_RANK];
    int64_t st[3][AT_MAX_RANK];
};

static void bcast_strides(const at_shape *in, const at_shape *out, int64_t *st) {
    int r = out->rank, off = r - in->rank;
    int64_t s = 1;
    for (int i = r - 1; i >= 0; i--) {
        int k = i - off;
        st[i] = (k < 0 || in->dim[k] == 1) ? 0 : s;
        if (k >= 0) s *= in->dim[k];
    }
}

static bcast3 make_bcast(const at_shape *out, const at_shape *a, const at_shape *b,
                         const at_shape *c) {
    bcast3 p;
    memset(&p, 0, sizeof p);
    p.rank = out->rank;
    for (int i = 0; i < out->rank; i++) p.dim[i] = out->dim[i];
    bcast_strides(a, out, p.st[0]);
    if (b) bcast_strides(b, out, p.st[1]);
    if (c) bcast_strides(c, out, p.st[2]);
    return p;
}

__device__ inline void bcast_offsets(const bcast3 &p, int64_t i, int64_t *o0, int64_t *o1,
                                     int64_t *o2) {
    int64_t a = 0, b = 0, c = 0;
    for (int d = p.rank - 1; d >= 0; d--) {
        int64_t n = p.dim[d], x = i % n;
        i /= n;
        a += x * p.st[0][d];
        b += x * p.st[1][d];
        c += x * p.st[2][d];
    }
    *o0 = a;
    *o1 = b;
    *o2 = c;
}

enum { BC_SAME = 0, BC_SCALAR_B = 1, BC_GENERAL = 2 };

template <typename T, typename TO, typename Op>
__global__ void binary_kernel(const T *A, const T *B, TO *Y, int64_t n, int mode, bcast3 p, Op op) {
    AT_GRID_LOOP(i, n) {
        T a, b;
        if (mode == BC_SAME) {
            a = A[i];
            b = B[i];
        } else if (mode == BC_SCALAR_B) {
            a = A[i];
            b = B[0];
        } else {
            int64_t oa, ob, oc;
            bcast_offsets(p, i, &oa, &ob, &oc);
            a = A[oa];
            b = B[ob];
        }
        Y[i] = op(a, b);
    }
}

template <typename T, typename TO, typename Op>
static at_status launch_binary(at_kernel_ctx *k, Op op, const char *name) {
    const at_shape *os = &k->out[0].shape;
    int64_t n = at_shape_numel(os);
    if (n <= 0) return AT_OK;
    int64_t na = at_shape_numel(&k->in[0].shape), nb = at_shape_numel(&k->in[1].shape);
    int mode = (na == n && nb == n) ? BC_SAME : (nb == 1 && na == n) ? BC_SCALAR_B : BC_GENERAL;
    bcast3 p = make_bcast(os, &k->in[0].shape, &k->in[1].shape, NULL);
    binary_kernel<T, TO, Op><<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const T *)k->in[0].data, (const T *)k->in[1].data, (TO *)k->out[0].data, n, mode, p, op);
    AT_CU_LAUNCHED(k, name);
    return AT_OK;
}

struct add_op {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct sub_op {
    template <typename T> __device__ T operator()(T a, T b) const { return a - b; }
};
struct mul_op {
    template <typename T> __device__ T operator()(T a, T b) const { return a * b; }
};
struct div_op {
    __device__ float operator()(float a, float b) const { return a / b; }
    __device__ int64_t operator()(int64_t a, int64_t b) const { return b ? a / b : 0; }
    __device__ int32_t operator()(int32_t a, int32_t b) const { return b ? a / b : 0; }
};
struct pow_op {
    __device__ float operator()(float a, float b) const { return powf(a, b); }
};
struct eq_op {
    template <typename T> __device__ uint8_t operator()(T a, T b) const { return a == b; }
};

template <typename Op> static at_status numeric_binary(at_kernel_ctx *k, const char *name) {
    switch (k->in[0].dtype) {
    case AT_F32:
        return launch_binary<float, float>(k, Op(), name);
    case AT_I64:
        return launch_binary<int64_t, int64_t>(k, Op(), name);
    case AT_I32:
        return launch_binary<int32_t, int32_t>(k, Op(), name);
    default:
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype not supported");
    }
}

static at_status add_cuda(at_kernel_ctx *k) {
    return numeric_binary<add_op>(k, "add");
}
static at_status sub_cuda(at_kernel_ctx *k) {
    return numeric_binary<sub_op>(k, "sub");
}
static at_status mul_cuda(at_kernel_ctx *k) {
    return numeric_binary<mul_op>(k, "mul");
}
static at_status div_cuda(at_kernel_ctx *k) {
    return numeric_binary<div_op>(k, "div");
}
static at_status pow_cuda(at_kernel_ctx *k) {
    return launch_binary<float, float>(k, pow_op(), "pow");
}

static at_status equal_cuda(at_kernel_ctx *k) {
    switch (k->in[0].dtype) {
    case AT_F32:
        return launch_binary<float, uint8_t>(k, eq_op(), "equal");
    case AT_I64:
        return launch_binary<int64_t, uint8_t>(k, eq_op(), "equal");
    case AT_I32:
        return launch_binary<int32_t, uint8_t>(k, eq_op(), "equal");
    case AT_BOOL:
    case AT_U8:
        return launch_binary<uint8_t, uint8_t>(k, eq_op(), "equal");
    default:
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype not supported");
    }
}

/* ---- Where: elements moved as unsigned words of the dtype's size ---- */

template <typename W>
__global__ void where_kernel(const uint8_t *C, const W *A, const W *B, W *Y, int64_t n, bcast3 p) {
    AT_GRID_LOOP(i, n) {
        int64_t oc, oa, ob;
        bcast_offsets(p, i, &oc, &oa, &ob);
        Y[i] = C[oc] ? A[oa] : B[ob];
    }
}

template <typename W> static at_status launch_where(at_kernel_ctx *k, int64_t n, const bcast3 &p) {
    where_kernel<W><<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const uint8_t *)k->in[0].data, (const W *)k->in[1].data, (const W *)k->in[2].data,
        (W *)k->out[0].data, n, p);
    AT_CU_LAUNCHED(k, "where_kernel");
    return AT_OK;
}

static at_status where_cuda(at_kernel_ctx *k) {
    const at_shape *os = &k->out[0].shape;
    int64_t n = at_shape_numel(os);
    if (n <= 0) return AT_OK;
    bcast3 p = make_bcast(os, &k->in[0].shape, &k->in[1].shape, &k->in[2].shape);
    switch (at_dtype_size(k->out[0].dtype)) {
    case 1:
        return launch_where<uint8_t>(k, n, p);
    case 2:
        return launch_where<uint16_t>(k, n, p);
    case 4:
        return launch_where<uint32_t>(k, n, p);
    case 8:
        return launch_where<unsigned long long>(k, n, p);
    default:
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype not supported");
    }
}

/* ---- unary float32 ops ---- */

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */

__device__ inline float gelu_f(float x, bool approx) {
    if (approx) return 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}
__device__ inline float sigmoid_f(float x) {
    return x >= 0 ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
}
__device__ inline float gelu_grad_f(float x, bool approx) {
    if (approx) {
        float u = GELU_K * (x + 0.044715f * x * x * x), t = tanhf(u);
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

enum un_kind {
    UN_RELU,
    UN_LEAKY,
    UN_GELU,
    UN_TANH,
    UN_SIGMOID,
    UN_EXP,
    UN_LOG,
    UN_SQRT,
};

template <int KIND>
__global__ void unary_f32_kernel(const float *X, float *Y, int64_t n, float alpha, bool approx) {
    AT_GRID_LOOP(i, n) {
        float x = X[i], y;
        switch (KIND) {
        case UN_RELU:
            y = x > 0 ? x : 0.0f;
            break;
        case UN_LEAKY:
            y = x >= 0 ? x : alpha * x;
            break;
        case UN_GELU:
            y = gelu_f(x, approx);
            break;
        case UN_TANH:
            y = tanhf(x);
            break;
        case UN_SIGMOID:
            y = sigmoid_f(x);
            break;
        case UN_EXP:
            y = expf(x);
            break;
        case UN_LOG:
            y = logf(x);
            break;
        default:
            y = sqrtf(x);
            break;
        }
        Y[i] = y;
    }
}

template <int KIND> static at_status unary_f32(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->out[0].shape);
    if (n <= 0) return AT_OK;
    float alpha = at_attr_float(k->node, "alpha", 0.01f);
    bool approx = strcmp(at_attr_str(k->node, "approximate", "none"), "tanh") == 0;
    unary_f32_kernel<KIND><<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const float *)k->in[0].data, (float *)k->out[0].data, n, alpha, approx);
    AT_CU_LAUNCHED(k, "unary_f32_kernel");
    return AT_OK;
}

/* ---- unary numeric ops (float32, int64, int32) ---- */

enum { NUM_NEG, NUM_ABS, NUM_SIGN };

template <typename T, int KIND> __global__ void unary_num_kernel(const T *X, T *Y, int64_t n) {
    AT_GRID_LOOP(i, n) {
        T x = X[i];
        if (KIND == NUM_NEG)
            Y[i] = -x;
        else if (KIND == NUM_ABS)
            Y[i] = x < 0 ? -x : x;
        else
            Y[i] = (T)((x > 0) - (x < 0));
    }
}

template <typename T, int KIND> static at_status launch_num(at_kernel_ctx *k, int64_t n) {
    unary_num_kernel<T, KIND><<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const T *)k->in[0].data, (T *)k->out[0].data, n);
    AT_CU_LAUNCHED(k, "unary_num_kernel");
    return AT_OK;
}

template <int KIND> static at_status unary_num(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->out[0].shape);
    if (n <= 0) return AT_OK;
    switch (k->in[0].dtype) {
    case AT_F32:
        return launch_num<float, KIND>(k, n);
    case AT_I64:
        return launch_num<int64_t, KIND>(k, n);
    case AT_I32:
        return launch_num<int32_t, KIND>(k, n);
    default:
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype not supported");
    }
}

__global__ void not_kernel(const uint8_t *X, uint8_t *Y, int64_t n) {
    AT_GRID_LOOP(i, n) Y[i] = !X[i];
}

static at_status not_cuda(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->out[0].shape);
    if (n <= 0) return AT_OK;
    not_kernel<<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const uint8_t *)k->in[0].data, (uint8_t *)k->out[0].data, n);
    AT_CU_LAUNCHED(k, "not_kernel");
    return AT_OK;
}

/* Identity, StopGradient, GradientReversal (forward): a device copy unless aliased. */
static at_status copy_cuda(at_kernel_ctx *k) {
    size_t bytes = at_tensor_nbytes(&k->out[0]);
    if (bytes && k->out[0].data != k->in[0].data)
        AT_CU_CHECK(k, cudaMemcpyAsync(k->out[0].data, k->in[0].data, bytes,
                                       cudaMemcpyDeviceToDevice, at_cu_stream(k)));
    return AT_OK;
}

/* ---- Cast: as the CPU, through double except int64 to integer types (kept exact) ---- */

__device__ inline double load_num(const void *p, int t, int64_t i) {
    switch (t) {
    case AT_F32:
        return ((const float *)p)[i];
    case AT_I64:
        return (double)((const int64_t *)p)[i];
    case AT_I32:
        return ((const int32_t *)p)[i];
    default:
        return ((const uint8_t *)p)[i];
    }
}

__global__ void cast_kernel(const void *X, int ti, void *Y, int to, int64_t n) {
    AT_GRID_LOOP(i, n) {
        if (ti == AT_I64 && to != AT_F32) {
            int64_t v = ((const int64_t *)X)[i];
            if (to == AT_I64)
                ((int64_t *)Y)[i] = v;
            else if (to == AT_I32)
                ((int32_t *)Y)[i] = (int32_t)v;
            else
                ((uint8_t *)Y)[i] = to == AT_BOOL ? v != 0 : (uint8_t)v;
            continue;
        }
        double v = load_num(X, ti, i);
        switch (to) {
        case AT_F32:
            ((float *)Y)[i] = (float)v;
            break;
        case AT_I64:
            ((int64_t *)Y)[i] = (int64_t)v;
            break;
        case AT_I32:
            ((int32_t *)Y)[i] = (int32_t)v;
            break;
        case AT_BOOL:
            ((uint8_t *)Y)[i] = v != 0;
            break;
        default:
            ((uint8_t *)Y)[i] = (uint8_t)v;
            break;
        }
    }
}

static at_status cast_cuda(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->out[0].shape);
    if (n <= 0) return AT_OK;
    if (k->in[0].dtype == k->out[0].dtype) return copy_cuda(k);
    cast_kernel<<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        k->in[0].data, (int)k->in[0].dtype, k->out[0].data, (int)k->out[0].dtype, n);
    AT_CU_LAUNCHED(k, "cast_kernel");
    return AT_OK;
}

/* ---- Clip and ClipGrad: min / max are read on the device (no host round trip) ---- */

__global__ void clip_kernel(const float *X, float *Y, int64_t n, const float *lo_p,
                            const float *hi_p) {
    float lo = lo_p ? *lo_p : -INFINITY, hi = hi_p ? *hi_p : INFINITY;
    AT_GRID_LOOP(i, n) {
        float x = X[i];
        Y[i] = x < lo ? lo : (x > hi ? hi : x);
    }
}

__global__ void clip_grad_kernel(const float *D, const float *X, float *Y, int64_t n,
                                 const float *lo_p, const float *hi_p) {
    float lo = lo_p ? *lo_p : -INFINITY, hi = hi_p ? *hi_p : INFINITY;
    AT_GRID_LOOP(i, n) Y[i] = X[i] >= lo && X[i] <= hi ? D[i] : 0.0f;
}

static const float *opt_f32(const at_kernel_ctx *k, int i) {
    return i < k->n_in ? (const float *)k->in[i].data : NULL;
}

static at_status clip_cuda(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->out[0].shape);
    if (n <= 0) return AT_OK;
    clip_kernel<<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const float *)k->in[0].data, (float *)k->out[0].data, n, opt_f32(k, 1), opt_f32(k, 2));
    AT_CU_LAUNCHED(k, "clip_kernel");
    return AT_OK;
}

static at_status clip_grad_cuda(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->out[0].shape);
    if (n <= 0) return AT_OK;
    clip_grad_kernel<<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const float *)k->in[0].data, (const float *)k->in[1].data, (float *)k->out[0].data, n,
        opt_f32(k, 2), opt_f32(k, 3));
    AT_CU_LAUNCHED(k, "clip_grad_kernel");
    return AT_OK;
}

/* ---- activation backward ops: (dy, saved) -> dx ---- */

enum { G_RELU, G_LEAKY, G_GELU, G_TANH, G_SIGMOID };

template <int KIND>
__global__ void act_grad_kernel(const float *D, const float *S, float *Y, int64_t n, float alpha,
                                bool approx) {
    AT_GRID_LOOP(i, n) {
        float d = D[i], s = S[i], y;
        switch (KIND) {
        case G_RELU:
            y = s > 0 ? d : 0.0f;
            break; /* s = y */
        case G_LEAKY:
            y = s >= 0 ? d : d * alpha;
            break; /* s = x */
        case G_GELU:
            y = d * gelu_grad_f(s, approx);
            break; /* s = x */
        case G_TANH:
            y = d * (1.0f - s * s);
            break; /* s = y */
        default:
            y = d * s * (1.0f - s);
            break; /* s = y */
        }
        Y[i] = y;
    }
}

template <int KIND> static at_status act_grad(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->out[0].shape);
    if (n <= 0) return AT_OK;
    float alpha = at_attr_float(k->node, "alpha", 0.01f);
    bool approx = strcmp(at_attr_str(k->node, "approximate", "none"), "tanh") == 0;
    act_grad_kernel<KIND><<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const float *)k->in[0].data, (const float *)k->in[1].data, (float *)k->out[0].data, n,
        alpha, approx);
    AT_CU_LAUNCHED(k, "act_grad_kernel");
    return AT_OK;
}

/* ---- SumToShape(x, ref) ---- */

/* The dims of x summed to reach out's shape (out aligned to x's rank from the right). */
static uint32_t sum_to_mask(const at_shape *xs, const at_shape *os) {
    int lead = xs->rank - os->rank;
    uint32_t mask = 0;
    for (int i = 0; i < xs->rank; i++) {
        int64_t d = i < lead ? 1 : os->dim[i - lead];
        if (d == 1 && xs->dim[i] != 1) mask |= 1u << i;
    }
    return mask;
}

static size_t sum_to_ws(const at_kernel_ctx *k) {
    return at_cu_reduce_sum_ws(&k->in[0].shape, sum_to_mask(&k->in[0].shape, &k->out[0].shape));
}

static at_status sum_to_cuda(at_kernel_ctx *k) {
    const at_shape *xs = &k->in[0].shape, *os = &k->out[0].shape;
    int64_t nx = at_shape_numel(xs), ny = at_shape_numel(os);
    if (ny <= 0) return AT_OK;
    if (nx == ny) return copy_cuda(k);
    return at_cu_reduce_sum_f32(k, (const float *)k->in[0].data, xs, sum_to_mask(xs, os), 1.0,
                                (float *)k->out[0].data, k->ws, k->ws_size);
}

/* ---- registration ---- */

void at_cuda_register_elementwise(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, Add, add_cuda, NULL);
    AT_CUDA_REG(t, Sub, sub_cuda, NULL);
    AT_CUDA_REG(t, Mul, mul_cuda, NULL);
    AT_CUDA_REG(t, Div, div_cuda, NULL);
    AT_CUDA_REG(t, Pow, pow_cuda, NULL);
    AT_CUDA_REG(t, Equal, equal_cuda, NULL);
    AT_CUDA_REG(t, Where, where_cuda, NULL);
    AT_CUDA_REG(t, Neg, unary_num<NUM_NEG>, NULL);
    AT_CUDA_REG(t, Abs, unary_num<NUM_ABS>, NULL);
    AT_CUDA_REG(t, Sign, unary_num<NUM_SIGN>, NULL);
    AT_CUDA_REG(t, Relu, unary_f32<UN_RELU>, NULL);
    AT_CUDA_REG(t, LeakyRelu, unary_f32<UN_LEAKY>, NULL);
    AT_CUDA_REG(t, Gelu, unary_f32<UN_GELU>, NULL);
    AT_CUDA_REG(t, Tanh, unary_f32<UN_TANH>, NULL);
    AT_CUDA_REG(t, Sigmoid, unary_f32<UN_SIGMOID>, NULL);
    AT_CUDA_REG(t, Exp, unary_f32<UN_EXP>, NULL);
    AT_CUDA_REG(t, Log, unary_f32<UN_LOG>, NULL);
    AT_CUDA_REG(t, Sqrt, unary_f32<UN_SQRT>, NULL);
    AT_CUDA_REG(t, Not, not_cuda, NULL);
    AT_CUDA_REG(t, Identity, copy_cuda, NULL);
    AT_CUDA_REG(t, Cast, cast_cuda, NULL);
    AT_CUDA_REG(t, Clip, clip_cuda, NULL);
    AT_CUDA_REG(t, StopGradient, copy_cuda, NULL);
    AT_CUDA_REG(t, GradientReversal, copy_cuda, NULL);
    AT_CUDA_REG(t, SumToShape, sum_to_cuda, sum_to_ws);
    AT_CUDA_REG(t, ReluGrad, act_grad<G_RELU>, NULL);
    AT_CUDA_REG(t, LeakyReluGrad, act_grad<G_LEAKY>, NULL);
    AT_CUDA_REG(t, GeluGrad, act_grad<G_GELU>, NULL);
    AT_CUDA_REG(t, TanhGrad, act_grad<G_TANH>, NULL);
    AT_CUDA_REG(t, SigmoidGrad, act_grad<G_SIGMOID>, NULL);
    AT_CUDA_REG(t, ClipGrad, clip_grad_cuda, NULL);
}
