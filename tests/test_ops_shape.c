/* The shape family (ops/shape.c): Shape, Transpose, Reshape, Concat, Split, Slice, SliceGrad,
 * Unsqueeze, Squeeze, Expand, Constant, ConstantOfShape. Table rows check each op against a
 * plain index-by-index reference and its gradient against finite differences; the checks
 * after the table cover symbolic shapes, plan-time folding and thread-count determinism. */
#include <stdint.h>

#include "check.h"
#include "op_harness.h"

/* ---- reference helpers: index arithmetic, one element at a time ---- */

static void unravel(int64_t i, const at_shape *s, int64_t *idx) {
    for (int d = s->rank - 1; d >= 0; d--) {
        idx[d] = s->dim[d] ? i % s->dim[d] : 0;
        i = s->dim[d] ? i / s->dim[d] : 0;
    }
}

static int64_t ravel(const int64_t *idx, const at_shape *s) {
    int64_t off = 0;
    for (int d = 0; d < s->rank; d++) off = off * s->dim[d] + idx[d];
    return off;
}

static int64_t numel(const at_shape *s) {
    int64_t n = 1;
    for (int d = 0; d < s->rank; d++) n *= s->dim[d];
    return n;
}

static void copy_elem(at_tensor *out, int64_t o, const at_tensor *in, int64_t i) {
    size_t es = at_dtype_size(in->dtype);
    memcpy((char *)out->data + o * es, (const char *)in->data + i * es, es);
}

static void ref_same_data(const at_tensor *in, at_tensor *out, at_shape shape) {
    out->dtype = in->dtype;
    out->shape = shape;
    memcpy(out->data, in->data, (size_t)numel(&shape) * at_dtype_size(in->dtype));
}

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- Shape ---- */

static int b_shape(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_shape_of(g, in[0]);
    return 1;
}
static void r_shape(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    out[0].dtype = AT_I64;
    out[0].shape = AT_SHAPE(in[0].shape.rank);
    for (int d = 0; d < in[0].shape.rank; d++) ((int64_t *)out[0].data)[d] = in[0].shape.dim[d];
}

static int b_shape_range(at_graph *g, const at_val *in, at_val *out) {
    at_attr a[2] = {AT_ATTR_I("start", 1), AT_ATTR_I("end", -1)};
    out[0] = at_node1(g, "Shape", in, 1, a, 2);
    return 1;
}
static void r_shape_range(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    int r = in[0].shape.rank;
    out[0].dtype = AT_I64;
    out[0].shape = AT_SHAPE(r - 2);
    for (int d = 1; d < r - 1; d++) ((int64_t *)out[0].data)[d - 1] = in[0].shape.dim[d];
}

/* ---- Transpose ---- */

static void ref_transpose(const at_tensor *x, int n, const int64_t *perm, at_tensor *y) {
    int r = x->shape.rank;
    int64_t p[AT_MAX_RANK];
    for (int d = 0; d < r; d++) p[d] = n ? perm[d] : r - 1 - d;
    y->dtype = x->dtype;
    y->shape.rank = r;
    for (int d = 0; d < r; d++) y->shape.dim[d] = x->shape.dim[p[d]];
    int64_t oi[AT_MAX_RANK], ii[AT_MAX_RANK];
    for (int64_t o = 0; o < numel(&y->shape); o++) {
        unravel(o, &y->shape, oi);
        for (int d = 0; d < r; d++) ii[p[d]] = oi[d];
        copy_elem(y, o, x, ravel(ii, &x->shape));
    }
}

