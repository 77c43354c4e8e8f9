/* The joint NLU model's graph: the parts assembled into one training graph, with a forward
 * path per setting of G (off: s = 1; on: R = H_L * s), the losses, and one update set
 * (gradients, global-norm clipping, AdamW) per step kind:
 *   BASE  phase 0   L_task on the G-off path           encoder + decoders
 *   P1    phase 1   the main loss on the G-on path     G (+ D in grl): encoder, decoders frozen
 *   P2    phase 2   the main loss                      encoder + decoders + G (+ D in grl)
 *   D     gan       L_D                                D only
 * where the main loss is L_task + L_reg, + lambda L_adv (gan) or + L_D behind a
 * GradientReversal layer (grl). Each set has its own optimizer state, as a new torch
 * optimizer per phase would.
 *
 * Adversarial examples live in the same graph: x (the encoder's input vectors) feeds the clean
 * forward, and perturbed forwards on x + delta reuse the parts (the weights by name, the
 * clean forward's random draws replayed from tapes). L_task is replaced by
 *   L_obj = alpha L_task(x) + (1 - alpha) L_task(x + eta) [+ w KL(p(x) || p(x + r_vadv))]
 * where eta = eps sign(grad_x L_task) and r_vadv (one power iteration from a random normal
 * direction) are held constant (StopGradient): the gradients w.r.t. x are at_backward calls
 * inside the graph, so a training step is still one run. The eval path also carries the FGSM
 * attack with its eps fed at run time. */
#include <stdlib.h>
#include <string.h>

#include "models/nlu_parts.h"

enum {
    M_ENC = 1u << AT_NLU_G_ENCODER,
    M_DEC = 1u << AT_NLU_G_DECODERS,
    M_GEN = 1u << AT_NLU_G_GENERATOR,
    M_D = 1u << AT_NLU_G_DISCRIMINATOR,
};

static void path_init(at_nlu_path *p) {
    at_val *v = (at_val *)p;
    for (size_t i = 0; i < sizeof *p / sizeof(at_val); i++) v[i] = AT_NONE;
}

/* The random draws of the clean forward, per part: a perturbed forward of a path replays the
 * encoder's, G's (on) and that path's decoders'. */
typedef struct tapes {
    nlu_tape enc, gen[2], dec[2]; /* dec[0]: G off, dec[1]: G on */
} tapes;

static void tapes_free(tapes *t) {
    nlu_tape_free(&t->enc);
    for (int i = 0; i < 2; i++) {
        nlu_tape_free(&t->gen[i]);
        nlu_tape_free(&t->dec[i]);
    }
}

static void play(nlu_ctx *c, const nlu_tape *t) {
    if (c->play && c->play_pos != c->play->n)
        at_graph_fail(c->g, AT_E_INTERNAL,
                      "a perturbed forward drew %d of its clean forward's %d random values",
                      c->play_pos, c->play->n);
    c->play = t;
    c->play_pos = 0;
}

static void heads_to_path(at_nlu_path *p, const nlu_heads *h) {
    p->intent_logits = h->intent_logits;
    p->slot_logits = h->slot_logits;
    p->attn_intent = h->attn_intent;
    p->attn_entity = h->attn_entity;
}

static void path_heads(const at_nlu_path *p, nlu_heads *h) {
    h->intent_logits = p->intent_logits;
    h->slot_logits = p->slot_logits;
    h->attn_intent = p->attn_intent;
    h->attn_entity = p->attn_entity;
}

/* Decoders and L_task on R_intent, R_entity (s = NONE: G off). */
static void build_heads(nlu_ctx *c, at_nlu_net *net, at_nlu_path *p, at_val h_last, at_val s_i,
                        at_val s_e, nlu_tape *tape) {
    at_graph *g = c->g;
    p->s_intent = s_i;
    p->s_entity = s_e;
    p->r_intent = s_i == AT_NONE ? h_last : at_mul(g, h_last, s_i);
    p->r_entity = s_e == AT_NONE ? h_last : at_mul(g, h_last, s_e);
    nlu_heads h;
    c->rec = tape;
    nlu_decoders(c, p->r_intent, p->r_entity, &h);
    c->rec = NULL;
    heads_to_path(p, &h);
    p->loss_task = nlu_task_loss(c, &h, net->slots, net->intents);
    p->loss_obj = p->loss_task;
}

/* The heads of path `on` (G on or off) on perturbed encoder inputs x: the same weights, the
 * clean forward's random draws. */
