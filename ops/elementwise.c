/* Elementwise ops: broadcasting binary arithmetic, unary math and
 * activations, comparisons, casts, and the identity-like autodiff ops
 * (StopGradient, GradientReversal) with SumToShape, the reduction that
 * undoes broadcasting in gradients. */
#include <math.h>
#include <string.h>

#include "ops/op.h"
#include "ops/parallel.h"

#define PAR_MIN 32768 /* below this many elements threads cost more than they give */
/* elements per block of a split loop: a few microseconds of work, so a pool's helper pays */
#define PAR_GRAIN 8192

static const at_attr_schema no_attrs[] = {{NULL, 0, false}};

/* Defines a broadcasting kernel loop for one op over element type T:
 * EXPR computes the result from a and b. */
#define BINARY_LOOP(T, TO, EXPR)                                                                   \
    do {                                                                                           \
        const T *A = (const T *)k->in[0].data, *Bp = (const T *)k->in[1].data;                     \
        TO *Y = (TO *)k->out[0].data;                                                              \
        const at_shape *os = &k->out[0].shape;                                                     \
        int64_t n = at_shape_numel(os);                                                            \
        int64_t na = at_shape_numel(&k->in[0].shape), nb = at_shape_numel(&k->in[1].shape);        \
        if (na == n && nb == n) {                                                                  \
            _Pragma("omp parallel for num_threads(nt) if(n > PAR_MIN) schedule(static)") for (     \
                int64_t i = 0; i < n; i++) {                                                       \
                T a = A[i], b = Bp[i];                                                             \
                Y[i] = (TO)(EXPR);                                                                 \
            }                                                                                      \
        } else if (nb == 1 && na == n) {                                                           \
            const T b = Bp[0];                                                                     \
            _Pragma("omp parallel for num_threads(nt) if(n > PAR_MIN) schedule(static)") for (     \
                int64_t i = 0; i < n; i++) {                                                       \
                T a = A[i];                                                                        \
                Y[i] = (TO)(EXPR);                                                                 \
            }                                                                                      \
        } else if (n > 0) {                                                                        \
            int64_t sa[AT_MAX_RANK], sb[AT_MAX_RANK];                                              \
            at_bcast_strides(&k->in[0].shape, os, sa);                                             \
            at_bcast_strides(&k->in[1].shape, os, sb);                                             \
            int r = os->rank;                                                                      \
            int64_t inner = r ? os->dim[r - 1] : 1, rows = n / inner;                              \
            int64_t ia = r ? sa[r - 1] : 0, ib = r ? sb[r - 1] : 0;                                \
            _Pragma("omp parallel for num_threads(nt) if(n > PAR_MIN) schedule(static)") for (     \
                int64_t row = 0; row < rows; row++) {                                              \
                const T *pa = A + at_row_offset(os, sa, row),                                      \
                        *pb = Bp + at_row_offset(os, sb, row);                                     \
                TO *py = Y + row * inner;                                                          \
                for (int64_t j = 0; j < inner; j++) {                                              \
                    T a = pa[j * ia], b = pb[j * ib];                                              \
                    py[j] = (TO)(EXPR);                                                            \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* ---- shape rules ---- */

static bool is_num(at_dtype t) {
    return t == AT_F32 || t == AT_I64 || t == AT_I32;
}

static at_status binary_infer(at_infer_ctx *c) {
    if (c->in_dtype[0] != c->in_dtype[1])
        return at_infer_fail(c, AT_E_SHAPE, "dtypes differ (%s vs %s)",
                             at_dtype_name(c->in_dtype[0]), at_dtype_name(c->in_dtype[1]));
    if (!is_num(c->in_dtype[0]))
        return at_infer_fail(c, AT_E_SHAPE, "dtype %s not supported",
                             at_dtype_name(c->in_dtype[0]));
    c->out_dtype[0] = c->in_dtype[0];
    return at_broadcast_shapes(&c->in_shape[0], &c->in_shape[1], &c->out_shape[0], c->msg,
                               sizeof c->msg);
}

static at_status float_binary_infer(at_infer_ctx *c) {
    at_status st = binary_infer(c);
    if (st == AT_OK && c->in_dtype[0] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "float32 only");
    return st;
}

static at_status equal_infer(at_infer_ctx *c) {
    if (c->in_dtype[0] != c->in_dtype[1])
        return at_infer_fail(c, AT_E_SHAPE, "dtypes differ (%s vs %s)",
                             at_dtype_name(c->in_dtype[0]), at_dtype_name(c->in_dtype[1]));
    c->out_dtype[0] = AT_BOOL;
    return at_broadcast_shapes(&c->in_shape[0], &c->in_shape[1], &c->out_shape[0], c->msg,
                               sizeof c->msg);
}

static at_status float_unary_infer(at_infer_ctx *c) {
    if (c->in_dtype[0] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "float32 only, got %s", at_dtype_name(c->in_dtype[0]));
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = c->in_shape[0];
    return AT_OK;
}

static at_status gelu_infer(at_infer_ctx *c) {
    const char *a = at_attr_str(c->node, "approximate", "none");
    if (strcmp(a, "none") != 0 && strcmp(a, "tanh") != 0)
        return at_infer_fail(c, AT_E_INVALID,
                             "approximate must be \"none\" or \"tanh\", got \"%s\"", a);
    return float_unary_infer(c);
}

static at_status same_infer(at_infer_ctx *c) {
    c->out_dtype[0] = c->in_dtype[0];
    c->out_shape[0] = c->in_shape[0];
    return AT_OK;
}

static at_status numeric_unary_infer(at_infer_ctx *c) {
    if (!is_num(c->in_dtype[0]))
        return at_infer_fail(c, AT_E_SHAPE, "dtype %s not supported",
                             at_dtype_name(c->in_dtype[0]));
    return same_infer(c);
}

/* Backward ops (dy, x-or-y, ...) -> dx of dy's shape. */
static at_status grad_infer(at_infer_ctx *c) {
    for (int i = 0; i < 2; i++)
        if (c->in_dtype[i] != AT_F32) return at_infer_fail(c, AT_E_SHAPE, "float32 only");
    if (!at_shape_equal(&c->in_shape[0], &c->in_shape[1]) && c->concrete)
        return at_infer_fail(c, AT_E_SHAPE, "gradient and saved value shapes differ");
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = c->in_shape[0];
    return AT_OK;
}

/* ---- binary kernels ---- */

/* float32 Add, Sub, Mul and Div split by parallel.h: over elements when no input broadcasts or b
 * is a scalar, else over output rows. */
typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } bin_op;

typedef struct {
    bin_op op;
    const float *a, *b;
    float *y;
    const at_shape *os;
    const int64_t *sa, *sb;
    int64_t inner, ia, ib; /* rows: row length and the inputs' last-dim strides */
    bool scalar_b;
} bin_job;

#define BIN_SPAN(Y, N, A_AT, B_AT)                                                                 \
    switch (j->op) {                                                                               \
    case BIN_ADD:                                                                                  \
        for (int64_t i = 0; i < (N); i++) (Y)[i] = (A_AT) + (B_AT);                                \
        break;                                                                                     \
    case BIN_SUB:                                                                                  \
        for (int64_t i = 0; i < (N); i++) (Y)[i] = (A_AT) - (B_AT);                                \
        break;                                                                                     \
    case BIN_MUL:                                                                                  \
        for (int64_t i = 0; i < (N); i++) (Y)[i] = (A_AT) * (B_AT);                                \
        break;                                                                                     \
    case BIN_DIV:                                                                                  \
        for (int64_t i = 0; i < (N); i++) (Y)[i] = (A_AT) / (B_AT);                                \
        break;                                                                                     \
    }

static void bin_elems(void *arg, int64_t lo, int64_t hi) {
    const bin_job *j = arg;
    const float *a = j->a + lo, *b = j->b + lo; /* locals: stores to y cannot move them */
    float *y = j->y + lo;
    if (j->scalar_b) {
        const float s = j->b[0];
        BIN_SPAN(y, hi - lo, a[i], s);
    } else {
        BIN_SPAN(y, hi - lo, a[i], b[i]);
    }
}

static void bin_rows(void *arg, int64_t lo, int64_t hi) {
    const bin_job *j = arg;
    const int64_t inner = j->inner, ia = j->ia,
                  ib = j->ib; /* locals: stores to y cannot move them */
    for (int64_t row = lo; row < hi; row++) {
        const float *a = j->a + at_row_offset(j->os, j->sa, row);
        const float *b = j->b + at_row_offset(j->os, j->sb, row);
        float *y = j->y + row * inner;
        if (ia == 1 && ib == 1) {
            BIN_SPAN(y, inner, a[i], b[i]);
        } else if (ia == 1 && ib == 0) {
            const float s = b[0];
            BIN_SPAN(y, inner, a[i], s);
        } else {
            BIN_SPAN(y, inner, a[i * ia], b[i * ib]);
        }
    }
}

static void binary_f32(at_kernel_ctx *k, bin_op op) {
    const at_shape *os = &k->out[0].shape;
    int64_t n = at_shape_numel(os);
    int64_t na = at_shape_numel(&k->in[0].shape), nb = at_shape_numel(&k->in[1].shape);
    bin_job j = {op, k->in[0].data,     k->in[1].data, k->out[0].data, os, NULL, NULL, 0, 0,
                 0,  nb == 1 && na == n};
    if (na == n && (nb == n || nb == 1)) {
        at_par_range(k, n, PAR_GRAIN, 16, bin_elems, &j);
        return;
    }
    int64_t sa[AT_MAX_RANK], sb[AT_MAX_RANK];
    at_bcast_strides(&k->in[0].shape, os, sa);
    at_bcast_strides(&k->in[1].shape, os, sb);
    int r = os->rank;
    j.sa = sa, j.sb = sb;
    j.inner = r ? os->dim[r - 1] : 1;
    j.ia = r ? sa[r - 1] : 0, j.ib = r ? sb[r - 1] : 0;
    int64_t rows = n / (j.inner ? j.inner : 1);
    if (j.inner == 0) return;
    at_par_range(k, rows, PAR_GRAIN / j.inner + 1, 1, bin_rows, &j);
}

#define DEFINE_BINARY(NAME, OP, EXPR)                                                              \
    static at_status NAME##_cpu(at_kernel_ctx *k) {                                                \
        int nt = k->threads;                                                                       \
        switch (k->in[0].dtype) {                                                                  \
        case AT_F32:                                                                               \
            binary_f32(k, OP);                                                                     \
            break;                                                                                 \
        case AT_I64:                                                                               \
            BINARY_LOOP(int64_t, int64_t, EXPR);                                                   \
            break;                                                                                 \
        case AT_I32:                                                                               \
            BINARY_LOOP(int32_t, int32_t, EXPR);                                                   \
            break;                                                                                 \
        default:                                                                                   \
            return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype not supported");                     \
        }                                                                                          \
        return AT_OK;                                                                              \
    }

DEFINE_BINARY(add, BIN_ADD, a + b)
DEFINE_BINARY(sub, BIN_SUB, a - b)
DEFINE_BINARY(mul, BIN_MUL, a *b)

static at_status div_cpu(at_kernel_ctx *k) {
    int nt = k->threads;
    switch (k->in[0].dtype) {
    case AT_F32:
        binary_f32(k, BIN_DIV);
        break;
    case AT_I64:
        BINARY_LOOP(int64_t, int64_t, b ? a / b : 0);
        break;
    case AT_I32:
        BINARY_LOOP(int32_t, int32_t, b ? a / b : 0);
        break;
    default:
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype not supported");
    }
    return AT_OK;
}

static at_status pow_cpu(at_kernel_ctx *k) {
    int nt = k->threads;
    BINARY_LOOP(float, float, powf(a, b));
    return AT_OK;
}

static at_status equal_cpu(at_kernel_ctx *k) {
    int nt = k->threads;
    switch (k->in[0].dtype) {
    case AT_F32:
        BINARY_LOOP(float, uint8_t, a == b);
        break;
    case AT_I64:
        BINARY_LOOP(int64_t, uint8_t, a == b);
        break;
    case AT_I32:
        BINARY_LOOP(int32_t, uint8_t, a == b);
        break;
    case AT_BOOL:
    case AT_U8:
        BINARY_LOOP(uint8_t, uint8_t, a == b);
        break;
    default:
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype not supported");
    }
    return AT_OK;
}

/* ---- unary kernels ---- */

#define DEFINE_UNARY_F32(NAME, EXPR)                                                               \
    static at_status NAME##_cpu(at_kernel_ctx *k) {                                                \
        const float *X = (const float *)k->in[0].data;                                             \
        float *Y = (float *)k->out[0].data;                                                        \
        int64_t n = at_shape_numel(&k->out[0].shape);                                              \
        const float alpha = at_attr_float(k->node, "alpha", 0.01f);                                \
        const bool approx = strcmp(at_attr_str(k->node, "approximate", "none"), "tanh") == 0;      \
        (void)alpha, (void)approx;                                                                 \
        _Pragma("omp parallel for num_threads(k->threads) if(n > PAR_MIN) schedule(static)") for ( \
            int64_t i = 0; i < n; i++) {                                                           \
            float x = X[i];                                                                        \
            Y[i] = (EXPR);                                                                         \
        }                                                                                          \
        return AT_OK;                                                                              \
    }

/* ---- the transcendental activations: vector spans (ops/vmath.h), AVX-512 or AVX2 where the
 * CPU has it (runtime/cpu/vec_avx512.c, vec_avx2.c), over VEC_CHUNK-element chunks that
 * threads split ---- */
#define VM_BYTES    16
#define VM_FN(name) name##_base
#include "ops/vmath.h"
#include "runtime/cpu/dropout_avx512.h"
#include "runtime/cpu/vec.h"

enum { VEC_CHUNK = 4096 };

typedef void (*span1_fn)(const float *x, float *y, int64_t n, bool approx);

typedef struct span1_job {
    span1_fn f;
    const float *x;
    float *y;
    int64_t n;
    bool approx;
} span1_job;

static void span1_range(void *arg, int64_t lo, int64_t hi) {
    const span1_job *j = arg;
    j->f(j->x + lo, j->y + lo, hi - lo, j->approx);
}

static at_status span1_run(at_kernel_ctx *k, span1_fn f) {
    int64_t n = at_shape_numel(&k->out[0].shape);
    const bool approx = strcmp(at_attr_str(k->node, "approximate", "none"), "tanh") == 0;
    span1_job j = {f, k->in[0].data, k->out[0].data, n, approx};
    at_par_range(k, n, VEC_CHUNK, 16, span1_range, &j);
    return AT_OK;
}

static at_status gelu_cpu(at_kernel_ctx *k) {
    return span1_run(k, AT_VM_PICK(at_vm_gelu));
}
static at_status tanh_cpu(at_kernel_ctx *k) {
    return span1_run(k, AT_VM_PICK(at_vm_tanh));
}
static at_status sigmoid_cpu(at_kernel_ctx *k) {
    return span1_run(k, AT_VM_PICK(at_vm_sigmoid));
}

DEFINE_UNARY_F32(relu, x > 0 ? x : 0.0f)
DEFINE_UNARY_F32(exp, expf(x))
DEFINE_UNARY_F32(log, logf(x))
DEFINE_UNARY_F32(sqrt, sqrtf(x))
DEFINE_UNARY_F32(leaky_relu, x >= 0 ? x : alpha * x)

#define DEFINE_UNARY_NUM(NAME, EXPR)                                                               \
    static at_status NAME##_cpu(at_kernel_ctx *k) {                                                \
        int64_t n = at_shape_numel(&k->out[0].shape);                                              \
        switch (k->in[0].dtype) {                                                                  \
        case AT_F32: {                                                                             \
            const float *X = k->in[0].data;                                                        \
            float *Y = k->out[0].data;                                                             \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float x = X[i];                                                                    \
                Y[i] = (float)(EXPR);                                                              \
            }                                                                                      \
        } break;                                                                                   \
        case AT_I64: {                                                                             \
            const int64_t *X = k->in[0].data;                                                      \
            int64_t *Y = k->out[0].data;                                                           \
            for (int64_t i = 0; i < n; i++) {                                                      \
                int64_t x = X[i];                                                                  \
                Y[i] = (int64_t)(EXPR);                                                            \
            }                                                                                      \
        } break;                                                                                   \
        case AT_I32: {                                                                             \
            const int32_t *X = k->in[0].data;                                                      \
            int32_t *Y = k->out[0].data;                                                           \
            for (int64_t i = 0; i < n; i++) {                                                      \
                int32_t x = X[i];                                                                  \
                Y[i] = (int32_t)(EXPR);                                                            \
            }                                                                                      \
        } break;                                                                                   \
        default:                                                                                   \
            return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype not supported");                     \
        }                                                                                          \
        return AT_OK;                                                                              \
    }

DEFINE_UNARY_NUM(neg, -x)
DEFINE_UNARY_NUM(abs, x < 0 ? -x : x)
DEFINE_UNARY_NUM(sign, (x > 0) - (x < 0))

static at_status copy_cpu(at_kernel_ctx *k) {
    size_t bytes = at_tensor_nbytes(&k->out[0]);
    if (bytes && k->out[0].data != k->in[0].data) memcpy(k->out[0].data, k->in[0].data, bytes);
    return AT_OK;
}

static at_status not_infer(at_infer_ctx *c) {
    if (c->in_dtype[0] != AT_BOOL) return at_infer_fail(c, AT_E_SHAPE, "bool only");
    return same_infer(c);
}

static at_status not_cpu(at_kernel_ctx *k) {
    const uint8_t *X = k->in[0].data;
    uint8_t *Y = k->out[0].data;
    int64_t n = at_shape_numel(&k->out[0].shape);
    for (int64_t i = 0; i < n; i++) Y[i] = !X[i];
    return AT_OK;
}

/* ---- Where ---- */

static at_status where_infer(at_infer_ctx *c) {
    if (c->in_dtype[0] != AT_BOOL) return at_infer_fail(c, AT_E_SHAPE, "condition must be bool");
    if (c->in_dtype[1] != c->in_dtype[2])
        return at_infer_fail(c, AT_E_SHAPE, "branch dtypes differ");
    at_shape t;
    if (at_broadcast_shapes(&c->in_shape[0], &c->in_shape[1], &t, c->msg, sizeof c->msg))
        return AT_E_SHAPE;
    c->out_dtype[0] = c->in_dtype[1];
    return at_broadcast_shapes(&t, &c->in_shape[2], &c->out_shape[0], c->msg, sizeof c->msg);
}

static at_status where_cpu(at_kernel_ctx *k) {
    const at_shape *os = &k->out[0].shape;
    int64_t n = at_shape_numel(os);
    if (n == 0) return AT_OK;
    int64_t s0[AT_MAX_RANK], s1[AT_MAX_RANK], s2[AT_MAX_RANK];
    at_bcast_strides(&k->in[0].shape, os, s0);
    at_bcast_strides(&k->in[1].shape, os, s1);
    at_bcast_strides(&k->in[2].shape, os, s2);
    int r = os->rank;
    int64_t inner = r ? os->dim[r - 1] : 1, rows = n / inner;
    int64_t i0 = r ? s0[r - 1] : 0, i1 = r ? s1[r - 1] : 0, i2 = r ? s2[r - 1] : 0;
    size_t es = at_dtype_size(k->out[0].dtype);
    const uint8_t *C = k->in[0].data;
    const char *A = k->in[1].data, *B = k->in[2].data;
    char *Y = k->out[0].data;
#pragma omp parallel for num_threads(k->threads) if (n > PAR_MIN) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        const uint8_t *pc = C + at_row_offset(os, s0, row);
        const char *pa = A + (size_t)at_row_offset(os, s1, row) * es;
        const char *pb = B + (size_t)at_row_offset(os, s2, row) * es;
        char *py = Y + (size_t)(row * inner) * es;
        for (int64_t j = 0; j < inner; j++) {
            const char *src = pc[j * i0] ? pa + (size_t)(j * i1) * es : pb + (size_t)(j * i2) * es;
            memcpy(py + (size_t)j * es, src, es);
        }
    }
    return AT_OK;
}

/* ---- Cast ---- */

static const at_attr_schema cast_attrs[] = {
    {"to", AT_ATTR_INT, true}, {"saturate", AT_ATTR_INT, false}, {NULL, 0, false}};

static bool cast_ok(at_dtype t) {
    return t == AT_F32 || t == AT_I64 || t == AT_I32 || t == AT_BOOL || t == AT_U8;
}

static at_status cast_infer(at_infer_ctx *c) {
    at_dtype to = (at_dtype)at_attr_int(c->node, "to", 0);
    if (!cast_ok(to) || !cast_ok(c->in_dtype[0]))
        return at_infer_fail(c, AT_E_UNSUPPORTED, "cast %s -> %s not supported",
                             at_dtype_name(c->in_dtype[0]), at_dtype_name(to));
    c->out_dtype[0] = to;
    c->out_shape[0] = c->in_shape[0];
    return AT_OK;
}

static double load_num(const void *p, at_dtype t, int64_t i) {
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

/* Float to integer conversion is undefined in C outside the target range:
 * saturate, and map NaN to 0. */
static double sat(double v, double lo, double hi) {
    if (v != v) return 0;
    return v < lo ? lo : (v > hi ? hi : v);
}

static int64_t sat_i64(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX; /* the double is 2^63 */
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

static at_status cast_cpu(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->out[0].shape);
    at_dtype ti = k->in[0].dtype, to = k->out[0].dtype;
    const void *X = k->in[0].data;
    void *Y = k->out[0].data;
    if (ti == AT_I64 && to == AT_I64) return copy_cpu(k);
    for (int64_t i = 0; i < n; i++) {
        if (ti == AT_I64 && to != AT_F32) { /* keep int64 exact */
            int64_t v = ((const int64_t *)X)[i];
            if (to == AT_I32)
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
            ((int64_t *)Y)[i] = sat_i64(v);
            break;
        case AT_I32:
            ((int32_t *)Y)[i] = (int32_t)sat(v, INT32_MIN, INT32_MAX);
            break;
        case AT_BOOL:
            ((uint8_t *)Y)[i] = v != 0;
            break;
        default:
            ((uint8_t *)Y)[i] = (uint8_t)sat(v, 0, 255);
            break;
        }
    }
    return AT_OK;
}

/* ---- Clip (min/max as optional scalar inputs, ONNX 11+) ---- */

static at_status clip_infer(at_infer_ctx *c) {
    for (int i = 1; i < c->n_in; i++)
        if (c->in_dtype[i] != AT_UNDEFINED &&
            (c->in_dtype[i] != c->in_dtype[0] || c->in_shape[i].rank != 0))
            return at_infer_fail(c, AT_E_SHAPE, "min/max must be scalars of the input's dtype");
    return float_unary_infer(c);
}

static at_status clip_cpu(at_kernel_ctx *k) {
    float lo = k->n_in > 1 && k->in[1].data ? *(const float *)k->in[1].data : -INFINITY;
    float hi = k->n_in > 2 && k->in[2].data ? *(const float *)k->in[2].data : INFINITY;
    const float *X = k->in[0].data;
    float *Y = k->out[0].data;
    int64_t n = at_shape_numel(&k->out[0].shape);
#pragma omp parallel for num_threads(k->threads) if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) Y[i] = X[i] < lo ? lo : (X[i] > hi ? hi : X[i]);
    return AT_OK;
}

/* ClipGrad(dy, x, min, max): dy where min <= x <= max. */
static at_status clip_grad_cpu(at_kernel_ctx *k) {
    float lo = k->n_in > 2 && k->in[2].data ? *(const float *)k->in[2].data : -INFINITY;
    float hi = k->n_in > 3 && k->in[3].data ? *(const float *)k->in[3].data : INFINITY;
    const float *D = k->in[0].data, *X = k->in[1].data;
    float *Y = k->out[0].data;
    int64_t n = at_shape_numel(&k->out[0].shape);
    for (int64_t i = 0; i < n; i++) Y[i] = X[i] >= lo && X[i] <= hi ? D[i] : 0.0f;
    return AT_OK;
}

/* ---- backward kernels of the activations: (dy, saved) -> dx ---- */

typedef struct {
    const float *d, *s;
    float *y;
    float alpha;
    bool approx;
    void (*f)(const float *, const float *, float *, int64_t, bool);
} grad_job;

#define DEFINE_GRAD(NAME, EXPR)                                                                    \
    static void NAME##_range(void *arg, int64_t lo, int64_t hi) {                                  \
        const grad_job *j = arg;                                                                   \
        const float *D = j->d, *S = j->s, alpha = j->alpha;                                        \
        float *Y = j->y;                                                                           \
        (void)alpha;                                                                               \
        for (int64_t i = lo; i < hi; i++) {                                                        \
            float d = D[i], s = S[i];                                                              \
            Y[i] = (EXPR);                                                                         \
        }                                                                                          \
    }                                                                                              \
    static at_status NAME##_cpu(at_kernel_ctx *k) {                                                \
        grad_job j = {k->in[0].data,  k->in[1].data,                                               \
                      k->out[0].data, at_attr_float(k->node, "alpha", 0.01f),                      \
                      false,          NULL};                                                       \
        at_par_range(k, at_shape_numel(&k->out[0].shape), PAR_GRAIN, 16, NAME##_range, &j);        \
        return AT_OK;                                                                              \
    }

/* GeluGrad(dy, x) over spans, as the activations above. */
static void gelu_grad_range(void *arg, int64_t lo, int64_t hi) {
    const grad_job *j = arg;
    j->f(j->d + lo, j->s + lo, j->y + lo, hi - lo, j->approx);
}

static at_status gelu_grad_cpu(at_kernel_ctx *k) {
    grad_job j = {k->in[0].data,
                  k->in[1].data,
                  k->out[0].data,
                  0.0f,
                  strcmp(at_attr_str(k->node, "approximate", "none"), "tanh") == 0,
                  AT_VM_PICK(at_vm_gelu_grad)};
    at_par_range(k, at_shape_numel(&k->out[0].shape), VEC_CHUNK, 16, gelu_grad_range, &j);
    return AT_OK;
}

DEFINE_GRAD(relu_grad, s > 0 ? d : 0.0f)             /* s = y */
DEFINE_GRAD(tanh_grad, d *(1.0f - s * s))            /* s = y */
DEFINE_GRAD(sigmoid_grad, d *s *(1.0f - s))          /* s = y */
DEFINE_GRAD(leaky_relu_grad, s >= 0 ? d : d * alpha) /* s = x */

/* ---- SumToShape(x, ref): sum x over its broadcast dims down to ref's shape ---- */

static at_status sum_to_infer(at_infer_ctx *c) {
    if (c->in_dtype[0] != AT_F32) return at_infer_fail(c, AT_E_SHAPE, "float32 only");
    const at_shape *x = &c->in_shape[0], *r = &c->in_shape[1];
    if (r->rank > x->rank)
        return at_infer_fail(c, AT_E_SHAPE, "target rank %d exceeds input rank %d", r->rank,
                             x->rank);
    for (int i = 0; i < r->rank; i++) {
        int64_t dr = r->dim[i], dx = x->dim[x->rank - r->rank + i];
        if (dr >= 0 && dx >= 0 && dr != 1 && dr != dx)
            return at_infer_fail(c, AT_E_SHAPE, "dim %d: %lld cannot sum to %lld", i, (long long)dx,
                                 (long long)dr);
    }
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = *r;
    return AT_OK;
}

typedef struct {
    const float *x;
    float *y;
    int64_t rows, ny;
} lead_job;

/* Column blocks [lo, hi) of 64 of a sum over leading rows. */
static void lead_sum(void *arg, int64_t lo, int64_t hi) {
    const lead_job *j = arg;
    const float *X = j->x;
    float *Y = j->y;
    const int64_t ny = j->ny, rows = j->rows;
    int64_t j0 = lo * 64, j1 = hi * 64 < ny ? hi * 64 : ny;
    for (int64_t c = j0; c < j1; c++) Y[c] = 0.0f;
    for (int64_t r = 0; r < rows; r++) {
        const float *px = X + r * ny;
        for (int64_t c = j0; c < j1; c++) Y[c] += px[c];
    }
}

static at_status sum_to_cpu(at_kernel_ctx *k) {
    const at_shape *xs = &k->in[0].shape, *os = &k->out[0].shape;
    const float *X = k->in[0].data;
    float *Y = k->out[0].data;
    int64_t nx = at_shape_numel(xs), ny = at_shape_numel(os);
    if (ny == 0) return AT_OK;
    if (nx == 0) { /* a sum over an empty dim: zeros (the paths below would read X[0]) */
        memset(Y, 0, (size_t)ny * sizeof *Y);
        return AT_OK;
    }
    if (nx == ny) return copy_cpu(k);
    /* Fast path: only leading dims are summed (bias gradients): a sum of
     * rows, split over column blocks so every thread owns its outputs. */
    int lead = xs->rank - os->rank;
    bool leading_only = true;
    for (int i = 0; i < os->rank; i++)
        if (os->dim[i] != xs->dim[lead + i]) leading_only = false;
    if (leading_only) {
        /* Column blocks of 64: contiguous reads, fixed summation order. */
        lead_job j = {X, Y, nx / ny, ny};
        at_par_range(k, (ny + 63) / 64, PAR_GRAIN / (64 * j.rows) + 1, 1, lead_sum, &j);
        return AT_OK;
    }
    /* General path: each output element sums its preimage (odometer over
     * the summed dims), so threads never share an output. */
    at_shape al; /* ref aligned to x's rank */
    al.rank = xs->rank;
    for (int i = 0; i < xs->rank; i++) al.dim[i] = i < lead ? 1 : os->dim[i - lead];
    int64_t xst[AT_MAX_RANK];
    int64_t s = 1;
    for (int i = xs->rank - 1; i >= 0; i--) xst[i] = s, s *= xs->dim[i];
    int red[AT_MAX_RANK], nred = 0;
    for (int i = 0; i < xs->rank; i++)
        if (al.dim[i] == 1 && xs->dim[i] != 1) red[nred++] = i;
    /* Trailing dims kept whole (the gradient of a [B,T,1,a] + [B,1,T,a] broadcast): each
     * output row is a sum of contiguous input rows, added a row at a time in a fixed order,
     * so the inner loop vectorizes instead of gathering one strided element at a time. */
    int keep = xs->rank;
    while (keep > 0 && al.dim[keep - 1] == xs->dim[keep - 1]) keep--;
    int64_t inner = keep > 0 ? xst[keep - 1] : nx;
    if (keep > 0 && keep < xs->rank && inner >= 16 && nx > 0) {
        int64_t rows = ny / inner;
#pragma omp parallel for num_threads(k->threads) if (nx > PAR_MIN) schedule(static)
        for (int64_t o = 0; o < rows; o++) {
            int64_t base = 0, rem = o;
            for (int i = keep - 1; i >= 0; i--) {
                int64_t d = al.dim[i];
                if (d != 1) base += (rem % d) * xst[i];
                rem /= d;
            }
            float *y = Y + o * inner;
            for (int64_t j = 0; j < inner; j++) y[j] = 0.0f;
            int64_t idx[AT_MAX_RANK] = {0};
            for (;;) {
                int64_t off = base;
                for (int q = 0; q < nred; q++) off += idx[q] * xst[red[q]];
                const float *x = X + off;
                for (int64_t j = 0; j < inner; j++) y[j] += x[j];
                int q = nred - 1;
                while (q >= 0 && ++idx[q] == xs->dim[red[q]]) idx[q--] = 0;
                if (q < 0) break;
            }
        }
        return AT_OK;
    }
#pragma omp parallel for num_threads(k->threads) if (nx > PAR_MIN) schedule(static)
    for (int64_t o = 0; o < ny; o++) {
        int64_t base = 0, rem = o;
        for (int i = xs->rank - 1; i >= 0; i--) {
            int64_t d = al.dim[i];
            if (d != 1) base += (rem % d) * xst[i];
            rem /= d;
        }
        int64_t idx[AT_MAX_RANK] = {0};
        double acc = 0;
        for (;;) {
            int64_t off = base;
            for (int q = 0; q < nred; q++) off += idx[q] * xst[red[q]];
            acc += X[off];
            int q = nred - 1;
            while (q >= 0 && ++idx[q] == xs->dim[red[q]]) idx[q--] = 0;
            if (q < 0) break;
        }
        Y[o] = (float)acc;
    }
    return AT_OK;
}

/* ---- gradient rules ---- */

/* d reduced to the shape of input v, skipping the reduction when the
 * shapes already agree at build time. */
static at_val unbroadcast(at_graph *g, at_val d, at_val v) {
    at_shape sd = at_value_shape(g, d), sv = at_value_shape(g, v);
    if (at_shape_equal(&sd, &sv)) return d;
    return at_sum_to_shape(g, d, v);
}

static at_status add_grad(at_grad_ctx *c) {
    if (c->need[0]) c->dx[0] = unbroadcast(c->g, c->dy[0], at_grad_in(c, 0));
    if (c->need[1]) c->dx[1] = unbroadcast(c->g, c->dy[0], at_grad_in(c, 1));
    return at_graph_status(c->g);
}

static at_status sub_grad(at_grad_ctx *c) {
    if (c->need[0]) c->dx[0] = unbroadcast(c->g, c->dy[0], at_grad_in(c, 0));
    if (c->need[1]) c->dx[1] = unbroadcast(c->g, at_neg(c->g, c->dy[0]), at_grad_in(c, 1));
    return at_graph_status(c->g);
}

static at_status mul_grad(at_grad_ctx *c) {
    at_val a = at_grad_in(c, 0), b = at_grad_in(c, 1);
    if (c->need[0]) c->dx[0] = unbroadcast(c->g, at_mul(c->g, c->dy[0], b), a);
    if (c->need[1]) c->dx[1] = unbroadcast(c->g, at_mul(c->g, c->dy[0], a), b);
    return at_graph_status(c->g);
}

static at_status div_grad(at_grad_ctx *c) {
    at_graph *g = c->g;
    at_val a = at_grad_in(c, 0), b = at_grad_in(c, 1), y = at_grad_out(c, 0);
    if (c->need[0]) c->dx[0] = unbroadcast(g, at_div(g, c->dy[0], b), a);
    if (c->need[1]) /* d(a/b)/db = -y/b */
        c->dx[1] = unbroadcast(g, at_neg(g, at_div(g, at_mul(g, c->dy[0], y), b)), b);
    return at_graph_status(g);
}

static at_status pow_grad(at_grad_ctx *c) {
    at_graph *g = c->g;
    at_val a = at_grad_in(c, 0), b = at_grad_in(c, 1), y = at_grad_out(c, 0);
    if (c->need[0]) {
        at_val bm1 = at_sub(g, b, at_const_f32(g, 1.0f));
        at_val d = at_mul(g, c->dy[0], at_mul(g, b, at_pow(g, a, bm1)));
        c->dx[0] = unbroadcast(g, d, a);
    }
    if (c->need[1]) c->dx[1] = unbroadcast(g, at_mul(g, c->dy[0], at_mul(g, y, at_log(g, a))), b);
    return at_graph_status(g);
}

static at_status where_grad(at_grad_ctx *c) {
    at_graph *g = c->g;
    at_val cond = at_grad_in(c, 0), zero = at_const_f32(g, 0.0f);
    if (c->need[1]) c->dx[1] = unbroadcast(g, at_where(g, cond, c->dy[0], zero), at_grad_in(c, 1));
    if (c->need[2]) c->dx[2] = unbroadcast(g, at_where(g, cond, zero, c->dy[0]), at_grad_in(c, 2));
    return at_graph_status(g);
}

static at_status neg_grad(at_grad_ctx *c) {
    c->dx[0] = at_neg(c->g, c->dy[0]);
    return at_graph_status(c->g);
}

static at_status abs_grad(at_grad_ctx *c) {
    c->dx[0] = at_mul(c->g, c->dy[0], at_sign(c->g, at_grad_in(c, 0)));
    return at_graph_status(c->g);
}

static at_status pass_grad(at_grad_ctx *c) {
    c->dx[0] = c->dy[0];
    return AT_OK;
}

/* Emits Op(dy, saved) -> dx, copying the forward node's attributes. */
static at_status saved_grad(at_grad_ctx *c, const char *op, at_val saved) {
    const at_node_rec *n = at_grad_node(c);
    at_attr attrs[2];
    int na = 0;
    const at_attr_rec *al = at_attr_find(n, "alpha");
    if (al) attrs[na++] = AT_ATTR_F("alpha", al->f);
    const at_attr_rec *ap = at_attr_find(n, "approximate");
    if (ap) attrs[na++] = AT_ATTR_S("approximate", ap->s);
    at_val in[2] = {c->dy[0], saved};
    c->dx[0] = at_node1(c->g, op, in, 2, attrs, na);
    return at_graph_status(c->g);
}

static at_status relu_grad(at_grad_ctx *c) {
    return saved_grad(c, "ReluGrad", at_grad_out(c, 0));
}
static at_status tanh_grad(at_grad_ctx *c) {
    return saved_grad(c, "TanhGrad", at_grad_out(c, 0));
}
static at_status sigmoid_grad(at_grad_ctx *c) {
    return saved_grad(c, "SigmoidGrad", at_grad_out(c, 0));
}
static at_status gelu_grad(at_grad_ctx *c) {
    return saved_grad(c, "GeluGrad", at_grad_in(c, 0));
}
static at_status leaky_relu_grad(at_grad_ctx *c) {
    return saved_grad(c, "LeakyReluGrad", at_grad_in(c, 0));
}

static at_status exp_grad(at_grad_ctx *c) {
    c->dx[0] = at_mul(c->g, c->dy[0], at_grad_out(c, 0));
    return at_graph_status(c->g);
}

static at_status log_grad(at_grad_ctx *c) {
    c->dx[0] = at_div(c->g, c->dy[0], at_grad_in(c, 0));
    return at_graph_status(c->g);
}

static at_status sqrt_grad(at_grad_ctx *c) {
    at_graph *g = c->g;
    c->dx[0] = at_div(g, at_mul(g, c->dy[0], at_const_f32(g, 0.5f)), at_grad_out(c, 0));
    return at_graph_status(g);
}

static at_status cast_grad(at_grad_ctx *c) {
    at_dtype from = at_value_dtype(c->g, at_grad_in(c, 0));
    if (from == AT_F32) c->dx[0] = at_cast(c->g, c->dy[0], AT_F32);
    return at_graph_status(c->g);
}

static at_status clip_grad(at_grad_ctx *c) {
    const at_node_rec *n = at_grad_node(c);
    at_val in[4] = {c->dy[0], n->in[0], n->n_in > 1 ? n->in[1] : AT_NONE,
                    n->n_in > 2 ? n->in[2] : AT_NONE};
    c->dx[0] = at_node1(c->g, "ClipGrad", in, 4, NULL, 0);
    return at_graph_status(c->g);
}

static at_status grl_grad(at_grad_ctx *c) {
    at_graph *g = c->g;
    c->dx[0] = at_mul(g, c->dy[0], at_neg(g, at_grad_in(c, 1)));
    return at_graph_status(g);
}

static at_status sum_to_grad(at_grad_ctx *c) {
    at_graph *g = c->g;
    c->dx[0] = at_expand(g, c->dy[0], at_shape_of(g, at_grad_in(c, 0)));
    return at_graph_status(g);
}

static at_status grl_infer(at_infer_ctx *c) {
    if (c->in_dtype[1] != AT_F32 || c->in_shape[1].rank != 0)
        return at_infer_fail(c, AT_E_SHAPE, "lambda must be a float32 scalar");
    return float_unary_infer(c);
}

/* ---- records ---- */

#define BIN(NAME, KERNEL, INFER, GRAD)                                                             \
    const at_op_def at_op_def_##NAME = {.name = #NAME,                                             \
                                        .domain = AT_DOMAIN_ONNX,                                  \
                                        .min_in = 2,                                               \
                                        .max_in = 2,                                               \
                                        .min_out = 1,                                              \
                                        .max_out = 1,                                              \
                                        .attrs = no_attrs,                                         \
                                        .infer = INFER,                                            \
                                        .cpu = KERNEL,                                             \
                                        .grad = GRAD};
BIN(Add, add_cpu, binary_infer, add_grad)
BIN(Sub, sub_cpu, binary_infer, sub_grad)
BIN(Mul, mul_cpu, binary_infer, mul_grad)
BIN(Div, div_cpu, binary_infer, div_grad)
BIN(Pow, pow_cpu, float_binary_infer, pow_grad)

const at_op_def at_op_def_Equal = {.name = "Equal",
                                   .domain = AT_DOMAIN_ONNX,
                                   .min_in = 2,
                                   .max_in = 2,
                                   .min_out = 1,
                                   .max_out = 1,
                                   .attrs = no_attrs,
                                   .infer = equal_infer,
                                   .cpu = equal_cpu,
                                   .nondiff = 3};

const at_op_def at_op_def_Where = {.name = "Where",
                                   .domain = AT_DOMAIN_ONNX,
                                   .min_in = 3,
                                   .max_in = 3,
                                   .min_out = 1,
                                   .max_out = 1,
                                   .attrs = no_attrs,
                                   .infer = where_infer,
                                   .cpu = where_cpu,
                                   .grad = where_grad,
                                   .nondiff = 1};

#define UNV(NAME, DOMAIN, INFER, KERNEL, GRAD, ATTRS, NONDIFF, VIEW)                               \
    const at_op_def at_op_def_##NAME = {.name = #NAME,                                             \
                                        .domain = DOMAIN,                                          \
                                        .min_in = 1,                                               \
                                        .max_in = 1,                                               \
                                        .min_out = 1,                                              \
                                        .max_out = 1,                                              \
                                        .attrs = ATTRS,                                            \
                                        .infer = INFER,                                            \
                                        .cpu = KERNEL,                                             \
                                        .grad = GRAD,                                              \
                                        .nondiff = NONDIFF,                                        \
                                        .view = VIEW};
