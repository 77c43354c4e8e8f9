/* SoftmaxCrossEntropyLoss and its backward op against a plain double-precision reference,
 * plus the error on an out-of-range label. */
#include "op_harness.h"

#include <stdint.h>

enum { R_NONE, R_SUM, R_MEAN };

/* in: scores [N, C, D...], labels, weights (when n_in == 3). out: loss, log_prob (n_out 2). */
static void ref_ce(const at_tensor *in, int n_in, at_tensor *out, int n_out, int red,
                   bool has_ignore, int64_t ignore) {
    const at_tensor *x = &in[0], *l = &in[1];
    int64_t N = x->shape.dim[0], C = x->shape.dim[1], S = 1;
    for (int d = 2; d < x->shape.rank; d++) S *= x->shape.dim[d];
    out[0].dtype = AT_F32;
    out[0].shape = red == R_NONE ? l->shape : AT_SCALAR;
    if (n_out > 1) {
        out[1].dtype = AT_F32;
        out[1].shape = x->shape;
    }
    double sl = 0, sw = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t s = 0; s < S; s++) {
            double m = -INFINITY, z = 0;
            for (int64_t c = 0; c < C; c++) m = fmax(m, oh_get(x, (n * C + c) * S + s));
            for (int64_t c = 0; c < C; c++) z += exp(oh_get(x, (n * C + c) * S + s) - m);
            double lse = m + log(z);
            if (n_out > 1)
                for (int64_t c = 0; c < C; c++)
                    ((float *)out[1].data)[(n * C + c) * S + s] =
                        (float)(oh_get(x, (n * C + c) * S + s) - lse);
            int64_t lab = (int64_t)oh_get(l, n * S + s);
            double li = 0, wt = 0;
            if (!(has_ignore && lab == ignore)) {
                wt = n_in > 2 ? oh_get(&in[2], lab) : 1.0;
                li = -wt * (oh_get(x, (n * C + lab) * S + s) - lse);
            }
            if (red == R_NONE) ((float *)out[0].data)[n * S + s] = (float)li;
            sl += li;
            sw += wt;
        }
    if (red == R_SUM) ((float *)out[0].data)[0] = (float)sl;
    if (red == R_MEAN) ((float *)out[0].data)[0] = (float)(sw != 0 ? sl / sw : 0);
}

static const char *red_name[] = {"none", "sum", "mean"};

/* id, reduction, with weights, ignore_index (INT64_MIN: none). Outputs: loss and log_prob. */
#define CE_DEF(id, red, weights, ig)                                                               \
    static int id##_build(at_graph *g, const at_val *in, at_val *out) {                            \
        out[0] = at_softmax_cross_entropy(g, in[0], in[1], (weights) ? in[2] : AT_NONE,            \
                                          red_name[red], ig);                                      \
        out[1] = at_node_output(g, at_value_producer(g, out[0]), 1);                               \
        return 2;                                                                                  \
    }                                                                                              \
    static void id##_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {               \
        ref_ce(in, n_in, out, n_out, red, (ig) != INT64_MIN, ig);                                  \
    }

CE_DEF(ce_mean, R_MEAN, 0, INT64_MIN)
CE_DEF(ce_sum, R_SUM, 0, INT64_MIN)
CE_DEF(ce_none, R_NONE, 0, INT64_MIN)
CE_DEF(ce_mean_w, R_MEAN, 1, INT64_MIN)
CE_DEF(ce_mean_w_ig, R_MEAN, 1, -100)
CE_DEF(ce_mean_ig, R_MEAN, 0, -100)
CE_DEF(ce_sum_w_ig, R_SUM, 1, -100)
CE_DEF(ce_none_w_ig, R_NONE, 1, -100)
CE_DEF(ce_mean_ig2, R_MEAN, 0, 2)

