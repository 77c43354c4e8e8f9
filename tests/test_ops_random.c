/* RandomNormalLike and RandomUniformLike (ops/random.c). Their outputs change with the session
 * step, so they are checked here rather than through the harness's fixed references: every
 * element against runtime/rng.h element by element (the stream's definition), the moments of
 * 100,000 draws (mean, variance, range), attributes (mean, scale, low, high, dtype), the same
 * draws for one (seed, step, node) in another session and at another thread count, other
 * draws at another step or seed, shapes taken from an int64 input with dtype given, build-time
 * errors for unsupported dtypes, and no gradient through the random op. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attune/autodiff.h"
#include "attune/graph.h"
#include "attune/ops.h"
#include "attune/session.h"
#include "check.h"
#include "runtime/rng.h"

enum { N = 100000 };

typedef struct rgraph {
    at_graph *g;
    at_val x, y;
    int node;
} rgraph;

/* y = op(x), x float32 [n] (or int64 with dtype 1). */
static bool rgraph_make(rgraph *r, const char *op, int64_t n, at_dtype in_dt, const at_attr *attrs,
                        int n_attrs) {
    r->g = at_graph_new();
    r->x = at_input(r->g, "x", in_dt, AT_SHAPE(n));
    r->y = at_node1(r->g, op, &r->x, 1, attrs, n_attrs);
    r->node = r->y == AT_NONE ? -1 : at_value_producer(r->g, r->y);
    CHECK(at_graph_status(r->g) == AT_OK, "%s: build: %s", op, at_graph_error(r->g));
    return at_graph_status(r->g) == AT_OK;
}

static at_session *session(at_graph *g, uint64_t seed, int threads) {
    at_session_opts o = at_session_defaults();
    o.seed = seed;
    o.threads = threads;
    at_err e = {0};
    at_session *s = at_session_new(g, &o, &e);
    CHECK(s != NULL, "session: %s", e.msg);
    return s;
}

/* Runs at `step`, copying the output to y. */
static bool draw(at_session *s, rgraph *r, int64_t n, at_dtype in_dt, uint64_t step, float *y) {
    static float xf[N];
    static int64_t xi[N];
    at_feed f = {r->x, {in_dt, AT_SHAPE(n), in_dt == AT_F32 ? (void *)xf : (void *)xi}};
    at_tensor out;
    at_session_set_step(s, step);
    at_status st = at_session_run(s, &f, 1, &r->y, 1, &out, NULL, 0);
    CHECK(st == AT_OK, "run: %s", at_session_error(s));
    if (st != AT_OK) return false;
    CHECK(out.dtype == AT_F32 && out.shape.rank == 1 && out.shape.dim[0] == n,
          "output float32 [%lld]", (long long)n);
    memcpy(y, out.data, (size_t)n * sizeof(float));
    return true;
}

static void moments(const float *y, int64_t n, double *mean, double *var, double *lo, double *hi) {
    double s = 0, s2 = 0;
    *lo = INFINITY, *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        s += y[i];
        if (y[i] < *lo) *lo = y[i];
        if (y[i] > *hi) *hi = y[i];
    }
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) s2 += (y[i] - *mean) * (y[i] - *mean);
    *var = s2 / (double)(n - 1);
}