#define DEF_TRANSPOSE(id, ...)                                                                     \
    static const int64_t id##_perm[] = {__VA_ARGS__};                                              \
    static int id##_b(at_graph *g, const at_val *in, at_val *out) {                                \
        out[0] = at_transpose(g, in[0], NELEM(id##_perm), id##_perm);                              \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_r(const at_tensor *in, int n_in, at_tensor *out, int n_out) {                 \
        (void)n_in, (void)n_out;                                                                   \
        ref_transpose(&in[0], NELEM(id##_perm), id##_perm, &out[0]);                               \
    }

DEF_TRANSPOSE(tr_2d, 1, 0)
DEF_TRANSPOSE(tr_last2, 0, 1, 3, 2)
DEF_TRANSPOSE(tr_keep_last, 0, 2, 1, 3)
DEF_TRANSPOSE(tr_rev3, 2, 1, 0)
DEF_TRANSPOSE(tr_rank5, 4, 2, 0, 3, 1)
DEF_TRANSPOSE(tr_heads, 0, 2, 3, 1)
DEF_TRANSPOSE(tr_big, 0, 2, 1)
DEF_TRANSPOSE(tr_id, 0, 1, 2)

static int b_tr_default(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_transpose(g, in[0], 0, NULL);
    return 1;
}
static void r_tr_default(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    ref_transpose(&in[0], 0, NULL, &out[0]);
}

/* ---- Reshape, Unsqueeze, Squeeze: the data stays, the shape is the test ---- */

#define DEF_RESHAPE(id, want, ...)                                                                 \
    static const int64_t id##_shape[] = {__VA_ARGS__};                                             \
    static int id##_b(at_graph *g, const at_val *in, at_val *out) {                                \
        out[0] = at_reshape(g, in[0], NELEM(id##_shape), id##_shape);                              \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_r(const at_tensor *in, int n_in, at_tensor *out, int n_out) {                 \
        (void)n_in, (void)n_out;                                                                   \
        ref_same_data(&in[0], &out[0], want);                                                      \
    }

DEF_RESHAPE(rs_hole, AT_SHAPE(4, 6), 4, -1)
DEF_RESHAPE(rs_zero, AT_SHAPE(2, 12), 0, 12)
DEF_RESHAPE(rs_flat, AT_SHAPE(24), -1)
DEF_RESHAPE(rs_up, AT_SHAPE(2, 3, 2, 2), 0, 0, -1, 2)
DEF_RESHAPE(rs_copy0, AT_SHAPE(1), 0)

static int b_rs_scalar(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_reshape(g, in[0], 0, NULL);
    return 1;
}
static void r_rs_scalar(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    ref_same_data(&in[0], &out[0], AT_SCALAR);
}

static int b_rs_to(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_reshape_to(g, in[1], at_shape_of(g, in[0]));
    return 1;
}
static void r_rs_to(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    ref_same_data(&in[1], &out[0], in[0].shape);
}

#define DEF_UNSQ(id, op, want, ...)                                                                \
    static const int64_t id##_axes[] = {__VA_ARGS__};                                              \
    static int id##_b(at_graph *g, const at_val *in, at_val *out) {                                \
        out[0] = op(g, in[0], NELEM(id##_axes), id##_axes);                                        \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_r(const at_tensor *in, int n_in, at_tensor *out, int n_out) {                 \
        (void)n_in, (void)n_out;                                                                   \
        ref_same_data(&in[0], &out[0], want);                                                      \
    }

DEF_UNSQ(uq_ends, at_unsqueeze, AT_SHAPE(1, 3, 4, 1), 0, -1)
DEF_UNSQ(uq_mid, at_unsqueeze, AT_SHAPE(3, 1, 1, 4), 2, 1)
DEF_UNSQ(uq_scalar, at_unsqueeze, AT_SHAPE(1), 0)
DEF_UNSQ(sq_axes, at_squeeze, AT_SHAPE(3, 4), 0, 2)
DEF_UNSQ(sq_neg, at_squeeze, AT_SHAPE(1, 3, 4), -2)

static int b_sq_all(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_squeeze(g, in[0], 0, NULL);
    return 1;
}
static void r_sq_all(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    at_shape s = {0};
    for (int d = 0; d < in[0].shape.rank; d++)
        if (in[0].shape.dim[d] != 1) s.dim[s.rank++] = in[0].shape.dim[d];
    ref_same_data(&in[0], &out[0], s);
}

/* ---- Concat ---- */

static void ref_concat(const at_tensor *in, int n, int axis, at_tensor *y) {
    int r = in[0].shape.rank;
    if (axis < 0) axis += r;
    y->dtype = in[0].dtype;
    y->shape = in[0].shape;
    y->shape.dim[axis] = 0;
    for (int i = 0; i < n; i++) y->shape.dim[axis] += in[i].shape.dim[axis];
    int64_t oi[AT_MAX_RANK];
    for (int64_t o = 0; o < numel(&y->shape); o++) {
        unravel(o, &y->shape, oi);
        int i = 0;
        while (oi[axis] >= in[i].shape.dim[axis]) oi[axis] -= in[i++].shape.dim[axis];
        copy_elem(y, o, &in[i], ravel(oi, &in[i].shape));
    }
}

#define DEF_CONCAT(id, axis)                                                                       \
    static int id##_b(at_graph *g, const at_val *in, at_val *out) {                                \
        out[0] = at_concat(g, id##_n, in, axis);                                                   \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_r(const at_tensor *in, int n_in, at_tensor *out, int n_out) {                 \
        (void)n_out;                                                                               \
        ref_concat(in, n_in, axis, &out[0]);                                                       \
    }

enum { cc_mid_n = 3, cc_neg_n = 2, cc_first_n = 3, cc_one_n = 1, cc_big_n = 2 };
DEF_CONCAT(cc_mid, 1)
DEF_CONCAT(cc_neg, -1)
DEF_CONCAT(cc_first, 0)
DEF_CONCAT(cc_one, 0)
DEF_CONCAT(cc_big, 1)

/* ---- Split ---- */

static void ref_split(const at_tensor *x, int axis, int n, const int64_t *sizes, at_tensor *out) {
    int r = x->shape.rank;
    if (axis < 0) axis += r;
    int64_t dim = x->shape.dim[axis], sz[16], start = 0;
    for (int j = 0; j < n; j++) {
        if (sizes)
            sz[j] = sizes[j];
        else {
            int64_t chunk = dim / n + (dim % n != 0);
            sz[j] = j < n - 1 ? chunk : dim - chunk * (n - 1);
        }
    }
    int64_t ii[AT_MAX_RANK];
    for (int j = 0; j < n; j++) {
        out[j].dtype = x->dtype;
        out[j].shape = x->shape;
        out[j].shape.dim[axis] = sz[j];
        for (int64_t o = 0; o < numel(&out[j].shape); o++) {
            unravel(o, &out[j].shape, ii);
            ii[axis] += start;
            copy_elem(&out[j], o, x, ravel(ii, &x->shape));
        }
        start += sz[j];
    }
}

#define DEF_SPLIT(id, axis, n, sizes)                                                              \
    static int id##_b(at_graph *g, const at_val *in, at_val *out) {                                \
        return at_split_into(g, in[0], axis, n, sizes, out) == AT_OK ? n : -1;                     \
    }                                                                                              \
    static void id##_r(const at_tensor *in, int n_in, at_tensor *out, int n_out) {                 \
        (void)n_in, (void)n_out;                                                                   \
        ref_split(&in[0], axis, n, sizes, out);                                                    \
    }

static const int64_t split_sz1[] = {1, 3, 2};
static const int64_t split_sz2[] = {2, 0, 1};
DEF_SPLIT(sp_equal, 0, 3, NULL)
DEF_SPLIT(sp_sizes, -1, 3, split_sz1)
DEF_SPLIT(sp_uneven, 1, 3, NULL)
DEF_SPLIT(sp_zero, 0, 3, split_sz2)
DEF_SPLIT(sp_one, 1, 1, NULL)

/* ---- Slice ---- */

/* Python's slice.indices(len): the same clamping as ONNX, written the other way round. */
static int64_t py_slice(int64_t len, int64_t start, int64_t stop, int64_t step, int64_t *first) {
    int64_t lower = step > 0 ? 0 : -1, upper = step > 0 ? len : len - 1;
    if (start < 0) {
        start += len;
        if (start < lower) start = lower;
    } else if (start > upper) {
        start = upper;
    }
    if (stop < 0) {
        stop += len;
        if (stop < lower) stop = lower;
    } else if (stop > upper) {
        stop = upper;
    }
    *first = start;
    int64_t n = 0;
    if (step > 0)
        for (int64_t i = start; i < stop; i += step) n++;
    else
        for (int64_t i = start; i > stop; i += step) n++;
    return n;
}

typedef struct slice_spec {
    int n;
    const int64_t *starts, *ends, *axes, *steps;
} slice_spec;

static void ref_slice(const at_tensor *x, const slice_spec *s, at_tensor *y) {
    int r = x->shape.rank;
    int64_t first[AT_MAX_RANK], step[AT_MAX_RANK];
    y->dtype = x->dtype;
    y->shape = x->shape;
    for (int d = 0; d < r; d++) first[d] = 0, step[d] = 1;
    for (int k = 0; k < s->n; k++) {
        int d = (int)(s->axes ? s->axes[k] : k);
        if (d < 0) d += r;
        step[d] = s->steps ? s->steps[k] : 1;
        y->shape.dim[d] = py_slice(x->shape.dim[d], s->starts[k], s->ends[k], step[d], &first[d]);
    }
    int64_t oi[AT_MAX_RANK];
    for (int64_t o = 0; o < numel(&y->shape); o++) {
        unravel(o, &y->shape, oi);
        for (int d = 0; d < r; d++) oi[d] = first[d] + oi[d] * step[d];
        copy_elem(y, o, x, ravel(oi, &x->shape));
    }
}

#define DEF_SLICE(id, nn, st, en, ax, sp)                                                          \
    static const slice_spec id##_spec = {nn, st, en, ax, sp};                                      \
    static int id##_b(at_graph *g, const at_val *in, at_val *out) {                                \
        out[0] = at_slice(g, in[0], nn, st, en, ax, sp);                                           \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_r(const at_tensor *in, int n_in, at_tensor *out, int n_out) {                 \
        (void)n_in, (void)n_out;                                                                   \
        ref_slice(&in[0], &id##_spec, &out[0]);                                                    \
    }

#define I64S(...) ((const int64_t[]){__VA_ARGS__})
DEF_SLICE(sl_basic, 2, I64S(1, 2), I64S(4, 5), NULL, NULL)
DEF_SLICE(sl_neg_step, 1, I64S(-1), I64S(INT64_MIN), NULL, I64S(-2))
DEF_SLICE(sl_clamp, 2, I64S(-100, 2), I64S(100, 1000), I64S(1, 0), NULL)
DEF_SLICE(sl_neg_axes, 2, I64S(-3, 0), I64S(-1, 5), I64S(-1, -3), I64S(1, 2))
DEF_SLICE(sl_rev_mid, 1, I64S(100), I64S(-100), I64S(1), I64S(-1))
DEF_SLICE(sl_neg_step3, 2, I64S(5, -2), I64S(0, -100), I64S(2, 0), I64S(-3, -1))
DEF_SLICE(sl_empty, 1, I64S(3), I64S(1), I64S(0), NULL)
DEF_SLICE(sl_last, 1, I64S(-1), I64S(INT64_MAX), I64S(1), NULL)
DEF_SLICE(sl_big, 2, I64S(1, 3), I64S(-1, 200), I64S(0, 2), I64S(1, 2))

/* int32 starts/ends/axes/steps, as ONNX allows */
static const int32_t sl32_starts[2] = {-1, 1}, sl32_ends[2] = {-1000, 3}, sl32_axes[2] = {0, -1},
                     sl32_steps[2] = {-2, 1};
static const slice_spec sl32_spec = {2, I64S(-1, 1), I64S(-1000, 3), I64S(0, -1), I64S(-2, 1)};
static int b_slice_i32(at_graph *g, const at_val *in, at_val *out) {
    at_val v[5] = {in[0], at_const(g, NULL, AT_I32, AT_SHAPE(2), sl32_starts),
                   at_const(g, NULL, AT_I32, AT_SHAPE(2), sl32_ends),
                   at_const(g, NULL, AT_I32, AT_SHAPE(2), sl32_axes),
                   at_const(g, NULL, AT_I32, AT_SHAPE(2), sl32_steps)};
    out[0] = at_node1(g, "Slice", v, 5, NULL, 0);
    return 1;
}
static void r_slice_i32(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    ref_slice(&in[0], &sl32_spec, &out[0]);
}

/* SliceGrad directly: dy [2,2] into zeros [4,5] at rows 3,1 (step -2), columns 1..2. */
static int b_slice_grad(at_graph *g, const at_val *in, at_val *out) {
    at_val v[6] = {in[0],
                   at_const_i64s(g, 2, I64S(4, 5)),
                   at_const_i64s(g, 2, I64S(3, 1)),
                   at_const_i64s(g, 2, I64S(0, 3)),
                   at_const_i64s(g, 2, I64S(0, 1)),
                   at_const_i64s(g, 2, I64S(-2, 1))};
    return at_node_add(g, "SliceGrad", AT_DOMAIN_ATTUNE, v, 6, out, 1, NULL, 0) < 0 ? -1 : 1;
}
static void r_slice_grad(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    out[0].dtype = AT_F32;
    out[0].shape = AT_SHAPE(4, 5);
    float *o = out[0].data;
    const float *dy = in[0].data;
    for (int i = 0; i < 20; i++) o[i] = 0;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) o[(3 - 2 * a) * 5 + 1 + b] = dy[a * 2 + b];
}

/* ---- Expand ---- */

static void ref_expand(const at_tensor *x, int n, const int64_t *shape, at_tensor *y) {
    int xr = x->shape.rank, r = xr > n ? xr : n;
    y->dtype = x->dtype;
    y->shape.rank = r;
    for (int d = 0; d < r; d++) {
        int64_t a = d - (r - xr) >= 0 ? x->shape.dim[d - (r - xr)] : 1;
        int64_t b = d - (r - n) >= 0 ? shape[d - (r - n)] : 1;
        y->shape.dim[d] = a == 1 ? b : a;
    }
    int64_t oi[AT_MAX_RANK], ii[AT_MAX_RANK];
    for (int64_t o = 0; o < numel(&y->shape); o++) {
        unravel(o, &y->shape, oi);
        for (int d = 0; d < xr; d++) {
            int od = d + (r - xr);
            ii[d] = x->shape.dim[d] == 1 ? 0 : oi[od];
        }
        copy_elem(y, o, x, ravel(ii, &x->shape));
    }
}

#define DEF_EXPAND(id, ...)                                                                        \
    static const int64_t id##_shape[] = {__VA_ARGS__};                                             \
    static int id##_b(at_graph *g, const at_val *in, at_val *out) {                                \
        out[0] = at_expand(g, in[0], at_const_i64s(g, NELEM(id##_shape), id##_shape));             \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_r(const at_tensor *in, int n_in, at_tensor *out, int n_out) {                 \
        (void)n_in, (void)n_out;                                                                   \
        ref_expand(&in[0], NELEM(id##_shape), id##_shape, &out[0]);                                \
    }

DEF_EXPAND(ex_rank_up, 2, 3, 4)
DEF_EXPAND(ex_bidir, 3, 1)
DEF_EXPAND(ex_noop, 1)
DEF_EXPAND(ex_mid, 2, 5, 3)
DEF_EXPAND(ex_big, 64, 40, 32)

/* ---- Constant, ConstantOfShape ---- */

static const float k_vals[6] = {1.5f, -2.0f, 3.25f, 0.0f, -7.5f, 1e-3f};
static int b_constant(at_graph *g, const at_val *in, at_val *out) {
    (void)in;
    at_tensor t = {AT_F32, AT_SHAPE(2, 3), (void *)k_vals};
    out[0] = at_constant(g, &t);
    return 1;
}
static void r_constant(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)in, (void)n_in, (void)n_out;
    out[0].dtype = AT_F32;
    out[0].shape = AT_SHAPE(2, 3);
    memcpy(out[0].data, k_vals, sizeof k_vals);
}

static const int64_t k_ints[4] = {4, -1, 0, 9};
static int b_constant_ints(at_graph *g, const at_val *in, at_val *out) {
    (void)in;
    at_attr a = AT_ATTR_INTS("value_ints", 4, k_ints);
    at_val v = at_node1(g, "Constant", NULL, 0, &a, 1);
    at_attr b = AT_ATTR_F("value_float", 0.5f);
    out[0] = v;
    out[1] = at_node1(g, "Constant", NULL, 0, &b, 1);
    return 2;
}
static void r_constant_ints(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)in, (void)n_in, (void)n_out;
    out[0].dtype = AT_I64;
    out[0].shape = AT_SHAPE(4);
    memcpy(out[0].data, k_ints, sizeof k_ints);
    out[1].dtype = AT_F32;
    out[1].shape = AT_SCALAR;
    ((float *)out[1].data)[0] = 0.5f;
}

static int b_cos(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_constant_of_shape(g, at_shape_of(g, in[0]), AT_F32, 2.5);
    out[1] = at_constant_of_shape(g, at_const_i64s(g, 2, I64S(3, 2)), AT_I64, 7);
    /* no value attribute: float zeros */
    at_val s = at_const_i64s(g, 1, I64S(5));
    out[2] = at_node1(g, "ConstantOfShape", &s, 1, NULL, 0);
    return 3;
}
static void r_cos(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    out[0].dtype = AT_F32;
    out[0].shape = in[0].shape;
    for (int64_t i = 0; i < numel(&in[0].shape); i++) ((float *)out[0].data)[i] = 2.5f;
    out[1].dtype = AT_I64;
    out[1].shape = AT_SHAPE(3, 2);
    for (int i = 0; i < 6; i++) ((int64_t *)out[1].data)[i] = 7;
    out[2].dtype = AT_F32;
    out[2].shape = AT_SHAPE(5);
    for (int i = 0; i < 5; i++) ((float *)out[2].data)[i] = 0;
}

/* ---- a chain whose gradient goes through several rules at once ---- */

static int b_chain(at_graph *g, const at_val *in, at_val *out) {
    at_val t = at_transpose(g, in[0], 3, I64S(1, 0, 2));                  /* [3,2,4] */
    at_val u = at_unsqueeze(g, t, 1, I64S(1));                            /* [3,1,2,4] */
    at_val e = at_expand(g, u, at_const_i64s(g, 4, I64S(3, 2, 2, 4)));    /* [3,2,2,4] */
    at_val c = at_concat(g, 2, (at_val[]){e, in[1]}, 1);                  /* [3,3,2,4] */
    at_val s = at_slice(g, c, 1, I64S(2), I64S(-100), I64S(1), I64S(-1)); /* rows 2,1,0 */
    out[0] = at_reshape(g, s, 2, I64S(9, -1));
    return 1;
}

/* ---- the table ---- */

#define F(lo, hi, ...)  OH_F32(lo, hi, __VA_ARGS__)
#define FN(lo, hi, ...) OH_F32_NG(lo, hi, __VA_ARGS__)
#define TOL             .atol = 0, .rtol = 0, .grad_atol = 2e-3, .grad_rtol = 2e-2

static const oh_case cases[] = {
    {"shape_rank3", 1, {FN(-1, 1, 2, 3, 4)}, b_shape, r_shape, TOL},
    {"shape_rank1_size1", 1, {FN(-1, 1, 1)}, b_shape, r_shape, TOL},
    {"shape_start_end", 1, {FN(-1, 1, 2, 3, 5, 7)}, b_shape_range, r_shape_range, TOL},
    {"shape_int64_input", 1, {OH_I64(0, 9, 4, 1, 2)}, b_shape, r_shape, TOL},

    {"transpose_2d", 1, {F(-1, 1, 5, 7)}, tr_2d_b, tr_2d_r, TOL},
    {"transpose_default_perm", 1, {F(-1, 1, 2, 3, 4)}, b_tr_default, r_tr_default, TOL},
    {"transpose_swap_last2", 1, {F(-1, 1, 2, 3, 33, 35)}, tr_last2_b, tr_last2_r, TOL},
    {"transpose_keep_last", 1, {F(-1, 1, 2, 3, 4, 5)}, tr_keep_last_b, tr_keep_last_r, TOL},
    {"transpose_reverse3", 1, {F(-1, 1, 3, 4, 5)}, tr_rev3_b, tr_rev3_r, TOL},
    {"transpose_rank5_size1", 1, {F(-1, 1, 2, 1, 3, 4, 2)}, tr_rank5_b, tr_rank5_r, TOL},
    {"transpose_heads", 1, {F(-1, 1, 2, 5, 3, 4)}, tr_heads_b, tr_heads_r, TOL},
    {"transpose_big_parallel", 1, {F(-1, 1, 64, 96, 40)}, tr_big_b, tr_big_r, TOL},
    {"transpose_reverse_tiles", 1, {F(-1, 1, 37, 3, 41)}, tr_rev3_b, tr_rev3_r, TOL},
    {"transpose_identity", 1, {F(-1, 1, 2, 3, 4)}, tr_id_b, tr_id_r, TOL},
    {"transpose_int64", 1, {OH_I64(-50, 50, 3, 37, 5)}, tr_rev3_b, tr_rev3_r, TOL},

    {"reshape_hole", 1, {F(-1, 1, 2, 3, 4)}, rs_hole_b, rs_hole_r, TOL},
    {"reshape_zero_copies", 1, {F(-1, 1, 2, 3, 4)}, rs_zero_b, rs_zero_r, TOL},
    {"reshape_flatten", 1, {F(-1, 1, 2, 3, 4)}, rs_flat_b, rs_flat_r, TOL},
    {"reshape_rank_up", 1, {F(-1, 1, 2, 3, 4)}, rs_up_b, rs_up_r, TOL},
    {"reshape_to_scalar", 1, {F(-1, 1, 1, 1)}, b_rs_scalar, r_rs_scalar, TOL},
    {"reshape_zero_copies_size1", 1, {F(-1, 1, 1, 1)}, rs_copy0_b, rs_copy0_r, TOL},
    {"reshape_to_shape_of", 2, {FN(-1, 1, 2, 3, 4), F(-1, 1, 6, 4)}, b_rs_to, r_rs_to, TOL},

    {"unsqueeze_ends", 1, {F(-1, 1, 3, 4)}, uq_ends_b, uq_ends_r, TOL},
    {"unsqueeze_unsorted", 1, {F(-1, 1, 3, 4)}, uq_mid_b, uq_mid_r, TOL},
    {"unsqueeze_scalar",
     1,
     {{.dt = AT_F32, .shape = AT_SCALAR, .lo = -1, .hi = 1, .grad = true}},
     uq_scalar_b,
     uq_scalar_r,
     TOL},
    {"squeeze_axes", 1, {F(-1, 1, 1, 3, 1, 4)}, sq_axes_b, sq_axes_r, TOL},
    {"squeeze_neg_axis", 1, {F(-1, 1, 1, 3, 1, 4)}, sq_neg_b, sq_neg_r, TOL},
    {"squeeze_all", 1, {F(-1, 1, 1, 3, 1, 4, 1)}, b_sq_all, r_sq_all, TOL},

    {"concat_mid",
     3,
     {F(-1, 1, 2, 3, 4), F(-1, 1, 2, 1, 4), F(-1, 1, 2, 5, 4)},
     cc_mid_b,
     cc_mid_r,
     TOL},
    {"concat_neg_axis", 2, {F(-1, 1, 3, 2), F(-1, 1, 3, 5)}, cc_neg_b, cc_neg_r, TOL},
    {"concat_rank1", 3, {F(-1, 1, 4), F(-1, 1, 1), F(-1, 1, 3)}, cc_first_b, cc_first_r, TOL},
    {"concat_single", 1, {F(-1, 1, 2, 3)}, cc_one_b, cc_one_r, TOL},
    {"concat_big_parallel",
     2,
     {F(-1, 1, 30, 700, 2), F(-1, 1, 30, 300, 2)},
     cc_big_b,
     cc_big_r,
     TOL},
    {"concat_int64",
     3,
     {OH_I64(0, 9, 2, 2), OH_I64(0, 9, 2, 2), OH_I64(0, 9, 2, 2)},
     cc_first_b,
     cc_first_r,
     TOL},

    {"split_equal", 1, {F(-1, 1, 6, 4)}, sp_equal_b, sp_equal_r, TOL},
    {"split_sizes_neg_axis", 1, {F(-1, 1, 3, 6)}, sp_sizes_b, sp_sizes_r, TOL},
    {"split_uneven", 1, {F(-1, 1, 2, 7)}, sp_uneven_b, sp_uneven_r, TOL},
    {"split_zero_part", 1, {FN(-1, 1, 3, 2)}, sp_zero_b, sp_zero_r, TOL},
    {"split_one", 1, {F(-1, 1, 2, 5)}, sp_one_b, sp_one_r, TOL},
    /* outputs 0 and 2 only in the loss: output 1's gradient is missing and filled with zeros */
    {"split_missing_dy", 1, {F(-1, 1, 3, 6)}, sp_sizes_b, sp_sizes_r, TOL, .grad_outputs = 5},
    {"split_only_middle_dy", 1, {F(-1, 1, 6, 4)}, sp_equal_b, sp_equal_r, TOL, .grad_outputs = 2},

    {"slice_basic", 1, {F(-1, 1, 5, 6)}, sl_basic_b, sl_basic_r, TOL},
    {"slice_neg_step", 1, {F(-1, 1, 7)}, sl_neg_step_b, sl_neg_step_r, TOL},
    {"slice_clamp", 1, {F(-1, 1, 4, 5)}, sl_clamp_b, sl_clamp_r, TOL},
    {"slice_neg_axes_steps", 1, {F(-1, 1, 7, 3, 6)}, sl_neg_axes_b, sl_neg_axes_r, TOL},
    {"slice_reverse_mid", 1, {F(-1, 1, 2, 5, 3)}, sl_rev_mid_b, sl_rev_mid_r, TOL},
    {"slice_neg_steps_two_axes", 1, {F(-1, 1, 6, 3, 9)}, sl_neg_step3_b, sl_neg_step3_r, TOL},
    {"slice_empty", 1, {FN(-1, 1, 4, 3)}, sl_empty_b, sl_empty_r, TOL},
    {"slice_last_size1", 1, {F(-1, 1, 3, 1, 4)}, sl_last_b, sl_last_r, TOL},
    {"slice_big_parallel", 1, {F(-1, 1, 40, 8, 400)}, sl_big_b, sl_big_r, TOL},
    {"slice_int64", 1, {OH_I64(-9, 9, 5, 6)}, sl_basic_b, sl_basic_r, TOL},
    {"slice_int32_params", 1, {F(-1, 1, 5, 2, 4)}, b_slice_i32, r_slice_i32, TOL},
    {"slice_grad_op", 1, {F(-1, 1, 2, 2)}, b_slice_grad, r_slice_grad, TOL},

    {"expand_rank_up", 1, {F(-1, 1, 3, 1)}, ex_rank_up_b, ex_rank_up_r, TOL},
    {"expand_bidirectional", 1, {F(-1, 1, 4)}, ex_bidir_b, ex_bidir_r, TOL},
    {"expand_noop", 1, {F(-1, 1, 2, 1, 3)}, ex_noop_b, ex_noop_r, TOL},
    {"expand_mid", 1, {F(-1, 1, 2, 1, 3)}, ex_mid_b, ex_mid_r, TOL},
    {"expand_big_parallel", 1, {F(-1, 1, 1, 40, 1)}, ex_big_b, ex_big_r, TOL},

    {"constant_tensor", 0, {{0}}, b_constant, r_constant, TOL},
    {"constant_value_ints_float", 0, {{0}}, b_constant_ints, r_constant_ints, TOL},
    {"constant_of_shape", 1, {FN(-1, 1, 2, 3)}, b_cos, r_cos, TOL},

    {"chain_grad", 2, {F(-1, 1, 2, 3, 4), F(-1, 1, 3, 1, 2, 4)}, b_chain, NULL, TOL},
};

/* ---- checks beyond the table: symbolic shapes, folding, determinism ---- */

static bool shape_is(at_graph *g, at_val v, const char *want) {
    char buf[128];
    at_shape s = at_value_shape(g, v);
    at_graph_shape_str(g, &s, buf, sizeof buf);
    if (strcmp(buf, want) == 0) return true;
    fprintf(stderr, "  shape %s, want %s\n", buf, want);
    return false;
}

static void check_symbolic(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, T, 4));
    at_val s = at_shape_of(g, x);
    CHECK(shape_is(g, s, "[3]"), "Shape of rank 3");
    at_val y = at_reshape(g, x, 2, I64S(0, -1)); /* [B, T*4]: a fresh symbol */
    at_shape ys = at_value_shape(g, y);
    CHECK(ys.rank == 2 && ys.dim[0] == B && ys.dim[1] < 0 && ys.dim[1] != T, "reshape [0,-1]");
    at_val z = at_reshape_to(g, y, at_shape_of(g, x));
    CHECK(shape_is(g, z, "[B,T,4]"), "reshape_to(shape_of) keeps the symbols");
    at_val h = at_reshape(g, x, 4, I64S(0, 0, 2, -1));
    CHECK(shape_is(g, h, "[B,T,2,2]"), "hole resolved from numbers");
    at_val b = at_reshape(g, x, 3, I64S(-1, 0, 4));
    CHECK(shape_is(g, b, "[B,T,4]"), "hole resolved to the one symbol left");
    at_val t = at_transpose(g, x, 3, I64S(1, 0, 2));
    CHECK(shape_is(g, t, "[T,B,4]"), "transpose");
    at_val u = at_unsqueeze(g, x, 2, I64S(1, -1));
    CHECK(shape_is(g, u, "[B,1,T,4,1]"), "unsqueeze");
    at_val q = at_squeeze(g, u, 2, I64S(1, 4));
    CHECK(shape_is(g, q, "[B,T,4]"), "squeeze with axes");
    at_val first = at_slice(g, x, 1, I64S(0), I64S(1), I64S(1), NULL);
    CHECK(shape_is(g, first, "[B,1,4]"), "slice [0:1] of T");
    at_val all = at_slice(g, x, 1, I64S(0), I64S(INT64_MAX), I64S(1), NULL);
    CHECK(shape_is(g, all, "[B,T,4]"), "slice [0:] of T");
    at_val rev = at_slice(g, x, 1, I64S(-1), I64S(INT64_MIN), I64S(-2), I64S(-1));
    CHECK(shape_is(g, rev, "[B,T,4]"), "slice [::-1] of T");
    at_val e = at_expand(g, at_unsqueeze(g, x, 1, I64S(2)), at_const_i64s(g, 4, I64S(1, 1, 5, 1)));
    CHECK(shape_is(g, e, "[B,T,5,4]"), "expand");
    at_val e2 = at_expand(g, at_const_f32(g, 1.0f), at_shape_of(g, x));
    CHECK(shape_is(g, e2, "[B,T,4]"), "expand to shape_of");
    at_val c = at_concat(g, 2, (at_val[]){x, x}, -1);
    CHECK(shape_is(g, c, "[B,T,8]"), "concat on a number dim");
    at_val parts[2];
    CHECK_OK(at_split_into(g, c, 2, 2, NULL, parts));
    CHECK(shape_is(g, parts[1], "[B,T,4]"), "split");
    at_val zs = at_constant_of_shape(g, at_shape_of(g, x), AT_F32, 0);
    CHECK(shape_is(g, zs, "[B,T,4]"), "constant_of_shape(shape_of)");
    CHECK(at_graph_status(g) == AT_OK, "%s", at_graph_error(g));

    /* errors name the problem */
    at_val bad = at_reshape(g, x, 2, I64S(-1, -1));
    CHECK(bad == AT_NONE && strstr(at_graph_error(g), "-1"), "two -1: %s", at_graph_error(g));
    at_graph_clear_error(g);
    bad = at_squeeze(g, x, 0, NULL);
    CHECK(bad == AT_NONE, "squeeze without axes on symbols must fail");
    at_graph_clear_error(g);
    bad = at_transpose(g, x, 3, I64S(0, 0, 1));
    CHECK(bad == AT_NONE, "bad perm must fail");
    at_graph_clear_error(g);
    at_val k = at_input(g, "k", AT_F32, AT_SHAPE(2, 3));
    bad = at_reshape(g, k, 2, I64S(4, 2));
    CHECK(bad == AT_NONE, "6 elements into 8 must fail");
    at_graph_clear_error(g);
    bad = at_concat(g, 2, (at_val[]){k, at_input(g, "k2", AT_F32, AT_SHAPE(3, 3))}, 1);
    CHECK(bad == AT_NONE, "concat with mismatched dims must fail");
    at_graph_clear_error(g);
    at_graph_free(g);
}

/* Symbolic shapes through a session: the reshape back and the gradient of a concat along a
 * symbolic axis (pieces of different lengths T and S) both need shapes folded at plan time. */
static void check_plan_folding(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T"), S = at_sym(g, "S");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, T, 4));
    at_val v = at_input(g, "v", AT_F32, AT_SHAPE(B, S, 4));
    at_val wx = at_input(g, "wx", AT_F32, AT_SHAPE(B, T, 4));
    at_val wv = at_input(g, "wv", AT_F32, AT_SHAPE(B, S, 4));
    at_val y = at_reshape(g, x, 2, I64S(0, -1));
    at_val z = at_reshape_to(g, y, at_shape_of(g, x));
    at_val c = at_concat(g, 2, (at_val[]){z, v}, 1);    /* [B, ?, 4] */
    at_val cw = at_concat(g, 2, (at_val[]){wx, wv}, 1); /* [B, ?, 4] */
    at_val loss = at_reduce_sum(g, at_mul(g, c, cw), 3, I64S(0, 1, 2), 0);
    at_val wrt[4] = {x, v, wx, wv}, grads[4];
    CHECK_OK(at_backward(g, loss, wrt, 4, grads));
    CHECK(at_graph_status(g) == AT_OK, "%s", at_graph_error(g));
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "session: %s", s ? "" : err.msg);
    if (!s) {
        at_graph_free(g);
        return;
    }
    for (int bt = 0; bt < 2; bt++) {
        int64_t nb = 2 + bt, nt = 3 + 2 * bt, ns = 1 + 3 * bt;
        int64_t n[4] = {nb * nt * 4, nb * ns * 4, nb * nt * 4, nb * ns * 4};
        float *d[4];
        at_feed f[4];
        for (int k = 0; k < 4; k++) {
            d[k] = malloc(sizeof(float) * (size_t)n[k]);
            for (int64_t i = 0; i < n[k]; i++) d[k][i] = (float)((i * (k + 3)) % 11) - 5;
            f[k] = (at_feed){wrt[k], {AT_F32, AT_SHAPE(nb, k % 2 ? ns : nt, 4), d[k]}};
        }
        at_val fetch[5] = {z, grads[0], grads[1], grads[2], grads[3]};
        at_tensor out[5];
        at_status st = at_session_run(s, f, 4, fetch, 5, out, NULL, 0);
        CHECK(st == AT_OK, "run: %s", at_session_error(s));
        if (st == AT_OK) {
            CHECK(out[0].shape.rank == 3 && out[0].shape.dim[1] == nt, "z shape");
            int bad = memcmp(out[0].data, d[0], sizeof(float) * (size_t)n[0]) != 0;
            /* loss = sum(x*wx) + sum(v*wv): each gradient is its partner */
            for (int k = 0; k < 4; k++) {
                bad += !at_shape_equal(&out[1 + k].shape, &f[k].t.shape);
                if (!bad)
                    bad += memcmp(out[1 + k].data, d[k ^ 2], sizeof(float) * (size_t)n[k]) != 0;
            }
            CHECK(bad == 0, "values through folding (B=%lld T=%lld S=%lld): %d wrong",
                  (long long)nb, (long long)nt, (long long)ns, bad);
        }
        for (int k = 0; k < 4; k++) free(d[k]);
    }
    at_session_free(s);
    at_graph_free(g);
}

/* Bitwise the same result for 1 and 3 threads on the parallel paths. */
static void check_threads(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(48, 64, 40));
    at_val outs[4] = {at_transpose(g, x, 3, I64S(0, 2, 1)), at_transpose(g, x, 3, I64S(2, 1, 0)),
                      at_slice(g, x, 2, I64S(47, 1), I64S(INT64_MIN, 39), I64S(0, 2), I64S(-3, 2)),
                      at_expand(g, at_slice(g, x, 1, I64S(0), I64S(1), I64S(1), NULL),
                                at_const_i64s(g, 3, I64S(48, 30, 40)))};
    int64_t n = 48 * 64 * 40;
    float *xd = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) xd[i] = (float)((i * 7919) % 1000) / 100.0f;
    float *first[4] = {NULL};
    for (int run = 0; run < 2; run++) {
        at_session_opts o = at_session_defaults();
        o.threads = run ? 3 : 1;
        at_err err;
        at_session *s = at_session_new(g, &o, &err);
        CHECK(s != NULL, "session: %s", s ? "" : err.msg);
        if (!s) break;
        at_feed f = {x, {AT_F32, AT_SHAPE(48, 64, 40), xd}};
        at_tensor got[4];
        CHECK_OK(at_session_run(s, &f, 1, outs, 4, got, NULL, 0));
        for (int j = 0; j < 4; j++) {
            size_t bytes = at_tensor_nbytes(&got[j]);
            if (!run) {
                first[j] = malloc(bytes);
                memcpy(first[j], got[j].data, bytes);
            } else {
                CHECK(memcmp(first[j], got[j].data, bytes) == 0, "output %d differs by threads", j);
            }
        }
        at_session_free(s);
    }
    for (int j = 0; j < 4; j++) free(first[j]);
    free(xd);
    at_graph_free(g);
}

int main(int argc, char **argv) {
    int rc = oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_shape", argc, argv);
    if (argc > 1) return rc;
    check_symbolic();
    check_plan_folding();
    check_threads();
    return check_done("test_ops_shape checks") | rc;
}
