/* The gather family (ops/gather.c): Gather and GatherGrad. Table rows check the forward
 * against a plain reference and the gradients (through GatherGrad, and GatherGrad's own
 * through Gather) against finite differences; the checks after the table cover bad indices,
 * symbolic shapes and thread-count determinism of the scatter-add. */
#include <stdint.h>

#include "check.h"
#include "op_harness.h"

static int64_t numel(const at_shape *s) {
    int64_t n = 1;
    for (int d = 0; d < s->rank; d++) n *= s->dim[d];
    return n;
}

static int64_t idx_get(const at_tensor *t, int64_t j) {
    return t->dtype == AT_I32 ? ((const int32_t *)t->data)[j] : ((const int64_t *)t->data)[j];
}

/* out[a..., i..., b...] = data[a..., indices[i...], b...], element by element */
static void ref_gather(const at_tensor *data, const at_tensor *idx, int axis, at_tensor *out) {
    int r = data->shape.rank, q = idx->shape.rank;
    if (axis < 0) axis += r;
    out->dtype = data->dtype;
    out->shape.rank = q + r - 1;
    int o = 0;
    for (int d = 0; d < axis; d++) out->shape.dim[o++] = data->shape.dim[d];
    for (int d = 0; d < q; d++) out->shape.dim[o++] = idx->shape.dim[d];
    for (int d = axis + 1; d < r; d++) out->shape.dim[o++] = data->shape.dim[d];
    int64_t nq = numel(&idx->shape), dim = data->shape.dim[axis];
    int64_t before = 1, after = 1;
    for (int d = 0; d < axis; d++) before *= data->shape.dim[d];
    for (int d = axis + 1; d < r; d++) after *= data->shape.dim[d];
    size_t es = at_dtype_size(data->dtype);
    for (int64_t a = 0; a < before; a++)
        for (int64_t i = 0; i < nq; i++) {
            int64_t k = idx_get(idx, i);
            if (k < 0) k += dim;
            for (int64_t b = 0; b < after; b++)
                memcpy((char *)out->data + ((a * nq + i) * after + b) * es,
                       (const char *)data->data + ((a * dim + k) * after + b) * es, es);
        }
}

#define DEF_GATHER(id, axis)                                                                       \
    static int id##_b(at_graph *g, const at_val *in, at_val *out) {                                \
        out[0] = at_gather(g, in[0], in[1], axis);                                                 \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_r(const at_tensor *in, int n_in, at_tensor *out, int n_out) {                 \
        (void)n_in, (void)n_out;                                                                   \
        ref_gather(&in[0], &in[1], axis, &out[0]);                                                 \
    }

DEF_GATHER(g_ax0, 0)
DEF_GATHER(g_ax1, 1)
DEF_GATHER(g_axm1, -1)
DEF_GATHER(g_ax2, 2)

/* GatherGrad(dy, indices, shape): the scatter-add reference, one element at a time */
static const int64_t gg_shape[] = {6, 3};
static int b_gather_grad(at_graph *g, const at_val *in, at_val *out) {
    at_val v[3] = {in[0], in[1], at_const_i64s(g, 2, gg_shape)};
    at_attr a = AT_ATTR_I("axis", 0);
    return at_node_add(g, "GatherGrad", AT_DOMAIN_ATTUNE, v, 3, out, 1, &a, 1) < 0 ? -1 : 1;
}
static void r_gather_grad(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    out->dtype = AT_F32;
    out->shape = AT_SHAPE(6, 3);
    float *o = out->data;
    for (int i = 0; i < 18; i++) o[i] = 0;
    int64_t n = numel(&in[1].shape);
    for (int64_t j = 0; j < n; j++) {
        int64_t k = idx_get(&in[1], j);
        if (k < 0) k += 6;
        for (int c = 0; c < 3; c++) o[k * 3 + c] += ((const float *)in[0].data)[j * 3 + c];
    }
}

/* the same lookup twice, summed: repeated rows in both GatherGrads */
static int b_twice(at_graph *g, const at_val *in, at_val *out) {
    at_val a = at_gather(g, in[0], in[1], 0), b = at_gather(g, in[0], in[2], 0);
    out[0] = at_add(g, a, b);
    return 1;
}
static void r_twice(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    at_tensor t = {0};
    t.data = malloc(sizeof(float) * 4096);
    ref_gather(&in[0], &in[1], 0, out);
    ref_gather(&in[0], &in[2], 0, &t);
    for (int64_t i = 0; i < numel(&out->shape); i++)
        ((float *)out->data)[i] += ((float *)t.data)[i];
    free(t.data);
}

