/* Op table rows of the elementwise family. */
#include "op_harness.h"

/* ---- references ---- */

static int64_t bidx(const at_shape *in, const at_shape *out, int64_t o) {
    int64_t off = 0, stride = 1;
    for (int i = out->rank - 1; i >= 0; i--) {
        int64_t c = o % out->dim[i];
        o /= out->dim[i];
        int k = i - (out->rank - in->rank);
        if (k >= 0) {
            if (in->dim[k] != 1) off += c * stride;
            stride *= in->dim[k];
        }
    }
    return off;
}

static at_shape bshape(const at_shape *a, const at_shape *b) {
    at_shape o;
    o.rank = a->rank > b->rank ? a->rank : b->rank;
    for (int i = 0; i < o.rank; i++) {
        int ia = i - (o.rank - a->rank), ib = i - (o.rank - b->rank);
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        o.dim[i] = da > db ? da : db;
    }
    return o;
}

typedef double (*bin_fn)(double, double);
static void ref_binary(const at_tensor *in, at_tensor *out, bin_fn f, at_dtype odt) {
    out->dtype = odt;
    out->shape = bshape(&in[0].shape, &in[1].shape);
    int64_t n = at_shape_numel(&out->shape);
    for (int64_t i = 0; i < n; i++) {
        double a = oh_get(&in[0], bidx(&in[0].shape, &out->shape, i));
        double b = oh_get(&in[1], bidx(&in[1].shape, &out->shape, i));
        double y = f(a, b);
        if (odt == AT_F32)
            ((float *)out->data)[i] = (float)y;
        else if (odt == AT_I64)
            ((int64_t *)out->data)[i] = (int64_t)y;
        else
            ((uint8_t *)out->data)[i] = (uint8_t)(y != 0);
    }
}

static double f_add(double a, double b) {
    return a + b;
}
static double f_sub(double a, double b) {
    return a - b;
}
static double f_mul(double a, double b) {
    return a * b;
}
static double f_div(double a, double b) {
    return a / b;
}
static double f_pow(double a, double b) {
    return pow(a, b);
}
static double f_eq(double a, double b) {
    return a == b;
}

#define REF_BIN(NAME, F)                                                                           \
    static void ref_##NAME(const at_tensor *in, int ni, at_tensor *out, int no) {                  \
        (void)ni, (void)no;                                                                        \
        ref_binary(in, out, F, in[0].dtype);                                                       \
    }
REF_BIN(add, f_add)
REF_BIN(sub, f_sub)
REF_BIN(mul, f_mul)
REF_BIN(div, f_div)
REF_BIN(pow, f_pow)
static void ref_eq(const at_tensor *in, int ni, at_tensor *out, int no) {
    (void)ni, (void)no;
    ref_binary(in, out, f_eq, AT_BOOL);
}

typedef double (*un_fn)(double);
static void ref_unary(const at_tensor *in, at_tensor *out, un_fn f) {
    out->dtype = in[0].dtype;
    out->shape = in[0].shape;
    int64_t n = at_shape_numel(&out->shape);
    for (int64_t i = 0; i < n; i++) {
        double y = f(oh_get(&in[0], i));
        if (out->dtype == AT_F32)
            ((float *)out->data)[i] = (float)y;
        else if (out->dtype == AT_I64)
            ((int64_t *)out->data)[i] = (int64_t)y;
        else
            ((uint8_t *)out->data)[i] = (uint8_t)(y != 0);
    }
}

static double f_neg(double x) {
    return -x;
}
static double f_abs(double x) {
    return fabs(x);
}
static double f_sign(double x) {
    return (x > 0) - (x < 0);
}
static double f_relu(double x) {
    return x > 0 ? x : 0;
}
static double f_leaky(double x) {
    return x >= 0 ? x : 0.1 * x;
}
static double f_gelu(double x) {
    return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}
static double f_gelu_tanh(double x) {
    return 0.5 * x * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}