#define UN(NAME, DOMAIN, INFER, KERNEL, GRAD, ATTRS, NONDIFF)                                      \
    UNV(NAME, DOMAIN, INFER, KERNEL, GRAD, ATTRS, NONDIFF, NULL)

static const at_attr_schema alpha_attrs[] = {{"alpha", AT_ATTR_FLOAT, false}, {NULL, 0, false}};
static const at_attr_schema gelu_attrs[] = {{"approximate", AT_ATTR_STRING, false},
                                            {NULL, 0, false}};

UN(Neg, AT_DOMAIN_ONNX, numeric_unary_infer, neg_cpu, neg_grad, no_attrs, 0)
UN(Abs, AT_DOMAIN_ONNX, numeric_unary_infer, abs_cpu, abs_grad, no_attrs, 0)
UN(Sign, AT_DOMAIN_ONNX, numeric_unary_infer, sign_cpu, NULL, no_attrs, 1)
UN(Relu, AT_DOMAIN_ONNX, float_unary_infer, relu_cpu, relu_grad, no_attrs, 0)
UN(LeakyRelu, AT_DOMAIN_ONNX, float_unary_infer, leaky_relu_cpu, leaky_relu_grad, alpha_attrs, 0)
UN(Gelu, AT_DOMAIN_ONNX, gelu_infer, gelu_cpu, gelu_grad, gelu_attrs, 0)
UN(Tanh, AT_DOMAIN_ONNX, float_unary_infer, tanh_cpu, tanh_grad, no_attrs, 0)
UN(Sigmoid, AT_DOMAIN_ONNX, float_unary_infer, sigmoid_cpu, sigmoid_grad, no_attrs, 0)
UN(Exp, AT_DOMAIN_ONNX, float_unary_infer, exp_cpu, exp_grad, no_attrs, 0)
UN(Log, AT_DOMAIN_ONNX, float_unary_infer, log_cpu, log_grad, no_attrs, 0)
UN(Sqrt, AT_DOMAIN_ONNX, float_unary_infer, sqrt_cpu, sqrt_grad, no_attrs, 0)
UN(Not, AT_DOMAIN_ONNX, not_infer, not_cpu, NULL, no_attrs, 1)
UNV(Identity, AT_DOMAIN_ONNX, same_infer, copy_cpu, pass_grad, no_attrs, 0, at_view_of_in0)
UN(Cast, AT_DOMAIN_ONNX, cast_infer, cast_cpu, cast_grad, cast_attrs, 0)
UNV(StopGradient, AT_DOMAIN_ATTUNE, same_infer, copy_cpu, NULL, no_attrs, 1, at_view_of_in0)