/* One output only: the backward op recomputes the softmax from the scores. */
static int ce_single_build(at_graph *g, const at_val *in, at_val *out) {
    at_attr a[2] = {AT_ATTR_S("reduction", "mean"), AT_ATTR_I("ignore_index", -100)};
    at_node_add(g, "SoftmaxCrossEntropyLoss", AT_DOMAIN_ONNX, in, 3, out, 1, a, 2);
    return 1;
}
static void ce_single_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    ref_ce(in, n_in, out, n_out, R_MEAN, true, -100);
}

/* Labels with ignore_index hits (-100) and every class used. */
static const int64_t lab5[5] = {1, -100, 3, 0, -100};
static const int64_t lab6[6] = {2, 0, 1, 2, 3, 1};
static const int64_t lab_nd[3 * 5] = {0, 1, -100, 3, 2, -100, -100, 1, 1, 0, 3, 2, -100, 0, 2};
static const int64_t lab_nd4[2 * 2 * 3] = {1, -100, 0, 2, 2, 1, -100, 0, 1, 1, 2, -100};
static const int64_t lab_all_ig[4] = {-100, -100, -100, -100};
static const int32_t lab_i32[5] = {3, -100, 0, 2, 1};

#define SCORES(...)                                                                                \
    { .dt = AT_F32, .shape = AT_SHAPE(__VA_ARGS__), .lo = -3, .hi = 3, .grad = true }
#define LABELS(arr, ...)                                                                           \
    { .dt = AT_I64, .shape = AT_SHAPE(__VA_ARGS__), .data = (arr) }
#define WEIGHTS(...)                                                                               \
    { .dt = AT_F32, .shape = AT_SHAPE(__VA_ARGS__), .lo = 0.2f, .hi = 2 }
#define ROW(name_, id, n, ...)                                                                     \
    {                                                                                              \
        .name = name_, .n_in = n, .in = {__VA_ARGS__}, .build = id##_build, .ref = id##_ref,       \
        .atol = 1e-5, .rtol = 1e-5, .grad_atol = 1e-3, .grad_rtol = 1e-2                           \
    }

/* A label out of [0, C) that is not ignore_index must fail the run, naming the label. */
static int check_bad_label(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(3, 4));
    at_val l = at_input(g, "l", AT_I64, AT_SHAPE(3));
    at_val loss = at_softmax_cross_entropy(g, x, l, AT_NONE, "mean", -100);
    int bad = 0;
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    if (!s) {
        fprintf(stderr, "FAIL bad_label: session: %s\n", err.msg);
        at_graph_free(g);
        return 1;
    }
    float xd[12] = {0};
    int64_t cases[2][3] = {{0, 7, 1}, {0, -1, 1}};
    for (int k = 0; k < 2; k++) {
        at_feed f[2] = {{x, {AT_F32, AT_SHAPE(3, 4), xd}}, {l, {AT_I64, AT_SHAPE(3), cases[k]}}};
        at_tensor out;
        at_status st = at_session_run(s, f, 2, &loss, 1, &out, NULL, 0);
        char want[32];
        snprintf(want, sizeof want, "label %lld", (long long)cases[k][1]);
        if (st == AT_OK || !strstr(at_session_error(s), want)) {
            fprintf(stderr, "FAIL bad_label: status %d, message '%s' (want '%s')\n", (int)st,
                    at_session_error(s), want);
            bad = 1;
        }
    }
    /* a good batch still runs after the errors */
    int64_t good[3] = {0, -100, 3};
    at_feed f[2] = {{x, {AT_F32, AT_SHAPE(3, 4), xd}}, {l, {AT_I64, AT_SHAPE(3), good}}};
    at_tensor out;
    if (at_session_run(s, f, 2, &loss, 1, &out, NULL, 0) != AT_OK ||
        fabsf(((float *)out.data)[0] - logf(4.0f)) > 1e-5f) {
        fprintf(stderr, "FAIL bad_label: good run after errors: %s\n", at_session_error(s));
        bad = 1;
    }
    if (!bad) printf("ok   bad_label_errors\n");
    at_session_free(s);
    at_graph_free(g);
    return bad;
}

