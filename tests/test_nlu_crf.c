/* The model option crf: at init (transitions, start and end all 0) the CRF factorizes over
 * tokens, so its NLL is the sum of the tokens' cross-entropies and Viterbi is the per-token
 * argmax; the task loss then differs from the plain model's by exactly the change from "mean
 * over labelled tokens" to "mean over labelled sentences" (unlabelled sentences count
 * nowhere). Training moves the transitions and lowers the loss; prediction and evaluation
 * take the CRF's tags; a saved model loads with the same tags. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attune/dataset.h"
#include "attune/graph.h"
#include "attune/io.h"
#include "attune/metrics.h"
#include "attune/nlu.h"
#include "attune/session.h"
#include "check.h"

#include "nlu_fixture.h"

/* The fixture's small model as a BiLSTM without G or D, with or without the CRF. */
static at_nlu_config crf_config(bool crf) {
    at_nlu_config c = small_config();
    c.encoder = AT_NLU_BILSTM;
    c.use_g = false;
    c.adv = AT_NLU_ADV_NONE;
    c.dropout = 0.1f;
    c.crf = crf;
    return c;
}

/* Runs v (copied out: the view dies at the next run). */
static void *run_copy(at_nlu_model *m, batch *bt, at_val v, at_tensor *t) {
    at_feed f[12];
    int nf = feeds(at_nlu_model_net(m), bt, f);
    at_session *s = at_nlu_model_session(m, NULL);
    at_status st = at_session_run(s, f, nf, &v, 1, t, NULL, 0);
    CHECK(st == AT_OK, "run %s: %s", at_value_name(at_nlu_model_graph(m), v), at_session_error(s));
    if (st) return NULL;
    void *c = malloc(at_tensor_nbytes(t));
    if (c) memcpy(c, t->data, at_tensor_nbytes(t));
    t->data = c;
    return c;
}

static float param0(at_nlu_model *m, const char *name, int64_t i) {
    at_val v = at_graph_find(at_nlu_model_graph(m), name);
    CHECK(v != AT_NONE, "parameter %s exists", name);
    return v == AT_NONE ? NAN : ((const float *)at_value_data(at_nlu_model_graph(m), v))[i];
}

/* The task losses of the plain and the CRF model at init, against the per-token CEs; tags vs
 * argmax. unlabel: row 1 loses its labels. */
static void test_init(batch *bt, bool unlabel) {
    at_nlu_config cp = crf_config(false), cc = crf_config(true);
    at_nlu_model *mp = make(&cp), *mc = make(&cc);
    if (!mp || !mc) goto done;
    int64_t B = bt->b.B, T = bt->b.T;
    if (unlabel) {
        for (int64_t t = 0; t < T; t++) bt->b.slots[T + t] = AT_IGNORE_INDEX;
        bt->b.intents[1] = AT_IGNORE_INDEX;
    }
    CHECK(param0(mc, "dec.crf.transitions", 0) == 0 && param0(mc, "dec.crf.end", 1) == 0,
          "CRF parameters start at 0");
    at_tensor a, b, lp, lc, tg;
    const at_nlu_net *np = at_nlu_model_net(mp), *nc = at_nlu_model_net(mc);
    float *xp = run_copy(mp, bt, np->eval->slot_logits, &a);
    float *xc = run_copy(mc, bt, nc->eval->slot_logits, &b);
    float *loss_p = run_copy(mp, bt, np->off.loss_task, &lp);
    float *loss_c = run_copy(mc, bt, nc->off.loss_task, &lc);
    int64_t *tags = run_copy(mc, bt, nc->eval->slot_tags, &tg);
    if (xp && xc && loss_p && loss_c && tags) {
        int64_t K = a.shape.dim[2];
        CHECK(!memcmp(xp, xc, at_tensor_nbytes(&a)), "the CRF leaves the other weights alone");
        CHECK(tg.dtype == AT_I64 && tg.shape.rank == 2 && tg.shape.dim[0] == B &&
                  tg.shape.dim[1] == T,
              "slot_tags is int64 [B,T]");
        double ce = 0;
        int64_t n_tok = 0, n_sent = 0, bad_tags = 0;
        for (int64_t r = 0; r < B; r++) {
            bool any = false;
            for (int64_t t = 0; t < T; t++) {
                const float *x = xc + (r * T + t) * K;
                int64_t best = 0, y = bt->b.slots[r * T + t];
                double m = x[0], z = 0;
                for (int64_t k = 1; k < K; k++)
                    if (x[k] > x[best]) best = k, m = x[k];
                for (int64_t k = 0; k < K; k++) z += exp(x[k] - m);
                bool real = bt->b.mask[r * T + t] > 0.5f;
                bad_tags += tags[r * T + t] != (real ? best : 0);
                if (y == AT_IGNORE_INDEX) continue;
                ce += m + log(z) - x[y];
                n_tok++;
                any = true;
            }
            n_sent += any;
        }
        CHECK(bad_tags == 0, "%lld tags differ from the argmax (0 at padding)",
              (long long)bad_tags);
        CHECK(n_sent == (unlabel ? B - 1 : B), "labelled sentences: %lld", (long long)n_sent);
        double want = ce / (double)n_sent - ce / (double)n_tok;
        CHECK_NEAR(loss_c[0] - loss_p[0], want, 1e-4 * (1 + fabs(want)));
    }
    free(xp), free(xc), free(loss_p), free(loss_c), free(tags);
    if (unlabel)
        printf("ok   init_equivalence_with_unlabelled_row\n");
    else
        printf("ok   init_equivalence\n");
done:
    at_nlu_model_free(mp);
    at_nlu_model_free(mc);
}