const at_op_def at_op_def_Clip = {.name = "Clip",
                                  .domain = AT_DOMAIN_ONNX,
                                  .min_in = 1,
                                  .max_in = 3,
                                  .min_out = 1,
                                  .max_out = 1,
                                  .attrs = no_attrs,
                                  .infer = clip_infer,
                                  .cpu = clip_cpu,
                                  .grad = clip_grad,
                                  .nondiff = 6};

const at_op_def at_op_def_GradientReversal = {.name = "GradientReversal",
                                              .domain = AT_DOMAIN_ATTUNE,
                                              .min_in = 2,
                                              .max_in = 2,
                                              .min_out = 1,
                                              .max_out = 1,
                                              .attrs = no_attrs,
                                              .infer = grl_infer,
                                              .cpu = copy_cpu,
                                              .view = at_view_of_in0,
                                              .grad = grl_grad,
                                              .nondiff = 2};

const at_op_def at_op_def_SumToShape = {.name = "SumToShape",
                                        .domain = AT_DOMAIN_ATTUNE,
                                        .min_in = 2,
                                        .max_in = 2,
                                        .min_out = 1,
                                        .max_out = 1,
                                        .attrs = no_attrs,
                                        .infer = sum_to_infer,
                                        .cpu = sum_to_cpu,
                                        .grad = sum_to_grad,
                                        .nondiff = 2};

