/* CUDA kernels of the shape family (ops/shape.c): Shape, Transpose, Reshape, Concat, Split,
 * Slice, SliceGrad, Unsqueeze, Squeeze, Expand, Constant, ConstantOfShape. Everything that
 * moves elements is one strided-copy kernel (dims merged where both sides are contiguous
 * across them), elements moved as unsigned words of the dtype's size. Slice parameters are
 * constants in practice and read from the host's copy. */
#include <string.h>

#include "runtime/cuda/cuda_common.cuh"

/* ---- the strided copy ---- */

struct strided {
    int rank;
    int64_t dim[AT_MAX_RANK];
    int64_t ss[AT_MAX_RANK]; /* source strides (elements; may be 0 or negative) */
    int64_t ds[AT_MAX_RANK]; /* destination strides */
};

template <typename W>
__global__ void strided_copy_kernel(W *dst, const W *src, strided p, int64_t n) {
    AT_GRID_LOOP(i, n) {
        int64_t rem = i, so = 0, dof = 0;
        for (int d = p.rank - 1; d >= 0; d--) {
            int64_t x = rem % p.dim[d];
            rem /= p.dim[d];
            so += x * p.ss[d];
            dof += x * p.ds[d];
        }
        dst[dof] = src[so];
    }
}

/* Drops size-1 dims and merges neighbours that are contiguous on both sides. */
static void strided_simplify(strided *p) {
    int n = 0;
    for (int d = 0; d < p->rank; d++) {
        if (p->dim[d] == 1) continue;
        if (n > 0 && p->ss[n - 1] == p->ss[d] * p->dim[d] && p->ds[n - 1] == p->ds[d] * p->dim[d]) {
            p->dim[n - 1] *= p->dim[d];
            p->ss[n - 1] = p->ss[d];
            p->ds[n - 1] = p->ds[d];
            continue;
        }
        p->dim[n] = p->dim[d];
        p->ss[n] = p->ss[d];
        p->ds[n] = p->ds[d];
        n++;
    }
    p->rank = n;
}

template <typename W>
static at_status launch_strided(at_kernel_ctx *k, void *dst, const void *src, const strided &p,
                                int64_t n) {
    strided_copy_kernel<W>
        <<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>((W *)dst, (const W *)src, p, n);
    AT_CU_LAUNCHED(k, "strided_copy_kernel");
    return AT_OK;
}

/* Copies the rank-`rank` box dims from src (strides ss) to dst (strides ds); es bytes each. */
static at_status strided_copy(at_kernel_ctx *k, void *dst, const void *src, size_t es, int rank,
                              const int64_t *dims, const int64_t *ds, const int64_t *ss) {
    strided p;
    memset(&p, 0, sizeof p);
    p.rank = rank;
    int64_t n = 1;
    for (int d = 0; d < rank; d++) {
        p.dim[d] = dims[d];
        p.ss[d] = ss[d];
        p.ds[d] = ds[d];
        n *= dims[d];
    }
    if (n <= 0) return AT_OK;
    strided_simplify(&p);
    switch (es) {
    case 1:
        return launch_strided<uint8_t>(k, dst, src, p, n);
    case 2:
        return launch_strided<uint16_t>(k, dst, src, p, n);
    case 4:
        return launch_strided<uint32_t>(k, dst, src, p, n);
    case 8:
        return launch_strided<unsigned long long>(k, dst, src, p, n);
    default:
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "element size %zu", es);
    }
}

static void contiguous_strides(int rank, const int64_t *dims, int64_t *st) {
    int64_t s = 1;
    for (int d = rank - 1; d >= 0; d--) {
        st[d] = s;
        s *= dims[d];
    }
}

static int64_t prod_range(const int64_t *d, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= d[i];
    return p;
}

/* ---- copies (Reshape, Unsqueeze, Squeeze) ---- */

static at_status copy_cuda(at_kernel_ctx *k) {
    size_t bytes = at_tensor_nbytes(&k->in[0]);
    if (bytes && k->out[0].data != k->in[0].data)
        AT_CU_CHECK(k, cudaMemcpyAsync(k->out[0].data, k->in[0].data, bytes,
                                       cudaMemcpyDeviceToDevice, at_cu_stream(k)));
    return AT_OK;
}

/* ---- small host-known contents written by a kernel (no pageable copy, no stream stall) ---- */

#define SMALL_BYTES 1024

