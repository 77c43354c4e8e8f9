/* CUDA kernels of Gather and GatherGrad (ops/gather.c).
 *
 * GatherGrad (the embedding gradient) is a scatter-add, made deterministic without float
 * atomics: the indices are sorted stably by destination row (CUB's radix sort of (row, j)
 * pairs), then one thread per (run of equal rows, column) adds its dy rows in ascending j, in
 * float, in the same order as the CPU kernel, so the two agree bit for bit. The sort depends on
 * the indices only and is shared by every outer slice. */
#include <cub/cub.cuh>
#include <string.h>

#include "runtime/cuda/cuda_common.cuh"

static int64_t prod_range(const int64_t *d, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= d[i];
    return p;
}

/* Host-side check of indices the host knows (fed token ids): the CPU's message, first bad one. */
static at_status check_host_indices(at_kernel_ctx *k, int i, int64_t n, int64_t dim, int axis) {
    const void *h = at_cu_host_peek(k, i);
    if (!h) return AT_OK;
    bool i32 = k->in[i].dtype == AT_I32;
    for (int64_t j = 0; j < n; j++) {
        int64_t v = i32 ? ((const int32_t *)h)[j] : ((const int64_t *)h)[j];
        if (v < -dim || v >= dim)
            return at_kernel_fail(
                k, AT_E_INVALID,
                "index %lld (indices element %lld) out of range [-%lld, %lld) for axis %d",
                (long long)v, (long long)j, (long long)dim, (long long)dim, axis);
    }
    return AT_OK;
}

/* Index j normalized to [0, dim), or -1 when out of range (recorded for the session). */
__device__ inline int64_t load_index(const void *idx, bool i32, int64_t j, int64_t dim, int axis,
                                     at_cuda_errword *derr, int node) {
    int64_t v = i32 ? (int64_t)((const int32_t *)idx)[j] : ((const int64_t *)idx)[j];
    if (v < -dim || v >= dim) {
        at_dev_fail(derr, node, AT_DERR_INDEX, v, j, dim, axis);
        return -1;
    }
    return v < 0 ? v + dim : v;
}

/* ---- Gather ---- */

struct gather_args {
    const void *idx;
    bool i32;
    int64_t n, dim, inner, total;
    int axis, node;
    at_cuda_errword *derr;
};

template <typename W> __global__ void gather_kernel(const W *x, W *y, gather_args a) {
    AT_GRID_LOOP(e, a.total) {
        int64_t u = e / a.inner, c = e % a.inner;
        int64_t o = u / a.n, j = u % a.n;
        int64_t v = load_index(a.idx, a.i32, j, a.dim, a.axis, a.derr, a.node);
        y[e] = v < 0 ? (W)0 : x[(o * a.dim + v) * a.inner + c];
    }
}

template <typename W> static at_status launch_gather(at_kernel_ctx *k, const gather_args &a) {
    gather_kernel<W><<<at_cu_grid(k, a.total), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const W *)k->in[0].data, (W *)k->out[0].data, a);
    AT_CU_LAUNCHED(k, "gather_kernel");
    return AT_OK;
}

static at_status gather_cuda(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[0], *idx = &k->in[1];
    int r = x->shape.rank;
    int axis = at_norm_axis(at_attr_int(k->node, "axis", 0), r);
    if (axis < 0) return at_kernel_fail(k, AT_E_SHAPE, "axis out of range");
    gather_args a;
    int64_t outer = prod_range(x->shape.dim, 0, axis);
    a.dim = x->shape.dim[axis];
    a.inner = prod_range(x->shape.dim, axis + 1, r);
    a.n = prod_range(idx->shape.dim, 0, idx->shape.rank);
    a.idx = idx->data;
    a.i32 = idx->dtype == AT_I32;
    a.axis = axis;
    a.node = k->node_id;
    a.derr = at_cu(k)->derr;
    a.total = outer * a.n * a.inner;
    AT_CU_TRY(check_host_indices(k, 1, a.n, a.dim, axis));
    if (a.total <= 0) return AT_OK;
    switch (at_dtype_size(x->dtype)) {
    case 1:
        return launch_gather<uint8_t>(k, a);
    case 2:
        return launch_gather<uint16_t>(k, a);
    case 4:
        return launch_gather<uint32_t>(k, a);
    case 8:
        return launch_gather<unsigned long long>(k, a);
    default:
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype not supported");
    }
}

/* ---- GatherGrad(dy, indices, shape(data)) ---- */

struct gg_dims {
    int axis;
    int64_t outer, dim, inner, n;
    int end_bit; /* key bits: rows are < dim, dim itself marks a bad index */
};

static bool gg_dims_of(const at_kernel_ctx *k, gg_dims *d) {
    const at_shape *xs = &k->out[0].shape;
    int r = xs->rank;
    d->axis = at_norm_axis(at_attr_int(k->node, "axis", 0), r);
    if (d->axis < 0) return false;
    d->outer = prod_range(xs->dim, 0, d->axis);
    d->dim = xs->dim[d->axis];
    d->inner = prod_range(xs->dim, d->axis + 1, r);
    d->n = prod_range(k->in[1].shape.dim, 0, k->in[1].shape.rank);
    d->end_bit = 1;
    while (d->end_bit < 32 && ((uint64_t)1 << d->end_bit) <= (uint64_t)d->dim) d->end_bit++;
    return true;
}

