/* The joint NLU model's graph: every part builds with the right shapes for every scoring
 * function and both encoder kinds; masked positions get no attention; G is exactly the
 * identity at init; each update set changes exactly its parameter groups (phase 1 freezes
 * encoder and decoders, a gan combined step leaves D alone, a D step changes only D); GRL
 * flips the sign of L_D's gradient on the encoder side (against finite differences); the
 * config's text form round-trips; a saved model loads with the same predictions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attune/dataset.h"
#include "attune/graph.h"
#include "attune/io.h"
#include "attune/nlu.h"
#include "attune/session.h"
#include "check.h"
#include "nlu_fixture.h"

static const float *run1(at_nlu_model *m, batch *bt, at_val v, at_tensor *t) {
    at_feed f[12];
    int nf = feeds(at_nlu_model_net(m), bt, f);
    at_session *s = at_nlu_model_session(m, NULL);
    at_status st = at_session_run(s, f, nf, &v, 1, t, NULL, 0);
    CHECK(st == AT_OK, "run %s: %s", at_value_name(at_nlu_model_graph(m), v), at_session_error(s));
    return st == AT_OK ? t->data : NULL;
}

static bool shape_is(const at_tensor *t, int rank, int64_t d0, int64_t d1, int64_t d2) {
    int64_t d[3] = {d0, d1, d2};
    if (t->shape.rank != rank) return false;
    for (int i = 0; i < rank; i++)
        if (t->shape.dim[i] != d[i]) return false;
    return true;
}

/* ---- shapes, masks and G's identity, for one config ------------------------------------ */

static void check_path(at_nlu_model *m, batch *bt, const at_nlu_path *p, const char *what) {
    const at_nlu_vocab *v = at_nlu_model_vocab(m);
    int64_t B = bt->b.B, T = bt->b.T, ns = at_vocab_size(v->slots), ni = at_vocab_size(v->intents);
    int64_t d = at_nlu_model_config(m)->d_model;
    at_tensor t;
    if (run1(m, bt, p->intent_logits, &t))
        CHECK(shape_is(&t, 2, B, ni, 0), "%s: intent logits [%lld,%lld]", what, (long long)B,
              (long long)ni);
    if (run1(m, bt, p->slot_logits, &t)) CHECK(shape_is(&t, 3, B, T, ns), "%s: slot logits", what);
    const float *w = run1(m, bt, p->attn_intent, &t);
    if (w) {
        CHECK(shape_is(&t, 2, B, T, 0), "%s: intent attention [B,T]", what);
        for (int64_t b = 0; b < B; b++) {
            double sum = 0;
            bool pad_zero = true;
            for (int64_t k = 0; k < T; k++) {
                sum += w[b * T + k];
                if (k >= bt->b.lengths[b]) pad_zero &= w[b * T + k] == 0.0f;
            }
            CHECK(fabs(sum - 1) < 1e-5 && pad_zero,
                  "%s: intent attention row %lld: sum %g, "
                  "padding %s",
                  what, (long long)b, sum, pad_zero ? "zero" : "NOT zero");
        }
    }
    w = run1(m, bt, p->attn_entity, &t);
    if (w) {
        CHECK(shape_is(&t, 3, B, T, T), "%s: entity attention [B,T,T]", what);
        bool ok = true;
        for (int64_t b = 0; b < B; b++)
            for (int64_t q = 0; q < T; q++) {
                double sum = 0;
                for (int64_t k = 0; k < T; k++) {
                    float x = w[(b * T + q) * T + k];
                    sum += x;
                    if (k >= bt->b.lengths[b]) ok &= x == 0.0f;
                }
                ok &= fabs(sum - 1) < 1e-5;
            }
        CHECK(ok, "%s: entity attention rows sum to 1 with zero weight on padding", what);
    }
    if (p->s_intent != AT_NONE) {
        at_val s2[2] = {p->s_intent, p->s_entity};
        for (int i = 0; i < 2; i++) {
            const float *s = run1(m, bt, s2[i], &t);
            if (!s) continue;
            CHECK(shape_is(&t, 3, B, T, d), "%s: s [B,T,d]", what);
            bool one = true;
            for (int64_t k = 0; k < B * T * d; k++) one &= s[k] == 1.0f;
            CHECK(one, "%s: G is exactly the identity at init (s == 1)", what);
        }
    }
}

