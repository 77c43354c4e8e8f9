/* The discriminator D (CNN + fully connected): per token concat(R_entity[t], slot vector[t],
 * intent vector), zero at padding -> Conv1d per kernel width (3 and 5 by default) + ReLU ->
 * max over the real tokens -> FC + ReLU -> FC -> one logit per sentence. Parameters: group 3,
 * "disc.*". */
#include "models/nlu_parts.h"

enum { G_D = AT_NLU_G_DISCRIMINATOR };

at_val nlu_discriminator(nlu_ctx *c, at_val r, at_val slot_vec, at_val intent_vec) {
    at_graph *g = c->g;
    const at_nlu_config *cfg = c->cfg;
    int64_t ch = cfg->d_channels, nw = cfg->n_d_widths;
    int64_t in = cfg->d_model + c->n_slots + c->n_intents;
    const int64_t t_axis = 1, bct[3] = {0, 2, 1}, time = 2, last = 1;
    /* The intent vector repeated at every real token. */
    at_val iv = at_mul(g, c->mask3, at_unsqueeze(g, intent_vec, 1, &t_axis));
    at_val parts[3] = {r, slot_vec, iv};
    at_val x = at_mul(g, at_concat(g, 3, parts, 2), c->mask3);
    x = at_transpose(g, x, 3, bct); /* [B, in, T] */
    at_val convs[4];
    for (int i = 0; i < nw; i++) {
        int k = cfg->d_widths[i];
        at_val w = nlu_param(c, G_D, AT_SHAPE(ch, in, k), NLU_INIT_CONV, "disc.conv%d.w", k);
        at_val b = nlu_param(c, G_D, AT_SHAPE(ch), NLU_INIT_ZERO, "disc.conv%d.b", k);
        convs[i] = at_relu(g, at_conv1d(g, x, w, b, k / 2, k / 2, 1, 1, 1));
    }
    at_val y = nw > 1 ? at_concat(g, (int)nw, convs, 1) : convs[0];
    y = at_reduce_max(g, at_add(g, y, c->kbias), 1, &time, 0); /* padding never wins the max */
    y = at_relu(g,
                nlu_linear(c, y, nw * ch, cfg->d_hidden, true, NLU_INIT_XAVIER, G_D, "disc.fc1"));
    y = nlu_linear(c, y, cfg->d_hidden, 1, true, NLU_INIT_XAVIER, G_D, "disc.fc2");
    return at_squeeze(g, y, 1, &last);
}