static int64_t n_diff(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

/* One op with its attributes: every element against the reference stream, moments, and
 * determinism in (seed, step). want_mean / want_var are the distribution's. */
static void check_op(const char *op, const at_attr *attrs, int n_attrs, at_dtype in_dt,
                     double want_mean, double want_var, double lo, double hi, bool normal,
                     double mean_attr, double scale_attr) {
    rgraph r;
    if (!rgraph_make(&r, op, N, in_dt, attrs, n_attrs)) {
        at_graph_free(r.g);
        return;
    }
    float *y1 = malloc(N * sizeof(float)), *y2 = malloc(N * sizeof(float));
    const uint64_t seed = 4242, step = 31;
    at_session *s1 = session(r.g, seed, 1), *s2 = session(r.g, seed, 2);
    if (!s1 || !s2 || !draw(s1, &r, N, in_dt, step, y1)) goto done;

    /* The stream's definition, element by element. */
    at_philox_key key = at_rng_key(seed, (uint32_t)r.node);
    int64_t bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < N; i++) {
        double want =
            normal ? at_rng_normal(key, step, (uint64_t)i) * (float)scale_attr + (float)mean_attr
                   : (float)lo + ((float)hi - (float)lo) * at_rng_uniform(key, step, i);
        double d = fabs(y1[i] - want);
        if (d > worst) worst = d;
        bad += d > 1e-6 * (1 + fabs(want));
    }
    CHECK(bad == 0, "%s: %lld of %d elements differ from runtime/rng.h (worst %g)", op,
          (long long)bad, N, worst);

    /* Moments: the standard error of the mean is sqrt(var / N); of the variance about
     * var * sqrt(2 / N) (normal) or less (uniform). Five of each. */
    double m, v, mn, mx;
    moments(y1, N, &m, &v, &mn, &mx);
    CHECK_NEAR(m, want_mean, 5 * sqrt(want_var / N));
    CHECK_NEAR(v, want_var, 5 * want_var * sqrt(2.0 / N));
    if (normal) {
        /* P(z > 3.5) = 2.3e-4: about 23 of 100,000 draws beyond 3.5 sd on each side. */
        CHECK((mn - want_mean) / sqrt(want_var) < -3.5 && (mx - want_mean) / sqrt(want_var) > 3.5,
              "%s: tails reached: min %g max %g", op, mn, mx);
    } else {
        CHECK(mn >= lo && mx < hi, "%s: draws in [%g, %g): min %g max %g", op, lo, hi, mn, mx);
        CHECK(mn < lo + (hi - lo) * 1e-3 && mx > hi - (hi - lo) * 1e-3,
              "%s: the whole interval is covered: min %g max %g", op, mn, mx);
    }

    /* Determinism: same (seed, step, node) in another session at another thread count. */
    if (draw(s2, &r, N, in_dt, step, y2))
        CHECK(n_diff(y1, y2, N) == 0, "%s: 2 threads give the 1-thread draws", op);
    /* Another step: other draws (all but a handful of coincidences); back: the same. */
    if (draw(s1, &r, N, in_dt, step + 1, y2))
        CHECK(n_diff(y1, y2, N) > N - 10, "%s: step + 1 changes only %lld of %d", op,
              (long long)n_diff(y1, y2, N), N);
    if (draw(s1, &r, N, in_dt, step, y2))
        CHECK(n_diff(y1, y2, N) == 0, "%s: the step alone decides the draws", op);
    CHECK(at_session_step(s1) == step + 1, "%s: a run advances the step", op);
    at_session *s3 = session(r.g, seed + 1, 1);
    if (s3 && draw(s3, &r, N, in_dt, step, y2))
        CHECK(n_diff(y1, y2, N) > N - 10, "%s: another seed changes only %lld of %d", op,
              (long long)n_diff(y1, y2, N), N);
    at_session_free(s3);
done:
    at_session_free(s1);
    at_session_free(s2);
    at_graph_free(r.g);
    free(y1);
    free(y2);
}

static void test_distributions(void) {
    check_op("RandomNormalLike", NULL, 0, AT_F32, 0, 1, 0, 0, true, 0, 1);
    at_attr na[2] = {AT_ATTR_F("mean", 2.0f), AT_ATTR_F("scale", 0.5f)};
    check_op("RandomNormalLike", na, 2, AT_F32, 2, 0.25, 0, 0, true, 2, 0.5);
    check_op("RandomUniformLike", NULL, 0, AT_F32, 0.5, 1.0 / 12, 0, 1, false, 0, 0);
    at_attr ua[3] = {AT_ATTR_F("low", -3.0f), AT_ATTR_F("high", 5.0f), AT_ATTR_I("dtype", 1)};
    /* An int64 input gives only its shape when dtype says float. */
    check_op("RandomUniformLike", ua, 3, AT_I64, 1, 64.0 / 12, -3, 5, false, 0, 0);
    at_attr ns[2] = {AT_ATTR_F("seed", 7.0f), AT_ATTR_I("dtype", 1)};
    check_op("RandomNormalLike", ns, 2, AT_F32, 0, 1, 0, 0, true, 0, 1);
}

