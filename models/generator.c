/* The generator G: a small transformer over concat(H_1 .. H_L) plus a learned task
 * embedding (0 = intent, 1 = entity), projected to d, s = 2 sigmoid(z), so the scaling factors
 * lie in (0, 2). The output projection starts at zero: z = 0 and s = 1 exactly, so G starts
 * as the identity. Run once per task with shared weights. Parameters: group 2, "gen.*". */
#include <stdio.h>

#include "models/nlu_parts.h"

enum { G_GEN = AT_NLU_G_GENERATOR };

at_val nlu_generator(nlu_ctx *c, const at_val *h, int n_layers, int task) {
    at_graph *g = c->g;
    const at_nlu_config *cfg = c->cfg;
    int64_t d = cfg->d_model, dg = cfg->g_dim;
    at_val x = n_layers > 1 ? at_concat(g, n_layers, h, 2) : h[0];
    x = nlu_linear(c, x, n_layers * d, dg, true, NLU_INIT_XAVIER, G_GEN, "gen.in");
    at_val tasks = nlu_param(c, G_GEN, AT_SHAPE(2, dg), NLU_INIT_EMBED, "gen.task_emb");
    x = at_add(g, x, at_gather(g, tasks, at_const_i64(g, task), 0));
    char nm[64];
    for (int l = 0; l < cfg->g_layers; l++) {
        snprintf(nm, sizeof nm, "gen.l%d", l);
        x = nlu_transformer_layer(c, x, dg, cfg->g_heads, 2 * dg, G_GEN, nm);
    }
    x = nlu_layer_norm(c, x, dg, G_GEN, "gen.ln_f");
    at_val z = nlu_linear(c, x, dg, d, true, NLU_INIT_ZERO, G_GEN, "gen.out");
    return at_mul(g, at_sigmoid(g, z), at_const_f32(g, 2.0f));
}
