/* Training, evaluation and prediction of the joint NLU model.
 *
 * A training step feeds one labelled batch (bucketed by length) and, in the adversarial
 * phases and with VAT, one unlabelled batch, merged into one [B,T] batch: the task loss skips the
 * unlabelled rows (AT_IGNORE_INDEX), D's real side counts labelled sentences only and its fake
 * side every sentence. A gan step runs d_steps D updates, then the combined update, on the
 * same batch. Every epoch ends with a valid evaluation (early stopping, best-model
 * selection) and a JSON line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attune/dataset.h"
#include "attune/metrics.h"
#include "attune/session.h"
#include "models/nlu_model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

at_nlu_train_opts at_nlu_train_defaults(void) {
    at_nlu_train_opts o = {.first_phase = 0, .last_phase = 2};
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* Feeding batches. */

/* What one run feeds: a batch with the character window padded to AT_CHAR_WIDTH. */
typedef struct feed_batch {
    at_batch b;
    float lambda, lr, attack_eps;
    bool training;
    bool attack; /* feed attack_eps (and the labels) for the FGSM attack */
} feed_batch;

/* Appends rows of src to dst (dst->B rows already there, all at width dst->T). */
static void append_rows(at_batch *dst, const at_batch *src) {
    int64_t T = dst->T, W = AT_CHAR_WIDTH;
    for (int64_t i = 0; i < src->B; i++) {
        int64_t r = dst->B + i;
        for (int64_t t = 0; t < T; t++) {
            bool in = t < src->T;
            dst->tokens[r * T + t] = in ? src->tokens[i * src->T + t] : AT_PAD_ID;
            dst->mask[r * T + t] = in ? src->mask[i * src->T + t] : 0.0f;
            dst->slots[r * T + t] = in ? src->slots[i * src->T + t] : AT_IGNORE_INDEX;
            for (int64_t w = 0; dst->chars && w < W; w++)
                dst->chars[(r * T + t) * W + w] =
                    in && w < src->W ? src->chars[(i * src->T + t) * src->W + w] : AT_PAD_ID;
        }
        dst->lengths[r] = src->lengths[i];
        dst->intents[r] = src->intents[i];
        dst->index[r] = src->index[i];
    }
    dst->B += src->B;
}

/* dst = rows of a, then of b (b may be NULL). */
static void merge(at_batch *dst, const at_batch *a, const at_batch *b) {
    dst->B = 0;
    dst->T = a->T > (b ? b->T : 0) ? a->T : b->T;
    dst->W = dst->chars ? AT_CHAR_WIDTH : 0;
    append_rows(dst, a);
    if (b) append_rows(dst, b);
}

static int make_feeds(const at_nlu_net *n, feed_batch *f, bool labels, at_feed *out) {
    const at_batch *b = &f->b;
    int k = 0;
    at_shape bt = AT_SHAPE(b->B, b->T), bv = AT_SHAPE(b->B);
    out[k++] = (at_feed){n->tokens, {AT_I64, bt, b->tokens}};
    out[k++] = (at_feed){n->mask, {AT_F32, bt, b->mask}};
    if (n->lengths != AT_NONE) out[k++] = (at_feed){n->lengths, {AT_I64, bv, b->lengths}};
    if (n->chars != AT_NONE)
        out[k++] = (at_feed){n->chars, {AT_I64, AT_SHAPE(b->B, b->T, AT_CHAR_WIDTH), b->chars}};
    out[k++] = (at_feed){n->training, {AT_BOOL, AT_SCALAR, &f->training}};
    if (f->attack) out[k++] = (at_feed){n->attack_eps, {AT_F32, AT_SCALAR, &f->attack_eps}};
    if (!labels && !f->attack) return k;
    out[k++] = (at_feed){n->slots, {AT_I64, bt, b->slots}};
    out[k++] = (at_feed){n->intents, {AT_I64, bv, b->intents}};
    if (!labels) return k;
    out[k++] = (at_feed){n->lambda, {AT_F32, AT_SCALAR, &f->lambda}};
    out[k++] = (at_feed){n->lr, {AT_F32, AT_SCALAR, &f->lr}};
    return k;
}

static at_status run_fail(at_nlu_model *m, at_status st, at_err *e, const char *what) {
    at_session *s = at_nlu_model_session(m, NULL);
    return at_err_set(e, st, "%s: %s", what, s ? at_session_error(s) : "no session");
}

static at_status check_len(const at_nlu_config *cfg, const at_split *s, at_err *e) {
    if (cfg->encoder == AT_NLU_TRANSFORMER && s->max_len > cfg->max_positions)
        return at_err_set(e, AT_E_INVALID,
                          "%s: a sentence has %d tokens, more than the model's max_positions %d",
                          s->path, s->max_len, cfg->max_positions);
    return AT_OK;
}

static at_status encode(at_nlu_model *m, at_split *s, at_err *e) {
    at_status st = at_split_encode(s, at_nlu_model_vocab(m), NULL, e);
    return st ? st : check_len(at_nlu_model_config(m), s, e);
}

