/* The IR, symbolic shape inference, error messages, the session's plan
 * cache and feeds, and autodiff's graph-level behaviour. */
#include <stdlib.h>
#include <string.h>

#include "attune/attune.h"
#include "check.h"

static void test_symbolic_shapes(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, T, 8));
    at_val bias = at_param(g, "bias", AT_F32, AT_SHAPE(8), 0);
    at_val y = at_relu(g, at_add(g, x, bias));
    CHECK_OK(at_graph_status(g));
    at_shape s = at_value_shape(g, y);
    CHECK(s.rank == 3 && s.dim[0] == B && s.dim[1] == T && s.dim[2] == 8, "symbols propagate");
    char buf[64];
    at_graph_shape_str(g, &s, buf, sizeof buf);
    CHECK(strcmp(buf, "[B,T,8]") == 0, "shape text %s", buf);
    CHECK(at_graph_find(g, "x") == x, "find by name");
    CHECK(at_value_producer(g, y) >= 0 && at_value_producer(g, x) < 0, "producers");
    at_graph_free(g);
}

static void test_errors_name_node_and_shapes(void) {
    at_graph *g = at_graph_new();
    at_val a = at_input(g, "a", AT_F32, AT_SHAPE(2, 3));
    at_val b = at_input(g, "b", AT_F32, AT_SHAPE(4, 3));
    at_val c = at_add(g, a, b);
    CHECK(c == AT_NONE, "broadcast mismatch fails");
    CHECK(at_graph_status(g) == AT_E_SHAPE, "status %d", at_graph_status(g));
    const char *m = at_graph_error(g);
    CHECK(strstr(m, "Add") && strstr(m, "[2,3]") && strstr(m, "[4,3]"), "message: %s", m);
    /* sticky: a later call with the failed value returns AT_NONE, keeps the first message */
    CHECK(at_relu(g, c) == AT_NONE, "sticky");
    CHECK(strstr(at_graph_error(g), "Add") != NULL, "first error kept");
    at_graph_free(g);

    g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(2));
    at_val dup = at_input(g, "x", AT_F32, AT_SHAPE(2));
    CHECK(dup == AT_NONE && strstr(at_graph_error(g), "already used"), "dup name: %s",
          at_graph_error(g));
    at_graph_clear_error(g);
    at_attr bad = AT_ATTR_I("nope", 1);
    CHECK(at_node1(g, "Relu", &x, 1, &bad, 1) == AT_NONE, "unknown attribute rejected");
    CHECK(strstr(at_graph_error(g), "nope") != NULL, "names the attribute: %s", at_graph_error(g));
    at_graph_clear_error(g);
    CHECK(at_node1(g, "NoSuchOp", &x, 1, NULL, 0) == AT_NONE, "unknown op");
    CHECK(strstr(at_graph_error(g), "NoSuchOp") != NULL, "names the op");
    at_graph_clear_error(g);
    at_val i = at_input(g, "i", AT_I64, AT_SHAPE(2));
    CHECK(at_add(g, x, i) == AT_NONE && strstr(at_graph_error(g), "dtypes differ"), "dtype: %s",
          at_graph_error(g));
    at_graph_free(g);
}

static void test_session_feeds_and_plans(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, 3));
    at_val w = at_const(g, "w", AT_F32, AT_SHAPE(3), (float[]){1, 2, 3});
    at_val y = at_mul(g, at_add(g, x, w), w);
    at_val unused = at_input(g, "unused", AT_F32, AT_SHAPE(1));
    (void)unused;
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "session: %s", err.msg);
    float xd[6] = {1, 1, 1, 2, 2, 2};
    at_feed f = {x, {AT_F32, AT_SHAPE(2, 3), xd}};
    at_tensor out;
    CHECK_OK(at_session_run(s, &f, 1, &y, 1, &out, NULL, 0));
    float want[6] = {2, 6, 12, 3, 8, 15};
    for (int i = 0; i < 6; i++) CHECK_NEAR(((float *)out.data)[i], want[i], 0);
    CHECK(out.shape.rank == 2 && out.shape.dim[0] == 2, "fetched shape");
    CHECK_OK(at_session_run(s, &f, 1, &y, 1, &out, NULL, 0));
    CHECK(at_session_get_stats(s).plans == 1, "one plan for one signature");
    f.t.shape = AT_SHAPE(1, 3);
    CHECK_OK(at_session_run(s, &f, 1, &y, 1, &out, NULL, 0));
    CHECK(at_session_get_stats(s).plans == 2, "a new plan for B=1");
    /* bad feeds: one clear error each */
    f.t.shape = AT_SHAPE(2, 4);
    CHECK(at_session_run(s, &f, 1, &y, 1, &out, NULL, 0) == AT_E_SHAPE, "wrong shape");
    CHECK(strstr(at_session_error(s), "'x'") && strstr(at_session_error(s), "[2,4]"), "msg: %s",
          at_session_error(s));
    f.t.shape = AT_SHAPE(2, 3);
    f.t.dtype = AT_I64;
    CHECK(at_session_run(s, &f, 1, &y, 1, &out, NULL, 0) == AT_E_SHAPE, "wrong dtype");
    CHECK(at_session_run(s, NULL, 0, &y, 1, &out, NULL, 0) == AT_E_INVALID, "missing feed");
    CHECK(strstr(at_session_error(s), "not fed") != NULL, "msg: %s", at_session_error(s));
    at_session_free(s);
    at_graph_free(g);
}