/* Runs every update set once and checks the losses are finite scalars. */
static void run_steps(at_nlu_model *m, batch *bt, const char *what) {
    const at_nlu_net *n = at_nlu_model_net(m);
    at_session *s = at_nlu_model_session(m, NULL);
    for (int k = 0; k < AT_NLU_STEP_COUNT; k++) {
        const at_nlu_update_set *u = &n->steps[k];
        if (!u->n) continue;
        at_feed f[12];
        int nf = feeds(n, bt, f);
        bt->training = true;
        at_tensor t;
        at_status st = at_session_run(s, f, nf, &u->loss, 1, &t, u->updates, u->n);
        bt->training = false;
        CHECK(st == AT_OK, "%s: step %d: %s", what, k, at_session_error(s));
        if (st == AT_OK)
            CHECK(t.shape.rank == 0 && isfinite(((float *)t.data)[0]), "%s: step %d loss %g", what,
                  k, ((float *)t.data)[0]);
    }
}

static void test_variants(batch *bt) {
    const at_nlu_attn_kind kinds[] = {AT_NLU_ATTN_ADDITIVE,    AT_NLU_ATTN_GENERAL,
                                      AT_NLU_ATTN_DOT,         AT_NLU_ATTN_SCALED_DOT,
                                      AT_NLU_ATTN_MULTIHEAD,   AT_NLU_ATTN_KEY_VALUE,
                                      AT_NLU_ATTN_NEG_DISTANCE};
    int variant = 0;
    for (int enc = 0; enc < 2; enc++)
        for (int k = 0; k < 7; k++, variant++) {
            at_nlu_config c = small_config();
            c.encoder = enc ? AT_NLU_BILSTM : AT_NLU_TRANSFORMER;
            c.layers = 1 + variant % 2;
            c.attn1 = kinds[k];
            c.attn2 = kinds[(k + 3) % 7];
            c.slot_gate = variant % 2;
            c.adv = (at_nlu_adv_mode)(variant % 3);
            c.d_soft = variant % 4 == 1;
            c.char_dim = variant % 3 == 1 ? 6 : 0;
            c.use_g = variant % 5 != 4;
            c.reg_l1 = variant % 2;
            char what[160];
            snprintf(what, sizeof what, "%s L=%d attn %s/%s gate %d adv %d soft %d char %d G %d",
                     enc ? "bilstm" : "transformer", c.layers, at_nlu_attn_name(c.attn1),
                     at_nlu_attn_name(c.attn2), c.slot_gate, c.adv, c.d_soft, c.char_dim, c.use_g);
            at_nlu_model *m = make(&c);
            if (!m) continue;
            const at_nlu_net *n = at_nlu_model_net(m);
            check_path(m, bt, &n->off, what);
            if (c.use_g) {
                check_path(m, bt, &n->on, what);
                /* With s = 1 the G-on path computes exactly what the G-off path does. */
                at_tensor a, b;
                const float *x = run1(m, bt, n->off.slot_logits, &a);
                float *xc = x ? malloc(at_tensor_nbytes(&a)) : NULL;
                if (xc) memcpy(xc, x, at_tensor_nbytes(&a));
                const float *y = run1(m, bt, n->on.slot_logits, &b);
                CHECK(xc && y && !memcmp(xc, y, at_tensor_nbytes(&a)),
                      "%s: G-on and G-off slot logits identical at init", what);
                free(xc);
            }
            CHECK(n->steps[AT_NLU_STEP_BASE].n > 0, "%s: phase 0 step exists", what);
            CHECK((n->steps[AT_NLU_STEP_D].n > 0) == (c.adv == AT_NLU_ADV_GAN),
                  "%s: a D step exactly in gan mode", what);
            CHECK((n->steps[AT_NLU_STEP_P2].n > 0) == (c.use_g || c.adv != AT_NLU_ADV_NONE),
                  "%s: a phase 2 step exactly when there is G or D", what);
            run_steps(m, bt, what);
            at_nlu_model_free(m);
        }
}

