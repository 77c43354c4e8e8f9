/* LayerNormalization and LayerNormGrad against a plain double-precision reference. */
#include "op_harness.h"

#define EPS 1e-5

/* in: X, Scale, B (optional, n_in == 3); outputs Y and, when n_out == 3, Mean and InvStdDev. */
static void ref_ln(const at_tensor *in, int n_in, at_tensor *out, int n_out, int axis) {
    const at_tensor *x = &in[0];
    int r = x->shape.rank;
    if (axis < 0) axis += r;
    int64_t rows = 1, D = 1;
    for (int d = 0; d < axis; d++) rows *= x->shape.dim[d];
    for (int d = axis; d < r; d++) D *= x->shape.dim[d];
    out[0].dtype = AT_F32;
    out[0].shape = x->shape;
    for (int j = 1; j < n_out; j++) {
        out[j].dtype = AT_F32;
        out[j].shape = x->shape;
        for (int d = axis; d < r; d++) out[j].shape.dim[d] = 1;
    }
    for (int64_t i = 0; i < rows; i++) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < D; j++) m += oh_get(x, i * D + j);
        m /= (double)D;
        for (int64_t j = 0; j < D; j++) v += pow(oh_get(x, i * D + j) - m, 2);
        v /= (double)D;
        double sd = sqrt(v + EPS);
        for (int64_t j = 0; j < D; j++) {
            double yv = (oh_get(x, i * D + j) - m) / sd * oh_get(&in[1], j);
            if (n_in > 2) yv += oh_get(&in[2], j);
            ((float *)out[0].data)[i * D + j] = (float)yv;
        }
        if (n_out == 3) {
            ((float *)out[1].data)[i] = (float)m;
            ((float *)out[2].data)[i] = (float)(1.0 / sd);
        }
    }
}

/* Rows: id, axis, with bias, all three outputs. */
#define LN_DEF(id, axis, bias, three)                                                              \
    static int id##_build(at_graph *g, const at_val *in, at_val *out) {                            \
        if (!(three)) {                                                                            \
            out[0] = at_layer_norm(g, in[0], in[1], (bias) ? in[2] : AT_NONE, axis, (float)EPS);   \
            return 1;                                                                              \
        }                                                                                          \
        at_attr a = AT_ATTR_I("axis", axis);                                                       \
        at_node_add(g, "LayerNormalization", AT_DOMAIN_ONNX, in, (bias) ? 3 : 2, out, 3, &a, 1);   \
        return 3;                                                                                  \
    }                                                                                              \
    static void id##_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {               \
        ref_ln(in, n_in, out, n_out, axis);                                                        \
    }

LN_DEF(ln_am1_bias, -1, 1, 0)
LN_DEF(ln_am1_nobias, -1, 0, 0)
LN_DEF(ln_a1_bias, 1, 1, 0)
LN_DEF(ln_a1_nobias, 1, 0, 0)
LN_DEF(ln_a0_bias, 0, 1, 0)
LN_DEF(ln_am1_bias_stats, -1, 1, 1)
LN_DEF(ln_a1_nobias_stats, 1, 0, 1)

/* LayerNormGrad on its own with only dMean / dInvStdDev flowing (no dY): inputs X, Scale,
 * dMean, dInv; compared with the analytic formula for those terms. */
static int lng_stats_only_build(at_graph *g, const at_val *in, at_val *out) {
    at_val ins[7] = {AT_NONE, in[0], in[1], AT_NONE, AT_NONE, in[2], in[3]};
    at_attr a[2] = {AT_ATTR_I("axis", -1), AT_ATTR_F("epsilon", (float)EPS)};
    at_val o[2];
    at_node_add(g, "LayerNormGrad", AT_DOMAIN_ATTUNE, ins, 7, o, 2, a, 2);
    out[0] = o[0];
    out[1] = o[1];
    return 2;
}
static void lng_stats_only_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in;
    (void)n_out;
    const at_tensor *x = &in[0];
    int64_t D = x->shape.dim[x->shape.rank - 1], rows = at_shape_numel(&x->shape) / D;
    out[0].dtype = out[1].dtype = AT_F32;
    out[0].shape = x->shape;
    out[1].shape = in[1].shape;
    for (int64_t j = 0; j < D; j++) ((float *)out[1].data)[j] = 0;
    for (int64_t i = 0; i < rows; i++) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < D; j++) m += oh_get(x, i * D + j);
        m /= (double)D;
        for (int64_t j = 0; j < D; j++) v += pow(oh_get(x, i * D + j) - m, 2);
        v /= (double)D;
        double inv = 1 / sqrt(v + EPS), dm = oh_get(&in[2], i), di = oh_get(&in[3], i);
        for (int64_t j = 0; j < D; j++) {
            /* d mean / dx_j = 1/D; d inv / dx_j = -inv^3 (x_j - m) / D */
            double xc = oh_get(x, i * D + j) - m;
            ((float *)out[0].data)[i * D + j] =
                (float)(dm / (double)D - di * inv * inv * inv * xc / (double)D);
        }
    }
}