/* d/dx of sum((x*w + x)^2) with x fed, w a param, checked by hand; also
 * gradients w.r.t. an intermediate and through StopGradient. */
static void test_autodiff_basics(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(3));
    at_val w = at_param(g, "w", AT_F32, AT_SHAPE(3), 0);
    float *wd = at_value_data(g, w);
    wd[0] = 0.5f, wd[1] = -1.0f, wd[2] = 2.0f;
    at_val h = at_add(g, at_mul(g, x, w), x); /* h = x(w+1) */
    int64_t ax[1] = {0};
    at_val loss = at_reduce_sum(g, at_mul(g, h, h), 1, ax, 0);
    at_val sg = at_stop_gradient(g, h);
    at_val loss2 = at_reduce_sum(g, at_mul(g, sg, x), 1, ax, 0); /* d/dx = h (h frozen) */
    at_val wrt[3] = {x, w, h}, gr[3];
    CHECK_OK(at_backward(g, loss, wrt, 3, gr));
    at_val gr2[2];
    at_val wrt2[2] = {x, w};
    CHECK_OK(at_backward(g, loss2, wrt2, 2, gr2)); /* a second loss in the same graph */
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "session: %s", err.msg);
    float xd[3] = {1, 2, 3};
    at_feed f = {x, {AT_F32, AT_SHAPE(3), xd}};
    at_val fetch[5] = {gr[0], gr[1], gr[2], gr2[0], gr2[1]};
    at_tensor out[5];
    CHECK_OK(at_session_run(s, &f, 1, fetch, 5, out, NULL, 0));
    for (int i = 0; i < 3; i++) {
        double a = wd[i] + 1, hv = xd[i] * a;
        CHECK_NEAR(((float *)out[0].data)[i], 2 * hv * a, 1e-5);     /* dL/dx */
        CHECK_NEAR(((float *)out[1].data)[i], 2 * hv * xd[i], 1e-5); /* dL/dw */
        CHECK_NEAR(((float *)out[2].data)[i], 2 * hv, 1e-5);         /* dL/dh */
        CHECK_NEAR(((float *)out[3].data)[i], hv, 1e-5);             /* StopGradient */
        CHECK_NEAR(((float *)out[4].data)[i], 0, 0);                 /* w behind StopGradient */
    }
    CHECK(strcmp(at_value_name(g, gr[1]), "w.grad") == 0, "gradient named %s",
          at_value_name(g, gr[1]));
    at_session_free(s);
    at_graph_free(g);
}

/* GradientReversal: identity forward, -lambda * gradient backward, with
 * lambda fed at run time; integer inputs (indices) get no gradient. */
static void test_gradient_reversal(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(2));
    at_val lam = at_input(g, "lambda", AT_F32, AT_SCALAR);
    at_val c = at_const(g, "c", AT_F32, AT_SHAPE(2), (float[]){3, -4});
    at_val y = at_mul(g, at_gradient_reversal(g, x, lam), c);
    int64_t ax[1] = {0};
    at_val loss = at_reduce_sum(g, y, 1, ax, 0);
    at_val gx;
    CHECK_OK(at_backward(g, loss, &x, 1, &gx));
    at_session *s = at_session_new(g, NULL, NULL);
    float xd[2] = {1, 1}, l = 0.25f;
    at_feed f[2] = {{x, {AT_F32, AT_SHAPE(2), xd}}, {lam, {AT_F32, AT_SCALAR, &l}}};
    at_val fetch[2] = {loss, gx};
    at_tensor out[2];
    CHECK_OK(at_session_run(s, f, 2, fetch, 2, out, NULL, 0));
    CHECK_NEAR(((float *)out[0].data)[0], -1, 1e-6);
    CHECK_NEAR(((float *)out[1].data)[0], -0.25 * 3, 1e-6);
    CHECK_NEAR(((float *)out[1].data)[1], -0.25 * -4, 1e-6);
    at_session_free(s);
    at_graph_free(g);
}