/* ------------------------------------------------------------------------------------------ */
/* Evaluation and prediction. */

static int32_t argmax(const float *x, int64_t n) {
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int32_t)i;
    return best;
}

/* Runs the eval path over split in file order; calls each(sentence i, row b of the outputs).
 * attack: the predictions under the FGSM attack with eps instead (out[0], out[1] only).
 * With a CRF, out[6] holds the Viterbi slot tags [B,T] (else its data is NULL). */
typedef at_status (*eval_fn)(void *user, const at_split *s, int64_t i, int64_t b,
                             const at_batch *batch, const at_tensor *out, at_err *e);

static at_status eval_loop(at_nlu_model *m, const at_split *s, bool want_attn, bool attack,
                           float eps, eval_fn each, void *user, at_err *e) {
    const at_nlu_net *n = at_nlu_model_net(m);
    const at_nlu_config *cfg = at_nlu_model_config(m);
    at_session *sess = at_nlu_model_session(m, e);
    if (!sess) return e && e->code ? e->code : AT_E_INVALID;
    const int64_t bs = 64;
    at_epoch ep = {0};
    feed_batch f = {.training = false, .attack = attack, .attack_eps = eps};
    at_batch raw = {0};
    at_status st = at_epoch_plan(&ep, s, AT_SUBSET_ALL, AT_ORDER_FILE, bs, 0, 0, e);
    int64_t T = s->max_len > 0 ? s->max_len : 1;
    if (!st) st = at_batch_alloc(&raw, bs, T, cfg->char_dim ? AT_CHAR_WIDTH : 0, e);
    if (!st) st = at_batch_alloc(&f.b, bs, T, cfg->char_dim ? AT_CHAR_WIDTH : 0, e);
    const at_nlu_path *p = n->eval;
    at_val fetch[6] = {p->intent_logits, p->slot_logits, p->attn_intent,
                       p->attn_entity,   p->s_intent,    p->s_entity};
    int n_fetch = !want_attn ? 2 : p->s_intent != AT_NONE ? 6 : 4;
    if (attack) {
        fetch[0] = p->attack_intent_logits;
        fetch[1] = p->attack_slot_logits;
        n_fetch = 2;
    }
    at_val tags = attack ? p->attack_slot_tags : p->slot_tags;
    int n_run = n_fetch + (tags != AT_NONE);
    at_val fetch_all[7];
    memcpy(fetch_all, fetch, sizeof fetch);
    fetch_all[n_fetch] = tags;
    for (int64_t k = 0; !st && k < ep.n_batches; k++) {
        int64_t *idx = ep.order + ep.start[k], cnt = ep.start[k + 1] - ep.start[k];
        st = at_batch_fill(&raw, s, idx, cnt, e);
        if (st) break;
        merge(&f.b, &raw, NULL);
        at_feed feeds[12];
        int nf = make_feeds(n, &f, false, feeds);
        at_tensor out[7] = {{0}};
        st = at_session_run(sess, feeds, nf, fetch_all, n_run, out, NULL, 0);
        if (!st && n_run > n_fetch && n_fetch < 6) {
            out[6] = out[n_fetch];
            out[n_fetch] = (at_tensor){0};
        }
        if (st) {
            st = run_fail(m, st, e, attack ? "evaluation under attack" : "evaluation");
            break;
        }
        for (int64_t b = 0; !st && b < cnt; b++) st = each(user, s, idx[b], b, &f.b, out, e);
    }
    at_batch_free(&raw);
    at_batch_free(&f.b);
    at_epoch_free(&ep);
    return st;
}

/* Token t of row b: the CRF's tag where there is one, else the argmax of the slot logits. */
static int32_t slot_at(const at_tensor *out, int64_t b, int64_t t, int64_t T, int64_t ns) {
    if (out[6].data) return (int32_t)((const int64_t *)out[6].data)[b * T + t];
    return argmax((const float *)out[1].data + (b * T + t) * ns, ns);
}

static at_status add_metrics(void *user, const at_split *s, int64_t i, int64_t b,
                             const at_batch *batch, const at_tensor *out, at_err *e) {
    at_metrics *mt = ((void **)user)[0];
    const at_nlu_vocab *v = ((void **)user)[1];
    int64_t ni = out[0].shape.dim[1], ns = out[1].shape.dim[2], T = batch->T;
    int64_t len = s->start[i + 1] - s->start[i];
    const char *pred[AT_DATA_MAX_TOKENS];
    for (int64_t t = 0; t < len; t++) pred[t] = at_vocab_str(v->slots, slot_at(out, b, t, T, ns));
    const char *intent = at_vocab_str(v->intents, argmax((const float *)out[0].data + b * ni, ni));
    return at_metrics_add(mt, s->intents ? s->intents[i] : NULL, s->intents ? intent : NULL,
                          s->slots ? s->slots + s->start[i] : NULL, s->slots ? pred : NULL,
                          s->slots ? len : 0, e);
}