/* Two random nodes in one graph draw different numbers (the node is part of the key). */
static void test_two_nodes(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(1000));
    at_val a = at_node1(g, "RandomNormalLike", &x, 1, NULL, 0);
    at_val b = at_node1(g, "RandomNormalLike", &x, 1, NULL, 0);
    at_session *s = session(g, 9, 1);
    float xs[1000] = {0};
    if (s) {
        at_feed f = {x, {AT_F32, AT_SHAPE(1000), xs}};
        at_val fetch[2] = {a, b};
        at_tensor out[2];
        CHECK_OK(at_session_run(s, &f, 1, fetch, 2, out, NULL, 0));
        if (out[0].data && out[1].data)
            CHECK(n_diff(out[0].data, out[1].data, 1000) > 990, "two nodes, two streams");
    }
    at_session_free(s);
    at_graph_free(g);
}

/* Shape rule: dtype other than float, or an int64 input without dtype, fail at build. */
static void test_bad_dtypes(void) {
    at_graph *g = at_graph_new();
    at_val xi = at_input(g, "xi", AT_I64, AT_SHAPE(3));
    CHECK(at_node1(g, "RandomNormalLike", &xi, 1, NULL, 0) == AT_NONE,
          "int64 input without dtype rejected");
    CHECK(strstr(at_graph_error(g), "float32") != NULL, "message: %s", at_graph_error(g));
    at_graph_free(g);
    g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(3));
    at_attr d[1] = {AT_ATTR_I("dtype", 11)};
    CHECK(at_node1(g, "RandomUniformLike", &x, 1, d, 1) == AT_NONE, "dtype double rejected");
    CHECK(at_graph_status(g) == AT_E_UNSUPPORTED, "status %d: %s", (int)at_graph_status(g),
          at_graph_error(g));
    at_graph_free(g);
    g = at_graph_new();
    x = at_input(g, "x", AT_F32, AT_SHAPE(3));
    at_attr bad[1] = {AT_ATTR_F("sigma", 1.0f)};
    CHECK(at_node1(g, "RandomNormalLike", &x, 1, bad, 1) == AT_NONE, "unknown attribute rejected");
    at_graph_free(g);
    /* low > high is a run-time error, not a crash. */
    g = at_graph_new();
    x = at_input(g, "x", AT_F32, AT_SHAPE(3));
    at_attr lh[2] = {AT_ATTR_F("low", 2.0f), AT_ATTR_F("high", 1.0f)};
    at_val y = at_node1(g, "RandomUniformLike", &x, 1, lh, 2);
    at_session *s = session(g, 1, 1);
    if (s) {
        float xs[3] = {0};
        at_feed f = {x, {AT_F32, AT_SHAPE(3), xs}};
        at_tensor out;
        CHECK(at_session_run(s, &f, 1, &y, 1, &out, NULL, 0) == AT_E_INVALID,
              "low > high fails at run time");
        CHECK(strstr(at_session_error(s), "low") != NULL, "message: %s", at_session_error(s));
    }
    at_session_free(s);
    at_graph_free(g);
}

/* y = x * noise(x): the gradient w.r.t. x is the noise itself, none flowing through the random
 * op (its input only gives the shape), and at_backward raises no error. */
static void test_no_gradient(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(64));
    at_val z = at_node1(g, "RandomNormalLike", &x, 1, NULL, 0);
    const int64_t ax = 0;
    at_val loss = at_reduce_sum(g, at_mul(g, x, z), 1, &ax, 0);
    at_val gx = AT_NONE;
    CHECK_OK(at_backward(g, loss, &x, 1, &gx));
    at_session *s = session(g, 5, 1);
    if (s && gx != AT_NONE) {
        float xs[64];
        for (int i = 0; i < 64; i++) xs[i] = (float)i * 0.1f - 3;
        at_feed f = {x, {AT_F32, AT_SHAPE(64), xs}};
        at_val fetch[2] = {gx, z};
        at_tensor out[2];
        CHECK_OK(at_session_run(s, &f, 1, fetch, 2, out, NULL, 0));
        if (out[0].data && out[1].data)
            CHECK(n_diff(out[0].data, out[1].data, 64) == 0, "d(x * z)/dx is z");
    }
    at_session_free(s);
    at_graph_free(g);
}

int main(void) {
    test_distributions();
    test_two_nodes();
    test_bad_dtypes();
    test_no_gradient();
    return check_done("test_ops_random");
}
