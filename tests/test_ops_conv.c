/* 1-D Conv (and through its gradient rule ConvGradInput / ConvGradWeight) against a plain
 * loop reference, with gradients w.r.t. X, W and B. */
#include "check.h"
#include "op_harness.h"

/* y[n, m, o] = b[m] + sum over the group's channels c and taps k of
 *              w[m, c, k] * x[n, g*Cg + c, o*s - pb + k*d]   (zero outside [0, L)) */
static void ref_conv(const at_tensor *in, int n_in, at_tensor *out, int pb, int pe, int s, int d,
                     int group) {
    const at_tensor *X = &in[0], *W = &in[1], *B = n_in > 2 ? &in[2] : NULL;
    int64_t N = X->shape.dim[0], C = X->shape.dim[1], L = X->shape.dim[2];
    int64_t M = W->shape.dim[0], Cg = W->shape.dim[1], K = W->shape.dim[2];
    int64_t Mg = M / group;
    int64_t Lo = (L + pb + pe - d * (K - 1) - 1) / s + 1;
    out->dtype = AT_F32;
    out->shape = AT_SHAPE(N, M, Lo);
    const float *x = X->data, *w = W->data, *b = B ? B->data : NULL;
    float *y = out->data;
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            int64_t g = m / Mg;
            for (int64_t o = 0; o < Lo; o++) {
                double acc = b ? b[m] : 0.0;
                for (int64_t c = 0; c < Cg; c++)
                    for (int64_t k = 0; k < K; k++) {
                        int64_t l = o * s - pb + k * d;
                        if (l < 0 || l >= L) continue;
                        acc += (double)w[(m * Cg + c) * K + k] * x[(n * C + g * Cg + c) * L + l];
                    }
                y[(n * M + m) * Lo + o] = (float)acc;
            }
        }
}

/* One row's build and ref: pads, stride, dilation, group. */
#define CONV_DEF(id, pb, pe, s, d, group)                                                          \
    static int id##_build(at_graph *g, const at_val *in, at_val *out) {                            \
        at_val b = at_graph_num_inputs(g) > 2 ? in[2] : AT_NONE;                                   \
        out[0] = at_conv1d(g, in[0], in[1], b, pb, pe, s, d, group);                               \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {               \
        (void)n_out;                                                                               \
        ref_conv(in, n_in, out, pb, pe, s, d, group);                                              \
    }

CONV_DEF(k1, 0, 0, 1, 1, 1)
CONV_DEF(same1, 1, 1, 1, 1, 1)
CONV_DEF(same2, 2, 2, 1, 1, 1)
CONV_DEF(asym20, 2, 0, 1, 1, 1)
CONV_DEF(asym01, 0, 1, 1, 1, 1)
CONV_DEF(valid, 0, 0, 1, 1, 1)
CONV_DEF(stride2, 1, 1, 2, 1, 1)
CONV_DEF(dil2, 2, 2, 1, 2, 1)
CONV_DEF(group2, 1, 1, 1, 1, 2)
CONV_DEF(k1_group2, 0, 0, 1, 1, 2)
CONV_DEF(mixed, 1, 2, 2, 2, 2)
CONV_DEF(stride3_pad, 3, 1, 3, 1, 1)

/* ---- what must be refused, with a clear message ---- */

static void check_errors(void) {
    /* 2-D conv */
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(1, 2, 5, 5));
    at_val w = at_input(g, "w", AT_F32, AT_SHAPE(3, 2, 3, 3));
    at_val in[2] = {x, w};
    static const int64_t pads4[4] = {1, 1, 1, 1};
    at_attr pa = AT_ATTR_INTS("pads", 4, pads4);
    CHECK(at_node1(g, "Conv", in, 2, &pa, 1) == AT_NONE, "2-D conv must be refused");
    CHECK(at_graph_status(g) == AT_E_UNSUPPORTED, "status %d", at_graph_status(g));
    CHECK(strstr(at_graph_error(g), "1-D") != NULL, "message: %s", at_graph_error(g));
    at_graph_free(g);

    /* auto_pad other than NOTSET */
    g = at_graph_new();
    x = at_input(g, "x", AT_F32, AT_SHAPE(1, 2, 5));
    w = at_input(g, "w", AT_F32, AT_SHAPE(3, 2, 3));
    in[0] = x;
    in[1] = w;
    at_attr ap = AT_ATTR_S("auto_pad", "SAME_UPPER");
    CHECK(at_node1(g, "Conv", in, 2, &ap, 1) == AT_NONE, "auto_pad SAME_UPPER must be refused");
    CHECK(at_graph_status(g) == AT_E_UNSUPPORTED, "status %d", at_graph_status(g));
    CHECK(strstr(at_graph_error(g), "auto_pad") != NULL, "message: %s", at_graph_error(g));
    at_graph_free(g);

    /* channels that do not match the groups */
    g = at_graph_new();
    x = at_input(g, "x", AT_F32, AT_SHAPE(1, 4, 5));
    w = at_input(g, "w", AT_F32, AT_SHAPE(3, 2, 3));
    CHECK(at_conv1d(g, x, w, AT_NONE, 1, 1, 1, 1, 1) == AT_NONE, "C 4 vs W 2 must fail");
    CHECK(at_graph_status(g) == AT_E_SHAPE, "status %d", at_graph_status(g));
    at_graph_free(g);

    /* input shorter than the kernel */
    g = at_graph_new();
    x = at_input(g, "x", AT_F32, AT_SHAPE(1, 2, 2));
    w = at_input(g, "w", AT_F32, AT_SHAPE(3, 2, 5));
    CHECK(at_conv1d(g, x, w, AT_NONE, 0, 0, 1, 1, 1) == AT_NONE, "L 2 < K 5 must fail");
    CHECK(at_graph_status(g) == AT_E_SHAPE, "status %d", at_graph_status(g));
    at_graph_free(g);

    /* same padding keeps a symbolic length; other settings give a fresh symbol */
    g = at_graph_new();
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T");
    x = at_input(g, "x", AT_F32, AT_SHAPE(B, 6, T));
    w = at_input(g, "w", AT_F32, AT_SHAPE(4, 6, 5));
    at_shape ys = at_value_shape(g, at_conv1d(g, x, w, AT_NONE, 2, 2, 1, 1, 1));
    CHECK(ys.rank == 3 && ys.dim[0] == B && ys.dim[1] == 4 && ys.dim[2] == T, "same: rank %d",
          ys.rank);
    ys = at_value_shape(g, at_conv1d(g, x, w, AT_NONE, 2, 2, 2, 1, 1));
    CHECK(ys.rank == 3 && ys.dim[2] < 0 && ys.dim[2] != T, "strided: dim %lld",
          (long long)ys.dim[2]);
    CHECK(at_graph_status(g) == AT_OK, "%s", at_graph_error(g));
    at_graph_free(g);
}