static const int64_t rep_idx[8] = {1, 1, 1, 3, -5, 1, 0, 3}; /* -5 is row 1 again */
static const int64_t rep_idx2[2][3] = {{2, 2, -1}, {0, 4, 2}};
static const int32_t rep_idx32[6] = {4, 4, 0, -1, 4, 2};

#define F(lo, hi, ...)  OH_F32(lo, hi, __VA_ARGS__)
#define FN(lo, hi, ...) OH_F32_NG(lo, hi, __VA_ARGS__)
#define I32(lo_, hi_, ...)                                                                         \
    { .dt = AT_I32, .shape = AT_SHAPE(__VA_ARGS__), .lo = (lo_), .hi = (hi_) }
#define TOL .atol = 0, .rtol = 0, .grad_atol = 2e-3, .grad_rtol = 2e-2

static const oh_case cases[] = {
    /* embedding lookups: [V, d] by [B, T] */
    {"gather_embedding", 2, {F(-1, 1, 10, 8), OH_I64(0, 10, 3, 4)}, g_ax0_b, g_ax0_r, TOL},
    {"gather_embedding_neg_idx",
     2,
     {F(-1, 1, 10, 8), OH_I64(-10, 10, 3, 4)},
     g_ax0_b,
     g_ax0_r,
     TOL},
    {"gather_embedding_repeats",
     2,
     {F(-1, 1, 5, 4), {.dt = AT_I64, .shape = AT_SHAPE(2, 4), .data = rep_idx}},
     g_ax0_b,
     g_ax0_r,
     TOL},
    {"gather_embedding_int32",
     2,
     {F(-1, 1, 5, 6), {.dt = AT_I32, .shape = AT_SHAPE(6), .data = rep_idx32}},
     g_ax0_b,
     g_ax0_r,
     TOL},
    {"gather_embedding_big", 2, {F(-1, 1, 50, 300), OH_I64(0, 50, 8, 40)}, g_ax0_b, g_ax0_r, TOL},
    {"gather_embedding_narrow",
     2,
     {F(-1, 1, 1000, 2), OH_I64(-1000, 1000, 64, 300)},
     g_ax0_b,
     g_ax0_r,
     TOL},
    {"gather_axis1", 2, {F(-1, 1, 3, 7, 5), OH_I64(0, 7, 2, 3)}, g_ax1_b, g_ax1_r, TOL},
    {"gather_axis1_repeats",
     2,
     {F(-1, 1, 2, 5, 3), {.dt = AT_I64, .shape = AT_SHAPE(2, 3), .data = rep_idx2}},
     g_ax1_b,
     g_ax1_r,
     TOL},
    {"gather_axis_neg", 2, {F(-1, 1, 4, 6), OH_I64(-6, 6, 5)}, g_axm1_b, g_axm1_r, TOL},
    {"gather_last_axis3", 2, {F(-1, 1, 2, 3, 4), I32(-4, 4, 2, 2)}, g_ax2_b, g_ax2_r, TOL},
    {"gather_scalar_index",
     2,
     {F(-1, 1, 5, 4), {.dt = AT_I64, .shape = AT_SCALAR, .lo = -5, .hi = 5}},
     g_ax0_b,
     g_ax0_r,
     TOL},
    {"gather_scalar_index_axis1",
     2,
     {F(-1, 1, 3, 5), {.dt = AT_I64, .shape = AT_SCALAR, .lo = 0, .hi = 5}},
     g_ax1_b,
     g_ax1_r,
     TOL},
    {"gather_size1_dims", 2, {F(-1, 1, 1, 4, 1), OH_I64(0, 4, 1, 1)}, g_ax1_b, g_ax1_r, TOL},
    {"gather_rank1_data", 2, {F(-1, 1, 9), OH_I64(-9, 9, 4, 2)}, g_ax0_b, g_ax0_r, TOL},
    {"gather_int64_data", 2, {OH_I64(-100, 100, 6, 3), OH_I64(0, 6, 4)}, g_ax0_b, g_ax0_r, TOL},
    {"gather_empty_indices", 2, {FN(-1, 1, 5, 3), OH_I64(0, 5, 0)}, g_ax0_b, g_ax0_r, TOL},
    {"gather_twice_summed",
     3,
     {F(-1, 1, 6, 3), OH_I64(0, 6, 4, 2), {.dt = AT_I64, .shape = AT_SHAPE(4, 2), .data = rep_idx}},
     b_twice,
     r_twice,
     TOL},
    /* GatherGrad itself (its gradient is a Gather) */
    {"gather_grad_op",
     2,
     {F(-1, 1, 8, 3), {.dt = AT_I64, .shape = AT_SHAPE(8), .data = rep_idx}},
     b_gather_grad,
     r_gather_grad,
     TOL},
    {"gather_grad_op_int32",
     2,
     {F(-1, 1, 6, 3), {.dt = AT_I32, .shape = AT_SHAPE(6), .data = rep_idx32}},
     b_gather_grad,
     r_gather_grad,
     TOL},
};