static void perturbed(nlu_ctx *c, const at_nlu_net *net, const tapes *tp, bool on, at_val x,
                      nlu_heads *out) {
    at_graph *g = c->g;
    at_val h[8];
    play(c, &tp->enc);
    at_val hl = nlu_encode(c, x, net->emb_dim, net->tokens, net->lengths, h);
    at_val ri = hl, re = hl;
    if (on) {
        play(c, &tp->gen[0]);
        ri = at_mul(g, hl, nlu_generator(c, h, net->n_layers, 0));
        play(c, &tp->gen[1]);
        re = at_mul(g, hl, nlu_generator(c, h, net->n_layers, 1));
    }
    play(c, &tp->dec[on]);
    nlu_decoders(c, ri, re, out);
    play(c, NULL);
}

/* eps sign(grad) on real tokens, held constant. */
static at_val fgsm_delta(nlu_ctx *c, at_val grad, at_val eps) {
    at_graph *g = c->g;
    return at_stop_gradient(g, at_mul(g, at_mul(g, at_sign(g, grad), eps), c->mask3));
}

/* v / ||v|| per sentence (over tokens and features), 0 where v is 0. Scaled by its largest
 * entry first, so tiny gradients (VAT's are O(xi)) neither underflow when squared nor drown
 * in the guard. */
static at_val unit_rows(nlu_ctx *c, at_val v) {
    at_graph *g = c->g;
    const int64_t axes[2] = {1, 2};
    at_val m = at_add(g, at_reduce_max(g, at_abs(g, v), 2, axes, 1), at_const_f32(g, 1e-30f));
    v = at_div(g, v, m);
    at_val n2 = at_reduce_sum(g, at_mul(g, v, v), 2, axes, 1);
    return at_div(g, v, at_sqrt(g, at_add(g, n2, at_const_f32(g, 1e-12f))));
}

/* Adversarial training (FGSM): L_task(x + eta), eta = adv_eps sign(grad_x L_task). */
static void build_adv_train(nlu_ctx *c, at_nlu_net *net, const tapes *tp, at_nlu_path *p, bool on) {
    at_graph *g = c->g;
    at_val gx;
    if (at_backward(g, p->loss_task, &net->emb, 1, &gx) != AT_OK) return;
    p->adv_delta = fgsm_delta(c, gx, at_const_f32(g, c->cfg->adv_eps));
    nlu_heads h;
    perturbed(c, net, tp, on, at_add(g, net->emb, p->adv_delta), &h);
    p->loss_task_adv = nlu_task_loss(c, &h, net->slots, net->intents);
}

/* VAT with one power iteration: d ~ N(0, I) on real tokens, the gradient of
 * KL(p(x) || p(x + xi d/|d|)) w.r.t. the probe, r = vat_eps g/|g| held constant, and the loss
 * KL(p(x) || p(x + r)) with p(x) held constant. */
static void build_vat(nlu_ctx *c, at_nlu_net *net, const tapes *tp, at_nlu_path *p, bool on) {
    at_graph *g = c->g;
    const at_nlu_config *cfg = c->cfg;
    at_val lp_i = at_stop_gradient(g, at_log_softmax(g, p->intent_logits, -1));
    at_val lp_s = at_stop_gradient(g, at_log_softmax(g, p->slot_logits, -1));
    at_val d = at_mul(g, at_node1(g, "RandomNormalLike", &net->emb, 1, NULL, 0), c->mask3);
    at_val probe = at_mul(g, unit_rows(c, d), at_const_f32(g, cfg->vat_xi));
    nlu_heads h;
    perturbed(c, net, tp, on, at_add(g, net->emb, probe), &h);
    at_val gd;
    if (at_backward(g, nlu_kl_loss(c, lp_i, lp_s, &h), &probe, 1, &gd) != AT_OK) return;
    p->vat_delta = at_stop_gradient(g, at_mul(g, unit_rows(c, gd), at_const_f32(g, cfg->vat_eps)));
    perturbed(c, net, tp, on, at_add(g, net->emb, p->vat_delta), &h);
    p->loss_vat = nlu_kl_loss(c, lp_i, lp_s, &h);
}

/* The FGSM attack of evaluation (eps fed at run time), on the per-sentence loss. */
static void build_attack(nlu_ctx *c, at_nlu_net *net, const tapes *tp, at_nlu_path *p, bool on) {
    at_graph *g = c->g;
    nlu_heads h;
    path_heads(p, &h);
    p->loss_sent = nlu_sentence_loss(c, &h, net->slots, net->intents);
    if (at_backward(g, p->loss_sent, &net->emb, 1, &p->emb_grad) != AT_OK) return;
    p->attack_delta = fgsm_delta(c, p->emb_grad, net->attack_eps);
    perturbed(c, net, tp, on, at_add(g, net->emb, p->attack_delta), &h);
    p->attack_intent_logits = h.intent_logits;
    p->attack_slot_logits = h.slot_logits;
    p->loss_sent_attack = nlu_sentence_loss(c, &h, net->slots, net->intents);
}