struct small_blob {
    unsigned char b[SMALL_BYTES];
};

__global__ void write_blob_kernel(unsigned char *dst, small_blob v, int64_t n) {
    AT_GRID_LOOP(i, n) dst[i] = v.b[i];
}

static at_status write_host_bytes(at_kernel_ctx *k, void *dst, const void *src, size_t bytes) {
    if (!bytes) return AT_OK;
    if (bytes <= SMALL_BYTES) {
        small_blob v;
        memcpy(v.b, src, bytes);
        write_blob_kernel<<<1, AT_CU_THREADS, 0, at_cu_stream(k)>>>((unsigned char *)dst, v,
                                                                    (int64_t)bytes);
        AT_CU_LAUNCHED(k, "write_blob_kernel");
        return AT_OK;
    }
    /* Large constants: a copy from the node's own (pageable, persistent) buffer. */
    AT_CU_CHECK(k, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, at_cu_stream(k)));
    return AT_OK;
}

/* ---- Shape ---- */

static at_status shape_cuda(at_kernel_ctx *k) {
    int rank = k->in[0].shape.rank;
    int64_t s = at_attr_int(k->node, "start", 0), e = at_attr_int(k->node, "end", rank);
    if (s < 0) s += rank;
    if (e < 0) e += rank;
    s = s < 0 ? 0 : (s > rank ? rank : s);
    e = e < 0 ? 0 : (e > rank ? rank : e);
    if (e < s) e = s;
    return write_host_bytes(k, k->out[0].data, &k->in[0].shape.dim[s],
                            (size_t)(e - s) * sizeof(int64_t));
}

/* ---- Transpose ---- */

static bool get_perm(const at_node_rec *n, int rank, int64_t *perm) {
    const at_attr_rec *a = at_attr_find(n, "perm");
    if (!a) {
        for (int i = 0; i < rank; i++) perm[i] = rank - 1 - i;
        return true;
    }
    if (a->n != rank) return false;
    bool seen[AT_MAX_RANK] = {false};
    for (int i = 0; i < rank; i++) {
        int64_t p = a->ints[i];
        if (p < 0 || p >= rank || seen[p]) return false;
        seen[p] = true;
        perm[i] = p;
    }
    return true;
}

static at_status transpose_cuda(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[0];
    at_tensor *y = &k->out[0];
    int r = x->shape.rank;
    int64_t perm[AT_MAX_RANK], ist[AT_MAX_RANK], ss[AT_MAX_RANK], ds[AT_MAX_RANK];
    if (!get_perm(k->node, r, perm)) return at_kernel_fail(k, AT_E_SHAPE, "bad perm");
    contiguous_strides(r, x->shape.dim, ist);
    for (int i = 0; i < r; i++) ss[i] = ist[perm[i]];
    contiguous_strides(r, y->shape.dim, ds);
    return strided_copy(k, y->data, x->data, at_dtype_size(x->dtype), r, y->shape.dim, ds, ss);
}

/* ---- Concat and Split: one [outer, len] block per piece ---- */

static at_status concat_cuda(at_kernel_ctx *k) {
    at_tensor *y = &k->out[0];
    int r = y->shape.rank;
    int axis = at_norm_axis(at_attr_int(k->node, "axis", 0), r);
    if (axis < 0) return at_kernel_fail(k, AT_E_SHAPE, "axis out of range");
    size_t es = at_dtype_size(y->dtype);
    int64_t outer = prod_range(y->shape.dim, 0, axis);
    int64_t inner = prod_range(y->shape.dim, axis + 1, r);
    int64_t orow = y->shape.dim[axis] * inner, off = 0;
    for (int i = 0; i < k->n_in; i++) {
        int64_t len = k->in[i].shape.dim[axis] * inner;
        int64_t dims[2] = {outer, len}, ds[2] = {orow, 1}, ss[2] = {len, 1};
        AT_CU_TRY(strided_copy(k, (char *)y->data + (size_t)off * es, k->in[i].data, es, 2, dims,
                               ds, ss));
        off += len;
    }
    return AT_OK;
}