static at_status evaluate_encoded(at_nlu_model *m, const at_split *s, bool attack, float eps,
                                  at_metrics *mt, at_metrics_summary *sum, at_err *e) {
    void *user[2] = {mt, (void *)at_nlu_model_vocab(m)};
    at_status st = eval_loop(m, s, false, attack, eps, add_metrics, user, e);
    if (!st && sum) at_metrics_get(mt, sum);
    return st;
}

at_status at_nlu_evaluate(at_nlu_model *m, at_split *split, at_metrics *metrics,
                          at_metrics_summary *summary, at_err *e) {
    at_status st = encode(m, split, e);
    return st ? st : evaluate_encoded(m, split, false, 0, metrics, summary, e);
}

at_status at_nlu_evaluate_fgsm(at_nlu_model *m, at_split *split, float eps, at_metrics *metrics,
                               at_metrics_summary *summary, at_err *e) {
    if (!(eps >= 0) || !isfinite(eps))
        return at_err_set(e, AT_E_INVALID, "FGSM: eps %g is not a finite number >= 0", (double)eps);
    at_status st = encode(m, split, e);
    return st ? st : evaluate_encoded(m, split, true, eps, metrics, summary, e);
}

static float *copy_floats(const float *src, int64_t n) {
    float *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    if (d) memcpy(d, src, (size_t)n * sizeof *d);
    return d;
}

static at_status add_pred(void *user, const at_split *s, int64_t i, int64_t b,
                          const at_batch *batch, const at_tensor *out, at_err *e) {
    at_nlu_pred *p = (at_nlu_pred *)user + i;
    int64_t ni = out[0].shape.dim[1], ns = out[1].shape.dim[2], T = batch->T;
    int64_t n = s->start[i + 1] - s->start[i];
    const float *il = (const float *)out[0].data + b * ni;
    p->n = n;
    p->intent = argmax(il, ni);
    double z = 0;
    for (int64_t k = 0; k < ni; k++) z += exp((double)il[k] - il[p->intent]);
    p->intent_prob = (float)(1.0 / z);
    p->slots = malloc((size_t)n * sizeof *p->slots);
    p->attn_intent = copy_floats((const float *)out[2].data + b * T, n);
    p->attn_entity = malloc((size_t)(n * n) * sizeof(float));
    if (!p->slots || !p->attn_intent || !p->attn_entity)
        return at_err_set(e, AT_E_NOMEM, "prediction: out of memory");
    for (int64_t t = 0; t < n; t++) {
        p->slots[t] = slot_at(out, b, t, T, ns);
        memcpy(p->attn_entity + t * n, (const float *)out[3].data + (b * T + t) * T,
               (size_t)n * sizeof(float));
    }
    if (out[4].data && out[4].shape.rank == 3) {
        int64_t d = p->d = out[4].shape.dim[2];
        p->s_intent = copy_floats((const float *)out[4].data + b * T * d, n * d);
        p->s_entity = copy_floats((const float *)out[5].data + b * T * d, n * d);
        if (!p->s_intent || !p->s_entity)
            return at_err_set(e, AT_E_NOMEM, "prediction: out of memory");
    }
    return AT_OK;
}

void at_nlu_pred_free(at_nlu_pred *p) {
    if (!p) return;
    free(p->slots);
    free(p->attn_intent);
    free(p->attn_entity);
    free(p->s_intent);
    free(p->s_entity);
    memset(p, 0, sizeof *p);
}

void at_nlu_preds_free(at_nlu_pred *p, int64_t n) {
    for (int64_t i = 0; p && i < n; i++) at_nlu_pred_free(&p[i]);
    free(p);
}

at_status at_nlu_predict(at_nlu_model *m, at_split *split, at_nlu_pred **out, at_err *e) {
    *out = NULL;
    at_status st = encode(m, split, e);
    if (st) return st;
    at_nlu_pred *p = calloc((size_t)(split->n ? split->n : 1), sizeof *p);
    if (!p) return at_err_set(e, AT_E_NOMEM, "prediction: out of memory");
    st = eval_loop(m, split, true, false, 0, add_pred, p, e);
    if (st) {
        at_nlu_preds_free(p, split->n);
        return st;
    }
    *out = p;
    return AT_OK;
}