/* The robustness terms of a trained path, then L_obj. */
static void build_robust(nlu_ctx *c, at_nlu_net *net, const tapes *tp, at_nlu_path *p, bool on) {
    at_graph *g = c->g;
    const at_nlu_config *cfg = c->cfg;
    if (cfg->adv_train == AT_NLU_ADV_TRAIN_FGSM) {
        build_adv_train(c, net, tp, p, on);
        p->loss_obj = at_add(g, at_mul(g, p->loss_task, at_const_f32(g, cfg->adv_alpha)),
                             at_mul(g, p->loss_task_adv, at_const_f32(g, 1.0f - cfg->adv_alpha)));
    }
    if (cfg->vat) {
        build_vat(c, net, tp, p, on);
        p->loss_obj =
            at_add(g, p->loss_obj, at_mul(g, p->loss_vat, at_const_f32(g, cfg->vat_weight)));
    }
}

/* L_reg, D and the main loss of a path, on top of L_obj. */
static void finish_path(nlu_ctx *c, at_nlu_net *net, at_nlu_path *p) {
    at_graph *g = c->g;
    p->loss_main = p->loss_obj;
    if (p->s_intent != AT_NONE) {
        p->loss_reg = nlu_reg_loss(c, p->s_intent, p->s_entity);
        p->loss_main = at_add(g, p->loss_main, p->loss_reg);
    }
    if (c->cfg->adv == AT_NLU_ADV_NONE) return;
    /* On the path the adversarial phases train (G on where there is a G). */
    if (p->s_intent == AT_NONE && c->cfg->use_g) return;
    bool grl = c->cfg->adv == AT_NLU_ADV_GRL;
    nlu_heads h;
    path_heads(p, &h);
    nlu_adv a;
    nlu_adversarial(c, p->r_entity, &h, net->slots, net->intents, grl ? net->lambda : AT_NONE, &a);
    p->d_real = a.d_real;
    p->d_fake = a.d_fake;
    p->loss_d = a.loss_d;
    p->loss_adv = a.loss_adv;
    p->loss_main = grl ? at_add(g, p->loss_main, a.loss_d)
                       : at_add(g, p->loss_main, at_mul(g, net->lambda, a.loss_adv));
}

/* crf: the Viterbi tags of slot logits [B,T,n_slots] (0 at padding). */
static at_val crf_decode(nlu_ctx *c, at_val logits) {
    if (logits == AT_NONE) return AT_NONE;
    at_val p[3], tags;
    nlu_crf_params(c, p);
    at_val in[5] = {logits, c->mask, p[0], p[1], p[2]};
    return at_node_add(c->g, "CRFDecode", AT_DOMAIN_ATTUNE, in, 5, &tags, 1, NULL, 0) < 0 ? AT_NONE
                                                                                          : tags;
}

static at_status build_step(at_graph *g, const at_nlu_config *cfg, at_nlu_net *net, at_nlu_step k,
                            at_val loss, uint32_t groups) {
    at_nlu_update_set *u = &net->steps[k];
    u->loss = loss;
    u->grad_norm = AT_NONE;
    at_val dummy;
    int n = at_graph_params(g, groups, &dummy, 0);
    if (!groups || n == 0 || loss == AT_NONE) return at_graph_status(g);
    u->params = calloc((size_t)n, sizeof(at_val));
    u->grads = calloc((size_t)n, sizeof(at_val));
    u->updates = calloc((size_t)n, sizeof(at_val));
    at_val *clipped = calloc((size_t)n, sizeof(at_val));
    if (!u->params || !u->grads || !u->updates || !clipped) {
        free(clipped);
        return at_graph_fail(g, AT_E_NOMEM, "update set: out of memory");
    }
    u->n = n;
    at_graph_params(g, groups, u->params, n);
    at_adam_opts o = {0.9f, 0.999f, 1e-8f, cfg->weight_decay};
    if (at_backward(g, loss, u->params, n, u->grads) == AT_OK) {
        const at_val *gr = u->grads;
        if (cfg->clip > 0 &&
            at_clip_global_norm(g, n, u->grads, cfg->clip, clipped, &u->grad_norm) == AT_OK)
            gr = clipped;
        at_adamw(g, n, u->params, gr, net->lr, &o, u->updates);
    }
    free(clipped);
    return at_graph_status(g);
}

static void name_output(at_graph *g, at_val v, const char *name) {
    if (v == AT_NONE) return;
    at_value_rename(g, v, name);
    at_output(g, v);
}

