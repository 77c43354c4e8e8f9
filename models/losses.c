/* The losses of DESIGN.md section 6:
 *   L_task = CE(intent) + mean over labelled tokens of CE(slot)   (AT_IGNORE_INDEX skipped)
 *            with crf: CE(intent) + mean over labelled sentences of the CRF's NLL of the tags
 *   L_D    = BCE(D(real), 1) + BCE(D(fake), 0)                   (real: labelled sentences)
 *   L_adv  = BCE(D(fake), 1)                                     (non-saturating)
 *   L_reg  = beta * mean over real tokens of (s - 1)^2, or |s - 1| (L1)
 * lambda_p is computed in C (at_nlu_lambda) and fed as an input. For adversarial examples
 * (section 6.1): the per-sentence task loss the FGSM attack differentiates, and VAT's KL. */
#include "models/nlu_parts.h"

/* The CRF's NLL per sentence [B]: 0 for a sentence without tags; positions tagged
 * AT_IGNORE_INDEX inside a tagged sentence are marginalized. */
static at_val crf_nll(nlu_ctx *c, const nlu_heads *h, at_val slots) {
    at_val p[3], nll;
    nlu_crf_params(c, p);
    at_val in[6] = {h->slot_logits, slots, c->mask, p[0], p[1], p[2]};
    at_attr ig = AT_ATTR_I("ignore_index", AT_IGNORE_INDEX);
    if (at_node_add(c->g, "CRFLoss", AT_DOMAIN_ATTUNE, in, 6, &nll, 1, &ig, 1) < 0) return AT_NONE;
    return nll;
}

/* 1 for a sentence with at least one slot label, else 0: [B] float. */
static at_val labelled_rows(nlu_ctx *c, at_val slots) {
    at_graph *g = c->g;
    const int64_t t_axis = 1;
    at_val lab =
        at_cast(g, at_not(g, at_equal(g, slots, at_const_i64(g, AT_IGNORE_INDEX))), AT_F32);
    return at_reduce_max(g, lab, 1, &t_axis, 0);
}

at_val nlu_task_loss(nlu_ctx *c, const nlu_heads *h, at_val slots, at_val intents) {
    at_graph *g = c->g;
    const int64_t rows[2] = {-1, c->n_slots}, flat[1] = {-1};
    at_val li =
        at_softmax_cross_entropy(g, h->intent_logits, intents, AT_NONE, "mean", AT_IGNORE_INDEX);
    if (c->cfg->crf)
        return at_add(g, li, nlu_weighted_mean(c, crf_nll(c, h, slots), labelled_rows(c, slots)));
    at_val ls =
        at_softmax_cross_entropy(g, at_reshape(g, h->slot_logits, 2, rows),
                                 at_reshape(g, slots, 1, flat), AT_NONE, "mean", AT_IGNORE_INDEX);
    return at_add(g, li, ls);
}

at_val nlu_reg_loss(nlu_ctx *c, at_val s_intent, at_val s_entity) {
    at_graph *g = c->g;
    const at_nlu_config *cfg = c->cfg;
    at_val one = at_const_f32(g, 1.0f), sum = AT_NONE;
    at_val s[2] = {s_intent, s_entity};
    for (int i = 0; i < 2; i++) {
        at_val dev = at_sub(g, s[i], one);
        dev = cfg->reg_l1 ? at_abs(g, dev) : at_mul(g, dev, dev);
        at_val part = at_reduce_sum(g, at_mul(g, dev, c->mask3), 0, NULL, 0);
        sum = i ? at_add(g, sum, part) : part;
    }
    /* Mean over both tasks' real tokens and features. */
    at_val den = at_mul(g, at_reduce_sum(g, c->mask, 0, NULL, 0),
                        at_const_f32(g, 2.0f * (float)cfg->d_model));
    at_val mean = at_div(g, sum, at_clip(g, den, 1.0f, 3e38f));
    return at_mul(g, mean, at_const_f32(g, cfg->beta));
}

/* The labelling D sees on the fake side: hard one-hot with the softmax's gradient
 * (straight-through: y_hard + (y_soft - stop(y_soft)), exactly y_hard forward), or the
 * softmax itself (soft). */
static at_val fake_labels(nlu_ctx *c, at_val logits) {
    at_graph *g = c->g;
    at_val p = at_softmax(g, logits, -1);
    if (c->cfg->d_soft) return p;
    return at_add(g, nlu_hard_one_hot(c, p), at_sub(g, p, at_stop_gradient(g, p)));
}

