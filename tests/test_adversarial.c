/* The adversarial toolkit of DESIGN.md section 6.1 on the joint NLU model:
 *   - FGSM: eta = eps sign(grad_x J) raises J to first order: J(x + eta) - J(x) ~ eps |grad|_1
 *     (ratio -> 1 as eps -> 0), eta is exactly eps sign(grad) on real tokens, eps = 0 gives the
 *     clean predictions bit for bit;
 *   - adversarial training: the training graph's gradient of J' = alpha J(x) + (1 - alpha)
 *     J(x + eta) w.r.t. parameters against central finite differences (eval mode, and training
 *     mode with dropout at a pinned step: the perturbed forward replays the clean masks);
 *   - VAT: the KL term is exactly 0 when r = 0 (vat_eps 0, in eval and training mode) and
 *     positive otherwise, with |r| = vat_eps per sentence;
 *   - hard attention: its forward is exactly one-hot over the real tokens (at the soft argmax
 *     in evaluation; noisy in training), and its gradient is exactly the soft attention's, for
 *     the attention components alone and inside the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attune/autodiff.h"
#include "attune/dataset.h"
#include "attune/graph.h"
#include "attune/nlu.h"
#include "attune/ops.h"
#include "attune/session.h"
#include "check.h"
#include "models/nlu_parts.h"
#include "nlu_fixture.h"

/* The shared small configuration as a bilstm without G and D, with more dropout. */
static at_nlu_config adv_config(void) {
    at_nlu_config c = small_config();
    c.encoder = AT_NLU_BILSTM;
    c.layers = 1;
    c.use_g = false;
    c.adv = AT_NLU_ADV_NONE;
    c.dropout = 0.2f;
    return c;
}

/* Fetches n values into malloc'd copies (out[i], NULL on failure); the step is pinned first
 * when step >= 0. */
static bool fetch(at_nlu_model *m, batch *bt, const at_val *v, int n, float **out, int64_t *numel,
                  int64_t step) {
    at_feed f[12];
    int nf = feeds(at_nlu_model_net(m), bt, f);
    at_session *s = at_nlu_model_session(m, NULL);
    at_tensor t[8];
    if (step >= 0) at_session_set_step(s, (uint64_t)step);
    at_status st = at_session_run(s, f, nf, v, n, t, NULL, 0);
    CHECK(st == AT_OK, "run: %s", at_session_error(s));
    for (int i = 0; i < n; i++) {
        out[i] = NULL;
        if (st != AT_OK) continue;
        size_t bytes = at_tensor_nbytes(&t[i]);
        out[i] = malloc(bytes ? bytes : 1);
        memcpy(out[i], t[i].data, bytes);
        if (numel) numel[i] = at_shape_numel(&t[i].shape);
    }
    return st == AT_OK;
}

static float fetch1(at_nlu_model *m, batch *bt, at_val v, int64_t step) {
    float *x = NULL;
    if (!fetch(m, bt, &v, 1, &x, NULL, step)) return NAN;
    float r = x[0];
    free(x);
    return r;
}

static void free_all(float **x, int n) {
    for (int i = 0; i < n; i++) free(x[i]);
}

/* ---- FGSM ------------------------------------------------------------------------------- */