/* Symbolic batch through LayerNormalization and the loss: build and differentiate with
 * x [B, 5], run with two batch sizes. Checks the loss against the reference on the fetched
 * normalized y, and that each row of dx sums to 0 (layer norm is shift-invariant). */
static int check_symbolic(void) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, 5));
    at_val l = at_input(g, "l", AT_I64, AT_SHAPE(B));
    float sc[5] = {1, 0.5f, 2, 1.5f, 0.8f};
    at_val scale = at_const(g, "scale", AT_F32, AT_SHAPE(5), sc);
    at_val y = at_layer_norm(g, x, scale, AT_NONE, -1, 1e-5f);
    at_val loss = at_softmax_cross_entropy(g, y, l, AT_NONE, "mean", -100);
    at_val dx;
    if (at_backward(g, loss, &x, 1, &dx) != AT_OK) {
        fprintf(stderr, "FAIL symbolic: backward: %s\n", at_graph_error(g));
        at_graph_free(g);
        return 1;
    }
    int bad = 0;
    at_shape ds = at_value_shape(g, dx);
    if (ds.rank != 2 || ds.dim[0] != B || ds.dim[1] != 5) {
        fprintf(stderr, "FAIL symbolic: dx shape lost its symbol\n");
        bad = 1;
    }
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    if (!s) {
        fprintf(stderr, "FAIL symbolic: session: %s\n", err.msg);
        at_graph_free(g);
        return 1;
    }
    for (int64_t nb = 3; nb <= 4 && !bad; nb++) {
        float xd[20];
        int64_t ld[4] = {4, -100, 0, 2};
        for (int i = 0; i < nb * 5; i++) xd[i] = (float)((i * 7) % 11) * 0.3f - 1.5f;
        at_feed f[2] = {{x, {AT_F32, AT_SHAPE(nb, 5), xd}}, {l, {AT_I64, AT_SHAPE(nb), ld}}};
        at_val fetch[3] = {loss, y, dx};
        at_tensor out[3];
        if (at_session_run(s, f, 2, fetch, 3, out, NULL, 0) != AT_OK) {
            fprintf(stderr, "FAIL symbolic: run: %s\n", at_session_error(s));
            bad = 1;
            break;
        }
        at_tensor in[2] = {out[1], {AT_I64, AT_SHAPE(nb), ld}}, want;
        float wd[1];
        want.data = wd;
        ref_ce(in, 2, &want, 1, R_MEAN, true, -100);
        if (fabsf(((float *)out[0].data)[0] - wd[0]) > 1e-5f) {
            fprintf(stderr, "FAIL symbolic: B=%lld loss %g, want %g\n", (long long)nb,
                    ((float *)out[0].data)[0], wd[0]);
            bad = 1;
        }
        for (int b = 0; b < nb; b++) {
            double rs = 0, ra = 0;
            for (int j = 0; j < 5; j++) {
                rs += ((float *)out[2].data)[b * 5 + j];
                ra += fabs(((float *)out[2].data)[b * 5 + j]);
            }
            if (fabs(rs) > 1e-5 || (b != 1 && ra < 1e-4) || (b == 1 && ra != 0)) {
                fprintf(stderr, "FAIL symbolic: B=%lld dx row %d sums to %g (|.| %g)\n",
                        (long long)nb, b, rs, ra);
                bad = 1;
            }
        }
    }
    if (!bad) printf("ok   symbolic_batch_layernorm_loss\n");
    at_session_free(s);
    at_graph_free(g);
    return bad;
}