static double f_sigmoid(double x) {
    return 1 / (1 + exp(-x));
}
static double f_id(double x) {
    return x;
}
static double f_not(double x) {
    return !x;
}
static double f_clip(double x) {
    return x < -0.5 ? -0.5 : (x > 0.5 ? 0.5 : x);
}

#define REF_UN(NAME, F)                                                                            \
    static void ref_##NAME(const at_tensor *in, int ni, at_tensor *out, int no) {                  \
        (void)ni, (void)no;                                                                        \
        ref_unary(in, out, F);                                                                     \
    }
REF_UN(neg, f_neg)
REF_UN(abs, f_abs)
REF_UN(sign, f_sign)
REF_UN(relu, f_relu)
REF_UN(leaky, f_leaky)
REF_UN(gelu, f_gelu)
REF_UN(gelu_tanh, f_gelu_tanh)
REF_UN(tanh, tanh)
REF_UN(sigmoid, f_sigmoid)
REF_UN(exp, exp)
REF_UN(log, log)
REF_UN(sqrt, sqrt)
REF_UN(id, f_id)
REF_UN(not, f_not)
REF_UN(clip, f_clip)

static void ref_where(const at_tensor *in, int ni, at_tensor *out, int no) {
    (void)ni, (void)no;
    at_shape t = bshape(&in[0].shape, &in[1].shape);
    out->shape = bshape(&t, &in[2].shape);
    out->dtype = AT_F32;
    int64_t n = at_shape_numel(&out->shape);
    for (int64_t i = 0; i < n; i++) {
        double c = oh_get(&in[0], bidx(&in[0].shape, &out->shape, i));
        double a = oh_get(&in[1], bidx(&in[1].shape, &out->shape, i));
        double b = oh_get(&in[2], bidx(&in[2].shape, &out->shape, i));
        ((float *)out->data)[i] = (float)(c ? a : b);
    }
}

static void ref_cast_i64(const at_tensor *in, int ni, at_tensor *out, int no) {
    (void)ni, (void)no;
    out->dtype = AT_I64;
    out->shape = in[0].shape;
    for (int64_t i = 0; i < at_shape_numel(&in[0].shape); i++)
        ((int64_t *)out->data)[i] = (int64_t)((const float *)in[0].data)[i];
}

static void ref_sum_to(const at_tensor *in, int ni, at_tensor *out, int no) {
    (void)ni, (void)no;
    out->dtype = AT_F32;
    out->shape = in[1].shape;
    int64_t n = at_shape_numel(&in[0].shape);
    memset(out->data, 0, sizeof(float) * (size_t)at_shape_numel(&out->shape));
    for (int64_t i = 0; i < n; i++)
        ((float *)out->data)[bidx(&out->shape, &in[0].shape, i)] += ((const float *)in[0].data)[i];
}

/* ---- builders ---- */

#define B2(NAME, FN)                                                                               \
    static int b_##NAME(at_graph *g, const at_val *in, at_val *out) {                              \
        out[0] = FN(g, in[0], in[1]);                                                              \
        return 1;                                                                                  \
    }
#define B1(NAME, FN)                                                                               \
    static int b_##NAME(at_graph *g, const at_val *in, at_val *out) {                              \
        out[0] = FN(g, in[0]);                                                                     \
        return 1;                                                                                  \
    }
B2(add, at_add)
B2(sub, at_sub)
B2(mul, at_mul)
B2(div, at_div)
B2(pow, at_pow)
B2(eq, at_equal)
B2(sum_to, at_sum_to_shape)
B1(neg, at_neg)
B1(abs, at_abs)
B1(sign, at_sign)
B1(relu, at_relu)
B1(gelu, at_gelu)
B1(tanh, at_tanh)
B1(sigmoid, at_sigmoid)
B1(exp, at_exp)
B1(log, at_log)
B1(sqrt, at_sqrt)
B1(id, at_identity)
B1(not, at_not)
B1(stop, at_stop_gradient)