/* ---- checks beyond the table ---- */

static void check_bad_index(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(5, 2));
    at_val i = at_input(g, "i", AT_I64, AT_SHAPE(3));
    at_val y = at_gather(g, x, i, 0);
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "session: %s", s ? "" : err.msg);
    if (!s) {
        at_graph_free(g);
        return;
    }
    float xd[10] = {0};
    int64_t cases[3][3] = {{0, 5, 1}, {-6, 0, 0}, {4, -5, 2}}, bad_val[2] = {5, -6};
    for (int c = 0; c < 3; c++) {
        at_feed f[2] = {{x, {AT_F32, AT_SHAPE(5, 2), xd}}, {i, {AT_I64, AT_SHAPE(3), cases[c]}}};
        at_tensor out;
        at_status st = at_session_run(s, f, 2, &y, 1, &out, NULL, 0);
        const char *msg = at_session_error(s);
        if (c < 2) {
            char want[32];
            snprintf(want, sizeof want, "%lld", (long long)bad_val[c]);
            CHECK(st != AT_OK && strstr(msg, "out of range") && strstr(msg, want) &&
                      strstr(msg, "5"),
                  "index %lld: status %d, message '%s'", (long long)bad_val[c], st, msg);
        } else {
            CHECK(st == AT_OK, "in-range indices: %s", msg);
        }
    }
    at_session_free(s);

    /* the backward op checks too */
    at_graph *h = at_graph_new();
    at_val dy = at_input(h, "dy", AT_F32, AT_SHAPE(2, 3));
    at_val ix = at_input(h, "ix", AT_I64, AT_SHAPE(2));
    at_val v[3] = {dy, ix, at_const_i64s(h, 2, (const int64_t[]){4, 3})};
    at_val out = AT_NONE;
    at_attr a = AT_ATTR_I("axis", 0);
    CHECK(at_node_add(h, "GatherGrad", AT_DOMAIN_ATTUNE, v, 3, &out, 1, &a, 1) >= 0, "%s",
          at_graph_error(h));
    s = at_session_new(h, NULL, &err);
    CHECK(s != NULL, "session: %s", s ? "" : err.msg);
    if (s) {
        float dyd[6] = {0};
        int64_t bad[2] = {1, 4};
        at_feed f[2] = {{dy, {AT_F32, AT_SHAPE(2, 3), dyd}}, {ix, {AT_I64, AT_SHAPE(2), bad}}};
        at_tensor t;
        at_status st = at_session_run(s, f, 2, &out, 1, &t, NULL, 0);
        CHECK(st != AT_OK && strstr(at_session_error(s), "out of range"), "GatherGrad: '%s'",
              at_session_error(s));
        at_session_free(s);
    }
    at_graph_free(h);
    at_graph_free(g);
}

