/* The shared encoder: word embeddings (+ optional character CNN features): x, the encoder's
 * input vectors (where adversarial perturbations go); then L layers of one kind: pre-LN transformer
 * (learned positions, multi-head self-attention, GELU FFN) or bidirectional ONNX LSTM. Writes H_1
 * .. H_L, each [B,T,d]. Parameters: group 0, "enc.*". */
#include <stdio.h>

#include "models/nlu_parts.h"

enum { G_ENC = AT_NLU_G_ENCODER };

at_val nlu_transformer_layer(nlu_ctx *c, at_val x, int64_t d, int heads, int64_t ffn, int group,
                             const char *name) {
    at_graph *g = c->g;
    char nm[200];
    snprintf(nm, sizeof nm, "%s.ln1", name);
    at_val ln1 = nlu_layer_norm(c, x, d, group, nm);
    snprintf(nm, sizeof nm, "%s.attn", name);
    at_val a = nlu_attend(c, AT_NLU_ATTN_MULTIHEAD, ln1, d, ln1, d, heads, group, nm, NULL, false);
    x = at_add(g, x, nlu_dropout(c, a));
    snprintf(nm, sizeof nm, "%s.ln2", name);
    at_val ln2 = nlu_layer_norm(c, x, d, group, nm);
    snprintf(nm, sizeof nm, "%s.ff1", name);
    at_val f = at_gelu(g, nlu_linear(c, ln2, d, ffn, true, NLU_INIT_XAVIER, group, nm));
    snprintf(nm, sizeof nm, "%s.ff2", name);
    f = nlu_linear(c, f, ffn, d, true, NLU_INIT_XAVIER, group, nm);
    return at_add(g, x, nlu_dropout(c, f));
}

static at_val bilstm_layer(nlu_ctx *c, at_val x, int64_t in, int64_t d, at_val seq_lens, int l) {
    at_graph *g = c->g;
    int64_t h = d / 2;
    at_val w = nlu_param(c, G_ENC, AT_SHAPE(2, 4 * h, in), NLU_INIT_LSTM, "enc.l%d.lstm_w", l);
    at_val r = nlu_param(c, G_ENC, AT_SHAPE(2, 4 * h, h), NLU_INIT_LSTM, "enc.l%d.lstm_r", l);
    at_val b = nlu_param(c, G_ENC, AT_SHAPE(2, 8 * h), NLU_INIT_ZERO, "enc.l%d.lstm_b", l);
    /* Forget-gate bias 1 (gate order i, o, f, c) so early gradients flow through time. */
    float *bd = at_value_data(g, b);
    for (int64_t k = 0; bd && k < 2; k++)
        for (int64_t j = 2 * h; j < 3 * h; j++) bd[k * 8 * h + j] = 1.0f;
    const int64_t tbi[3] = {1, 0, 2}, btdh[4] = {2, 0, 1, 3}, merge[3] = {0, 0, d};
    at_val y = AT_NONE;
    if (at_lstm(g, at_transpose(g, x, 3, tbi), w, r, b, seq_lens, AT_NONE, AT_NONE, (int)h,
                "bidirectional", &y, NULL, NULL) != AT_OK)
        return AT_NONE;
    return at_reshape(g, at_transpose(g, y, 4, btdh), 3, merge); /* [T,2,B,h] -> [B,T,2h] */
}

/* Char CNN (width 3) over each word's characters, max-pooled: [B,T,char_channels]. */
static at_val char_features(nlu_ctx *c, at_val chars) {
    at_graph *g = c->g;
    const at_nlu_config *cfg = c->cfg;
    int64_t cd = cfg->char_dim, f = cfg->char_channels;
    at_val table = nlu_param(c, G_ENC, AT_SHAPE(c->n_chars, cd), NLU_INIT_EMBED, "enc.char_emb");
    const int64_t words[3] = {-1, AT_CHAR_WIDTH, cd}, ncw[3] = {0, 2, 1}, w_axis = 2;
    at_val x = at_transpose(g, at_reshape(g, at_gather(g, table, chars, 0), 3, words), 3, ncw);
    at_val w = nlu_param(c, G_ENC, AT_SHAPE(f, cd, 3), NLU_INIT_CONV, "enc.char_conv.w");
    at_val b = nlu_param(c, G_ENC, AT_SHAPE(f), NLU_INIT_ZERO, "enc.char_conv.b");
    at_val y = at_reduce_max(g, at_relu(g, at_conv1d(g, x, w, b, 1, 1, 1, 1, 1)), 1, &w_axis, 0);
    /* Back to [B,T,f]: the Shape of a [B,T,f] value keeps B and T symbolic (only its shape is
     * read). */
    at_val ref = at_mul(g, c->mask3, b);
    return at_reshape_to(g, y, at_shape_of(g, ref));
}

/* Learned positions 0 .. T-1: the first T rows of the table (T read from tokens' shape). */
static at_val positions(nlu_ctx *c, at_val tokens, int64_t d) {
    at_graph *g = c->g;
    at_val table =
        nlu_param(c, G_ENC, AT_SHAPE(c->cfg->max_positions, d), NLU_INIT_SMALL, "enc.pos");
    at_attr a[2] = {AT_ATTR_I("start", 1), AT_ATTR_I("end", 2)};
    const int64_t zero = 0;
    at_val in[4] = {table, at_const_i64s(g, 1, &zero), at_node1(g, "Shape", &tokens, 1, a, 2),
                    at_const_i64s(g, 1, &zero)};
    return at_node1(g, "Slice", in, 4, NULL, 0);
}

at_val nlu_embed(nlu_ctx *c, at_val tokens, at_val chars, int64_t *in) {
    at_graph *g = c->g;
    const at_nlu_config *cfg = c->cfg;
    *in = cfg->emb_dim;
    at_val emb = nlu_param(c, G_ENC, AT_SHAPE(c->n_words, *in), NLU_INIT_EMBED, "enc.word_emb");
    at_val x = at_gather(g, emb, tokens, 0);
    if (cfg->char_dim > 0) {
        at_val parts[2] = {x, char_features(c, chars)};
        x = at_concat(g, 2, parts, 2);
        *in += cfg->char_channels;
    }
    return x;
}

at_val nlu_encode(nlu_ctx *c, at_val x, int64_t in, at_val tokens, at_val lengths, at_val *h) {
    at_graph *g = c->g;
    const at_nlu_config *cfg = c->cfg;
    int64_t d = cfg->d_model, ffn = cfg->ffn_dim ? cfg->ffn_dim : 4 * d;
    x = nlu_dropout(c, x);
    char nm[64];
    if (cfg->encoder == AT_NLU_TRANSFORMER) {
        x = at_add(g, nlu_linear(c, x, in, d, true, NLU_INIT_XAVIER, G_ENC, "enc.in"),
                   positions(c, tokens, d));
        for (int l = 0; l < cfg->layers; l++) {
            snprintf(nm, sizeof nm, "enc.l%d", l);
            x = h[l] = nlu_transformer_layer(c, x, d, cfg->heads, ffn, G_ENC, nm);
        }
        /* Pre-LN stacks end with a norm; H_L is what G and the decoders see. */
        h[cfg->layers - 1] = nlu_layer_norm(c, x, d, G_ENC, "enc.ln_f");
    } else {
        at_val seq_lens = at_cast(g, lengths, AT_I32);
        for (int l = 0; l < cfg->layers; l++) {
            if (l) x = nlu_dropout(c, x);
            x = h[l] = bilstm_layer(c, x, l ? d : in, d, seq_lens, l);
        }
    }
    return h[cfg->layers - 1];
}