static void check_fgsm(const at_nlu_config *c, batch *bt, float eps0, const char *what) {
    at_nlu_model *m = make(c);
    if (!m) return;
    const at_nlu_net *n = at_nlu_model_net(m);
    const at_nlu_path *p = n->eval;
    int64_t B = bt->b.B, T = bt->b.T, in = n->emb_dim;
    CHECK(p->emb_grad != AT_NONE && p->attack_delta != AT_NONE && p->loss_sent_attack != AT_NONE,
          "%s: the eval path has the attack", what);

    /* eps 0: the perturbed forward is the clean one, bit for bit. */
    bt->eps = 0;
    at_val v0[4] = {p->intent_logits, p->slot_logits, p->attack_intent_logits,
                    p->attack_slot_logits};
    float *o0[4];
    int64_t k0[4];
    if (fetch(m, bt, v0, 4, o0, k0, -1))
        CHECK(k0[0] == k0[2] && k0[1] == k0[3] &&
                  !memcmp(o0[0], o0[2], (size_t)k0[0] * sizeof(float)) &&
                  !memcmp(o0[1], o0[3], (size_t)k0[1] * sizeof(float)),
              "%s: eps 0 gives the clean logits bit for bit", what);
    free_all(o0, 4);

    double prev_err = INFINITY;
    const float epss[3] = {eps0, eps0 / 3, eps0 / 9};
    for (int k = 0; k < 3; k++) {
        bt->eps = epss[k];
        at_val v[4] = {p->loss_sent, p->loss_sent_attack, p->emb_grad, p->attack_delta};
        float *o[4];
        int64_t cnt[4];
        if (!fetch(m, bt, v, 4, o, cnt, -1)) continue;
        CHECK(cnt[2] == B * T * in && cnt[3] == B * T * in, "%s: grad and delta [B,T,in]", what);
        double l1 = 0;
        int64_t bad = 0, pad_nonzero = 0;
        for (int64_t i = 0; i < B * T * in; i++) {
            int64_t b = i / (T * in), t = i / in % T;
            bool real = t < bt->b.lengths[b];
            float gv = o[2][i];
            float want = real ? (gv > 0 ? epss[k] : gv < 0 ? -epss[k] : 0.0f) : 0.0f;
            bad += o[3][i] != want;
            pad_nonzero += !real && o[3][i] != 0;
            l1 += real ? fabs(gv) : 0;
        }
        CHECK(bad == 0, "%s: eta = eps sign(grad) on real tokens (%lld differ)", what,
              (long long)bad);
        CHECK(pad_nonzero == 0, "%s: padding not perturbed", what);
        double rise = (double)o[1][0] - o[0][0], first = epss[k] * l1;
        double err = fabs(rise / first - 1);
        printf("%s: eps %g: J(x+eta) - J(x) = %.6g, eps |grad|_1 = %.6g (ratio %.4f)\n", what,
               (double)epss[k], rise, first, rise / first);
        CHECK(rise > 0, "%s: eps %g raises the loss (%g)", what, (double)epss[k], rise);
        /* Second order: the relative error shrinks with eps (until float32 rounding). */
        if (k) CHECK(err < prev_err || err < 0.005, "%s: error shrinks with eps", what);
        if (k == 2)
            CHECK(err < 0.01, "%s: eps %g: first order within 1%%: ratio %g", what, (double)epss[k],
                  rise / first);
        prev_err = err;
        free_all(o, 4);
    }
    /* A larger eps hurts more. */
    bt->eps = 0.05f;
    float big = fetch1(m, bt, p->loss_sent_attack, -1), clean = fetch1(m, bt, p->loss_sent, -1);
    bt->eps = 0.1f;
    float bigger = fetch1(m, bt, p->loss_sent_attack, -1);
    CHECK(clean < big && big < bigger, "%s: J grows with eps: %g < %g < %g", what, clean, big,
          bigger);
    bt->eps = 0;
    at_nlu_model_free(m);
}

static void test_fgsm(batch *bt) {
    at_nlu_config c = adv_config();
    check_fgsm(&c, bt, 3e-3f, "fgsm bilstm G off");
    c.encoder = AT_NLU_TRANSFORMER;
    c.use_g = true;
    c.adv = AT_NLU_ADV_GAN;
    c.char_dim = 4;
    c.attn2 = AT_NLU_ATTN_MULTIHEAD;
    check_fgsm(&c, bt, 1e-3f, "fgsm transformer G on chars");
}

/* The library call: eps 0 is the clean evaluation, and a large eps costs accuracy on a trained
 * model (here: trained a few steps on the sample until it fits the batch). */
