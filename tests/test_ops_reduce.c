/* ReduceSum, ReduceMean, ReduceMax and their backward ops against plain C references. */
#include "op_harness.h"

#include <stdint.h>

/* ---- reference: walk every input element, drop the reduced coordinates ---- */

enum { K_SUM, K_MEAN, K_MAX };

static void ref_reduce(int kind, const at_tensor *x, const int64_t *axes, int n_axes, int keep,
                       bool noop_empty, at_tensor *y) {
    int r = x->shape.rank;
    bool red[AT_MAX_RANK] = {false};
    for (int d = 0; d < r; d++) red[d] = n_axes == 0 && !noop_empty;
    for (int i = 0; i < n_axes; i++) red[axes[i] < 0 ? axes[i] + r : axes[i]] = true;
    y->dtype = x->dtype;
    y->shape.rank = 0;
    for (int d = 0; d < r; d++) {
        if (!red[d])
            y->shape.dim[y->shape.rank++] = x->shape.dim[d];
        else if (keep)
            y->shape.dim[y->shape.rank++] = 1;
    }
    int64_t ny = at_shape_numel(&y->shape), nx = at_shape_numel(&x->shape);
    double *acc = calloc((size_t)ny, sizeof(double));
    int64_t *cnt = calloc((size_t)ny, sizeof(int64_t));
    for (int64_t i = 0; i < nx; i++) {
        int64_t idx[AT_MAX_RANK], rem = i, o = 0;
        for (int d = r - 1; d >= 0; d--) {
            idx[d] = rem % x->shape.dim[d];
            rem /= x->shape.dim[d];
        }
        for (int d = 0; d < r; d++)
            if (!red[d]) o = o * x->shape.dim[d] + idx[d];
        double v = oh_get(x, i);
        if (kind == K_MAX)
            acc[o] = cnt[o] == 0 || v > acc[o] ? v : acc[o];
        else
            acc[o] += v;
        cnt[o]++;
    }
    for (int64_t o = 0; o < ny; o++) {
        double v = kind == K_MEAN ? acc[o] / (double)cnt[o] : acc[o];
        if (y->dtype == AT_F32)
            ((float *)y->data)[o] = (float)v;
        else
            ((int64_t *)y->data)[o] = (int64_t)v;
    }
    free(acc);
    free(cnt);
}

typedef at_val (*reduce_fn)(at_graph *, at_val, int, const int64_t *, int);

/* One row's build and ref, generated: op builder, kind, keepdims, axes. */
#define RED_DEF(id, builder, kind, keep, n, ...)                                                   \
    static const int64_t id##_axes[] = {__VA_ARGS__};                                              \
    static int id##_build(at_graph *g, const at_val *in, at_val *out) {                            \
        out[0] = builder(g, in[0], n, id##_axes, keep);                                            \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {               \
        (void)n_in;                                                                                \
        (void)n_out;                                                                               \
        ref_reduce(kind, &in[0], id##_axes, n, keep, false, &out[0]);                              \
    }

RED_DEF(sum_a1_k1, at_reduce_sum, K_SUM, 1, 1, 1)
RED_DEF(sum_am1_k0, at_reduce_sum, K_SUM, 0, 1, -1)
RED_DEF(sum_a02_k1, at_reduce_sum, K_SUM, 1, 2, 0, 2)
RED_DEF(sum_a0m1_k0, at_reduce_sum, K_SUM, 0, 2, 0, -1)
RED_DEF(sum_all_k0, at_reduce_sum, K_SUM, 0, 0, 0)
RED_DEF(sum_all_k1, at_reduce_sum, K_SUM, 1, 0, 0)
RED_DEF(sum_a12_k0, at_reduce_sum, K_SUM, 0, 2, 1, 2)
RED_DEF(sum_a0_k0, at_reduce_sum, K_SUM, 0, 1, 0)
RED_DEF(sum_a13_k0, at_reduce_sum, K_SUM, 0, 2, 3, 1)
RED_DEF(sum_a0_k1, at_reduce_sum, K_SUM, 1, 1, 0)
RED_DEF(sum_a02_k0, at_reduce_sum, K_SUM, 0, 2, 0, 2)
RED_DEF(sum_a0123_k1, at_reduce_sum, K_SUM, 1, 4, -4, -3, -2, -1)

RED_DEF(mean_a1_k1, at_reduce_mean, K_MEAN, 1, 1, 1)
RED_DEF(mean_am1_k0, at_reduce_mean, K_MEAN, 0, 1, -1)
RED_DEF(mean_a02_k1, at_reduce_mean, K_MEAN, 1, 2, 0, 2)
RED_DEF(mean_am3m1_k0, at_reduce_mean, K_MEAN, 0, 2, -3, -1)
RED_DEF(mean_all_k0, at_reduce_mean, K_MEAN, 0, 0, 0)
RED_DEF(mean_a0_k1, at_reduce_mean, K_MEAN, 1, 1, 0)
RED_DEF(mean_a13_k1, at_reduce_mean, K_MEAN, 1, 2, 1, 3)

RED_DEF(max_a1_k1, at_reduce_max, K_MAX, 1, 1, 1)
RED_DEF(max_am1_k0, at_reduce_max, K_MAX, 0, 1, -1)
RED_DEF(max_a02_k0, at_reduce_max, K_MAX, 0, 2, 0, 2)
RED_DEF(max_a02_k1, at_reduce_max, K_MAX, 1, 2, 2, -3)
RED_DEF(max_all_k1, at_reduce_max, K_MAX, 1, 0, 0)
RED_DEF(max_all_k0, at_reduce_max, K_MAX, 0, 0, 0)
RED_DEF(max_a0_k0, at_reduce_max, K_MAX, 0, 1, 0)
RED_DEF(max_a13_k0, at_reduce_max, K_MAX, 0, 2, 1, 3)

/* noop_with_empty_axes = 1 and no axes: the identity. */
static int sum_noop_build(at_graph *g, const at_val *in, at_val *out) {
    at_attr a = AT_ATTR_I("noop_with_empty_axes", 1);
    out[0] = at_node1(g, "ReduceSum", in, 1, &a, 1);
    return 1;
}
static void sum_noop_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in;
    (void)n_out;
    ref_reduce(K_SUM, &in[0], NULL, 0, 1, true, &out[0]);
}