/* Conv is bilinear in (X, W) and linear in B: central differences are exact up to rounding. */
#define CONV_T(name_, id, atol_, gtol_, eps_, ...)                                                 \
    {                                                                                              \
        .name = (name_), .n_in = (int)(sizeof((oh_input[]){__VA_ARGS__}) / sizeof(oh_input)),      \
        .in = {__VA_ARGS__}, .build = id##_build, .ref = id##_ref, .atol = (atol_),                \
        .rtol = (atol_), .grad_atol = (gtol_), .grad_rtol = (gtol_), .fd_eps = (eps_)              \
    }
#define CONV(name_, id, ...) CONV_T(name_, id, 1e-5, 3e-3, 0.5, __VA_ARGS__)

int main(int argc, char **argv) {
    oh_case cases[] = {
        CONV("conv_k1_bias", k1, OH_F32(-1, 1, 2, 3, 7), OH_F32(-1, 1, 4, 3, 1), OH_F32(-1, 1, 4)),
        CONV("conv_k3_same_bias", same1, OH_F32(-1, 1, 2, 3, 7), OH_F32(-1, 1, 4, 3, 3),
             OH_F32(-1, 1, 4)),
        CONV("conv_k3_same_nobias", same1, OH_F32(-1, 1, 2, 3, 7), OH_F32(-1, 1, 4, 3, 3)),
        CONV("conv_k5_same_bias", same2, OH_F32(-1, 1, 2, 3, 9), OH_F32(-1, 1, 4, 3, 5),
             OH_F32(-1, 1, 4)),
        CONV("conv_k3_asym_2_0", asym20, OH_F32(-1, 1, 2, 3, 7), OH_F32(-1, 1, 4, 3, 3)),
        CONV("conv_k5_asym_0_1_bias", asym01, OH_F32(-1, 1, 3, 2, 8), OH_F32(-1, 1, 3, 2, 5),
             OH_F32(-1, 1, 3)),
        CONV("conv_k3_valid", valid, OH_F32(-1, 1, 1, 2, 6), OH_F32(-1, 1, 3, 2, 3)),
        CONV("conv_k3_stride2_bias", stride2, OH_F32(-1, 1, 2, 3, 8), OH_F32(-1, 1, 4, 3, 3),
             OH_F32(-1, 1, 4)),
        CONV("conv_k3_stride2_odd", stride2, OH_F32(-1, 1, 2, 3, 9), OH_F32(-1, 1, 2, 3, 3)),
        CONV("conv_k3_dil2", dil2, OH_F32(-1, 1, 2, 3, 9), OH_F32(-1, 1, 4, 3, 3)),
        CONV("conv_k3_group2_bias", group2, OH_F32(-1, 1, 2, 4, 7), OH_F32(-1, 1, 6, 2, 3),
             OH_F32(-1, 1, 6)),
        CONV("conv_k5_group2", same2, OH_F32(-1, 1, 2, 4, 7), OH_F32(-1, 1, 4, 4, 5)),
        CONV("conv_k1_group2", k1_group2, OH_F32(-1, 1, 2, 4, 5), OH_F32(-1, 1, 4, 2, 1)),
        CONV("conv_mixed_s2_d2_g2_asym", mixed, OH_F32(-1, 1, 3, 4, 11), OH_F32(-1, 1, 4, 2, 3),
             OH_F32(-1, 1, 4)),
        CONV("conv_stride3_pad_gt_stride", stride3_pad, OH_F32(-1, 1, 2, 2, 10),
             OH_F32(-1, 1, 3, 2, 3), OH_F32(-1, 1, 3)),
        /* The discriminator's shape: channels = features + labels, widths 3 and 5. */
        CONV("conv_model_k3", same1, OH_F32(-1, 1, 4, 40, 12), OH_F32(-1, 1, 16, 40, 3),
             OH_F32(-1, 1, 16)),
        CONV("conv_model_k5", same2, OH_F32(-1, 1, 4, 40, 12), OH_F32(-1, 1, 16, 40, 5),
             OH_F32(-1, 1, 16)),
        /* Big enough that a chunk holds fewer items than the batch (2 + 1). */
        CONV_T("conv_chunked", same2, 1e-4, 2e-2, 1.0, OH_F32(-1, 1, 3, 64, 2600),
               OH_F32(-1, 1, 8, 64, 5), OH_F32(-1, 1, 8)),
    };
    check_errors();
    int rc = oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_conv", argc, argv);
    return check_done("test_ops_conv errors") || rc;
}