static void test_fgsm_eval(void) {
    at_nlu_config c = adv_config();
    c.epochs[0] = 6;
    c.lr = 1e-2f;
    at_nlu_model *m = make(&c);
    if (!m) return;
    at_err e = {0};
    at_nlu_train_opts o = at_nlu_train_defaults();
    o.last_phase = 0;
    at_split *valid = NULL;
    const char *src = getenv("ATTUNE_SRC");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/data/sample/valid", src ? src : "..");
    CHECK_OK(at_dataset_split(&valid, dir, &e));
    CHECK_OK(at_nlu_train(m, g_train, NULL, NULL, &o, NULL, &e));
    at_metrics *mt = NULL;
    at_metrics_summary clean, zero, big;
    CHECK_OK(at_metrics_new(&mt, &e));
    CHECK_OK(at_nlu_evaluate(m, valid, mt, &clean, &e));
    at_metrics_reset(mt);
    CHECK_OK(at_nlu_evaluate_fgsm(m, valid, 0.0f, mt, &zero, &e));
    at_metrics_reset(mt);
    CHECK_OK(at_nlu_evaluate_fgsm(m, valid, 0.5f, mt, &big, &e));
    CHECK(clean.intent_acc == zero.intent_acc && clean.slots.f1 == zero.slots.f1 &&
              clean.sentence_acc == zero.sentence_acc,
          "FGSM eps 0 = clean: intent %g/%g slot F1 %g/%g", clean.intent_acc, zero.intent_acc,
          clean.slots.f1, zero.slots.f1);
    printf("FGSM on sample valid: clean intent %.4f slot F1 %.4f; eps 0.5: %.4f %.4f\n",
           clean.intent_acc, clean.slots.f1, big.intent_acc, big.slots.f1);
    CHECK(big.slots.f1 < clean.slots.f1 && big.intent_acc <= clean.intent_acc,
          "a large eps costs accuracy");
    CHECK(at_nlu_evaluate_fgsm(m, valid, -1.0f, mt, NULL, &e) == AT_E_INVALID, "eps < 0 refused");
    at_metrics_free(mt);
    at_split_free(valid);
    at_nlu_model_free(m);
}

/* ---- adversarial training: the training graph's gradient --------------------------------- */