/* ---- which parameters an update set changes -------------------------------------------- */

typedef struct snap {
    int n;
    at_val p[512];
    float *data[512];
} snap;

static void take(at_nlu_model *m, snap *s) {
    at_graph *g = at_nlu_model_graph(m);
    s->n = at_graph_params(g, ~0u, s->p, 512);
    for (int i = 0; i < s->n; i++) {
        at_shape sh = at_value_shape(g, s->p[i]);
        size_t bytes = (size_t)at_shape_numel(&sh) * sizeof(float);
        s->data[i] = malloc(bytes);
        memcpy(s->data[i], at_value_data(g, s->p[i]), bytes);
    }
}

/* Bit i of *changed / *same: some / all params of group i changed / kept their values. */
static void diff(at_nlu_model *m, snap *s, unsigned *changed, unsigned *kept) {
    at_graph *g = at_nlu_model_graph(m);
    *changed = 0, *kept = 0xf;
    for (int i = 0; i < s->n; i++) {
        at_shape sh = at_value_shape(g, s->p[i]);
        size_t bytes = (size_t)at_shape_numel(&sh) * sizeof(float);
        int grp = at_value_group(g, s->p[i]);
        if (memcmp(s->data[i], at_value_data(g, s->p[i]), bytes)) {
            *changed |= 1u << grp;
            *kept &= ~(1u << grp);
        }
        free(s->data[i]);
    }
}

static void step_changes(at_nlu_model *m, batch *bt, at_nlu_step k, unsigned want_changed,
                         const char *what) {
    const at_nlu_net *n = at_nlu_model_net(m);
    const at_nlu_update_set *u = &n->steps[k];
    CHECK(u->n > 0, "%s: the step exists", what);
    if (!u->n) return;
    snap s;
    take(m, &s);
    at_feed f[12];
    int nf = feeds(n, bt, f);
    at_session *sess = at_nlu_model_session(m, NULL);
    at_status st = at_session_run(sess, f, nf, NULL, 0, NULL, u->updates, u->n);
    CHECK(st == AT_OK, "%s: %s", what, at_session_error(sess));
    unsigned changed, kept;
    diff(m, &s, &changed, &kept);
    CHECK(changed == want_changed, "%s: groups changed 0x%x, want 0x%x", what, changed,
          want_changed);
    CHECK((kept & want_changed) == 0 && (kept | want_changed) == 0xf,
          "%s: groups kept bit for bit 0x%x", what, kept);
}

static void test_frozen(batch *bt) {
    enum { ENC = 1, DEC = 2, GEN = 4, D = 8 };
    at_nlu_config c = small_config();
    c.adv = AT_NLU_ADV_GAN;
    at_nlu_model *m = make(&c);
    if (m) {
        step_changes(m, bt, AT_NLU_STEP_BASE, ENC | DEC, "gan phase 0");
        step_changes(m, bt, AT_NLU_STEP_P1, GEN, "gan phase 1 (encoder, decoders frozen)");
        step_changes(m, bt, AT_NLU_STEP_P2, ENC | DEC | GEN, "gan combined step (D unchanged)");
        step_changes(m, bt, AT_NLU_STEP_D, D, "gan D step (only D)");
        at_nlu_model_free(m);
    }
    c.adv = AT_NLU_ADV_GRL;
    c.encoder = AT_NLU_BILSTM;
    m = make(&c);
    if (m) {
        step_changes(m, bt, AT_NLU_STEP_P1, GEN | D, "grl phase 1 (encoder, decoders frozen)");
        step_changes(m, bt, AT_NLU_STEP_P2, ENC | DEC | GEN | D, "grl joint step");
        CHECK(at_nlu_model_net(m)->steps[AT_NLU_STEP_D].n == 0, "grl has no separate D step");
        at_nlu_model_free(m);
    }
}

