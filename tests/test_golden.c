/* The golden test (llm.c style): a small attention + conv + BiLSTM
 * classifier built with attune's builders matches PyTorch's logits,
 * parameter gradients and 5 losses of AdamW steps with gradient clipping,
 * from tests/fixtures/golden.txt (written once by tools/golden_torch.py). */
#include <math.h>
#include <stdint.h>

#include "attune/attune.h"
#include "check.h"
#include "fixture.h"

enum { B = 3, T = 6, V = 13, D = 8, C = 6, K = 3, H = 5, NCLS = 4, NP = 13 };

static const char *pnames[NP] = {"emb",    "wq",     "wk",     "wv",     "ln_g", "ln_b", "conv_w",
                                 "conv_b", "lstm_w", "lstm_r", "lstm_b", "wo",   "bo"};

static at_val param_from(at_graph *g, const fx_file *fx, const char *name) {
    char key[80];
    snprintf(key, sizeof key, "param.%s", name);
    const fx_rec *r = fx_get(fx, key);
    if (!r) return AT_NONE;
    int64_t dims[8];
    for (int d = 0; d < r->rank; d++) dims[d] = r->dim[d];
    at_val p = at_param(g, name, AT_F32, at_shape_make(r->rank, dims), 0);
    float *data = at_value_data(g, p);
    for (long long i = 0; data && i < r->n; i++) data[i] = (float)r->v[i];
    return p;
}

static double max_err(const float *got, const fx_rec *want, double *scale) {
    double e = 0, s = 0;
    for (long long i = 0; i < want->n; i++) {
        double d = fabs(got[i] - want->v[i]);
        if (d > e) e = d;
        if (fabs(want->v[i]) > s) s = fabs(want->v[i]);
    }
    *scale = s;
    return e;
}

int main(void) {
    fx_file fx;
    const char *src = getenv("ATTUNE_SRC");
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/golden.txt", src ? src : "..");
    if (fx_load(&fx, path)) return 1;

    at_graph *g = at_graph_new();
    at_val tokens = at_input(g, "tokens", AT_I64, AT_SHAPE(B, T));
    at_val labels = at_input(g, "labels", AT_I64, AT_SHAPE(B));
    at_val lr = at_input(g, "lr", AT_F32, AT_SCALAR);
    at_val p[NP];
    for (int i = 0; i < NP; i++) p[i] = param_from(g, &fx, pnames[i]);

    at_val x = at_gather(g, p[0], tokens, 0);
    at_val q = at_matmul(g, x, p[1]), k = at_matmul(g, x, p[2]), v = at_matmul(g, x, p[3]);
    const int64_t swap12[3] = {0, 2, 1};
    at_val scores = at_mul(g, at_matmul(g, q, at_transpose(g, k, 3, swap12)),
                           at_const_f32(g, 1.0f / sqrtf((float)D)));
    at_val a = at_matmul(g, at_softmax(g, scores, -1), v);
    at_val h = at_layer_norm(g, at_add(g, x, a), p[4], p[5], -1, 1e-5f);
    at_val c = at_relu(g, at_conv1d(g, at_transpose(g, h, 3, swap12), p[6], p[7], 1, 1, 1, 1, 1));
    const int64_t tbc[3] = {2, 0, 1};
    at_val yh = AT_NONE;
    at_lstm(g, at_transpose(g, c, 3, tbc), p[8], p[9], p[10], AT_NONE, AT_NONE, AT_NONE, H,
            "bidirectional", NULL, &yh, NULL);
    const int64_t bdh[3] = {1, 0, 2}, flat[2] = {B, 2 * H};
    at_val feat = at_reshape(g, at_transpose(g, yh, 3, bdh), 2, flat);
    at_val logits = at_add(g, at_matmul(g, feat, p[11]), p[12]);
    at_val loss = at_softmax_cross_entropy(g, logits, labels, AT_NONE, "mean", INT64_MIN);
    at_val grads[NP], clipped[NP], updates[NP];
    CHECK_OK(at_backward(g, loss, p, NP, grads));
    CHECK_OK(at_clip_global_norm(g, NP, grads, 1.0f, clipped, NULL));
    at_adam_opts o = {0.9f, 0.999f, 1e-8f, 0.01f};
    CHECK_OK(at_adamw(g, NP, p, clipped, lr, &o, updates));
    if (at_graph_status(g) != AT_OK) {
        fprintf(stderr, "build: %s\n", at_graph_error(g));
        return 1;
    }

    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "session: %s", err.msg);
    if (!s) return check_done("test_golden");
    const fx_rec *tk = fx_get(&fx, "tokens"), *lb = fx_get(&fx, "labels");
    int64_t tok[B * T], lab[B];
    for (int i = 0; i < B * T; i++) tok[i] = (int64_t)tk->v[i];
    for (int i = 0; i < B; i++) lab[i] = (int64_t)lb->v[i];
    float lrv = 1e-2f;
    at_feed feeds[3] = {{tokens, {AT_I64, AT_SHAPE(B, T), tok}},
                        {labels, {AT_I64, AT_SHAPE(B), lab}},
                        {lr, {AT_F32, AT_SCALAR, &lrv}}};

    /* step 0: logits and gradients, fetched in the same run as the update */
    at_val fetch[2 + NP];
    fetch[0] = logits;
    fetch[1] = loss;
    for (int i = 0; i < NP; i++) fetch[2 + i] = grads[i];
    at_tensor out[2 + NP];
    const fx_rec *losses = fx_get(&fx, "losses");
    CHECK_OK(at_session_run(s, feeds, 3, fetch, 2 + NP, out, updates, NP));
    double scale, e = max_err(out[0].data, fx_get(&fx, "logits"), &scale);
    CHECK(e < 1e-4, "logits max abs error %.3g", e);
    printf("logits: max abs error %.3g\n", e);
    for (int i = 0; i < NP; i++) {
        char key[80];
        snprintf(key, sizeof key, "grad.%s", pnames[i]);
        e = max_err(out[2 + i].data, fx_get(&fx, key), &scale);
        CHECK(e < 1e-4 + 1e-3 * scale, "%s: max abs error %.3g (scale %.3g)", key, e, scale);
        printf("%-14s max abs error %.3g (max |g| %.3g)\n", key, e, scale);
    }
    double l0 = ((float *)out[1].data)[0];
    CHECK_NEAR(l0, losses->v[0], 1e-5);
    for (int step = 1; step < 5; step++) {
        at_tensor lt;
        CHECK_OK(at_session_run(s, feeds, 3, &loss, 1, &lt, updates, NP));
        double l = ((float *)lt.data)[0];
        CHECK_NEAR(l, losses->v[step], 2e-5);
        printf("loss[%d] attune %.7f torch %.7f\n", step, l, losses->v[step]);
    }
    at_session_free(s);
    at_graph_free(g);
    fx_free(&fx);
    return check_done("test_golden");
}