int main(int argc, char **argv) {
    const oh_case cases[] = {
        ROW("ce_mean", ce_mean, 2, SCORES(6, 4), OH_I64(0, 4, 6)),
        ROW("ce_sum", ce_sum, 2, SCORES(6, 4), OH_I64(0, 4, 6)),
        ROW("ce_none", ce_none, 2, SCORES(6, 4), OH_I64(0, 4, 6)),
        ROW("ce_mean_weights", ce_mean_w, 3, SCORES(6, 4), LABELS(lab6, 6), WEIGHTS(4)),
        ROW("ce_mean_weights_ignore", ce_mean_w_ig, 3, SCORES(5, 4), LABELS(lab5, 5), WEIGHTS(4)),
        ROW("ce_mean_ignore", ce_mean_ig, 2, SCORES(5, 4), LABELS(lab5, 5)),
        ROW("ce_sum_weights_ignore", ce_sum_w_ig, 3, SCORES(5, 4), LABELS(lab5, 5), WEIGHTS(4)),
        ROW("ce_none_weights_ignore", ce_none_w_ig, 3, SCORES(5, 4), LABELS(lab5, 5), WEIGHTS(4)),
        ROW("ce_mean_ignore_in_range", ce_mean_ig2, 2, SCORES(6, 4), LABELS(lab6, 6)),
        ROW("ce_ncd_mean_weights_ignore", ce_mean_w_ig, 3, SCORES(3, 4, 5), LABELS(lab_nd, 3, 5),
            WEIGHTS(4)),
        ROW("ce_ncd_none_weights_ignore", ce_none_w_ig, 3, SCORES(3, 4, 5), LABELS(lab_nd, 3, 5),
            WEIGHTS(4)),
        ROW("ce_ncd_sum", ce_sum, 2, SCORES(3, 4, 5), OH_I64(0, 4, 3, 5)),
        ROW("ce_ncdd_mean_ignore", ce_mean_ig, 2, SCORES(2, 3, 2, 3), LABELS(lab_nd4, 2, 2, 3)),
        ROW("ce_all_ignored_mean", ce_mean_w_ig, 3, SCORES(4, 3), LABELS(lab_all_ig, 4),
            WEIGHTS(3)),
        ROW("ce_single_output", ce_single, 3, SCORES(5, 4), LABELS(lab5, 5), WEIGHTS(4)),
        {.name = "ce_loss_only_in_L",
         .n_in = 3,
         .in = {SCORES(5, 4), LABELS(lab5, 5), WEIGHTS(4)},
         .build = ce_mean_w_ig_build,
         .ref = ce_mean_w_ig_ref,
         .atol = 1e-5,
         .rtol = 1e-5,
         .grad_atol = 1e-3,
         .grad_rtol = 1e-2,
         .grad_outputs = 1},
        {.name = "ce_int32_labels",
         .n_in = 3,
         .in = {SCORES(5, 4), {.dt = AT_I32, .shape = AT_SHAPE(5), .data = lab_i32}, WEIGHTS(4)},
         .build = ce_mean_w_ig_build,
         .ref = ce_mean_w_ig_ref,
         .atol = 1e-5,
         .rtol = 1e-5,
         .grad_atol = 1e-3,
         .grad_rtol = 1e-2},
        {.name = "ce_large_mean",
         .n_in = 2,
         .in = {SCORES(256, 50), OH_I64(0, 50, 256)},
         .build = ce_mean_build,
         .ref = ce_mean_ref,
         .atol = 1e-5,
         .rtol = 1e-5,
         .grad_atol = 2e-3,
         .grad_rtol = 1e-2,
         .grad_outputs = 1},
        {.name = "ce_large_ncd_none",
         .n_in = 2,
         .in = {SCORES(16, 20, 70), OH_I64(0, 20, 16, 70)},
         .build = ce_none_build,
         .ref = ce_none_ref,
         .atol = 1e-5,
         .rtol = 1e-5,
         .grad_atol = 2e-3,
         .grad_rtol = 1e-2,
         .grad_outputs = 1,
         .fd_eps = 0.02},
    };
    int rc = oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_loss", argc, argv);
    if (argc > 1) return rc;
    int b1 = check_bad_label(), b2 = check_symbolic();
    return b1 || b2 || rc;
}
