/* Dropout and DropoutGrad: harness rows for the deterministic modes (inference, ratio 0 and 1,
 * the backward op on a fed mask), then custom checks for training mode, whose mask changes
 * with the session step and so cannot go through the harness's finite differences: mask rate
 * and scale, agreement with at_rng_uniform, determinism across sessions, thread counts and
 * steps, run-time ratio validation, and the gradient against finite differences with the step
 * pinned by at_session_set_step. */
#include "check.h"
#include "op_harness.h"
#include "runtime/rng.h"

static const uint8_t k_true = 1, k_false = 0;

/* ---- plain references ---- */

static void ref_identity(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in;
    int64_t n = at_shape_numel(&in[0].shape);
    out[0].dtype = AT_F32, out[0].shape = in[0].shape;
    memcpy(out[0].data, in[0].data, (size_t)n * sizeof(float));
    if (n_out > 1) {
        out[1].dtype = AT_BOOL, out[1].shape = in[0].shape;
        for (int64_t i = 0; i < n; i++) ((uint8_t *)out[1].data)[i] = 1;
    }
}

static void ref_all_dropped(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in;
    int64_t n = at_shape_numel(&in[0].shape);
    out[0].dtype = AT_F32, out[0].shape = in[0].shape;
    for (int64_t i = 0; i < n; i++) ((float *)out[0].data)[i] = 0.0f;
    if (n_out > 1) {
        out[1].dtype = AT_BOOL, out[1].shape = in[0].shape;
        for (int64_t i = 0; i < n; i++) ((uint8_t *)out[1].data)[i] = 0;
    }
}

/* dx = mask ? dy * scale : 0 */
static void ref_masked(const at_tensor *in, at_tensor *out, double scale) {
    int64_t n = at_shape_numel(&in[0].shape);
    out[0].dtype = AT_F32, out[0].shape = in[0].shape;
    const float *dy = in[0].data;
    const uint8_t *m = in[1].data;
    for (int64_t i = 0; i < n; i++) ((float *)out[0].data)[i] = m[i] ? (float)(dy[i] * scale) : 0;
}
static void ref_grad_train(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    ref_masked(in, out, 1.0 / 0.75);
}
static void ref_grad_infer(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    ref_masked(in, out, 1.0);
}

/* ---- builders ---- */

static int build_infer(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_dropout(g, in[0], 0.3f, AT_NONE, &out[1]);
    return 2;
}
static int build_infer_nomask(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_dropout(g, in[0], 0.5f, AT_NONE, NULL);
    return 1;
}
static int build_fed_mode(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_dropout(g, in[0], 0.5f, in[1], &out[1]);
    return 2;
}
static int build_ratio0(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_dropout(g, in[0], 0.0f, in[1], &out[1]);
    return 2;
}
/* no mask output: the gradient rule must append one */
static int build_ratio0_nomask(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_dropout(g, in[0], 0.0f, in[1], NULL);
    return 1;
}
static int build_ratio1(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_dropout(g, in[0], 1.0f, in[1], &out[1]);
    return 2;
}
static int build_grad_train(at_graph *g, const at_val *in, at_val *out) {
    at_val x[4] = {in[0], in[1], at_const_f32(g, 0.25f), in[2]};
    return at_node_add(g, "DropoutGrad", AT_DOMAIN_ATTUNE, x, 4, out, 1, NULL, 0) < 0 ? -1 : 1;
}
static int build_grad_infer(at_graph *g, const at_val *in, at_val *out) {
    return at_node_add(g, "DropoutGrad", AT_DOMAIN_ATTUNE, in, 2, out, 1, NULL, 0) < 0 ? -1 : 1;
}

#define BOOL_FIXED(p)                                                                              \
    { .dt = AT_BOOL, .shape = AT_SCALAR, .data = (p) }
#define BOOL_RAND(...)                                                                             \
    { .dt = AT_BOOL, .shape = AT_SHAPE(__VA_ARGS__), .lo = 0, .hi = 2 }