static void check_adv_grad(batch *bt, bool training, const char *what) {
    at_nlu_config c = adv_config();
    c.adv_train = AT_NLU_ADV_TRAIN_FGSM;
    c.adv_eps = 0.05f;
    c.adv_alpha = 0.3f;
    c.dropout = training ? 0.2f : 0.0f;
    at_nlu_model *m = make(&c);
    if (!m) return;
    const at_nlu_net *n = at_nlu_model_net(m);
    at_graph *g = at_nlu_model_graph(m);
    const at_nlu_update_set *u = &n->steps[AT_NLU_STEP_BASE];
    const int64_t step = training ? 1234 : -1;
    bt->training = training;
    CHECK(n->off.loss_task_adv != AT_NONE && n->off.adv_delta != AT_NONE &&
              u->loss == n->off.loss_obj,
          "%s: phase 0 minimizes J'", what);
    /* J' is alpha J + (1 - alpha) J(x + eta). */
    at_val parts[3] = {n->off.loss_task, n->off.loss_task_adv, n->off.loss_obj};
    float *pv[3];
    if (fetch(m, bt, parts, 3, pv, NULL, step)) {
        double want = 0.3 * pv[0][0] + 0.7 * pv[1][0];
        CHECK(fabs(pv[2][0] - want) < 1e-5 * fabs(want), "%s: J' = %g, want %g", what, pv[2][0],
              want);
        CHECK(pv[1][0] > pv[0][0], "%s: J(x + eta) %g > J(x) %g", what, pv[1][0], pv[0][0]);
        free_all(pv, 3);
    }
    const char *names[4] = {"dec.intent.out.w", "dec.entity.wc.w", "enc.l0.lstm_w", "enc.word_emb"};
    int checked = 0, skipped = 0;
    for (int q = 0; q < 4; q++) {
        int pi = -1;
        for (int i = 0; i < u->n; i++)
            if (!strcmp(at_value_name(g, u->params[i]), names[q])) pi = i;
        CHECK(pi >= 0, "%s: %s is trained by phase 0", what, names[q]);
        if (pi < 0) continue;
        float *gr = NULL;
        int64_t cnt;
        if (!fetch(m, bt, &u->grads[pi], 1, &gr, &cnt, step)) continue;
        /* The largest gradient entries: well above float32 noise of the differences. */
        enum { TOP = 5 };
        int64_t top[TOP];
        for (int r = 0; r < TOP; r++) top[r] = -1;
        for (int64_t i = 0; i < cnt; i++)
            for (int r = 0; r < TOP; r++)
                if (top[r] < 0 || fabsf(gr[i]) > fabsf(gr[top[r]])) {
                    for (int s = TOP - 1; s > r; s--) top[s] = top[s - 1];
                    top[r] = i;
                    break;
                }
        float *w = at_value_data(g, u->params[pi]);
        for (int r = 0; r < TOP; r++) {
            int64_t i = top[r];
            float keep = w[i];
            const float h = 4e-3f;
            double l[2];
            float *eta[2] = {NULL, NULL};
            int64_t ne = 0;
            for (int sgn = 0; sgn < 2; sgn++) {
                w[i] = keep + (sgn ? -h : h);
                at_val v[2] = {u->loss, n->off.adv_delta};
                float *o[2];
                int64_t oc[2];
                l[sgn] = NAN;
                if (fetch(m, bt, v, 2, o, oc, step)) {
                    l[sgn] = o[0][0];
                    eta[sgn] = o[1];
                    ne = oc[1];
                    free(o[0]);
                }
            }
            w[i] = keep;
            /* eta = eps sign(grad_x J) is piecewise constant in the weights: a difference
             * across a sign change is not a derivative. */
            bool same = eta[0] && eta[1] && !memcmp(eta[0], eta[1], (size_t)ne * sizeof(float));
            free(eta[0]);
            free(eta[1]);
            double fd = (l[0] - l[1]) / (2 * h);
            if (!same) {
                printf("  skipped %s[%lld]: grad %g fd %g\n", names[q], (long long)i, gr[i], fd);
                skipped++;
                continue;
            }
            checked++;
            CHECK(fabs(fd - gr[i]) <= 0.02 * fabs(gr[i]) + 3e-4, "%s: dJ'/d%s[%lld] %g, fd %g",
                  what, names[q], (long long)i, gr[i], fd);
        }
        free(gr);
    }
    printf("%s: %d gradient entries against finite differences (%d skipped at a sign change)\n",
           what, checked, skipped);
    CHECK(checked >= 10, "%s: at least 10 of 20 entries checked (%d)", what, checked);
    bt->training = false;
    at_nlu_model_free(m);
}

/* ---- VAT ---------------------------------------------------------------------------------- */

