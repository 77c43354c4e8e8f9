/* ops/misc.c: Erf against the C library's double-precision erf, with its
 * gradient against finite differences; fixed points against tabulated
 * values; a non-float input is a shape error. */
#include "check.h"
#include "op_harness.h"

static void ref_erf(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    int64_t n = at_shape_numel(&in[0].shape);
    out[0].dtype = AT_F32, out[0].shape = in[0].shape;
    for (int64_t i = 0; i < n; i++)
        ((float *)out[0].data)[i] = (float)erf(((const float *)in[0].data)[i]);
}

/* Abramowitz & Stegun table values: a reference that shares no code with libm. */
static const float k_pts[8] = {0.0f, 0.5f, -0.5f, 1.0f, -1.5f, 2.0f, 4.0f, -6.0f};
static const double k_erf[8] = {0.0,           0.5204998778, -0.5204998778, 0.8427007929,
                                -0.9661051465, 0.9953222650, 0.9999999846,  -1.0};

static void ref_table(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    out[0].dtype = AT_F32, out[0].shape = in[0].shape;
    for (int i = 0; i < 8; i++) ((float *)out[0].data)[i] = (float)k_erf[i];
}

static int b_erf(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_node1(g, "Erf", in, 1, NULL, 0);
    return 1;
}

#define G_EL 1e-2, 1e-2, 1e-3

static const oh_case cases[] = {
    {"erf", 1, {OH_F32(-2.5f, 2.5f, 3, 4, 5)}, b_erf, ref_erf, 1e-6, 1e-5, G_EL},
    {"erf_scalar", 1, {OH_F32(-1, 1)}, b_erf, ref_erf, 1e-6, 1e-5, G_EL},
    {"erf_tails", 1, {OH_F32_NG(-9, 9, 64)}, b_erf, ref_erf, 1e-6, 1e-5},
    {"erf_empty", 1, {OH_F32_NG(-1, 1, 2, 0, 3)}, b_erf, ref_erf, 0, 0},
    {"erf_table",
     1,
     {{.dt = AT_F32, .shape = AT_SHAPE(8), .data = k_pts}},
     b_erf,
     ref_table,
     2e-7,
     2e-7},
};

int main(int argc, char **argv) {
    int rc = oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_misc", argc, argv);
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_I64, AT_SHAPE(3));
    CHECK(at_node1(g, "Erf", &x, 1, NULL, 0) == AT_NONE, "Erf accepted an int64 input");
    CHECK(at_graph_status(g) == AT_E_SHAPE && strstr(at_graph_error(g), "float32 only"), "%s",
          at_graph_error(g));
    at_graph_free(g);
    return rc | check_done("test_ops_misc checks");
}