static int run_rows(int argc, char **argv) {
    const oh_case cases[] = {
        {.name = "dropout_inference_identity",
         .n_in = 1,
         .in = {OH_F32(-2, 2, 3, 4, 5)},
         .build = build_infer,
         .ref = ref_identity,
         .grad_atol = 1e-3,
         .grad_rtol = 1e-3},
        {.name = "dropout_inference_no_mask_scalar",
         .n_in = 1,
         .in = {{.dt = AT_F32, .shape = AT_SCALAR, .lo = -1, .hi = 1, .grad = true}},
         .build = build_infer_nomask,
         .ref = ref_identity,
         .grad_atol = 1e-3,
         .grad_rtol = 1e-3},
        {.name = "dropout_training_false_fed",
         .n_in = 2,
         .in = {OH_F32(-2, 2, 2, 7), BOOL_FIXED(&k_false)},
         .build = build_fed_mode,
         .ref = ref_identity,
         .grad_atol = 1e-3,
         .grad_rtol = 1e-3},
        {.name = "dropout_training_ratio0",
         .n_in = 2,
         .in = {OH_F32(-2, 2, 4, 6), BOOL_FIXED(&k_true)},
         .build = build_ratio0,
         .ref = ref_identity,
         .grad_atol = 1e-3,
         .grad_rtol = 1e-3},
        {.name = "dropout_training_ratio0_mask_appended",
         .n_in = 2,
         .in = {OH_F32(-2, 2, 5, 3), BOOL_FIXED(&k_true)},
         .build = build_ratio0_nomask,
         .ref = ref_identity,
         .grad_atol = 1e-3,
         .grad_rtol = 1e-3},
        {.name = "dropout_training_ratio1",
         .n_in = 2,
         .in = {OH_F32(-2, 2, 3, 5), BOOL_FIXED(&k_true)},
         .build = build_ratio1,
         .ref = ref_all_dropped,
         .grad_atol = 1e-3,
         .grad_rtol = 1e-3},
        {.name = "dropout_grad_op_training",
         .n_in = 3,
         .in = {OH_F32(-2, 2, 4, 9), BOOL_RAND(4, 9), BOOL_FIXED(&k_true)},
         .build = build_grad_train,
         .ref = ref_grad_train,
         .atol = 1e-6,
         .rtol = 1e-6,
         .grad_atol = 1e-3,
         .grad_rtol = 1e-3},
        {.name = "dropout_grad_op_inference",
         .n_in = 2,
         .in = {OH_F32(-2, 2, 2, 3, 4), BOOL_RAND(2, 3, 4)},
         .build = build_grad_infer,
         .ref = ref_grad_infer,
         .grad_atol = 1e-3,
         .grad_rtol = 1e-3},
    };
    return oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_dropout rows", argc,
                  argv);
}

/* ---- training mode ---- */

typedef struct train_graph {
    at_graph *g;
    at_val x, training, y, mask;
    int node;
} train_graph;

static void train_graph_make(train_graph *t, int64_t n, float ratio, bool want_mask) {
    t->g = at_graph_new();
    t->x = at_input(t->g, "x", AT_F32, AT_SHAPE(n));
    t->training = at_input(t->g, "training", AT_BOOL, AT_SCALAR);
    t->mask = AT_NONE;
    t->y = at_dropout(t->g, t->x, ratio, t->training, want_mask ? &t->mask : NULL);
    t->node = at_value_producer(t->g, t->y);
}

static at_session *session(at_graph *g, uint64_t seed, int threads) {
    at_session_opts o = at_session_defaults();
    o.seed = seed;
    o.threads = threads;
    at_err e;
    at_session *s = at_session_new(g, &o, &e);
    CHECK(s != NULL, "session: %s", s ? "" : e.msg);
    return s;
}

/* Runs at step `step`; copies the mask out (and y if y_out). */
static int run_mask(at_session *s, train_graph *t, const float *x, int64_t n, uint64_t step,
                    uint8_t *mask, float *y_out) {
    at_feed f[2] = {{t->x, {AT_F32, AT_SHAPE(n), (void *)x}},
                    {t->training, {AT_BOOL, AT_SCALAR, (void *)&k_true}}};
    at_val fetch[2] = {t->mask, t->y};
    at_tensor out[2];
    at_session_set_step(s, step);
    if (at_session_run(s, f, 2, fetch, 2, out, NULL, 0) != AT_OK) {
        CHECK(0, "run: %s", at_session_error(s));
        return -1;
    }
    memcpy(mask, out[0].data, (size_t)n);
    if (y_out) memcpy(y_out, out[1].data, (size_t)n * sizeof(float));
    return 0;
}