static at_status split_cuda(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[0];
    int r = x->shape.rank;
    int axis = at_norm_axis(at_attr_int(k->node, "axis", 0), r);
    if (axis < 0) return at_kernel_fail(k, AT_E_SHAPE, "axis out of range");
    size_t es = at_dtype_size(x->dtype);
    int64_t outer = prod_range(x->shape.dim, 0, axis);
    int64_t inner = prod_range(x->shape.dim, axis + 1, r);
    int64_t irow = x->shape.dim[axis] * inner, off = 0;
    for (int j = 0; j < k->n_out; j++) {
        int64_t len = k->out[j].shape.dim[axis] * inner;
        int64_t dims[2] = {outer, len}, ds[2] = {len, 1}, ss[2] = {irow, 1};
        AT_CU_TRY(strided_copy(k, k->out[j].data, (const char *)x->data + (size_t)off * es, es, 2,
                               dims, ds, ss));
        off += len;
    }
    return AT_OK;
}

/* ---- Slice and SliceGrad (as ops/shape.c) ---- */

static int64_t slice_axis(int64_t dim, int64_t start, int64_t end, int64_t step, int64_t *first) {
    if (start < 0) start += dim;
    if (end < 0) end += dim;
    if (step > 0) {
        start = start < 0 ? 0 : (start > dim ? dim : start);
        end = end < 0 ? 0 : (end > dim ? dim : end);
        *first = start;
        return end > start ? (end - start - 1) / step + 1 : 0;
    }
    if (dim == 0) {
        *first = 0;
        return 0;
    }
    start = start < 0 ? 0 : (start > dim - 1 ? dim - 1 : start);
    end = end < -1 ? -1 : (end > dim - 1 ? dim - 1 : end);
    *first = start;
    int64_t neg = step == INT64_MIN ? INT64_MAX : -step;
    return start > end ? (start - end - 1) / neg + 1 : 0;
}

struct slice_args {
    int n;
    int64_t starts[AT_MAX_RANK], ends[AT_MAX_RANK], axes[AT_MAX_RANK], steps[AT_MAX_RANK];
};

/* Reads a 1-D (or scalar) int32/int64 input of at most cap entries: the count, -1 when absent,
 * -2 when malformed (or the status of a failed device read in *st). */
static int read_ivec(at_kernel_ctx *k, int i, int64_t *v, int cap, at_status *st) {
    *st = AT_OK;
    if (i >= k->n_in || !k->in[i].data) return -1;
    const at_tensor *t = &k->in[i];
    if (t->dtype != AT_I64 && t->dtype != AT_I32) return -2;
    int64_t n = t->shape.rank == 0 ? 1 : t->shape.rank == 1 ? t->shape.dim[0] : -1;
    if (n < 0 || n > cap) return -2;
    const void *h;
    if ((*st = at_cu_read_input(k, i, &h)) != AT_OK) return -2;
    for (int64_t j = 0; j < n; j++)
        v[j] = t->dtype == AT_I64 ? ((const int64_t *)h)[j] : ((const int32_t *)h)[j];
    return (int)n;
}

static at_status slice_read(at_kernel_ctx *k, int first, slice_args *a, int rank) {
    at_status st[4];
    int ns = read_ivec(k, first, a->starts, AT_MAX_RANK, &st[0]);
    int ne = read_ivec(k, first + 1, a->ends, AT_MAX_RANK, &st[1]);
    int na = read_ivec(k, first + 2, a->axes, AT_MAX_RANK, &st[2]);
    int nt = read_ivec(k, first + 3, a->steps, AT_MAX_RANK, &st[3]);
    for (int i = 0; i < 4; i++)
        if (st[i] != AT_OK) return st[i];
    if (ns < 0 || ne < 0 || na == -2 || nt == -2)
        return at_kernel_fail(
            k, AT_E_SHAPE,
            "starts, ends, axes and steps must be 1-D int32/int64 of at most rank entries");
    if (ns != ne) return at_kernel_fail(k, AT_E_SHAPE, "starts and ends differ in length");
    if (na >= 0 && na != ns)
        return at_kernel_fail(k, AT_E_SHAPE, "axes and starts differ in length");
    if (nt >= 0 && nt != ns)
        return at_kernel_fail(k, AT_E_SHAPE, "steps and starts differ in length");
    a->n = ns;
    bool seen[AT_MAX_RANK] = {false};
    for (int j = 0; j < a->n; j++) {
        int64_t ax = na >= 0 ? a->axes[j] : j;
        int nx = at_norm_axis(ax, rank);
        if (nx < 0)
            return at_kernel_fail(k, AT_E_SHAPE, "axis %lld out of range for rank %d",
                                  (long long)ax, rank);
        if (seen[nx]) return at_kernel_fail(k, AT_E_SHAPE, "an axis appears twice");
        seen[nx] = true;
        a->axes[j] = nx;
        if (nt < 0) a->steps[j] = 1;
        if (a->steps[j] == 0) return at_kernel_fail(k, AT_E_SHAPE, "a step is 0");
    }
    return AT_OK;
}

