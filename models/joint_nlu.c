/* The joint NLU model's graph: the parts assembled into one training graph, with a forward
 * path per setting of G (off: s = 1; on: R = H_L * s), the losses, and one update set
 * (gradients, global-norm clipping, AdamW) per step kind:
 *   BASE  phase 0   L_task on the G-off path           encoder + decoders
 *   P1    phase 1   the main loss on the G-on path     G (+ D in grl): encoder, decoders frozen
 *   P2    phase 2   the main loss                      encoder + decoders + G (+ D in grl)
 *   D     gan       L_D                                D only
 * where the main loss is L_task + L_reg, + lambda L_adv (gan) or + L_D behind a
 * GradientReversal layer (grl). Each set has its own optimizer state, as a new torch
 * optimizer per phase would. */
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

/* Decoders and losses on R_intent, R_entity (s = NONE: G off). */
static void build_path(nlu_ctx *c, at_nlu_net *net, at_nlu_path *p, at_val h_last, at_val s_i,
                       at_val s_e) {
    at_graph *g = c->g;
    p->s_intent = s_i;
    p->s_entity = s_e;
    p->r_intent = s_i == AT_NONE ? h_last : at_mul(g, h_last, s_i);
    p->r_entity = s_e == AT_NONE ? h_last : at_mul(g, h_last, s_e);
    nlu_heads h;
    nlu_decoders(c, p->r_intent, p->r_entity, &h);
    p->intent_logits = h.intent_logits;
    p->slot_logits = h.slot_logits;
    p->attn_intent = h.attn_intent;
    p->attn_entity = h.attn_entity;
    p->loss_task = nlu_task_loss(c, &h, net->slots, net->intents);
    p->loss_main = p->loss_task;
    if (s_i != AT_NONE) {
        p->loss_reg = nlu_reg_loss(c, s_i, s_e);
        p->loss_main = at_add(g, p->loss_main, p->loss_reg);
    }
    if (c->cfg->adv == AT_NLU_ADV_NONE) return;
    /* On the path the adversarial phases train (G on where there is a G). */
    if (s_i == AT_NONE && c->cfg->use_g) return;
    bool grl = c->cfg->adv == AT_NLU_ADV_GRL;
    nlu_adv a;
    nlu_adversarial(c, p->r_entity, &h, net->slots, net->intents, grl ? net->lambda : AT_NONE, &a);
    p->d_real = a.d_real;
    p->d_fake = a.d_fake;
    p->loss_d = a.loss_d;
    p->loss_adv = a.loss_adv;
    p->loss_main = grl ? at_add(g, p->loss_main, a.loss_d)
                       : at_add(g, p->loss_main, at_mul(g, net->lambda, a.loss_adv));
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
    at_val h_last = nlu_encoder(&c, net->tokens, net->lengths, net->chars, net->h);
    path_init(&net->off);
    path_init(&net->on);
    build_path(&c, net, &net->off, h_last, AT_NONE, AT_NONE);
    net->eval = &net->off;
    if (cfg->use_g) {
        at_val s_i = nlu_generator(&c, net->h, cfg->layers, 0);
        at_val s_e = nlu_generator(&c, net->h, cfg->layers, 1);
        build_path(&c, net, &net->on, h_last, s_i, s_e);
        net->eval = &net->on;
    }
    const at_nlu_path *p = net->eval;
    name_output(g, p->intent_logits, "intent_logits");
    name_output(g, p->slot_logits, "slot_logits");
    name_output(g, p->attn_intent, "intent_attention");
    name_output(g, p->attn_entity, "slot_attention");
    name_output(g, p->s_intent, "s_intent");
    name_output(g, p->s_entity, "s_entity");
    if (at_graph_status(g)) return at_graph_status(g);

    uint32_t extra = (cfg->use_g ? M_GEN : 0) | (cfg->adv == AT_NLU_ADV_GRL ? M_D : 0);
    at_status st = build_step(g, cfg, net, AT_NLU_STEP_BASE, net->off.loss_task, M_ENC | M_DEC);
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