static void test_training_mask(void) {
    const int64_t n = 100000;
    const float ratio = 0.3f;
    const uint64_t seed = 1234, step = 17;
    train_graph t;
    train_graph_make(&t, n, ratio, true);
    CHECK(at_graph_status(t.g) == AT_OK, "build: %s", at_graph_error(t.g));
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    uint8_t *m1 = malloc((size_t)n), *m2 = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f + (float)(i % 13) * 0.25f;

    at_session *s1 = session(t.g, seed, 1);
    if (!s1 || run_mask(s1, &t, x, n, step, m1, y)) goto done;
    /* keep rate 0.7: sd sqrt(0.21 / 1e5) ~ 1.45e-3, so 5 sd is 7e-3 */
    int64_t kept = 0, rng_bad = 0, scale_bad = 0;
    at_philox_key key = at_rng_key(seed, (uint32_t)t.node);
    float scale = 1.0f / (1.0f - ratio);
    for (int64_t i = 0; i < n; i++) {
        kept += m1[i];
        rng_bad += m1[i] != (at_rng_uniform(key, step, (uint64_t)i) >= ratio);
        float want = m1[i] ? x[i] * scale : 0.0f;
        scale_bad += fabsf(y[i] - want) > 1e-6f * fabsf(want);
    }
    CHECK_NEAR((double)kept / n, 1.0 - ratio, 7e-3);
    CHECK(rng_bad == 0, "%lld mask bits differ from at_rng_uniform >= ratio", (long long)rng_bad);
    CHECK(scale_bad == 0, "%lld outputs are not x / (1 - ratio) or 0", (long long)scale_bad);

    /* Same seed, step and node: the same mask, whatever the session or thread count. */
    at_session *s2 = session(t.g, seed, 2);
    if (s2 && !run_mask(s2, &t, x, n, step, m2, NULL))
        CHECK(memcmp(m1, m2, (size_t)n) == 0, "2 threads give the 1-thread mask");
    at_session *s3 = session(t.g, seed, 1);
    if (s3 && !run_mask(s3, &t, x, n, step, m2, NULL))
        CHECK(memcmp(m1, m2, (size_t)n) == 0, "a second session gives the same mask");
    /* Another step, another mask; back at the step, the first mask again. */
    if (s1 && !run_mask(s1, &t, x, n, step + 1, m2, NULL)) {
        int64_t diff = 0;
        for (int64_t i = 0; i < n; i++) diff += m1[i] != m2[i];
        /* independent masks differ in 2 * 0.3 * 0.7 = 42 % of the elements */
        CHECK(diff > n / 3, "step + 1 changes only %lld of %lld bits", (long long)diff,
              (long long)n);
    }
    if (s1 && !run_mask(s1, &t, x, n, step, m2, NULL))
        CHECK(memcmp(m1, m2, (size_t)n) == 0, "the step alone decides the mask");
    /* A run advances the step, so two plain runs in a row draw different masks. */
    CHECK(at_session_step(s1) == step + 1, "step after a run: %llu",
          (unsigned long long)at_session_step(s1));
    at_session *s4 = session(t.g, seed + 1, 1);
    if (s4 && !run_mask(s4, &t, x, n, step, m2, NULL)) {
        int64_t diff = 0;
        for (int64_t i = 0; i < n; i++) diff += m1[i] != m2[i];
        CHECK(diff > n / 3, "another seed changes only %lld bits", (long long)diff);
    }
    at_session_free(s2);
    at_session_free(s3);
    at_session_free(s4);
done:
    at_session_free(s1);
    at_graph_free(t.g);
    free(x), free(y), free(m1), free(m2);
}

/* Dropout's gradient in training mode against central differences, the step pinned so every
 * run draws the same mask; with and without a mask output on the forward node. */