/* ---- GRL: the gradient reaching the encoder is dL_task - lambda dL_D --------------------- */

static void test_grl_sign(batch *bt) {
    at_nlu_config c = small_config();
    c.adv = AT_NLU_ADV_GRL;
    c.d_soft = true; /* smooth in the encoder's weights, for finite differences */
    c.dropout = 0;
    at_nlu_model *m = make(&c);
    if (!m) return;
    const at_nlu_net *n = at_nlu_model_net(m);
    at_graph *g = at_nlu_model_graph(m);
    const at_nlu_update_set *u = &n->steps[AT_NLU_STEP_P2];
    int pi = -1;
    for (int i = 0; i < u->n; i++)
        if (!strcmp(at_value_name(g, u->params[i]), "enc.in.w")) pi = i;
    CHECK(pi >= 0, "enc.in.w is updated by the joint step");
    if (pi < 0) {
        at_nlu_model_free(m);
        return;
    }
    at_shape sh = at_value_shape(g, u->params[pi]);
    int64_t cnt = at_shape_numel(&sh);
    float *g0 = malloc((size_t)cnt * sizeof(float)), *g1 = malloc((size_t)cnt * sizeof(float));
    at_tensor t;
    bt->lambda = 0;
    if (run1(m, bt, u->grads[pi], &t)) memcpy(g0, t.data, (size_t)cnt * sizeof(float));
    bt->lambda = 1;
    if (run1(m, bt, u->grads[pi], &t)) memcpy(g1, t.data, (size_t)cnt * sizeof(float));
    /* The element where L_D's (reversed) gradient is largest. */
    int64_t best = 0;
    for (int64_t i = 1; i < cnt; i++)
        if (fabsf(g1[i] - g0[i]) > fabsf(g1[best] - g0[best])) best = i;
    double reversed = (double)g1[best] - g0[best];
    float *w = at_value_data(g, u->params[pi]);
    float keep = w[best];
    const float h = 3e-3f;
    double lp = 0, lm = 0;
    w[best] = keep + h;
    if (run1(m, bt, n->on.loss_d, &t)) lp = ((float *)t.data)[0];
    w[best] = keep - h;
    if (run1(m, bt, n->on.loss_d, &t)) lm = ((float *)t.data)[0];
    w[best] = keep;
    double fd = (lp - lm) / (2 * h);
    printf("GRL: dL_D/dw by finite differences %.6g; reversed gradient at lambda 1 %.6g\n", fd,
           reversed);
    CHECK(fabs(fd) > 1e-4, "L_D depends on the encoder weight (fd %g)", fd);
    CHECK(reversed * fd < 0, "GRL flips the sign: %g vs %g", reversed, fd);
    CHECK(fabs(reversed + fd) <= 0.01 * fabs(fd) + 1e-4, "GRL: -dL_D/dw %g vs %g", -fd, reversed);
    /* lambda scales it: at 0.5 half of it. */
    bt->lambda = 0.5f;
    if (run1(m, bt, u->grads[pi], &t)) {
        double half = (double)((float *)t.data)[best] - g0[best];
        CHECK(fabs(half - 0.5 * reversed) <= 1e-3 * fabs(reversed) + 1e-6,
              "GRL scales by lambda: %g vs %g", half, 0.5 * reversed);
    }
    free(g0);
    free(g1);
    at_nlu_model_free(m);
}

/* ---- config text form, lambda schedule, save / load ------------------------------------- */