/* Base steps lower the task loss and move the transitions; save/load keeps the tags. */
static void test_train_save(batch *bt) {
    at_nlu_config c = crf_config(true);
    at_nlu_model *m = make(&c);
    if (!m) return;
    at_err e = {0};
    const at_nlu_net *n = at_nlu_model_net(m);
    const at_nlu_update_set *u = &n->steps[AT_NLU_STEP_BASE];
    at_feed f[12];
    int nf = feeds(n, bt, f);
    at_session *s = at_nlu_model_session(m, &e);
    at_tensor l0, l1;
    float *first = run_copy(m, bt, n->off.loss_task, &l0);
    bt->training = true;
    for (int k = 0; k < 20; k++)
        CHECK_OK(at_session_run(s, f, nf, NULL, 0, NULL, u->updates, u->n));
    bt->training = false;
    float *last = run_copy(m, bt, n->off.loss_task, &l1);
    CHECK(first && last && last[0] < 0.75f * first[0], "20 steps: loss %g -> %g",
          first ? first[0] : NAN, last ? last[0] : NAN);
    CHECK_OK(at_session_sync(s));
    double moved = 0;
    for (int64_t i = 0; i < 16; i++) moved += fabs(param0(m, "dec.crf.transitions", i));
    CHECK(moved > 1e-4, "transitions moved (sum |.| of 16: %g)", moved);
    const char *path = "/tmp/attune_test_nlu_crf.onnx";
    CHECK_OK(at_nlu_save(m, path, &e));
    at_nlu_model *m2 = NULL;
    CHECK(at_nlu_load(&m2, path, &e) == AT_OK, "load: %s", e.msg);
    if (m2) {
        CHECK(at_nlu_model_config(m2)->crf, "config crf restored");
        at_tensor a, b;
        int64_t *ta = run_copy(m, bt, n->eval->slot_tags, &a);
        int64_t *tb = run_copy(m2, bt, at_nlu_model_net(m2)->eval->slot_tags, &b);
        CHECK(ta && tb && !memcmp(ta, tb, at_tensor_nbytes(&a)), "loaded model: same tags");
        free(ta), free(tb);
        at_nlu_model_free(m2);
    }
    /* the model file itself has the output */
    at_graph *g = at_graph_load(path, &e);
    if (g) {
        bool found = false;
        for (int i = 0; i < at_graph_num_outputs(g); i++)
            found |= !strcmp(at_value_name(g, at_graph_output(g, i)), "slot_tags");
        CHECK(found, "the model file has a slot_tags output");
        at_graph_free(g);
    } else {
        CHECK(false, "graph load: %s", e.msg);
    }
    remove(path);
    free(first), free(last);
    at_nlu_model_free(m);
    printf("ok   train_save_load\n");
}

/* Prediction and evaluation follow the CRF: with start and transition scores that force tag k
 * everywhere, every predicted slot is k, whatever the logits say. */
static void test_predict_uses_tags(void) {
    at_nlu_config c = crf_config(true);
    at_nlu_model *m = make(&c);
    if (!m) return;
    at_graph *g = at_nlu_model_graph(m);
    int64_t K = at_vocab_size(at_nlu_model_vocab(m)->slots), k = K - 1;
    float *st = at_value_data(g, at_graph_find(g, "dec.crf.start"));
    float *tr = at_value_data(g, at_graph_find(g, "dec.crf.transitions"));
    st[k] = 1e4f;
    tr[k * K + k] = 1e4f;
    at_err e = {0};
    at_nlu_pred *p = NULL;
    CHECK_OK(at_nlu_predict(m, g_train, &p, &e));
    int64_t other = 0, total = 0;
    for (int64_t i = 0; p && i < g_train->n; i++)
        for (int64_t t = 0; t < p[i].n; t++) other += p[i].slots[t] != k, total++;
    CHECK(p && total > 0 && other == 0, "%lld of %lld predicted slots are not the forced tag",
          (long long)other, (long long)total);
    at_nlu_preds_free(p, g_train->n);
    at_metrics *mt = NULL;
    at_metrics_summary sum;
    CHECK_OK(at_metrics_new(&mt, &e));
    CHECK_OK(at_nlu_evaluate(m, g_train, mt, &sum, &e));
    int64_t gold_k = 0;
    for (int64_t i = 0; i < g_train->start[g_train->n]; i++) gold_k += g_train->slot_ids[i] == k;
    CHECK(sum.tokens == total && sum.token_correct == gold_k,
          "evaluation: %lld of %lld tokens right, want %lld of %lld", (long long)sum.token_correct,
          (long long)sum.tokens, (long long)gold_k, (long long)total);
    at_metrics_free(mt);
    at_nlu_model_free(m);
    printf("ok   predict_uses_tags\n");
}

int main(void) {
    if (nlu_fixture_open("test_nlu_crf")) return 1;
    batch *bt = calloc(1, sizeof *bt);
    if (!bt) return 1;
    fill_batch(bt, 0.0f, 1e-2f);
    test_init(bt, false);
    test_init(bt, true);
    at_batch_free(&bt->b); /* test_init changed it: a fresh one */
    fill_batch(bt, 0.0f, 1e-2f);
    test_train_save(bt);
    test_predict_uses_tags();
    at_batch_free(&bt->b);
    free(bt);
    nlu_fixture_close();
    return check_done("test_nlu_crf");
}