static void test_vat(batch *bt) {
    at_nlu_config c = adv_config();
    c.vat = true;
    c.vat_eps = 0;
    at_nlu_model *m = make(&c);
    if (!m) return;
    const at_nlu_net *n = at_nlu_model_net(m);
    CHECK(n->off.loss_vat != AT_NONE && n->steps[AT_NLU_STEP_BASE].loss == n->off.loss_obj,
          "VAT is part of phase 0's loss");
    for (int tr = 0; tr < 2; tr++) {
        bt->training = tr;
        float kl = fetch1(m, bt, n->off.loss_vat, 77);
        CHECK(kl == 0.0f, "VAT KL is exactly 0 at r = 0 (%s): %g", tr ? "training" : "eval", kl);
    }
    at_nlu_model_free(m);

    c.vat_eps = 1.0f;
    m = make(&c);
    if (!m) return;
    n = at_nlu_model_net(m);
    int64_t B = bt->b.B, T = bt->b.T, in = n->emb_dim;
    for (int tr = 0; tr < 2; tr++) {
        bt->training = tr;
        at_val v[3] = {n->off.loss_vat, n->off.vat_delta, n->off.loss_task};
        float *o[3];
        if (!fetch(m, bt, v, 3, o, NULL, 77)) continue;
        CHECK(o[0][0] > 0 && isfinite(o[0][0]), "VAT KL > 0 at |r| = 1 (%s): %g",
              tr ? "training" : "eval", o[0][0]);
        printf("VAT (%s): KL at |r| = 1: %g (L_task %g)\n", tr ? "training" : "eval", o[0][0],
               o[2][0]);
        for (int64_t b = 0; b < B; b++) {
            double n2 = 0, pad = 0;
            for (int64_t t = 0; t < T; t++)
                for (int64_t k = 0; k < in; k++) {
                    double x = o[1][(b * T + t) * in + k];
                    if (t < bt->b.lengths[b])
                        n2 += x * x;
                    else
                        pad += fabs(x);
                }
            CHECK(fabs(sqrt(n2) - 1) < 1e-4 && pad == 0, "sentence %lld: |r| = %g, padding %g",
                  (long long)b, sqrt(n2), pad);
        }
        free_all(o, 3);
    }
    /* Another step draws another d; r moves with it (a random start, one power iteration). */
    bt->training = false;
    float *r1 = NULL, *r2 = NULL;
    int64_t cnt;
    fetch(m, bt, &n->off.vat_delta, 1, &r1, &cnt, 1);
    fetch(m, bt, &n->off.vat_delta, 1, &r2, &cnt, 2);
    if (r1 && r2) CHECK(memcmp(r1, r2, (size_t)cnt * sizeof(float)) != 0, "r depends on the step");
    free(r1);
    free(r2);
    /* One training step runs. */
    const at_nlu_update_set *u = &n->steps[AT_NLU_STEP_BASE];
    at_feed f[12];
    int nf = feeds(n, bt, f);
    bt->training = true;
    at_session *s = at_nlu_model_session(m, NULL);
    CHECK(at_session_run(s, f, nf, NULL, 0, NULL, u->updates, u->n) == AT_OK, "VAT step: %s",
          at_session_error(s));
    bt->training = false;
    at_nlu_model_free(m);
}

/* ---- hard attention ------------------------------------------------------------------------ */

/* The attention component alone: q [B,T,d] over kv [B,T,d] with a key mask. */
typedef struct attn_graph {
    at_graph *g;
    at_val q, kv, mask, training, r, weights, loss, gq, gkv;
} attn_graph;

static bool attn_build(attn_graph *a, const at_nlu_config *cfg, at_nlu_attn_kind kind, bool hard,
                       int64_t d) {
    at_graph *g = a->g = at_graph_new();
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T");
    /* Parameters are initialized from rng in creation order: the same for hard and soft. */
    nlu_ctx c = {.g = g, .cfg = cfg, .rng = 99};
    a->q = at_input(g, "q", AT_F32, AT_SHAPE(B, T, d));
    a->kv = at_input(g, "kv", AT_F32, AT_SHAPE(B, T, d));
    a->mask = at_input(g, "mask", AT_F32, AT_SHAPE(B, T));
    a->training = at_input(g, "training", AT_BOOL, AT_SCALAR);
    a->r = at_input(g, "r", AT_F32, AT_SHAPE(B, T, T));
    const int64_t last = 2, mid = 1;
    c.training = a->training;
    c.mask = a->mask;
    c.mask3 = at_unsqueeze(g, a->mask, 1, &last);
    c.kbias = at_unsqueeze(
        g, at_mul(g, at_sub(g, a->mask, at_const_f32(g, 1.0f)), at_const_f32(g, -NLU_MASK_NEG)), 1,
        &mid);
    a->weights = AT_NONE;
    nlu_attend(&c, kind, a->q, d, a->kv, d, cfg->attn_heads, 1, "a", &a->weights, hard);
    /* L = sum R * weights: dL/dweights = R in both, so the input gradients are softmax's
     * backward applied to R exactly when the straight-through backward is softmax's. */
    a->loss = at_reduce_sum(g, at_mul(g, a->weights, a->r), 0, NULL, 0);
    at_val wrt[2] = {a->q, a->kv}, gr[2] = {AT_NONE, AT_NONE};
    at_backward(g, a->loss, wrt, 2, gr);
    a->gq = gr[0];
    a->gkv = gr[1];
    CHECK(at_graph_status(g) == AT_OK, "attention graph: %s", at_graph_error(g));
    return at_graph_status(g) == AT_OK;
}