at_status at_nlu_predict_text(at_nlu_model *m, const char *sentence, at_nlu_pred *out, at_err *e) {
    memset(out, 0, sizeof *out);
    at_split *s = NULL;
    at_status st = at_dataset_sentences_text(&s, sentence, "sentence", e);
    if (!st && s->n != 1) st = at_err_set(e, AT_E_INVALID, "predict: give exactly one sentence");
    at_nlu_pred *p = NULL;
    if (!st) st = at_nlu_predict(m, s, &p, e);
    if (!st) {
        *out = p[0];
        free(p);
    }
    at_split_free(s);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Training. */

/* Is a better than b under the selection rule? */
static bool better(at_nlu_select sel, const at_metrics_summary *a, const at_metrics_summary *b) {
    double ka = sel == AT_NLU_SELECT_SLOT_F1  ? a->slots.f1
                : sel == AT_NLU_SELECT_INTENT ? a->intent_acc
                                              : a->sentence_acc;
    double kb = sel == AT_NLU_SELECT_SLOT_F1  ? b->slots.f1
                : sel == AT_NLU_SELECT_INTENT ? b->intent_acc
                                              : b->sentence_acc;
    if (ka != kb) return ka > kb;
    double ta = sel == AT_NLU_SELECT_SLOT_F1 ? a->sentence_acc : a->slots.f1;
    double tb = sel == AT_NLU_SELECT_SLOT_F1 ? b->sentence_acc : b->slots.f1;
    return ta > tb;
}

/* A source of unlabelled batches that restarts (with a new order) when it runs out. */
typedef struct unl_source {
    at_split *s;
    at_subset subset;
    at_epoch ep;
    int64_t next, round;
} unl_source;

typedef struct trainer {
    at_nlu_model *m;
    const at_nlu_config *cfg;
    const at_nlu_net *net;
    at_session *sess;
    const at_nlu_train_opts *o;
    at_split *train, *valid;
    unl_source unl[NLU_MAX_UNL];
    int n_unl, next_unl;
    at_batch lab, raw_unl;
    feed_batch f;
    nlu_train_state *ts; /* the model's: kept current for checkpoints */
    bool resuming;       /* the phase in ts goes on where ts says */
    at_metrics *mt;
    at_nlu_train_result *res;
    double t0;
    bool stop;
} trainer;

static at_status next_unlabelled(trainer *tr, at_err *e) {
    unl_source *u = &tr->unl[tr->next_unl];
    tr->next_unl = (tr->next_unl + 1) % tr->n_unl;
    if (u->next >= u->ep.n_batches) {
        at_epoch_free(&u->ep);
        at_status st = at_epoch_plan(&u->ep, u->s, u->subset, AT_ORDER_BUCKET, tr->cfg->batch,
                                     tr->cfg->seed + 7, (uint64_t)u->round++, e);
        if (st) return st;
        u->next = 0;
    }
    int64_t k = u->next++;
    return at_batch_fill(&tr->raw_unl, u->s, u->ep.order + u->ep.start[k],
                         u->ep.start[k + 1] - u->ep.start[k], e);
}

/* Running sums of the losses over an epoch. */
typedef struct loss_acc {
    double sum[NLU_LOSSES];
    int64_t cnt[NLU_LOSSES];
} loss_acc;
enum { L_TASK, L_D, L_ADV, L_REG, L_TASK_ADV, L_VAT, L_COUNT };
_Static_assert((int)L_COUNT == (int)NLU_LOSSES, "the training state holds every loss");

static double mean_of(const loss_acc *a, int k) {
    return a->cnt[k] ? a->sum[k] / (double)a->cnt[k] : NAN;
}

static const char *const loss_names[L_COUNT] = {"loss_task", "loss_d",        "loss_adv",
                                                "loss_reg",  "loss_task_adv", "loss_vat"};

/* One update. A non-finite loss or gradient norm is AT_E_NUMERIC (the caller then looks for the
 * node that produced it). */
static at_status run_step(trainer *tr, const at_nlu_update_set *u, const at_val *fetch,
                          const int *slot, int nfetch, loss_acc *acc, at_err *e) {
    at_feed feeds[12];
    int nf = make_feeds(tr->net, &tr->f, true, feeds);
    at_val all[L_COUNT + 1];
    memcpy(all, fetch, (size_t)nfetch * sizeof *all);
    int n = nfetch;
    if (u->grad_norm != AT_NONE) all[n++] = u->grad_norm;
    at_tensor out[L_COUNT + 1];
    at_status st = at_session_run(tr->sess, feeds, nf, all, n, out, u->updates, u->n);
    if (st) return run_fail(tr->m, st, e, "training step");
    for (int i = 0; i < n; i++) {
        double v = ((const float *)out[i].data)[0];
        if (!isfinite(v))
            return at_err_set(e, AT_E_NUMERIC, "%s is %s",
                              i < nfetch ? loss_names[slot[i]] : "the gradient norm",
                              isnan(v) ? "nan"
                              : v > 0  ? "inf"
                                       : "-inf");
    }
    for (int i = 0; i < nfetch; i++) {
        acc->sum[slot[i]] += ((const float *)out[i].data)[0];
        acc->cnt[slot[i]]++;
    }
    return AT_OK;
}

static void write_json(trainer *tr, int phase, int epoch, int64_t steps, const loss_acc *acc,
                       float lambda, const at_metrics_summary *v, bool improved) {
    FILE *f = tr->o->metrics;
    if (!f) return;
    fprintf(f, "{\"phase\":%d,\"epoch\":%d,\"steps\":%lld,\"time_s\":%.3f,\"lambda\":%.6g", phase,
            epoch, (long long)steps, now_s() - tr->t0, (double)lambda);
    for (int k = 0; k < L_COUNT; k++)
        if (acc->cnt[k]) fprintf(f, ",\"%s\":%.6g", loss_names[k], mean_of(acc, k));
    if (v)
        fprintf(f,
                ",\"valid_intent_acc\":%.6g,\"valid_slot_f1\":%.6g,\"valid_sentence_acc\":%.6g,"
                "\"best\":%s",
                100 * v->intent_acc, 100 * v->slots.f1, 100 * v->sentence_acc,
                improved ? "true" : "false");
    fprintf(f, "}\n");
    fflush(f);
}

static at_nlu_progress progress_of(const trainer *tr, int phase, int epoch, int64_t step,
                                   int64_t steps, const loss_acc *acc, float lambda) {
    at_nlu_progress p = {.phase = phase,
                         .epoch = epoch,
                         .epochs = tr->cfg->epochs[phase],
                         .step = step,
                         .steps = steps,
                         .global_step = tr->ts->global,
                         .elapsed_s = now_s() - tr->t0,
                         .loss_task = mean_of(acc, L_TASK),
                         .loss_d = mean_of(acc, L_D),
                         .loss_adv = mean_of(acc, L_ADV),
                         .loss_reg = mean_of(acc, L_REG),
                         .loss_task_adv = mean_of(acc, L_TASK_ADV),
                         .loss_vat = mean_of(acc, L_VAT),
                         .lambda = lambda};
    return p;
}

/* What a checkpoint written now needs beyond the graph: the epoch's running losses, the
 * session's step and the unlabelled streams' positions. */
static void keep_state(trainer *tr, const loss_acc *acc) {
    nlu_train_state *ts = tr->ts;
    memcpy(ts->loss_sum, acc->sum, sizeof ts->loss_sum);
    memcpy(ts->loss_cnt, acc->cnt, sizeof ts->loss_cnt);
    ts->sess_step = at_session_step(tr->sess);
    ts->next_unl = tr->next_unl;
    for (int i = 0; i < tr->n_unl; i++) {
        ts->unl_next[i] = tr->unl[i].next;
        ts->unl_round[i] = tr->unl[i].round;
    }
}

/* Puts the unlabelled streams where ts says (their orders are rebuilt from the seed). */
static at_status restore_unlabelled(trainer *tr, at_err *e) {
    const nlu_train_state *ts = tr->ts;
    tr->next_unl = tr->n_unl ? ts->next_unl % tr->n_unl : 0;
    for (int i = 0; i < tr->n_unl; i++) {
        unl_source *u = &tr->unl[i];
        u->next = ts->unl_next[i];
        u->round = ts->unl_round[i];
        if (u->round == 0) continue;
        at_status st = at_epoch_plan(&u->ep, u->s, u->subset, AT_ORDER_BUCKET, tr->cfg->batch,
                                     tr->cfg->seed + 7, (uint64_t)(u->round - 1), e);
        if (st) return st;
    }
    return AT_OK;
}

/* What one phase's steps run and report. */
typedef struct phase_ctx {
    int phase;
    const at_nlu_update_set *main, *dstep;
    bool adv; /* unlabelled batches feed D's fake side and VAT's KL term */
    at_val fetch[L_COUNT];
    int slot[L_COUNT], nf;
    int64_t total; /* steps of the phase */
} phase_ctx;

static void phase_setup(const trainer *tr, int phase, phase_ctx *pc) {
    const at_nlu_config *cfg = tr->cfg;
    const at_nlu_net *net = tr->net;
    const at_nlu_path *p = phase == 0 ? &net->off : net->eval;
    memset(pc, 0, sizeof *pc);
    pc->phase = phase;
    pc->main = &net->steps[phase == 0   ? AT_NLU_STEP_BASE
                           : phase == 1 ? AT_NLU_STEP_P1
                                        : AT_NLU_STEP_P2];
    pc->dstep = phase > 0 ? &net->steps[AT_NLU_STEP_D] : NULL;
    pc->adv = ((phase > 0 && cfg->adv != AT_NLU_ADV_NONE) || cfg->vat) && tr->n_unl > 0;
#define FETCH(v, k)                                                                                \
    if ((v) != AT_NONE) pc->fetch[pc->nf] = (v), pc->slot[pc->nf++] = (k)
    FETCH(p->loss_task, L_TASK);
    FETCH(p->loss_task_adv, L_TASK_ADV);
    FETCH(p->loss_vat, L_VAT);
    if (phase > 0) {
        FETCH(p->loss_reg, L_REG);
        if (cfg->adv == AT_NLU_ADV_GAN) FETCH(p->loss_adv, L_ADV);
        if (cfg->adv == AT_NLU_ADV_GRL) FETCH(p->loss_d, L_D);
    }
#undef FETCH
}

/* Batch k of the epoch ep: the D updates, then the main update. */
static at_status step_batch(trainer *tr, const phase_ctx *pc, const at_epoch *ep, int64_t k,
                            loss_acc *acc, at_err *e) {
    const at_nlu_config *cfg = tr->cfg;
    nlu_train_state *ts = tr->ts;
    at_status st = at_batch_fill(&tr->lab, tr->train, ep->order + ep->start[k],
                                 ep->start[k + 1] - ep->start[k], e);
    if (!st && pc->adv) st = next_unlabelled(tr, e);
    if (st) return st;
    merge(&tr->f.b, &tr->lab, pc->adv ? &tr->raw_unl : NULL);
    if (cfg->word_dropout > 0)
        at_batch_word_dropout(&tr->f.b, cfg->word_dropout, AT_UNK_ID, cfg->seed,
                              at_session_step(tr->sess));
    ts->lambda = pc->phase > 0 && cfg->adv != AT_NLU_ADV_NONE
                     ? at_nlu_lambda(cfg, (double)ts->done / (double)pc->total)
                     : 0.0f;
    tr->f.lambda = ts->lambda;
    tr->f.lr = cfg->lr;
    tr->f.training = true;
    int dslot = L_D;
    const at_nlu_update_set *d = pc->dstep;
    for (int i = 0; !st && d && d->n && i < cfg->d_steps; i++)
        st = run_step(tr, d, &d->loss, &dslot, 1, acc, e);
    if (!st && pc->main->n) st = run_step(tr, pc->main, pc->fetch, pc->slot, pc->nf, acc, e);
    return st;
}

/* Where an epoch started: every parameter and optimizer state value and the training state,
 * so that a non-finite loss can be traced by running the epoch again with the check on. */
typedef struct rewind_pt {
    char *data;
    size_t cap;
    nlu_train_state ts;
    loss_acc acc;
    int64_t k; /* the batch the epoch started at */
} rewind_pt;

static size_t values_bytes(at_graph *g, char *dst, bool save) {
    size_t k = 0;
    for (at_val v = 0; v < at_graph_num_values(g); v++) {
        at_value_kind kind = at_value_kind_of(g, v);
        if (kind != AT_VALUE_PARAM && kind != AT_VALUE_STATE) continue;
        at_shape sh = at_value_shape(g, v);
        size_t n = (size_t)at_shape_numel(&sh) * at_dtype_size(at_value_dtype(g, v));
        if (dst && save) memcpy(dst + k, at_value_data(g, v), n);
        if (dst && !save) memcpy(at_value_data(g, v), dst + k, n);
        k += n;
    }
    return k;
}

static at_status rewind_save(trainer *tr, rewind_pt *r, const loss_acc *acc, int64_t k, at_err *e) {
    at_graph *g = at_nlu_model_graph(tr->m);
    at_session_sync(tr->sess);
    size_t n = values_bytes(g, NULL, true);
    if (n > r->cap) {
        free(r->data);
        r->cap = 0;
        if (!(r->data = malloc(n))) return at_err_set(e, AT_E_NOMEM, "training: out of memory");
        r->cap = n;
    }
    values_bytes(g, r->data, true);
    keep_state(tr, acc);
    r->ts = *tr->ts;
    r->acc = *acc;
    r->k = k;
    return AT_OK;
}

static at_status rewind_to(trainer *tr, const rewind_pt *r, loss_acc *acc, at_err *e) {
    values_bytes(at_nlu_model_graph(tr->m), r->data, false);
    *tr->ts = r->ts;
    *acc = r->acc;
    at_status st = nlu_model_params_changed(tr->m, e);
    if (!st) tr->sess = at_nlu_model_session(tr->m, e);
    if (!st && !tr->sess) st = e && e->code ? e->code : AT_E_INVALID;
    for (int i = 0; !st && i < tr->n_unl; i++) at_epoch_free(&tr->unl[i].ep);
    if (!st) st = restore_unlabelled(tr, e);
    if (!st) at_session_set_step(tr->sess, r->ts.sess_step);
    return st;
}

/* Batch k_bad of epoch gave a non-finite value (what: e's message). Runs the epoch again from
 * its start with the session's non-finite check on, which stops at the first node that
 * produces NaN or Inf and names it. The parameters are left as they were just before that. */
static at_status trace_nonfinite(trainer *tr, const phase_ctx *pc, const at_epoch *ep, int epoch,
                                 int64_t k_bad, const rewind_pt *r, at_err *e) {
    char what[200];
    snprintf(what, sizeof what, "%.190s", e && e->msg[0] ? e->msg : "a value is not finite");
    int64_t global = tr->ts->global + 1;
    loss_acc acc;
    at_err e2 = {0};
    at_status st = rewind_to(tr, r, &acc, &e2);
    if (!st) st = nlu_model_check_finite(tr->m, true, &e2);
    if (!st) tr->sess = at_nlu_model_session(tr->m, &e2);
    int64_t k = r->k;
    for (; !st && k <= k_bad; k++) st = step_batch(tr, pc, ep, k, &acc, &e2);
    const char *found = st == AT_E_NUMERIC && tr->sess ? at_session_error(tr->sess) : NULL;
    if (found && !found[0]) found = NULL;
    char where[64] = "";
    if (found && k - 1 < k_bad)
        snprintf(where, sizeof where, " (already at batch %lld)", (long long)k);
    const char *how = found ? found
                      : st  ? e2.msg
                            : "running the epoch again with the non-finite check did not "
                              "reproduce it";
    return at_err_set(e, AT_E_NUMERIC,
                      "training stopped at phase %d epoch %d batch %lld (step %lld): %s; %s%s%s%s",
                      pc->phase, epoch, (long long)k_bad + 1, (long long)global, what,
                      found ? "the first non-finite value" : "", where, found ? ": " : "", how);
}

static at_status run_phase(trainer *tr, int phase, at_err *e) {
    const at_nlu_config *cfg = tr->cfg;
    phase_ctx pc;
    phase_setup(tr, phase, &pc);
    if (pc.main->n == 0 && (!pc.dstep || pc.dstep->n == 0)) return AT_OK;
    int epochs = cfg->epochs[phase];

    at_epoch ep = {0};
    at_status st = at_epoch_plan(&ep, tr->train, AT_SUBSET_LABELLED, AT_ORDER_BUCKET, cfg->batch,
                                 cfg->seed, 0, e);
    int64_t per_epoch = ep.n_batches;
    at_epoch_free(&ep);
    if (st) return st;
    if (per_epoch == 0) return at_err_set(e, AT_E_INVALID, "training: no labelled sentences");
    pc.total = per_epoch * epochs;
    if (tr->o->max_steps > 0 && pc.total > tr->o->max_steps) pc.total = tr->o->max_steps;

    /* Where the phase starts: afresh, or where the training state says. */
    nlu_train_state *ts = tr->ts;
    int first = 1;
    int64_t skip = 0;
    loss_acc acc = {0};
    if (tr->resuming && ts->phase == phase) {
        first = ts->epoch_done ? ts->epoch + 1 : ts->epoch;
        skip = ts->epoch_done ? 0 : ts->batch;
        if (!ts->epoch_done) {
            memcpy(acc.sum, ts->loss_sum, sizeof acc.sum);
            memcpy(acc.cnt, ts->loss_cnt, sizeof acc.cnt);
        }
    } else {
        if (phase == tr->o->first_phase && tr->o->start_epoch > 0) first = tr->o->start_epoch + 1;
        ts->phase = phase;
        ts->done = per_epoch * (first - 1);
        ts->bad_epochs = 0;
        ts->epoch = first - 1;
        ts->epoch_done = true;
    }
    tr->resuming = false;
    bool checked = nlu_model_checks_finite(tr->m);
    rewind_pt rw = {0};

    for (int epoch = first; !st && epoch <= epochs && !tr->stop && ts->done < pc.total; epoch++) {
        if (cfg->patience > 0 && ts->bad_epochs >= cfg->patience) break;
        st = at_epoch_plan(&ep, tr->train, AT_SUBSET_LABELLED, AT_ORDER_BUCKET, cfg->batch,
                           cfg->seed, (uint64_t)(phase * 100000 + epoch), e);
        if (epoch != first || skip == 0) {
            acc = (loss_acc){0};
            ts->lambda = 0;
        }
        ts->epoch = epoch;
        ts->epoch_done = false;
        int64_t k = epoch == first ? skip : 0;
        if (!st && !checked) st = rewind_save(tr, &rw, &acc, k, e);
        for (; !st && k < ep.n_batches && !tr->stop && ts->done < pc.total; k++) {
            st = step_batch(tr, &pc, &ep, k, &acc, e);
            if (st == AT_E_NUMERIC && !checked)
                st = trace_nonfinite(tr, &pc, &ep, epoch, k, &rw, e);
            if (st) break;
            ts->done++;
            ts->global++;
            tr->res->steps++;
            ts->batch = k + 1;
            keep_state(tr, &acc);
            if (tr->o->max_seconds > 0 && now_s() - tr->t0 > tr->o->max_seconds) tr->stop = true;
            if (tr->o->progress) {
                at_nlu_progress pr =
                    progress_of(tr, phase, epoch, k + 1, ep.n_batches, &acc, ts->lambda);
                if (!tr->o->progress(&pr, tr->o->user)) tr->stop = true;
            }
        }
        at_epoch_free(&ep);
        if (st) break;
        tr->res->epochs_run[phase] = epoch;
        if (acc.cnt[L_D]) tr->res->last_loss_d = mean_of(&acc, L_D);

        at_metrics_summary vs, *v = NULL;
        bool improved = false;
        if (tr->valid) {
            at_metrics_reset(tr->mt);
            st = evaluate_encoded(tr->m, tr->valid, false, 0, tr->mt, &vs, e);
            if (st) break;
            v = &vs;
            improved = !ts->have_best || better(cfg->select, &vs, &ts->best_sum);
            if (improved) {
                ts->have_best = true;
                ts->best_sum = vs;
                ts->best_phase = phase;
                ts->best_epoch = epoch;
                tr->res->best_valid = vs;
                tr->res->best_phase = phase;
                tr->res->best_epoch = epoch;
                at_session_sync(tr->sess);
                st = nlu_best_copy(tr->m, true, e);
                if (st) break;
                ts->bad_epochs = 0;
            } else {
                ts->bad_epochs++;
            }
        }
        ts->epoch_done = true;
        write_json(tr, phase, epoch, k, &acc, ts->lambda, v, improved);
        if (tr->o->progress) {
            at_nlu_progress pr = progress_of(tr, phase, epoch, k, k, &acc, ts->lambda);
            pr.valid = v;
            pr.improved = improved;
            pr.epoch_end = true;
            if (!tr->o->progress(&pr, tr->o->user)) tr->stop = true;
        }
    }
    free(rw.data);
    return st;
}

/* Restores the best parameters into the graph (and the session, on a device). */
static at_status restore_best(trainer *tr, at_err *e) {
    if (!tr->ts->have_best) return AT_OK;
    at_session_sync(tr->sess);
    at_status st = nlu_best_copy(tr->m, false, e);
    if (!st) st = nlu_model_params_changed(tr->m, e);
    tr->sess = at_nlu_model_session(tr->m, e);
    return st;
}

at_status at_nlu_train(at_nlu_model *m, at_split *train, at_split *valid, at_split *unlabelled,
                       const at_nlu_train_opts *opts, at_nlu_train_result *res, at_err *e) {
    at_nlu_train_opts dflt = at_nlu_train_defaults();
    at_nlu_train_result res_local;
    if (!opts) opts = &dflt;
    if (!res) res = &res_local;
    memset(res, 0, sizeof *res);
    res->best_phase = -1;
    res->last_loss_d = NAN;
    const at_nlu_config *cfg = at_nlu_model_config(m);
    trainer tr = {.m = m,
                  .cfg = cfg,
                  .net = at_nlu_model_net(m),
                  .o = opts,
                  .train = train,
                  .valid = valid,
                  .res = res,
                  .ts = nlu_model_train_state(m),
                  .resuming = opts->resume,
                  .t0 = now_s()};
    at_status st = AT_OK;
    if (opts->resume && !tr.ts->valid)
        return at_err_set(e, AT_E_INVALID,
                          "resume: the model holds no training state (load a checkpoint "
                          "written by attune 0.2 or later with at_nlu_checkpoint_load)");
    if (!opts->resume) {
        nlu_train_state_clear(tr.ts);
        tr.ts->valid = true;
    }
    st = encode(m, train, e);
    if (!st) st = at_split_label_fraction(train, cfg->label_fraction, cfg->seed, e);
    if (!st && valid) st = encode(m, valid, e);
    if (!st && unlabelled) st = encode(m, unlabelled, e);
    if (!st) st = at_metrics_new(&tr.mt, e);
    if (!st) tr.sess = at_nlu_model_session(m, e);
    if (!st && !tr.sess) st = e && e->code ? e->code : AT_E_INVALID;
    if (st) goto done;
    if (train->n_labelled < train->n)
        tr.unl[tr.n_unl++] = (unl_source){.s = train, .subset = AT_SUBSET_UNLABELLED};
    if (unlabelled && unlabelled->n > 0)
        tr.unl[tr.n_unl++] = (unl_source){.s = unlabelled, .subset = AT_SUBSET_ALL};
    if (opts->resume) {
        st = restore_unlabelled(&tr, e);
        if (st) goto done;
        at_session_set_step(tr.sess, tr.ts->sess_step);
        res->best_valid = tr.ts->best_sum;
        res->best_phase = tr.ts->have_best ? tr.ts->best_phase : -1;
        res->best_epoch = tr.ts->best_epoch;
    }

    int64_t T = train->max_len;
    if (unlabelled && unlabelled->max_len > T) T = unlabelled->max_len;
    int64_t W = cfg->char_dim ? AT_CHAR_WIDTH : 0, bs = cfg->batch;
    st = at_batch_alloc(&tr.lab, bs, train->max_len, W, e);
    if (!st) st = at_batch_alloc(&tr.raw_unl, bs, T, W, e);
    if (!st) st = at_batch_alloc(&tr.f.b, 2 * bs, T, W, e);
    int first = opts->first_phase;
    if (opts->resume && tr.ts->phase > first) first = tr.ts->phase;
    for (int phase = first; !st && phase <= opts->last_phase && !tr.stop; phase++) {
        if (phase < 0 || phase > 2) continue;
        st = run_phase(&tr, phase, e);
        if (!st) st = restore_best(&tr, e);
    }
done:
    for (int i = 0; i < tr.n_unl; i++) at_epoch_free(&tr.unl[i].ep);
    at_batch_free(&tr.lab);
    at_batch_free(&tr.raw_unl);
    at_batch_free(&tr.f.b);
    at_metrics_free(tr.mt);
    res->seconds = now_s() - tr.t0;
    return st;
}