static void slice_map(const at_shape *x, const slice_args *a, int64_t *first, int64_t *step,
                      int64_t *len) {
    for (int d = 0; d < x->rank; d++) first[d] = 0, step[d] = 1, len[d] = x->dim[d];
    for (int j = 0; j < a->n; j++) {
        int d = (int)a->axes[j];
        step[d] = a->steps[j];
        len[d] = slice_axis(x->dim[d], a->starts[j], a->ends[j], a->steps[j], &first[d]);
    }
}

static at_status slice_cuda(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[0];
    at_tensor *y = &k->out[0];
    int r = x->shape.rank;
    slice_args a;
    AT_CU_TRY(slice_read(k, 1, &a, r));
    int64_t first[AT_MAX_RANK], step[AT_MAX_RANK], len[AT_MAX_RANK], xst[AT_MAX_RANK],
        ss[AT_MAX_RANK], ds[AT_MAX_RANK];
    slice_map(&x->shape, &a, first, step, len);
    for (int d = 0; d < r; d++)
        if (len[d] != y->shape.dim[d])
            return at_kernel_fail(k, AT_E_SHAPE, "output dim %d is %lld, slice gives %lld", d,
                                  (long long)y->shape.dim[d], (long long)len[d]);
    if (at_shape_numel(&y->shape) == 0) return AT_OK;
    size_t es = at_dtype_size(x->dtype);
    contiguous_strides(r, x->shape.dim, xst);
    contiguous_strides(r, len, ds);
    int64_t base = 0;
    for (int d = 0; d < r; d++) base += first[d] * xst[d], ss[d] = step[d] * xst[d];
    return strided_copy(k, y->data, (const char *)x->data + (size_t)base * es, es, r, len, ds, ss);
}

static at_status slice_grad_cuda(at_kernel_ctx *k) {
    const at_tensor *dy = &k->in[0];
    at_tensor *dx = &k->out[0];
    int r = dx->shape.rank;
    slice_args a;
    AT_CU_TRY(slice_read(k, 2, &a, r));
    int64_t first[AT_MAX_RANK], step[AT_MAX_RANK], len[AT_MAX_RANK], xst[AT_MAX_RANK],
        ss[AT_MAX_RANK], ds[AT_MAX_RANK];
    slice_map(&dx->shape, &a, first, step, len);
    for (int d = 0; d < r; d++)
        if (len[d] != dy->shape.dim[d])
            return at_kernel_fail(k, AT_E_SHAPE, "dy dim %d is %lld, the slice gives %lld", d,
                                  (long long)dy->shape.dim[d], (long long)len[d]);
    size_t es = at_dtype_size(dx->dtype), bytes = at_tensor_nbytes(dx);
    if (bytes) AT_CU_CHECK(k, cudaMemsetAsync(dx->data, 0, bytes, at_cu_stream(k)));
    if (at_shape_numel(&dy->shape) == 0) return AT_OK;
    contiguous_strides(r, dx->shape.dim, xst);
    contiguous_strides(r, len, ss);
    int64_t base = 0;
    for (int d = 0; d < r; d++) base += first[d] * xst[d], ds[d] = step[d] * xst[d];
    return strided_copy(k, (char *)dx->data + (size_t)base * es, dy->data, es, r, len, ds, ss);
}

/* ---- Expand ---- */

static at_status expand_cuda(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[0];
    at_tensor *y = &k->out[0];
    int r = y->shape.rank, xr = x->shape.rank;
    if (xr > r) return at_kernel_fail(k, AT_E_SHAPE, "input rank above output rank");
    int64_t xst[AT_MAX_RANK], ss[AT_MAX_RANK], ds[AT_MAX_RANK];
    contiguous_strides(xr, x->shape.dim, xst);
    for (int d = 0; d < r; d++) {
        int ix = d - (r - xr);
        int64_t a = ix >= 0 ? x->shape.dim[ix] : 1;
        if (a != y->shape.dim[d] && a != 1)
            return at_kernel_fail(k, AT_E_SHAPE, "dim %d: %lld cannot broadcast to %lld", d,
                                  (long long)a, (long long)y->shape.dim[d]);
        ss[d] = ix >= 0 && a != 1 ? xst[ix] : 0;
    }
    contiguous_strides(r, y->shape.dim, ds);
    return strided_copy(k, y->data, x->data, at_dtype_size(x->dtype), r, y->shape.dim, ds, ss);
}