static void test_config(void) {
    at_err e = {0};
    at_nlu_config c = at_nlu_config_default(), d;
    CHECK(c.d_model == 256 && c.emb_dim == 128 && c.layers == 2 && c.g_dim == 128 &&
              c.batch == 32 && c.epochs[0] == 20 && c.epochs[1] == 3 && c.epochs[2] == 10,
          "defaults are DESIGN.md's starting hyperparameters");
    CHECK_OK(at_nlu_config_set(&c, "encoder", "bilstm", &e));
    CHECK_OK(at_nlu_config_set(&c, "attn1", "multi-head", &e));
    CHECK_OK(at_nlu_config_set(&c, "attn2", "multiplicative", &e));
    CHECK_OK(at_nlu_config_set(&c, "adv", "grl", &e));
    CHECK_OK(at_nlu_config_set(&c, "d_widths", "3,5,7", &e));
    CHECK_OK(at_nlu_config_set(&c, "epochs", "4,1,2", &e));
    CHECK_OK(at_nlu_config_set(&c, "lr", "0.002", &e));
    CHECK_OK(at_nlu_config_set(&c, "seed", "18446744073709551615", &e));
    CHECK(at_nlu_config_set(&c, "attn1", "cosine", &e) == AT_E_INVALID && strstr(e.msg, "attn1"),
          "bad value named: %s", e.msg);
    CHECK(at_nlu_config_set(&c, "colour", "blue", &e) == AT_E_INVALID && strstr(e.msg, "colour"),
          "unknown key named: %s", e.msg);
    CHECK(at_nlu_config_set(&c, "dropout", "1.5", &e) == AT_E_INVALID, "range checked");
    char *s1 = NULL, *s2 = NULL;
    CHECK_OK(at_nlu_config_to_string(&c, &s1, &e));
    d = at_nlu_config_default();
    CHECK_OK(at_nlu_config_from_string(&d, s1, &e));
    CHECK_OK(at_nlu_config_to_string(&d, &s2, &e));
    CHECK(s1 && s2 && !strcmp(s1, s2), "config text round trip");
    CHECK(d.encoder == AT_NLU_BILSTM && d.attn1 == AT_NLU_ATTN_MULTIHEAD &&
              d.attn2 == AT_NLU_ATTN_GENERAL && d.adv == AT_NLU_ADV_GRL && d.n_d_widths == 3 &&
              d.d_widths[2] == 7 && d.epochs[0] == 4 && d.seed == UINT64_MAX,
          "parsed fields");
    free(s1);
    free(s2);
    CHECK(at_nlu_config_from_string(&d, "layers=2\nnonsense\n", &e) == AT_E_FORMAT,
          "a line without '=': %s", e.msg);
    c = at_nlu_config_default();
    c.d_model = 250;
    c.heads = 4;
    CHECK(at_nlu_config_check(&c, &e) == AT_E_INVALID, "d_model %% heads checked: %s", e.msg);
    c = at_nlu_config_default();
    CHECK_NEAR(at_nlu_lambda(&c, 0), 0, 1e-9);
    CHECK_NEAR(at_nlu_lambda(&c, 1), 0.1 * (2 / (1 + exp(-10.0)) - 1), 1e-7);
    CHECK(at_nlu_lambda(&c, 0.1) < at_nlu_lambda(&c, 0.5), "lambda_p grows");
}