#define GRADOP(NAME, KERNEL, ATTRS)                                                                \
    const at_op_def at_op_def_##NAME = {.name = #NAME,                                             \
                                        .domain = AT_DOMAIN_ATTUNE,                                \
                                        .min_in = 2,                                               \
                                        .max_in = 2,                                               \
                                        .min_out = 1,                                              \
                                        .max_out = 1,                                              \
                                        .attrs = ATTRS,                                            \
                                        .infer = grad_infer,                                       \
                                        .cpu = KERNEL};
GRADOP(ReluGrad, relu_grad_cpu, no_attrs)
GRADOP(LeakyReluGrad, leaky_relu_grad_cpu, alpha_attrs)
GRADOP(GeluGrad, gelu_grad_cpu, gelu_attrs)
GRADOP(TanhGrad, tanh_grad_cpu, no_attrs)
GRADOP(SigmoidGrad, sigmoid_grad_cpu, no_attrs)

const at_op_def at_op_def_ClipGrad = {.name = "ClipGrad",
                                      .domain = AT_DOMAIN_ATTUNE,
                                      .min_in = 2,
                                      .max_in = 4,
                                      .min_out = 1,
                                      .max_out = 1,
                                      .attrs = no_attrs,
                                      .infer = grad_infer,
                                      .cpu = clip_grad_cpu};