enum { AB = 3, AT = 6, AD = 8 };
static const int64_t k_len[AB] = {6, 4, 1};

/* Runs one attention graph: weights [AB,AT,AT], grads of q and kv [AB,AT,AD]. */
static bool attn_run(attn_graph *a, bool training, uint64_t step, float *w, float *gq, float *gkv) {
    static float q[AB * AT * AD], kv[AB * AT * AD], mask[AB * AT], r[AB * AT * AT];
    uint64_t st = 5;
    for (int i = 0; i < AB * AT * AD; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        q[i] = (float)((st >> 40) % 2001) / 1000.0f - 1.0f;
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        kv[i] = (float)((st >> 40) % 2001) / 1000.0f - 1.0f;
    }
    for (int i = 0; i < AB * AT * AT; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        r[i] = (float)((st >> 40) % 2001) / 1000.0f - 1.0f;
    }
    for (int b = 0; b < AB; b++)
        for (int t = 0; t < AT; t++) mask[b * AT + t] = t < k_len[b] ? 1.0f : 0.0f;
    bool tr = training;
    at_feed f[5] = {{a->q, {AT_F32, AT_SHAPE(AB, AT, AD), q}},
                    {a->kv, {AT_F32, AT_SHAPE(AB, AT, AD), kv}},
                    {a->mask, {AT_F32, AT_SHAPE(AB, AT), mask}},
                    {a->training, {AT_BOOL, AT_SCALAR, &tr}},
                    {a->r, {AT_F32, AT_SHAPE(AB, AT, AT), r}}};
    at_session_opts o = at_session_defaults();
    o.threads = 1;
    o.seed = 3;
    at_err e = {0};
    at_session *s = at_session_new(a->g, &o, &e);
    CHECK(s != NULL, "session: %s", e.msg);
    if (!s) return false;
    at_session_set_step(s, step);
    at_val v[3] = {a->weights, a->gq, a->gkv};
    at_tensor out[3];
    at_status rs = at_session_run(s, f, 5, v, 3, out, NULL, 0);
    CHECK(rs == AT_OK, "run: %s", at_session_error(s));
    if (rs == AT_OK) {
        memcpy(w, out[0].data, sizeof(float) * AB * AT * AT);
        memcpy(gq, out[1].data, sizeof(float) * AB * AT * AD);
        memcpy(gkv, out[2].data, sizeof(float) * AB * AT * AD);
    }
    at_session_free(s);
    return rs == AT_OK;
}

static float max_abs_diff(const float *a, const float *b, int n, float *scale) {
    float m = 0, sc = 0;
    for (int i = 0; i < n; i++) {
        m = fmaxf(m, fabsf(a[i] - b[i]));
        sc = fmaxf(sc, fabsf(b[i]));
    }
    *scale = sc;
    return m;
}