static size_t align256(size_t b) {
    return (b + 255) / 256 * 256;
}

/* CUB's scratch for n pairs; 0 with *ok false when CUB cannot say. */
static size_t sort_temp_bytes(int64_t n, int end_bit, cudaStream_t s, bool *ok) {
    size_t bytes = 0;
    cudaError_t e = cub::DeviceRadixSort::SortPairs((void *)NULL, bytes, (const unsigned *)NULL,
                                                    (unsigned *)NULL, (const unsigned *)NULL,
                                                    (unsigned *)NULL, (int)n, 0, end_bit, s);
    *ok = e == cudaSuccess;
    return bytes;
}

static size_t gather_grad_ws(const at_kernel_ctx *k) {
    gg_dims d;
    if (!gg_dims_of(k, &d) || d.n <= 0 || d.n > INT32_MAX) return 0;
    bool ok;
    size_t temp = sort_temp_bytes(d.n, d.end_bit, k->backend ? at_cu_stream(k) : 0, &ok);
    return 4 * align256((size_t)d.n * sizeof(unsigned)) + align256(temp);
}

__global__ void gg_keys_kernel(const void *idx, bool i32, int64_t n, int64_t dim, int axis,
                               unsigned *keys, unsigned *vals, at_cuda_errword *derr, int node) {
    AT_GRID_LOOP(j, n) {
        int64_t v = load_index(idx, i32, j, dim, axis, derr, node);
        keys[j] = v < 0 ? (unsigned)dim : (unsigned)v;
        vals[j] = (unsigned)j;
    }
}

/* A thread per (outer slice, sorted position i, column c); only the first position of each run
 * of equal rows works: it adds the run's dy rows in ascending j. */
__global__ void gg_accumulate_kernel(const float *dy, float *dx, const unsigned *keys,
                                     const unsigned *vals, int64_t outer, int64_t n, int64_t dim,
                                     int64_t inner) {
    AT_GRID_LOOP(t, outer * n * inner) {
        int64_t c = t % inner, i = (t / inner) % n, o = t / (inner * n);
        unsigned key = keys[i];
        if ((int64_t)key >= dim || (i > 0 && keys[i - 1] == key)) continue;
        float acc = 0.0f;
        for (int64_t q = i; q < n && keys[q] == key; q++) acc += dy[(o * n + vals[q]) * inner + c];
        dx[(o * dim + key) * inner + c] = acc;
    }
}

static at_status gather_grad_cuda(at_kernel_ctx *k) {
    gg_dims d;
    if (!gg_dims_of(k, &d)) return at_kernel_fail(k, AT_E_SHAPE, "axis out of range");
    cudaStream_t s = at_cu_stream(k);
    size_t bytes = at_tensor_nbytes(&k->out[0]);
    if (bytes) AT_CU_CHECK(k, cudaMemsetAsync(k->out[0].data, 0, bytes, s));
    AT_CU_TRY(check_host_indices(k, 1, d.n, d.dim, d.axis));
    if (d.n <= 0 || d.inner <= 0 || d.outer <= 0) return AT_OK;
    if (d.n > INT32_MAX || d.dim >= (int64_t)UINT32_MAX)
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "%lld indices into %lld rows exceed 32 bits",
                              (long long)d.n, (long long)d.dim);
    bool ok;
    size_t temp = sort_temp_bytes(d.n, d.end_bit, s, &ok);
    if (!ok)
        return at_kernel_fail(k, AT_E_DEVICE, "cub::DeviceRadixSort::SortPairs size query failed");
    size_t arr = align256((size_t)d.n * sizeof(unsigned));
    size_t need = 4 * arr + align256(temp);
    if (!k->ws || k->ws_size < need)
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes missing", need);
    char *w = (char *)k->ws;
    unsigned *keys_in = (unsigned *)w, *vals_in = (unsigned *)(w + arr);
    unsigned *keys = (unsigned *)(w + 2 * arr), *vals = (unsigned *)(w + 3 * arr);
    void *tmp = w + 4 * arr;
    const at_tensor *idx = &k->in[1];
    gg_keys_kernel<<<at_cu_grid(k, d.n), AT_CU_THREADS, 0, s>>>(
        idx->data, idx->dtype == AT_I32, d.n, d.dim, d.axis, keys_in, vals_in, at_cu(k)->derr,
        k->node_id);
    AT_CU_LAUNCHED(k, "gg_keys_kernel");
    AT_CU_CHECK(k, cub::DeviceRadixSort::SortPairs(tmp, temp, (const unsigned *)keys_in, keys,
                                                   (const unsigned *)vals_in, vals, (int)d.n, 0,
                                                   d.end_bit, s));
    int64_t total = d.outer * d.n * d.inner;
    gg_accumulate_kernel<<<at_cu_grid(k, total), AT_CU_THREADS, 0, s>>>(
        (const float *)k->in[0].data, (float *)k->out[0].data, keys, vals, d.outer, d.n, d.dim,
        d.inner);
    AT_CU_LAUNCHED(k, "gg_accumulate_kernel");
    return AT_OK;
}

void at_cuda_register_gather(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, Gather, gather_cuda, NULL);
    AT_CUDA_REG(t, GatherGrad, gather_grad_cuda, gather_grad_ws);
}