/* Gold labels: one-hot, or label-smoothed (eps = 0.1) in the soft mode. */
static at_val real_labels(nlu_ctx *c, at_val labels, int64_t n) {
    at_graph *g = c->g;
    at_val oh = nlu_one_hot(c, labels, n);
    if (!c->cfg->d_soft) return oh;
    const float eps = 0.1f;
    return at_add(g, at_mul(g, oh, at_const_f32(g, 1.0f - eps)), at_const_f32(g, eps / (float)n));
}

void nlu_adversarial(nlu_ctx *c, at_val r_entity, const nlu_heads *h, at_val slots, at_val intents,
                     at_val grl_lambda, nlu_adv *out) {
    at_graph *g = c->g;
    at_val fake_s = fake_labels(c, h->slot_logits), fake_i = fake_labels(c, h->intent_logits);
    at_val r = r_entity;
    if (grl_lambda != AT_NONE) {
        r = at_gradient_reversal(g, r, grl_lambda);
        fake_s = at_gradient_reversal(g, fake_s, grl_lambda);
        fake_i = at_gradient_reversal(g, fake_i, grl_lambda);
    }
    out->d_real = nlu_discriminator(c, r, real_labels(c, slots, c->n_slots),
                                    real_labels(c, intents, c->n_intents));
    out->d_fake = nlu_discriminator(c, r, fake_s, fake_i);
    /* Only labelled sentences have a real labelling; every sentence has a fake one. */
    at_val labelled =
        at_cast(g, at_not(g, at_equal(g, intents, at_const_i64(g, AT_IGNORE_INDEX))), AT_F32);
    at_val real = nlu_weighted_mean(c, at_mul(g, labelled, nlu_softplus(c, at_neg(g, out->d_real))),
                                    labelled);
    at_val fake = at_reduce_mean(g, nlu_softplus(c, out->d_fake), 0, NULL, 0);
    out->loss_d = at_add(g, real, fake);
    out->loss_adv = at_reduce_mean(g, nlu_softplus(c, at_neg(g, out->d_fake)), 0, NULL, 0);
}

at_val nlu_sentence_loss(nlu_ctx *c, const nlu_heads *h, at_val slots, at_val intents) {
    at_graph *g = c->g;
    const int64_t rows[2] = {-1, c->n_slots}, flat[1] = {-1}, t_axis = 1;
    at_val li =
        at_softmax_cross_entropy(g, h->intent_logits, intents, AT_NONE, "none", AT_IGNORE_INDEX);
    if (c->cfg->crf) /* the sentence's NLL is already its own (0 without tags) */
        return at_reduce_sum(g, at_add(g, li, crf_nll(c, h, slots)), 0, NULL, 0);
    at_val ls =
        at_softmax_cross_entropy(g, at_reshape(g, h->slot_logits, 2, rows),
                                 at_reshape(g, slots, 1, flat), AT_NONE, "none", AT_IGNORE_INDEX);
    ls = at_reshape_to(g, ls, at_shape_of(g, slots)); /* [B,T], 0 where ignored */
    at_val labelled =
        at_cast(g, at_not(g, at_equal(g, slots, at_const_i64(g, AT_IGNORE_INDEX))), AT_F32);
    at_val n = at_clip(g, at_reduce_sum(g, labelled, 1, &t_axis, 0), 1.0f, 3e38f);
    at_val per = at_add(g, li, at_div(g, at_reduce_sum(g, ls, 1, &t_axis, 0), n));
    return at_reduce_sum(g, per, 0, NULL, 0);
}

at_val nlu_kl_loss(nlu_ctx *c, at_val lp_intent, at_val lp_slots, const nlu_heads *h) {
    at_graph *g = c->g;
    const int64_t last = -1;
    /* sum_k p_k (log p_k - log q_k): exactly 0 where q's logits equal p's. */
    at_val lq = at_log_softmax(g, h->intent_logits, -1);
    at_val ki =
        at_reduce_sum(g, at_mul(g, at_exp(g, lp_intent), at_sub(g, lp_intent, lq)), 1, &last, 0);
    at_val ls = at_log_softmax(g, h->slot_logits, -1);
    at_val ks =
        at_reduce_sum(g, at_mul(g, at_exp(g, lp_slots), at_sub(g, lp_slots, ls)), 1, &last, 0);
    at_val tokens = nlu_weighted_mean(c, at_mul(g, ks, c->mask), c->mask);
    return at_add(g, at_reduce_mean(g, ki, 0, NULL, 0), tokens);
}