static void check_hard_component(at_nlu_attn_kind kind) {
    at_nlu_config cfg = adv_config();
    const char *name = at_nlu_attn_name(kind);
    int heads = kind == AT_NLU_ATTN_MULTIHEAD ? cfg.attn_heads : 1;
    attn_graph hard, soft;
    bool ok = attn_build(&hard, &cfg, kind, true, AD) & attn_build(&soft, &cfg, kind, false, AD);
    static float wh[AB * AT * AT], ws[AB * AT * AT], gqh[AB * AT * AD], gqs[AB * AT * AD],
        gkh[AB * AT * AD], gks[AB * AT * AD];
    if (ok && attn_run(&hard, false, 1, wh, gqh, gkh) && attn_run(&soft, false, 1, ws, gqs, gks)) {
        /* Forward: each head's weights are one-hot over the real keys, at the soft argmax (no
         * noise in evaluation); with H heads the mean takes values k/H. */
        int64_t bad = 0, wrong_pick = 0;
        for (int b = 0; b < AB; b++)
            for (int t = 0; t < AT; t++) {
                const float *h = wh + (b * AT + t) * AT, *s = ws + (b * AT + t) * AT;
                double sum = 0;
                int best = 0;
                for (int k = 0; k < AT; k++) {
                    float x = h[k] * (float)heads;
                    bad += x != floorf(x) || (k >= k_len[b] && h[k] != 0);
                    sum += h[k];
                    if (s[k] > s[best]) best = k;
                }
                bad += sum != 1.0;
                if (heads == 1) wrong_pick += h[best] != 1.0f;
            }
        CHECK(bad == 0, "%s: hard weights are exactly one-hot over the real keys (%lld bad)", name,
              (long long)bad);
        CHECK(wrong_pick == 0, "%s: evaluation picks the soft argmax (%lld rows differ)", name,
              (long long)wrong_pick);
        /* Backward: exactly softmax's. */
        float sq, sk;
        float dq = max_abs_diff(gqh, gqs, AB * AT * AD, &sq);
        float dk = max_abs_diff(gkh, gks, AB * AT * AD, &sk);
        CHECK(sq > 0 && dq <= 1e-6f * sq, "%s: grad q hard vs soft: max diff %g (scale %g)", name,
              (double)dq, (double)sq);
        CHECK(sk > 0 && dk <= 1e-6f * sk, "%s: grad kv hard vs soft: max diff %g (scale %g)", name,
              (double)dk, (double)sk);
        /* Training: Gumbel noise; still exactly one-hot, and some picks differ from the
         * noiseless argmax over a few steps. */
        int64_t changed = 0;
        for (uint64_t step = 1; step <= 5; step++) {
            static float wt[AB * AT * AT];
            if (!attn_run(&hard, true, step, wt, gqh, gkh)) break;
            int64_t bad_t = 0;
            for (int i = 0; i < AB * AT * AT; i++) {
                float x = wt[i] * (float)heads;
                bad_t += x != floorf(x) || ((i % AT) >= k_len[i / (AT * AT)] && wt[i] != 0);
                changed += wt[i] != wh[i];
            }
            CHECK(bad_t == 0, "%s: training step %llu: one-hot with noise", name,
                  (unsigned long long)step);
        }
        CHECK(changed > 0, "%s: Gumbel noise changes some picks in training", name);
    }
    at_graph_free(hard.g);
    at_graph_free(soft.g);
}