at_status nlu_build(at_graph *g, const at_nlu_config *cfg, const nlu_sizes *sz, at_nlu_net *net) {
    memset(net, 0, sizeof *net);
    nlu_ctx c = {.g = g,
                 .cfg = cfg,
                 .n_words = sz->words,
                 .n_chars = sz->chars,
                 .n_slots = sz->slots,
                 .n_intents = sz->intents,
                 .rng = cfg->seed * 0x9e3779b97f4a7c15ull + 12345};
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T");
    net->tokens = at_input(g, "tokens", AT_I64, AT_SHAPE(B, T));
    net->mask = at_input(g, "mask", AT_F32, AT_SHAPE(B, T));
    net->lengths =
        cfg->encoder == AT_NLU_BILSTM ? at_input(g, "lengths", AT_I64, AT_SHAPE(B)) : AT_NONE;
    net->chars =
        cfg->char_dim > 0 ? at_input(g, "chars", AT_I64, AT_SHAPE(B, T, AT_CHAR_WIDTH)) : AT_NONE;
    net->training = at_input(g, "training", AT_BOOL, AT_SCALAR);
    net->slots = at_input(g, "slot_labels", AT_I64, AT_SHAPE(B, T));
    net->intents = at_input(g, "intent_labels", AT_I64, AT_SHAPE(B));
    net->lambda = at_input(g, "lambda", AT_F32, AT_SCALAR);
    net->lr = at_input(g, "lr", AT_F32, AT_SCALAR);
    c.training = net->training;
    c.mask = net->mask;
    const int64_t last = 2, mid = 1;
    c.mask3 = at_unsqueeze(g, net->mask, 1, &last);
    c.kbias = at_unsqueeze(
        g, at_mul(g, at_sub(g, net->mask, at_const_f32(g, 1.0f)), at_const_f32(g, -NLU_MASK_NEG)),
        1, &mid);

    net->n_layers = cfg->layers;
    net->attack_eps = at_input(g, "attack_eps", AT_F32, AT_SCALAR);
    tapes tp = {0};
    net->emb = nlu_embed(&c, net->tokens, net->chars, &net->emb_dim);
    c.rec = &tp.enc;
    at_val h_last = nlu_encode(&c, net->emb, net->emb_dim, net->tokens, net->lengths, net->h);
    path_init(&net->off);
    path_init(&net->on);
    build_heads(&c, net, &net->off, h_last, AT_NONE, AT_NONE, &tp.dec[0]);
    net->eval = &net->off;
    if (cfg->use_g) {
        c.rec = &tp.gen[0];
        at_val s_i = nlu_generator(&c, net->h, cfg->layers, 0);
        c.rec = &tp.gen[1];
        at_val s_e = nlu_generator(&c, net->h, cfg->layers, 1);
        build_heads(&c, net, &net->on, h_last, s_i, s_e, &tp.dec[1]);
        net->eval = &net->on;
    }
    c.rec = NULL;
    bool on = cfg->use_g;
    at_nlu_path *p = on ? &net->on : &net->off;
    build_attack(&c, net, &tp, p, on);
    build_robust(&c, net, &tp, &net->off, false);
    if (on) build_robust(&c, net, &tp, &net->on, true);
    tapes_free(&tp);
    finish_path(&c, net, &net->off);
    if (on) finish_path(&c, net, &net->on);
    if (cfg->crf) {
        net->off.slot_tags = crf_decode(&c, net->off.slot_logits);
        net->on.slot_tags = crf_decode(&c, net->on.slot_logits);
        p->attack_slot_tags = crf_decode(&c, p->attack_slot_logits);
    }
    name_output(g, p->intent_logits, "intent_logits");
    name_output(g, p->slot_logits, "slot_logits");
    name_output(g, p->attn_intent, "intent_attention");
    name_output(g, p->attn_entity, "slot_attention");
    name_output(g, p->s_intent, "s_intent");
    name_output(g, p->s_entity, "s_entity");
    name_output(g, p->slot_tags, "slot_tags");
    if (at_graph_status(g)) return at_graph_status(g);

    uint32_t extra = (cfg->use_g ? M_GEN : 0) | (cfg->adv == AT_NLU_ADV_GRL ? M_D : 0);
    at_status st = build_step(g, cfg, net, AT_NLU_STEP_BASE, net->off.loss_obj, M_ENC | M_DEC);
    if (!st && (cfg->use_g || cfg->adv != AT_NLU_ADV_NONE)) {
        st = build_step(g, cfg, net, AT_NLU_STEP_P1, p->loss_main, extra);
        if (!st) st = build_step(g, cfg, net, AT_NLU_STEP_P2, p->loss_main, M_ENC | M_DEC | extra);
    }
    if (!st && cfg->adv == AT_NLU_ADV_GAN)
        st = build_step(g, cfg, net, AT_NLU_STEP_D, p->loss_d, M_D);
    return st;
}

void nlu_net_free(at_nlu_net *net) {
    for (int k = 0; k < AT_NLU_STEP_COUNT; k++) {
        free(net->steps[k].params);
        free(net->steps[k].grads);
        free(net->steps[k].updates);
        net->steps[k].params = net->steps[k].grads = net->steps[k].updates = NULL;
        net->steps[k].n = 0;
    }
}