#define XIN(lo_, hi_, ...)                                                                         \
    { .dt = AT_F32, .shape = AT_SHAPE(__VA_ARGS__), .lo = (lo_), .hi = (hi_), .grad = true }
#define XNG(lo_, hi_, ...)                                                                         \
    { .dt = AT_F32, .shape = AT_SHAPE(__VA_ARGS__), .lo = (lo_), .hi = (hi_) }
#define ROW(name_, id, n, ...)                                                                     \
    {                                                                                              \
        .name = name_, .n_in = n, .in = {__VA_ARGS__}, .build = id##_build, .ref = id##_ref,       \
        .atol = 1e-5, .rtol = 1e-4, .grad_atol = 2e-3, .grad_rtol = 1e-2                           \
    }
#define ROWL(name_, id, n, ...)                                                                    \
    {                                                                                              \
        .name = name_, .n_in = n, .in = {__VA_ARGS__}, .build = id##_build, .ref = id##_ref,       \
        .atol = 1e-5, .rtol = 1e-4, .grad_atol = 5e-3, .grad_rtol = 1e-2, .fd_eps = 0.02           \
    }

int main(int argc, char **argv) {
    const oh_case cases[] = {
        ROW("ln_axis_m1_bias", ln_am1_bias, 3, XIN(-2, 2, 4, 6), XIN(0.5f, 1.5f, 6), XIN(-1, 1, 6)),
        ROW("ln_axis_m1_bias_rank3", ln_am1_bias, 3, XIN(-2, 2, 2, 3, 5), XIN(0.5f, 1.5f, 5),
            XIN(-1, 1, 5)),
        ROW("ln_axis_m1_nobias", ln_am1_nobias, 2, XIN(-2, 2, 2, 3, 5), XIN(0.5f, 1.5f, 5)),
        ROW("ln_axis_1_bias_rank3", ln_a1_bias, 3, XIN(-2, 2, 2, 3, 4), XIN(0.5f, 1.5f, 3, 4),
            XIN(-1, 1, 3, 4)),
        ROW("ln_axis_1_nobias_rank3", ln_a1_nobias, 2, XIN(-2, 2, 3, 2, 3), XIN(-1.5f, 1.5f, 2, 3)),
        ROW("ln_axis_0_all", ln_a0_bias, 3, XIN(-2, 2, 3, 4), XIN(0.5f, 1.5f, 3, 4),
            XIN(-1, 1, 3, 4)),
        ROW("ln_size1_rows", ln_am1_bias, 3, XIN(-2, 2, 1, 7), XIN(0.5f, 1.5f, 7), XIN(-1, 1, 7)),
        ROW("ln_offset_input", ln_am1_bias, 3, XIN(9, 11, 3, 8), XIN(0.5f, 1.5f, 8), XIN(-1, 1, 8)),
        ROW("ln_stats_outputs", ln_am1_bias_stats, 3, XIN(-2, 2, 3, 6), XIN(0.5f, 1.5f, 6),
            XIN(-1, 1, 6)),
        ROW("ln_stats_outputs_axis1_nobias", ln_a1_nobias_stats, 2, XIN(-2, 2, 2, 3, 4),
            XIN(0.5f, 1.5f, 3, 4)),
        {.name = "ln_stats_outputs_y_only_loss",
         .n_in = 3,
         .in = {XIN(-2, 2, 3, 6), XIN(0.5f, 1.5f, 6), XIN(-1, 1, 6)},
         .build = ln_am1_bias_stats_build,
         .ref = ln_am1_bias_stats_ref,
         .atol = 1e-5,
         .rtol = 1e-4,
         .grad_atol = 2e-3,
         .grad_rtol = 1e-2,
         .grad_outputs = 1},
        ROWL("ln_large_rows", ln_am1_bias, 3, XIN(-2, 2, 300, 64), XIN(0.5f, 1.5f, 64),
             XIN(-1, 1, 64)),
        ROWL("ln_large_axis1", ln_a1_bias, 3, XIN(-2, 2, 40, 16, 32), XIN(0.5f, 1.5f, 16, 32),
             XIN(-1, 1, 16, 32)),
        ROW("lngrad_stats_only", lng_stats_only, 4, XNG(-2, 2, 3, 5), XNG(0.5f, 1.5f, 5),
            XNG(-1, 1, 3, 1), XNG(-1, 1, 3, 1)),
    };
    return oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_layernorm", argc, argv);
}