/* Inside the model: evaluation gives exactly one-hot attention rows in both components. */
static void test_hard_model(batch *bt) {
    at_nlu_config c = adv_config();
    c.attn1_hard = true;
    c.attn2_hard = true;
    at_nlu_model *m = make(&c);
    if (!m) return;
    const at_nlu_net *n = at_nlu_model_net(m);
    int64_t B = bt->b.B, T = bt->b.T;
    at_val v[2] = {n->eval->attn_intent, n->eval->attn_entity};
    float *o[2];
    for (int tr = 0; tr < 2; tr++) {
        bt->training = tr;
        if (!fetch(m, bt, v, 2, o, NULL, 9)) continue;
        int64_t bad = 0;
        for (int64_t b = 0; b < B; b++) {
            int64_t len = bt->b.lengths[b];
            for (int64_t r = 0; r <= T; r++) {
                /* row T: the intent component; rows 0..T-1: the entity component's real
                 * queries */
                if (r < T && r >= len) continue;
                const float *w = r == T ? o[0] + b * T : o[1] + (b * T + r) * T;
                int ones = 0;
                for (int64_t k = 0; k < T; k++) {
                    ones += w[k] == 1.0f;
                    bad += (w[k] != 0.0f && w[k] != 1.0f) || (k >= len && w[k] != 0.0f);
                }
                bad += ones != 1;
            }
        }
        CHECK(bad == 0, "hard model (%s): attention rows exactly one-hot (%lld bad)",
              tr ? "training" : "eval", (long long)bad);
        free_all(o, 2);
    }
    /* A training step runs through the straight-through estimator. */
    const at_nlu_update_set *u = &n->steps[AT_NLU_STEP_BASE];
    at_feed f[12];
    int nf = feeds(n, bt, f);
    bt->training = true;
    at_tensor t;
    at_session *s = at_nlu_model_session(m, NULL);
    CHECK(at_session_run(s, f, nf, &u->grad_norm, 1, &t, u->updates, u->n) == AT_OK,
          "hard attention step: %s", at_session_error(s));
    bt->training = false;
    at_nlu_model_free(m);
}

/* The config keys and their text form. */
static void test_config(void) {
    at_err e = {0};
    at_nlu_config c = at_nlu_config_default(), d = at_nlu_config_default();
    CHECK(!c.attn1_hard && !c.attn2_hard && c.adv_train == AT_NLU_ADV_TRAIN_NONE && !c.vat,
          "off by default");
    CHECK_OK(at_nlu_config_set(&c, "attn1_hard", "true", &e));
    CHECK_OK(at_nlu_config_set(&c, "adv_train", "fgsm", &e));
    CHECK_OK(at_nlu_config_set(&c, "adv_eps", "0.1", &e));
    CHECK_OK(at_nlu_config_set(&c, "vat", "1", &e));
    CHECK_OK(at_nlu_config_set(&c, "vat_xi", "0.002", &e));
    CHECK(at_nlu_config_set(&c, "adv_train", "pgd", &e) == AT_E_INVALID, "adv_train pgd: %s",
          e.msg);
    CHECK(at_nlu_config_set(&c, "adv_alpha", "1.5", &e) == AT_E_INVALID, "adv_alpha range");
    CHECK(at_nlu_config_set(&c, "vat_xi", "0", &e) == AT_E_INVALID, "vat_xi > 0");
    char *text = NULL;
    CHECK_OK(at_nlu_config_to_string(&c, &text, &e));
    CHECK_OK(at_nlu_config_from_string(&d, text, &e));
    free(text);
    CHECK(d.attn1_hard && !d.attn2_hard && d.adv_train == AT_NLU_ADV_TRAIN_FGSM &&
              fabsf(d.adv_eps - 0.1f) < 1e-7f && d.vat && fabsf(d.vat_xi - 0.002f) < 1e-9f,
          "text round trip");
}

int main(void) {
    if (nlu_fixture_open("test_adversarial") != 0) return 1;
    batch *bt = calloc(1, sizeof *bt);
    fill_batch(bt, 0, 1e-3f);
    bt->with_eps = true;
    test_config();
    test_fgsm(bt);
    test_fgsm_eval();
    check_adv_grad(bt, false, "adv-train grad (eval mode)");
    check_adv_grad(bt, true, "adv-train grad (training mode, dropout 0.2)");
    test_vat(bt);
    const at_nlu_attn_kind kinds[4] = {AT_NLU_ATTN_ADDITIVE, AT_NLU_ATTN_GENERAL,
                                       AT_NLU_ATTN_SCALED_DOT, AT_NLU_ATTN_MULTIHEAD};
    for (int k = 0; k < 4; k++) check_hard_component(kinds[k]);
    test_hard_model(bt);
    at_batch_free(&bt->b);
    free(bt);
    nlu_fixture_close();
    return check_done("test_adversarial");
}