/* An empty axes input without noop: reduces everything (ONNX). */
static int sum_empty_axes_build(at_graph *g, const at_val *in, at_val *out) {
    at_val ax = at_const(g, NULL, AT_I64, AT_SHAPE(0), NULL);
    at_val ins[2] = {in[0], ax};
    at_attr a = AT_ATTR_I("keepdims", 0);
    out[0] = at_node1(g, "ReduceSum", ins, 2, &a, 1);
    return 1;
}
static void sum_empty_axes_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in;
    (void)n_out;
    ref_reduce(K_SUM, &in[0], NULL, 0, 0, false, &out[0]);
}

/* The backward ops built directly (x0 = dY, shape constant): their forward and their own
 * gradient (the forward reduction). */
#define BCAST_DEF(id, op, mean, keep, rank, dims, n, ...)                                          \
    static const int64_t id##_axes[] = {__VA_ARGS__};                                              \
    static const int64_t id##_dims[] = dims;                                                       \
    static int id##_build(at_graph *g, const at_val *in, at_val *out) {                            \
        at_val ins[3] = {in[0], at_const_i64s(g, rank, id##_dims),                                 \
                         at_const_i64s(g, n, id##_axes)};                                          \
        at_attr a = AT_ATTR_I("keepdims", keep);                                                   \
        at_node_add(g, op, AT_DOMAIN_ATTUNE, ins, 3, out, 1, &a, 1);                               \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {               \
        (void)n_in;                                                                                \
        (void)n_out;                                                                               \
        ref_bcast(&in[0], rank, id##_dims, id##_axes, n, mean, &out[0]);                           \
    }

static void ref_bcast(const at_tensor *dy, int r, const int64_t *dims, const int64_t *axes, int n,
                      bool mean, at_tensor *dx) {
    bool red[AT_MAX_RANK] = {false};
    for (int i = 0; i < n; i++) red[axes[i] < 0 ? axes[i] + r : axes[i]] = true;
    dx->dtype = AT_F32;
    dx->shape = at_shape_make(r, dims);
    int64_t count = 1;
    for (int d = 0; d < r; d++)
        if (red[d]) count *= dims[d];
    int64_t nx = at_shape_numel(&dx->shape);
    for (int64_t i = 0; i < nx; i++) {
        int64_t idx[AT_MAX_RANK], rem = i, o = 0;
        for (int d = r - 1; d >= 0; d--) {
            idx[d] = rem % dims[d];
            rem /= dims[d];
        }
        for (int d = 0; d < r; d++)
            if (!red[d]) o = o * dims[d] + idx[d];
        ((float *)dx->data)[i] = (float)(oh_get(dy, o) / (mean ? (double)count : 1.0));
    }
}

#define DIMS(...)                                                                                  \
    { __VA_ARGS__ }
BCAST_DEF(sumgrad_a1_k0, "ReduceSumGrad", false, 0, 3, DIMS(2, 3, 4), 1, 1)
BCAST_DEF(sumgrad_a02_k1, "ReduceSumGrad", false, 1, 3, DIMS(2, 3, 4), 2, 0, -1)
BCAST_DEF(meangrad_a02_k0, "ReduceMeanGrad", true, 0, 3, DIMS(2, 3, 4), 2, 0, 2)
BCAST_DEF(meangrad_am1_k1, "ReduceMeanGrad", true, 1, 3, DIMS(2, 3, 4), 1, -1)

/* Values distinct within each reduced set and 0.05 apart (well beyond the finite-difference
 * step), so every maximum is unique and stays the maximum under the perturbation. The value
 * is a permutation of the element's rank within its set, mixed with the set's number. */
static void fill_max(float *p, at_shape s, int n_axes, const int64_t *axes) {
    int r = s.rank;
    bool red[AT_MAX_RANK] = {false};
    for (int d = 0; d < r; d++) red[d] = n_axes == 0;
    for (int i = 0; i < n_axes; i++) red[axes[i] < 0 ? axes[i] + r : axes[i]] = true;
    int64_t n = at_shape_numel(&s), n_red = 1;
    for (int d = 0; d < r; d++)
        if (red[d]) n_red *= s.dim[d];
    int64_t mul = 1;
    for (int64_t m = 37; m < 1000; m += 2) {
        int64_t a = m, b = n_red;
        while (b) {
            int64_t t = a % b;
            a = b;
            b = t;
        }
        if (a == 1) {
            mul = m;
            break;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t idx[AT_MAX_RANK], rem = i, o = 0, k = 0;
        for (int d = r - 1; d >= 0; d--) {
            idx[d] = rem % s.dim[d];
            rem /= s.dim[d];
        }
        for (int d = 0; d < r; d++) {
            if (red[d])
                k = k * s.dim[d] + idx[d];
            else
                o = o * s.dim[d] + idx[d];
        }
        int64_t v = (k * mul + o * 7) % n_red;
        p[i] = (float)(0.05 * ((double)v - 0.5 * (double)n_red) + 0.013 * (double)(o % 5));
    }
}

static float mx_a1_k1[60], mx_am1_k0[60], mx_a02_k0[60], mx_a02_k1[60], mx_all_k1[60];
static float mx_all_k0[60], mx_a0_k0[60], mx_a13_k0[48], mx_large_general[40 * 30 * 40];
static float mx_large_inner[64 * 300 * 3];

#define XIN(...)                                                                                   \
    { .dt = AT_F32, .shape = AT_SHAPE(__VA_ARGS__), .lo = -2, .hi = 2, .grad = true }
#define XD(arr, ...)                                                                               \
    { .dt = AT_F32, .shape = AT_SHAPE(__VA_ARGS__), .grad = true, .data = (arr) }
#define ROW(id, ...)                                                                               \
    {                                                                                              \
        .name = #id, .n_in = 1, .in = {__VA_ARGS__}, .build = id##_build, .ref = id##_ref,         \
        .atol = 1e-5, .rtol = 1e-5, .grad_atol = 2e-3, .grad_rtol = 2e-3                           \
    }
#define ROWN(name_, id, ...)                                                                       \
    {                                                                                              \
        .name = name_, .n_in = 1, .in = {__VA_ARGS__}, .build = id##_build, .ref = id##_ref,       \
        .atol = 1e-4, .rtol = 1e-5, .grad_atol = 5e-3, .grad_rtol = 5e-3                           \
    }

/* Symbolic batch: build and differentiate with x [B, 3, 4], run with two batch sizes.
 * L = sum_j (sum_{b,k} x[b,j,k])^2 + sum_{b,j} (mean_k x[b,j,k])^2, so
 * dL/dx[b,j,k] = 2 s[j] + 2 m[b,j] / 4. */
static int check_symbolic(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, 3, 4));
    int64_t a02[2] = {0, 2}, am1[1] = {-1};
    at_val s = at_reduce_sum(g, x, 2, a02, 0);
    at_val m = at_reduce_mean(g, x, 1, am1, 1);
    at_val loss = at_add(g, at_reduce_sum(g, at_mul(g, s, s), 0, NULL, 0),
                         at_reduce_sum(g, at_mul(g, m, m), 0, NULL, 0));
    at_val dx;
    int bad = 0;
    if (at_backward(g, loss, &x, 1, &dx) != AT_OK) {
        fprintf(stderr, "FAIL symbolic: backward: %s\n", at_graph_error(g));
        at_graph_free(g);
        return 1;
    }
    at_shape ms = at_value_shape(g, m), ds = at_value_shape(g, dx);
    if (ms.rank != 3 || ms.dim[0] != B || ms.dim[2] != 1 || ds.rank != 3 || ds.dim[0] != B ||
        ds.dim[1] != 3 || ds.dim[2] != 4) {
        fprintf(stderr, "FAIL symbolic: shapes lost their symbol\n");
        bad = 1;
    }
    at_err err;
    at_session *se = at_session_new(g, NULL, &err);
    if (!se) {
        fprintf(stderr, "FAIL symbolic: session: %s\n", err.msg);
        at_graph_free(g);
        return 1;
    }
    for (int64_t nb = 2; nb <= 5 && !bad; nb += 3) {
        float xd[5 * 12];
        for (int i = 0; i < nb * 12; i++) xd[i] = (float)((i * 7) % 11) * 0.1f - 0.5f;
        at_feed f = {x, {AT_F32, AT_SHAPE(nb, 3, 4), xd}};
        at_tensor out;
        if (at_session_run(se, &f, 1, &dx, 1, &out, NULL, 0) != AT_OK) {
            fprintf(stderr, "FAIL symbolic: run: %s\n", at_session_error(se));
            bad = 1;
            break;
        }
        double sj[3] = {0}, mb[5][3] = {{0}};
        for (int b = 0; b < nb; b++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++) {
                    sj[j] += xd[(b * 3 + j) * 4 + k];
                    mb[b][j] += xd[(b * 3 + j) * 4 + k] / 4.0;
                }
        if (out.shape.rank != 3 || out.shape.dim[0] != nb) bad = 1;
        for (int b = 0; b < nb && !bad; b++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++) {
                    double want = 2 * sj[j] + 2 * mb[b][j] / 4.0;
                    double got = ((float *)out.data)[(b * 3 + j) * 4 + k];
                    if (fabs(got - want) > 1e-4) {
                        fprintf(stderr, "FAIL symbolic: B=%lld dx[%d,%d,%d] = %g, want %g\n",
                                (long long)nb, b, j, k, got, want);
                        bad = 1;
                    }
                }
    }
    if (!bad) printf("ok   symbolic_batch_backward\n");
    at_session_free(se);
    at_graph_free(g);
    return bad;
}

int main(int argc, char **argv) {
    const oh_case cases[] = {
        ROW(sum_a1_k1, XIN(3, 4, 5)),
        ROW(sum_am1_k0, XIN(3, 4, 5)),
        ROW(sum_a02_k1, XIN(3, 4, 5)),
        ROW(sum_a0m1_k0, XIN(3, 4, 5)),
        ROW(sum_all_k0, XIN(3, 4, 5)),
        ROW(sum_all_k1, XIN(3, 4, 5)),
        ROW(sum_a12_k0, XIN(3, 4, 5)),
        ROW(sum_a0_k0, XIN(4, 3)),
        ROW(sum_a13_k0, XIN(2, 3, 2, 4)),
        ROW(sum_a0_k1, XIN(1, 5)),
        ROWN("sum_a02_k0_size1", sum_a02_k0, XIN(2, 1, 3)),
        ROWN("sum_a1_k1_size1", sum_a1_k1, XIN(3, 1, 4)),
        ROW(sum_a0123_k1, XIN(2, 3, 2, 2)),
        ROWN("sum_am1_k0_rank1", sum_am1_k0, XIN(7)),
        ROWN("sum_a1_k1_large_inner", sum_a1_k1, XIN(64, 300, 3)),
        ROWN("sum_am1_k0_large_rows", sum_am1_k0, XIN(200, 200)),
        ROWN("sum_a02_k0_large_general", sum_a02_k0, XIN(40, 30, 40)),
        ROWN("sum_a0_k0_large_cols", sum_a0_k0, XIN(300, 500)),
        {.name = "sum_int64_a1",
         .n_in = 1,
         .in = {OH_I64(-50, 50, 3, 4, 5)},
         .build = sum_a1_k1_build,
         .ref = sum_a1_k1_ref},
        {.name = "sum_int64_a02",
         .n_in = 1,
         .in = {OH_I64(-50, 50, 3, 4, 5)},
         .build = sum_a02_k0_build,
         .ref = sum_a02_k0_ref},
        ROW(sum_noop, XIN(3, 4)),
        ROW(sum_empty_axes, XIN(3, 4)),

        ROW(mean_a1_k1, XIN(3, 4, 5)),
        ROW(mean_am1_k0, XIN(3, 4, 5)),
        ROW(mean_a02_k1, XIN(3, 4, 5)),
        ROW(mean_am3m1_k0, XIN(3, 4, 5)),
        ROW(mean_all_k0, XIN(3, 4, 5)),
        ROW(mean_a0_k1, XIN(4, 3)),
        ROW(mean_a13_k1, XIN(2, 3, 2, 4)),
        ROWN("mean_a1_k1_large", mean_a1_k1, XIN(64, 300, 3)),

        ROW(max_a1_k1, XD(mx_a1_k1, 3, 4, 5)),
        ROW(max_am1_k0, XD(mx_am1_k0, 3, 4, 5)),
        ROW(max_a02_k0, XD(mx_a02_k0, 3, 4, 5)),
        ROW(max_a02_k1, XD(mx_a02_k1, 3, 4, 5)),
        ROW(max_all_k1, XD(mx_all_k1, 3, 4, 5)),
        ROW(max_all_k0, XD(mx_all_k0, 3, 4, 5)),
        ROW(max_a0_k0, XD(mx_a0_k0, 4, 15)),
        ROW(max_a13_k0, XD(mx_a13_k0, 2, 3, 2, 4)),
        ROWN("max_a02_k0_large_general", max_a02_k0, XD(mx_large_general, 40, 30, 40)),
        ROWN("max_a1_k1_large_inner", max_a1_k1, XD(mx_large_inner, 64, 300, 3)),
        {.name = "max_int64_a02",
         .n_in = 1,
         .in = {OH_I64(-1000, 1000, 3, 4, 5)},
         .build = max_a02_k0_build,
         .ref = max_a02_k0_ref},
        {.name = "max_int64_am1",
         .n_in = 1,
         .in = {OH_I64(-1000, 1000, 3, 4, 5)},
         .build = max_am1_k0_build,
         .ref = max_am1_k0_ref},
        {.name = "max_int64_all",
         .n_in = 1,
         .in = {OH_I64(-1000, 1000, 6, 5)},
         .build = max_all_k0_build,
         .ref = max_all_k0_ref},

        ROW(sumgrad_a1_k0, XIN(2, 4)),
        ROW(sumgrad_a02_k1, XIN(1, 3, 1)),
        ROW(meangrad_a02_k0, XIN(3)),
        ROW(meangrad_am1_k1, XIN(2, 3, 1)),
    };

    fill_max(mx_a1_k1, AT_SHAPE(3, 4, 5), 1, max_a1_k1_axes);
    fill_max(mx_am1_k0, AT_SHAPE(3, 4, 5), 1, max_am1_k0_axes);
    fill_max(mx_a02_k0, AT_SHAPE(3, 4, 5), 2, max_a02_k0_axes);
    fill_max(mx_a02_k1, AT_SHAPE(3, 4, 5), 2, max_a02_k1_axes);
    fill_max(mx_all_k1, AT_SHAPE(3, 4, 5), 0, max_all_k1_axes);
    fill_max(mx_all_k0, AT_SHAPE(3, 4, 5), 0, max_all_k0_axes);
    fill_max(mx_a0_k0, AT_SHAPE(4, 15), 1, max_a0_k0_axes);
    fill_max(mx_a13_k0, AT_SHAPE(2, 3, 2, 4), 2, max_a13_k0_axes);
    fill_max(mx_large_general, AT_SHAPE(40, 30, 40), 2, max_a02_k0_axes);
    fill_max(mx_large_inner, AT_SHAPE(64, 300, 3), 1, max_a1_k1_axes);
    int rc = oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_reduce", argc, argv);
    if (argc > 1) return rc;
    return check_symbolic() || rc;
}