static int b_leaky(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_leaky_relu(g, in[0], 0.1f);
    return 1;
}
static int b_gelu_tanh(at_graph *g, const at_val *in, at_val *out) {
    at_attr a = AT_ATTR_S("approximate", "tanh");
    out[0] = at_node1(g, "Gelu", in, 1, &a, 1);
    return 1;
}
static int b_clip(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_clip(g, in[0], -0.5f, 0.5f);
    return 1;
}
static int b_where(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_where(g, in[0], in[1], in[2]);
    return 1;
}
static int b_cast(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_cast(g, in[0], AT_I64);
    return 1;
}
/* Cast to float of a float: differentiable path through Cast. */
static int b_cast_f(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_mul(g, at_cast(g, in[0], AT_F32), in[0]);
    return 1;
}
static void ref_sq(const at_tensor *in, int ni, at_tensor *out, int no) {
    (void)ni, (void)no;
    out->dtype = AT_F32;
    out->shape = in[0].shape;
    for (int64_t i = 0; i < at_shape_numel(&in[0].shape); i++) {
        float x = ((const float *)in[0].data)[i];
        ((float *)out->data)[i] = x * x;
    }
}
/* GradientReversal scaled by an input lambda: y = x forward, -l*dy back;
 * checked via L = sum(w * grl(x) + x*x) has gradient -l*w + 2x: the
 * harness's FD sees the forward (identity), so check the analytic
 * reversal separately in test_autodiff.c; here the forward only. */
static int b_grl(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_gradient_reversal(g, in[0], in[1]);
    return 1;
}

#define F(lo, hi, ...)   OH_F32(lo, hi, __VA_ARGS__)
#define FNG(lo, hi, ...) OH_F32_NG(lo, hi, __VA_ARGS__)
#define T_EL             1e-6, 1e-5
#define G_EL             2e-3, 2e-2