static void check_symbolic(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T");
    at_val emb = at_param(g, "emb", AT_F32, AT_SHAPE(100, 16), 0);
    at_val tok = at_input(g, "tok", AT_I64, AT_SHAPE(B, T));
    at_val e = at_gather(g, emb, tok, 0);
    at_shape s = at_value_shape(g, e);
    CHECK(s.rank == 3 && s.dim[0] == B && s.dim[1] == T && s.dim[2] == 16, "embedding shape");
    at_val h = at_input(g, "h", AT_F32, AT_SHAPE(B, T, 16));
    at_val pos = at_const_i64(g, 0);
    at_val first = at_gather(g, h, pos, 1);
    s = at_value_shape(g, first);
    CHECK(s.rank == 2 && s.dim[0] == B && s.dim[1] == 16, "scalar index drops the axis");
    at_val bad = at_gather(g, h, at_input(g, "f", AT_F32, AT_SHAPE(2)), 0);
    CHECK(bad == AT_NONE, "float indices must fail");
    at_graph_clear_error(g);
    bad = at_gather(g, h, tok, 3);
    CHECK(bad == AT_NONE, "axis 3 of rank 3 must fail");
    at_graph_clear_error(g);
    at_graph_free(g);
}

/* The embedding gradient with symbolic B, T through at_backward, and bitwise equal for 1, 2
 * and 5 threads (no atomics, fixed summation order). */
static void check_embedding_grad(void) {
    enum { V = 37, D = 300, NB = 6, NT = 50 };
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T");
    at_val emb = at_param(g, "emb", AT_F32, AT_SHAPE(V, D), 0);
    float *ed = at_value_data(g, emb);
    for (int i = 0; i < V * D; i++) ed[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    at_val tok = at_input(g, "tok", AT_I64, AT_SHAPE(B, T));
    at_val w = at_input(g, "w", AT_F32, AT_SHAPE(B, T, D));
    at_val e = at_gather(g, emb, tok, 0);
    at_val loss = at_reduce_sum(g, at_mul(g, e, w), 3, (const int64_t[]){0, 1, 2}, 0);
    at_val grad;
    CHECK_OK(at_backward(g, loss, &emb, 1, &grad));
    int64_t *td = malloc(sizeof(int64_t) * NB * NT);
    float *wd = malloc(sizeof(float) * NB * NT * D);
    for (int i = 0; i < NB * NT; i++) td[i] = (i * 7) % V - (i % 3 == 0 ? V : 0);
    for (int i = 0; i < NB * NT * D; i++) wd[i] = (float)((i * 7919) % 2003) / 1000.0f - 1.0f;
    /* plain reference in double */
    double *want = calloc(V * D, sizeof(double));
    for (int j = 0; j < NB * NT; j++) {
        int64_t k = td[j] < 0 ? td[j] + V : td[j];
        for (int c = 0; c < D; c++) want[k * D + c] += wd[j * D + c];
    }
    float *first = NULL;
    int threads[3] = {1, 2, 5};
    for (int r = 0; r < 3; r++) {
        at_session_opts o = at_session_defaults();
        o.threads = threads[r];
        at_err err;
        at_session *s = at_session_new(g, &o, &err);
        CHECK(s != NULL, "session: %s", s ? "" : err.msg);
        if (!s) break;
        at_feed f[2] = {{tok, {AT_I64, AT_SHAPE(NB, NT), td}},
                        {w, {AT_F32, AT_SHAPE(NB, NT, D), wd}}};
        at_tensor got;
        at_status st = at_session_run(s, f, 2, &grad, 1, &got, NULL, 0);
        CHECK(st == AT_OK, "run: %s", at_session_error(s));
        if (st == AT_OK) {
            int bad = 0;
            for (int i = 0; i < V * D; i++)
                bad += fabs(((float *)got.data)[i] - want[i]) > 1e-4 * (1 + fabs(want[i]));
            CHECK(bad == 0, "%d threads: %d gradient elements wrong", threads[r], bad);
            if (!first) {
                first = malloc(sizeof(float) * V * D);
                memcpy(first, got.data, sizeof(float) * V * D);
            } else {
                CHECK(memcmp(first, got.data, sizeof(float) * V * D) == 0,
                      "%d threads: not bitwise equal to 1 thread", threads[r]);
            }
        }
        at_session_free(s);
    }
    free(first);
    free(want);
    free(td);
    free(wd);
    at_graph_free(g);
}

int main(int argc, char **argv) {
    int rc = oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_gather", argc, argv);
    if (argc > 1) return rc;
    check_bad_index();
    check_symbolic();
    check_embedding_grad();
    return check_done("test_ops_gather checks") | rc;
}
