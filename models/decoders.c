/* The two attention components and their decoders. Parameters: group 1, "dec.*".
 *
 * Intent: attention pooling over R_intent with a learned query (first component); context ->
 * dropout -> linear -> intent logits.
 * Entity: for each token t, attention with query R_entity[t] over all tokens (second
 * component) -> c_t; a_t = tanh(W_c [c_t; R_entity[t]]) -> dropout -> linear -> slot logits.
 * Slot gate (Goo et al. 2018): g_t = v . tanh(W c_t + V c_intent), c_t scaled by g_t.
 * CRF (crf): transition, start and end scores over the slot tags, zero at init (so the CRF
 * starts as the per-token softmax); created last, so the other parameters' init is unchanged. */
#include "models/nlu_parts.h"

enum { G_DEC = AT_NLU_G_DECODERS };

void nlu_decoders(nlu_ctx *c, at_val r_intent, at_val r_entity, nlu_heads *out) {
    at_graph *g = c->g;
    const at_nlu_config *cfg = c->cfg;
    int64_t d = cfg->d_model, a = cfg->attn_dim;

    int64_t dq1 = nlu_attn_query_dim(cfg->attn1, d), dv1 = nlu_attn_value_dim(cfg->attn1, d);
    at_val query = nlu_param(c, G_DEC, AT_SHAPE(1, 1, dq1), NLU_INIT_XAVIER, "dec.intent.query");
    at_val w1 = AT_NONE;
    at_val ci = nlu_attend(c, cfg->attn1, query, dq1, r_intent, d, cfg->attn_heads, G_DEC,
                           "dec.intent.attn", &w1, cfg->attn1_hard);
    const int64_t flat[2] = {0, dv1}, q_axis = 1;
    ci = at_reshape(g, ci, 2, flat); /* [B,1,dv] -> [B,dv] */
    out->attn_intent = at_squeeze(g, w1, 1, &q_axis);
    out->intent_logits = nlu_linear(c, nlu_dropout(c, ci), dv1, c->n_intents, true, NLU_INIT_XAVIER,
                                    G_DEC, "dec.intent.out");

    int64_t dv2 = nlu_attn_value_dim(cfg->attn2, d);
    at_val ce = nlu_attend(c, cfg->attn2, r_entity, d, r_entity, d, cfg->attn_heads, G_DEC,
                           "dec.entity.attn", &out->attn_entity, cfg->attn2_hard);
    if (cfg->slot_gate) {
        at_val gs = nlu_linear(c, ce, dv2, a, false, NLU_INIT_XAVIER, G_DEC, "dec.gate.ws");
        at_val gi = nlu_linear(c, ci, dv1, a, true, NLU_INIT_XAVIER, G_DEC, "dec.gate.wi");
        at_val v = nlu_param(c, G_DEC, AT_SHAPE(a, 1), NLU_INIT_XAVIER, "dec.gate.v");
        at_val gate = at_matmul(g, at_tanh(g, at_add(g, gs, at_unsqueeze(g, gi, 1, &q_axis))), v);
        ce = at_mul(g, ce, gate); /* [B,T,dv] * [B,T,1] */
    }
    at_val both[2] = {ce, r_entity};
    at_val at = at_tanh(g, nlu_linear(c, at_concat(g, 2, both, 2), dv2 + d, a, true,
                                      NLU_INIT_XAVIER, G_DEC, "dec.entity.wc"));
    out->slot_logits = nlu_linear(c, nlu_dropout(c, at), a, c->n_slots, true, NLU_INIT_XAVIER,
                                  G_DEC, "dec.entity.out");
    if (cfg->crf) {
        at_val crf[3];
        nlu_crf_params(c, crf);
    }
}

void nlu_crf_params(nlu_ctx *c, at_val out[3]) {
    int64_t k = c->n_slots;
    out[0] = nlu_param(c, G_DEC, AT_SHAPE(k, k), NLU_INIT_ZERO, "dec.crf.transitions");
    out[1] = nlu_param(c, G_DEC, AT_SHAPE(k), NLU_INIT_ZERO, "dec.crf.start");
    out[2] = nlu_param(c, G_DEC, AT_SHAPE(k), NLU_INIT_ZERO, "dec.crf.end");
}