/* ---- builders ---- */

static at_val bin(at_graph *g, const char *op, at_val a, at_val b) {
    at_val in[2] = {a, b};
    return at_node1(g, op, in, 2, NULL, 0);
}
static at_val un(at_graph *g, const char *op, at_val x) {
    return at_node1(g, op, &x, 1, NULL, 0);
}

at_val at_add(at_graph *g, at_val a, at_val b) {
    return bin(g, "Add", a, b);
}
at_val at_sub(at_graph *g, at_val a, at_val b) {
    return bin(g, "Sub", a, b);
}
at_val at_mul(at_graph *g, at_val a, at_val b) {
    return bin(g, "Mul", a, b);
}
at_val at_div(at_graph *g, at_val a, at_val b) {
    return bin(g, "Div", a, b);
}
at_val at_pow(at_graph *g, at_val a, at_val b) {
    return bin(g, "Pow", a, b);
}
at_val at_equal(at_graph *g, at_val a, at_val b) {
    return bin(g, "Equal", a, b);
}
at_val at_where(at_graph *g, at_val cond, at_val a, at_val b) {
    at_val in[3] = {cond, a, b};
    return at_node1(g, "Where", in, 3, NULL, 0);
}
at_val at_neg(at_graph *g, at_val x) {
    return un(g, "Neg", x);
}
at_val at_abs(at_graph *g, at_val x) {
    return un(g, "Abs", x);
}
at_val at_sign(at_graph *g, at_val x) {
    return un(g, "Sign", x);
}
at_val at_relu(at_graph *g, at_val x) {
    return un(g, "Relu", x);
}
at_val at_leaky_relu(at_graph *g, at_val x, float alpha) {
    at_attr a = AT_ATTR_F("alpha", alpha);
    return at_node1(g, "LeakyRelu", &x, 1, &a, 1);
}
at_val at_gelu(at_graph *g, at_val x) {
    return un(g, "Gelu", x);
}
at_val at_tanh(at_graph *g, at_val x) {
    return un(g, "Tanh", x);
}
at_val at_sigmoid(at_graph *g, at_val x) {
    return un(g, "Sigmoid", x);
}
at_val at_exp(at_graph *g, at_val x) {
    return un(g, "Exp", x);
}
at_val at_log(at_graph *g, at_val x) {
    return un(g, "Log", x);
}
at_val at_sqrt(at_graph *g, at_val x) {
    return un(g, "Sqrt", x);
}
at_val at_not(at_graph *g, at_val x) {
    return un(g, "Not", x);
}
at_val at_identity(at_graph *g, at_val x) {
    return un(g, "Identity", x);
}
at_val at_cast(at_graph *g, at_val x, at_dtype to) {
    at_attr a = AT_ATTR_I("to", (int64_t)to);
    return at_node1(g, "Cast", &x, 1, &a, 1);
}
at_val at_clip(at_graph *g, at_val x, float lo, float hi) {
    at_val in[3] = {x, at_const_f32(g, lo), at_const_f32(g, hi)};
    return at_node1(g, "Clip", in, 3, NULL, 0);
}
at_val at_stop_gradient(at_graph *g, at_val x) {
    return un(g, "StopGradient", x);
}
at_val at_gradient_reversal(at_graph *g, at_val x, at_val lambda) {
    return bin(g, "GradientReversal", x, lambda);
}
at_val at_sum_to_shape(at_graph *g, at_val x, at_val ref) {
    return bin(g, "SumToShape", x, ref);
}