static void test_training_grad(bool want_mask) {
    const int64_t n = 42;
    const float ratio = 0.4f;
    train_graph t;
    train_graph_make(&t, n, ratio, want_mask);
    at_graph *g = t.g;
    float w[42], x[42];
    uint64_t st = 99;
    for (int i = 0; i < n; i++) {
        w[i] = (float)(oh_unif(&st) * 2 - 1);
        x[i] = (float)(oh_unif(&st) * 4 - 2);
    }
    at_val wv = at_const(g, "w", AT_F32, AT_SHAPE(n), w);
    int64_t axis0 = 0;
    at_val loss = at_reduce_sum(g, at_mul(g, t.y, wv), 1, &axis0, 0);
    at_val gx;
    CHECK(at_backward(g, loss, &t.x, 1, &gx) == AT_OK, "backward: %s", at_graph_error(g));
    at_val mask = t.mask != AT_NONE ? t.mask : at_node_output(g, t.node, 1);
    CHECK(mask != AT_NONE && at_value_dtype(g, mask) == AT_BOOL,
          "the forward node has a bool mask output after at_backward");
    at_session *s = session(g, 7, 0);
    if (!s || at_graph_status(g) != AT_OK) goto done;
    at_feed f[2] = {{t.x, {AT_F32, AT_SHAPE(n), x}},
                    {t.training, {AT_BOOL, AT_SCALAR, (void *)&k_true}}};
    at_val fetch[2] = {gx, mask};
    at_tensor out[2];
    at_session_set_step(s, 11);
    if (at_session_run(s, f, 2, fetch, 2, out, NULL, 0) != AT_OK) {
        CHECK(0, "run: %s", at_session_error(s));
        goto done;
    }
    float ga[42];
    uint8_t m[42];
    memcpy(ga, out[0].data, sizeof ga);
    memcpy(m, out[1].data, sizeof m);
    int kept = 0;
    for (int i = 0; i < n; i++) {
        kept += m[i];
        float want = m[i] ? w[i] / (1.0f - ratio) : 0.0f;
        CHECK_NEAR(ga[i], want, 1e-5);
    }
    CHECK(kept > 0 && kept < n, "a mask with both kinds of bits (%d of %d kept)", kept, (int)n);
    const float eps = 1e-2f;
    for (int i = 0; i < n; i++) {
        double l[2];
        for (int k = 0; k < 2; k++) {
            float keep = x[i];
            x[i] = keep + (k ? -eps : eps);
            at_session_set_step(s, 11);
            at_tensor lt;
            at_status rs = at_session_run(s, f, 2, &loss, 1, &lt, NULL, 0);
            x[i] = keep;
            CHECK(rs == AT_OK, "fd run: %s", at_session_error(s));
            if (rs != AT_OK) goto done;
            l[k] = ((const float *)lt.data)[0];
        }
        CHECK_NEAR(ga[i], (l[0] - l[1]) / (2 * eps), 2e-3);
    }
done:
    at_session_free(s);
    at_graph_free(g);
}

/* A ratio fed at run time outside [0, 1] is an error, never a crash. */
static void test_bad_ratio(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(8));
    at_val r = at_input(g, "ratio", AT_F32, AT_SCALAR);
    at_val tr = at_input(g, "training", AT_BOOL, AT_SCALAR);
    at_val in[3] = {x, r, tr}, y;
    CHECK(at_node_add(g, "Dropout", "", in, 3, &y, 1, NULL, 0) >= 0, "add: %s", at_graph_error(g));
    at_session *s = session(g, 1, 1);
    if (s) {
        float xs[8] = {0}, bad = 1.5f;
        at_feed f[3] = {{x, {AT_F32, AT_SHAPE(8), xs}},
                        {r, {AT_F32, AT_SCALAR, &bad}},
                        {tr, {AT_BOOL, AT_SCALAR, (void *)&k_true}}};
        at_tensor out;
        at_status st = at_session_run(s, f, 3, &y, 1, &out, NULL, 0);
        CHECK(st != AT_OK, "ratio 1.5 must fail");
        CHECK(strstr(at_session_error(s), "ratio") != NULL, "message: %s", at_session_error(s));
        at_session_free(s);
    }
    at_graph_free(g);
    /* at build time too, and for a bad training_mode type */
    g = at_graph_new();
    x = at_input(g, "x", AT_F32, AT_SHAPE(8));
    CHECK(at_dropout(g, x, -0.1f, AT_NONE, NULL) == AT_NONE, "ratio -0.1 rejected");
    CHECK(at_graph_status(g) == AT_E_INVALID, "status %d", (int)at_graph_status(g));
    at_graph_free(g);
    g = at_graph_new();
    x = at_input(g, "x", AT_F32, AT_SHAPE(8));
    at_val fl = at_input(g, "t", AT_F32, AT_SCALAR);
    CHECK(at_dropout(g, x, 0.1f, fl, NULL) == AT_NONE, "float training_mode rejected");
    at_graph_free(g);
}

int main(int argc, char **argv) {
    int rc = run_rows(argc, argv);
    if (argc > 1) return rc;
    test_training_mask();
    test_training_grad(true);
    test_training_grad(false);
    test_bad_ratio();
    return check_done("test_ops_dropout custom") | rc;
}