/* A wrt value the loss does not depend on gets zeros; an op without a
 * gradient rule on the path is a clear error. */
static void test_autodiff_edges(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, 2));
    at_val z = at_input(g, "z", AT_F32, AT_SHAPE(B, 2));
    int64_t ax[2] = {0, 1};
    at_val loss = at_reduce_sum(g, at_exp(g, x), 2, ax, 0);
    at_val gz;
    CHECK_OK(at_backward(g, loss, &z, 1, &gz));
    at_session *s = at_session_new(g, NULL, NULL);
    float zd[4] = {1, 2, 3, 4};
    at_feed f = {z, {AT_F32, AT_SHAPE(2, 2), zd}};
    at_tensor out;
    CHECK_OK(at_session_run(s, &f, 1, &gz, 1, &out, NULL, 0));
    CHECK(out.shape.rank == 2 && out.shape.dim[0] == 2, "zeros take the fed shape");
    for (int i = 0; i < 4; i++) CHECK_NEAR(((float *)out.data)[i], 0, 0);
    at_session_free(s);
    at_val sg = at_sign(g, x); /* Sign: no gradient, marked non-differentiable */
    at_val l2 = at_reduce_sum(g, at_mul(g, sg, x), 2, ax, 0);
    at_val gx;
    CHECK_OK(at_backward(g, l2, &x, 1, &gx));
    at_graph_free(g);
}

/* Values whose lifetimes do not overlap share arena space. */
static void test_arena_reuse(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(256, 256));
    at_val h = x;
    for (int i = 0; i < 10; i++) h = at_tanh(g, at_add(g, h, x));
    at_session *s = at_session_new(g, NULL, NULL);
    float *xd = calloc(256 * 256, sizeof(float));
    at_feed f = {x, {AT_F32, AT_SHAPE(256, 256), xd}};
    at_tensor out;
    CHECK_OK(at_session_run(s, &f, 1, &h, 1, &out, NULL, 0));
    at_session_stats st = at_session_get_stats(s);
    CHECK(st.values_bytes == 20 * 256 * 256 * 4, "20 values of 256 KiB: %zu", st.values_bytes);
    CHECK(st.arena_bytes <= 2 * 256 * 256 * 4, "a chain needs 2 live buffers, got %zu",
          st.arena_bytes);
    free(xd);
    at_session_free(s);
    at_graph_free(g);
}

/* A clone is deep: same results, independent parameters. */
static void test_clone(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, 2));
    at_val w = at_param(g, "w", AT_F32, AT_SHAPE(2), 3);
    ((float *)at_value_data(g, w))[0] = 2;
    at_val y = at_tanh(g, at_mul(g, x, w));
    at_output(g, y);
    at_graph_set_meta(g, "k", "v");
    at_graph *c = at_graph_clone(g);
    CHECK(c != NULL, "clone");
    if (!c) return;
    CHECK(at_graph_num_nodes(c) == 2 && at_graph_num_values(c) == at_graph_num_values(g), "sizes");
    CHECK(strcmp(at_graph_meta(c, "k"), "v") == 0 && at_value_group(c, w) == 3, "meta, group");
    ((float *)at_value_data(c, w))[0] = 5;
    CHECK(((float *)at_value_data(g, w))[0] == 2, "param data is copied, not shared");
    at_session *s = at_session_new(c, NULL, NULL);
    float xd[2] = {0.1f, 0.2f};
    at_feed f = {x, {AT_F32, AT_SHAPE(1, 2), xd}};
    at_tensor out;
    CHECK_OK(at_session_run(s, &f, 1, &y, 1, &out, NULL, 0));
    CHECK_NEAR(((float *)out.data)[0], tanh(0.5), 1e-6);
    at_session_free(s);
    at_graph_free(c);
    at_graph_free(g);
}

int main(void) {
    test_clone();
    test_symbolic_shapes();
    test_errors_name_node_and_shapes();
    test_session_feeds_and_plans();
    test_autodiff_basics();
    test_gradient_reversal();
    test_autodiff_edges();
    test_arena_reuse();
    return check_done("test_core");
}