static void test_save_load(batch *bt) {
    at_nlu_config c = small_config();
    c.char_dim = 4;
    c.encoder = AT_NLU_BILSTM;
    at_nlu_model *m = make(&c);
    if (!m) return;
    at_err e = {0};
    /* One step so the weights differ from a fresh build's. */
    const at_nlu_net *n = at_nlu_model_net(m);
    at_feed f[12];
    int nf = feeds(n, bt, f);
    CHECK_OK(at_session_run(at_nlu_model_session(m, NULL), f, nf, NULL, 0, NULL,
                            n->steps[AT_NLU_STEP_P2].updates, n->steps[AT_NLU_STEP_P2].n));
    const char *path = "/tmp/attune_test_nlu_model.onnx";
    at_status st = at_nlu_save(m, path, &e);
    if (st == AT_E_UNSUPPORTED || (st && strstr(e.msg, "not implemented"))) {
        printf("save/load skipped: graph files not available yet (%s)\n", e.msg);
        at_nlu_model_free(m);
        return;
    }
    CHECK(st == AT_OK, "save: %s", e.msg);
    at_nlu_model *m2 = NULL;
    st = at_nlu_load(&m2, path, &e);
    CHECK(st == AT_OK, "load: %s", e.msg);
    if (m2) {
        at_tensor a, b;
        const float *x = run1(m, bt, n->eval->slot_logits, &a);
        float *xc = x ? malloc(at_tensor_nbytes(&a)) : NULL;
        if (xc) memcpy(xc, x, at_tensor_nbytes(&a));
        const float *y = run1(m2, bt, at_nlu_model_net(m2)->eval->slot_logits, &b);
        CHECK(xc && y && !memcmp(xc, y, at_tensor_nbytes(&a)),
              "loaded model gives the same slot logits");
        free(xc);
        CHECK(at_vocab_size(at_nlu_model_vocab(m2)->words) ==
                  at_vocab_size(at_nlu_model_vocab(m)->words),
              "vocabulary restored");
        CHECK(at_nlu_model_config(m2)->char_dim == 4 &&
                  at_nlu_model_config(m2)->encoder == AT_NLU_BILSTM,
              "config restored");
        at_nlu_model_free(m2);
    }
    remove(path);

    /* A checkpoint keeps the optimizer state too: a step after loading equals a step in the
     * original model. */
    const char *cpath = "/tmp/attune_test_nlu_model.ckpt";
    at_checkpoint_info info = {.step = 1, .epoch = 0, .phase = 2, .rng_seed = 0};
    st = at_nlu_checkpoint_save(m, &info, cpath, &e);
    CHECK(st == AT_OK, "checkpoint save: %s", e.msg);
    at_checkpoint_info got;
    st = at_nlu_checkpoint_load(&m2, &got, cpath, &e);
    CHECK(st == AT_OK, "checkpoint load: %s", e.msg);
    if (m2) {
        CHECK(got.step == 1 && got.phase == 2, "checkpoint position restored");
        const at_nlu_net *n2 = at_nlu_model_net(m2);
        at_tensor a, b;
        for (int k = 0; k < 2; k++) {
            at_nlu_model *mm = k ? m2 : m;
            const at_nlu_net *nn = k ? n2 : n;
            int nf2 = feeds(nn, bt, f);
            CHECK_OK(at_session_run(at_nlu_model_session(mm, NULL), f, nf2, NULL, 0, NULL,
                                    nn->steps[AT_NLU_STEP_P2].updates,
                                    nn->steps[AT_NLU_STEP_P2].n));
        }
        const float *x = run1(m, bt, n->eval->slot_logits, &a);
        float *xc = x ? malloc(at_tensor_nbytes(&a)) : NULL;
        if (xc) memcpy(xc, x, at_tensor_nbytes(&a));
        const float *y = run1(m2, bt, n2->eval->slot_logits, &b);
        CHECK(xc && y && !memcmp(xc, y, at_tensor_nbytes(&a)),
              "a step after a checkpoint round trip matches bit for bit");
        free(xc);
        at_nlu_model_free(m2);
    }
    remove(cpath);
    at_nlu_model_free(m);
}

int main(void) {
    if (nlu_fixture_open("test_nlu_model") != 0) return 1;
    g_threads = 2;
    batch *bt = calloc(1, sizeof *bt);
    fill_batch(bt, 0.5f, 1e-2f);
    test_config();
    test_variants(bt);
    test_frozen(bt);
    test_grl_sign(bt);
    test_save_load(bt);
    at_batch_free(&bt->b);
    free(bt);
    nlu_fixture_close();
    return check_done("test_nlu_model");
}