static const oh_case cases[] = {
    {"add_same", 2, {F(-1, 1, 3, 4), F(-1, 1, 3, 4)}, b_add, ref_add, T_EL, G_EL},
    {"add_bcast_row", 2, {F(-1, 1, 2, 3, 4), F(-1, 1, 4)}, b_add, ref_add, T_EL, G_EL},
    {"add_bcast_mid", 2, {F(-1, 1, 2, 1, 4), F(-1, 1, 3, 1)}, b_add, ref_add, T_EL, G_EL},
    {"add_scalar",
     2,
     {F(-1, 1, 5, 2), {.dt = AT_F32, .shape = {0}, .lo = -1, .hi = 1, .grad = true}},
     b_add,
     ref_add,
     T_EL,
     G_EL},
    {"add_i64", 2, {OH_I64(-50, 50, 4, 3), OH_I64(-50, 50, 3)}, b_add, ref_add, 0, 0},
    {"sub_bcast", 2, {F(-1, 1, 4, 1), F(-1, 1, 1, 5)}, b_sub, ref_sub, T_EL, G_EL},
    {"mul_bcast", 2, {F(-1, 1, 2, 3, 4), F(-1, 1, 3, 1)}, b_mul, ref_mul, T_EL, G_EL},
    {"mul_big", 2, {F(-1, 1, 64, 33, 40), F(-1, 1, 40)}, b_mul, ref_mul, T_EL, G_EL},
    {"div_bcast",
     2,
     {F(-1, 1, 3, 4), {.dt = AT_F32, .shape = AT_SHAPE(4), .lo = 0.5f, .hi = 2, .grad = true}},
     b_div,
     ref_div,
     T_EL,
     G_EL},
    {"pow", 2, {F(0.5f, 2, 3, 4), F(-1.5f, 1.5f, 3, 4)}, b_pow, ref_pow, 1e-5, 1e-5, G_EL},
    {"equal_i64", 2, {OH_I64(0, 3, 4, 5), OH_I64(0, 3, 5)}, b_eq, ref_eq, 0, 0},
    {"where",
     3,
     {{.dt = AT_BOOL, .shape = AT_SHAPE(3, 4), .lo = 0, .hi = 2}, F(-1, 1, 3, 4), F(-1, 1, 4)},
     b_where,
     ref_where,
     T_EL,
     G_EL},
    {"neg", 1, {F(-1, 1, 7)}, b_neg, ref_neg, T_EL, G_EL},
    {"abs",
     1,
     {{.dt = AT_F32, .shape = AT_SHAPE(3, 5), .lo = -1, .hi = 1, .min_abs = 0.1f, .grad = true}},
     b_abs,
     ref_abs,
     T_EL,
     G_EL},
    {"sign", 1, {FNG(-1, 1, 9)}, b_sign, ref_sign, 0, 0},
    {"relu",
     1,
     {{.dt = AT_F32, .shape = AT_SHAPE(4, 6), .lo = -1, .hi = 1, .min_abs = 0.05f, .grad = true}},
     b_relu,
     ref_relu,
     T_EL,
     G_EL},
    {"leaky_relu",
     1,
     {{.dt = AT_F32, .shape = AT_SHAPE(4, 6), .lo = -1, .hi = 1, .min_abs = 0.05f, .grad = true}},
     b_leaky,
     ref_leaky,
     T_EL,
     G_EL},
    {"gelu", 1, {F(-3, 3, 5, 8)}, b_gelu, ref_gelu, 1e-6, 1e-5, G_EL},
    {"gelu_tanh", 1, {F(-3, 3, 5, 8)}, b_gelu_tanh, ref_gelu_tanh, 1e-6, 1e-5, G_EL},
    {"tanh", 1, {F(-2, 2, 5, 8)}, b_tanh, ref_tanh, 1e-6, 1e-5, G_EL},
    {"sigmoid", 1, {F(-4, 4, 5, 8)}, b_sigmoid, ref_sigmoid, 1e-6, 1e-5, G_EL},
    {"exp", 1, {F(-2, 2, 5, 8)}, b_exp, ref_exp, 1e-6, 1e-5, G_EL},
    {"log", 1, {F(0.5f, 3, 5, 8)}, b_log, ref_log, 1e-6, 1e-5, G_EL},
    {"sqrt", 1, {F(0.5f, 3, 5, 8)}, b_sqrt, ref_sqrt, 1e-6, 1e-5, G_EL},
    {"identity", 1, {F(-1, 1, 2, 2, 2)}, b_id, ref_id, 0, 0, G_EL},
    {"not", 1, {{.dt = AT_BOOL, .shape = AT_SHAPE(10), .lo = 0, .hi = 2}}, b_not, ref_not, 0, 0},
    {"cast_f32_i64", 1, {FNG(-9, 9, 12)}, b_cast, ref_cast_i64, 0, 0},
    {"cast_f32_f32", 1, {F(-1, 1, 6)}, b_cast_f, ref_sq, 1e-6, 1e-6, G_EL},
    {"clip", 1, {F(-1, 1, 40)}, b_clip, ref_clip, 0, 0, G_EL},
    {"stop_gradient", 1, {FNG(-1, 1, 3, 2)}, b_stop, ref_id, 0, 0},
    {"gradient_reversal_fwd",
     2,
     {FNG(-1, 1, 3, 2), {.dt = AT_F32, .shape = {0}, .lo = 0, .hi = 1}},
     b_grl,
     ref_id,
     0,
     0},
    {"sum_to_shape_lead",
     2,
     {F(-1, 1, 4, 3, 5), FNG(0, 1, 5)},
     b_sum_to,
     ref_sum_to,
     1e-5,
     1e-5,
     G_EL},
    {"sum_to_shape_mid",
     2,
     {F(-1, 1, 4, 3, 5), FNG(0, 1, 4, 1, 5)},
     b_sum_to,
     ref_sum_to,
     1e-5,
     1e-5,
     G_EL},
    {"sum_to_shape_big",
     2,
     {F(-1, 1, 70, 600), FNG(0, 1, 600)},
     b_sum_to,
     ref_sum_to,
     1e-4,
     1e-5,
     G_EL},
};

int main(int argc, char **argv) {
    return oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_elementwise", argc, argv);
}