/* ---- Constant and ConstantOfShape ---- */

static int constant_view(const at_node_rec *n, at_tensor *t) {
    int found = 0;
    const at_attr_rec *a;
    if ((a = at_attr_find(n, "value")) && a->t) {
        *t = *a->t;
        found++;
    }
    if ((a = at_attr_find(n, "value_float"))) {
        *t = at_tensor{AT_F32, at_shape_make(0, NULL), (void *)&a->f};
        found++;
    }
    if ((a = at_attr_find(n, "value_floats"))) {
        int64_t len = a->n;
        *t = at_tensor{AT_F32, at_shape_make(1, &len), a->floats};
        found++;
    }
    if ((a = at_attr_find(n, "value_int"))) {
        *t = at_tensor{AT_I64, at_shape_make(0, NULL), (void *)&a->i};
        found++;
    }
    if ((a = at_attr_find(n, "value_ints"))) {
        int64_t len = a->n;
        *t = at_tensor{AT_I64, at_shape_make(1, &len), a->ints};
        found++;
    }
    return found;
}

static at_status constant_cuda(at_kernel_ctx *k) {
    at_tensor t;
    if (constant_view(k->node, &t) != 1) return at_kernel_fail(k, AT_E_INVALID, "no value");
    size_t bytes = at_tensor_nbytes(&k->out[0]);
    if (bytes != at_tensor_nbytes(&t))
        return at_kernel_fail(k, AT_E_SHAPE, "output size differs from the value's");
    return write_host_bytes(k, k->out[0].data, t.data, bytes);
}

template <typename W> __global__ void fill_kernel(W *y, W v, int64_t n) {
    AT_GRID_LOOP(i, n) y[i] = v;
}

template <typename W>
static at_status launch_fill(at_kernel_ctx *k, void *y, const void *v, int64_t n) {
    W w;
    memcpy(&w, v, sizeof w);
    fill_kernel<W><<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>((W *)y, w, n);
    AT_CU_LAUNCHED(k, "fill_kernel");
    return AT_OK;
}

static at_status cos_cuda(at_kernel_ctx *k) {
    at_tensor *y = &k->out[0];
    const at_attr_rec *a = at_attr_find(k->node, "value");
    const at_tensor *v = a ? a->t : NULL;
    size_t es = at_dtype_size(y->dtype);
    int64_t n = at_shape_numel(&y->shape);
    if (n <= 0) return AT_OK;
    bool zero = true;
    if (v)
        for (size_t b = 0; b < es; b++) zero &= ((const unsigned char *)v->data)[b] == 0;
    if (zero) {
        AT_CU_CHECK(k, cudaMemsetAsync(y->data, 0, (size_t)n * es, at_cu_stream(k)));
        return AT_OK;
    }
    switch (es) {
    case 1:
        return launch_fill<uint8_t>(k, y->data, v->data, n);
    case 2:
        return launch_fill<uint16_t>(k, y->data, v->data, n);
    case 4:
        return launch_fill<uint32_t>(k, y->data, v->data, n);
    case 8:
        return launch_fill<unsigned long long>(k, y->data, v->data, n);
    default:
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "element size %zu", es);
    }
}

void at_cuda_register_shape(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, Shape, shape_cuda, NULL);
    AT_CUDA_REG(t, Transpose, transpose_cuda, NULL);
    AT_CUDA_REG(t, Reshape, copy_cuda, NULL);
    AT_CUDA_REG(t, Concat, concat_cuda, NULL);
    AT_CUDA_REG(t, Split, split_cuda, NULL);
    AT_CUDA_REG(t, Slice, slice_cuda, NULL);
    AT_CUDA_REG(t, SliceGrad, slice_grad_cuda, NULL);
    AT_CUDA_REG(t, Unsqueeze, copy_cuda, NULL);
    AT_CUDA_REG(t, Squeeze, copy_cuda, NULL);
    AT_CUDA_REG(t, Expand, expand_cuda, NULL);
    AT_CUDA_REG(t, Constant, constant_cuda, NULL);
    AT_CUDA_REG(t, ConstantOfShape, cos_cuda, NULL);
}
