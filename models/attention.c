/* Attention with every scoring function of DESIGN.md section 6. A query q [Bq,Tq,dq] (Bq is 1
 * for a learned query, broadcast over the batch) attends over states kv [B,Tk,d]:
 * scores [B,Tq,Tk] + the key mask bias (NLU_MASK_NEG at padding, so after the softmax a padded
 * key gets exactly zero weight: exp(-1e9 - max) underflows to 0), softmax over keys, context
 * = weights @ values. */
#include <math.h>
#include <stdio.h>

#include "models/nlu_parts.h"

int64_t nlu_attn_query_dim(at_nlu_attn_kind kind, int64_t d) {
    return kind == AT_NLU_ATTN_KEY_VALUE ? d / 2 : d;
}

int64_t nlu_attn_value_dim(at_nlu_attn_kind kind, int64_t d) {
    return kind == AT_NLU_ATTN_KEY_VALUE ? d / 2 : d;
}

static at_val swap_last(at_graph *g, at_val x) {
    const int64_t perm[3] = {0, 2, 1};
    return at_transpose(g, x, 3, perm);
}

static at_val scale(at_graph *g, at_val x, int64_t d) {
    return at_mul(g, x, at_const_f32(g, 1.0f / sqrtf((float)d)));
}

/* Weights over the last axis of masked scores s. Hard: straight-through Gumbel-softmax,
 * y_hard + (y_soft - stop(y_soft)) with y_soft = softmax(s + Gumbel noise) and y_hard the
 * one-hot of its argmax: exactly y_hard forward (the difference is an exact 0), exactly
 * softmax's gradient backward. Padded keys sit at NLU_MASK_NEG, far below any noise, so they
 * are never picked. Exact ties (measure zero with noise) would give several ones. */
static at_val weights_of(nlu_ctx *c, at_val s, bool hard) {
    at_graph *g = c->g;
    if (!hard) return at_softmax(g, s, -1);
    s = at_add(g, s, nlu_gumbel(c, s));
    at_val soft = at_softmax(g, s, -1);
    return at_add(g, nlu_hard_one_hot(c, s), at_sub(g, soft, at_stop_gradient(g, soft)));
}

/* Multi-head scaled dot with query, key, value and output projections. */
static at_val multihead(nlu_ctx *c, at_val q, int64_t dq, at_val kv, int64_t d, int heads,
                        int group, const char *name, at_val *weights, bool hard) {
    at_graph *g = c->g;
    char nm[200];
    int64_t dh = d / heads;
    const int64_t split[4] = {0, 0, heads, dh}, bhtd[4] = {0, 2, 1, 3}, bhdt[4] = {0, 2, 3, 1};
    const int64_t merge[3] = {0, 0, d}, head_axis = 1;
    snprintf(nm, sizeof nm, "%s.wq", name);
    at_val qh = at_reshape(g, nlu_linear(c, q, dq, d, false, NLU_INIT_XAVIER, group, nm), 4, split);
    snprintf(nm, sizeof nm, "%s.wk", name);
    at_val kh = at_reshape(g, nlu_linear(c, kv, d, d, false, NLU_INIT_XAVIER, group, nm), 4, split);
    snprintf(nm, sizeof nm, "%s.wv", name);
    at_val vh = at_reshape(g, nlu_linear(c, kv, d, d, false, NLU_INIT_XAVIER, group, nm), 4, split);
    at_val s =
        scale(g, at_matmul(g, at_transpose(g, qh, 4, bhtd), at_transpose(g, kh, 4, bhdt)), dh);
    s = at_add(g, s, at_unsqueeze(g, c->kbias, 1, &head_axis));
    at_val w = weights_of(c, s, hard);
    if (weights) *weights = at_reduce_mean(g, w, 1, &head_axis, 0);
    at_val ctx = at_matmul(g, w, at_transpose(g, vh, 4, bhtd));
    ctx = at_reshape(g, at_transpose(g, ctx, 4, bhtd), 3, merge);
    snprintf(nm, sizeof nm, "%s.wo", name);
    return nlu_linear(c, ctx, d, d, true, NLU_INIT_XAVIER, group, nm);
}

at_val nlu_attend(nlu_ctx *c, at_nlu_attn_kind kind, at_val q, int64_t dq, at_val kv, int64_t d,
                  int heads, int group, const char *name, at_val *weights, bool hard) {
    at_graph *g = c->g;
    if (kind == AT_NLU_ATTN_MULTIHEAD)
        return multihead(c, q, dq, kv, d, heads, group, name, weights, hard);
    bool needs_same = kind == AT_NLU_ATTN_DOT || kind == AT_NLU_ATTN_SCALED_DOT ||
                      kind == AT_NLU_ATTN_NEG_DISTANCE;
    if (needs_same && dq != d) {
        at_graph_fail(g, AT_E_SHAPE, "%s: %s attention needs query size %lld = state size %lld",
                      name, at_nlu_attn_name(kind), (long long)dq, (long long)d);
        return AT_NONE;
    }
    char nm[200];
    int64_t a = c->cfg->attn_dim;
    at_val scores = AT_NONE, values = kv;
    switch (kind) {
    case AT_NLU_ATTN_DOT:
        scores = at_matmul(g, q, swap_last(g, kv));
        break;
    case AT_NLU_ATTN_SCALED_DOT:
        scores = scale(g, at_matmul(g, q, swap_last(g, kv)), d);
        break;
    case AT_NLU_ATTN_GENERAL: {
        at_val w = nlu_param(c, group, AT_SHAPE(dq, d), NLU_INIT_XAVIER, "%s.w", name);
        scores = at_matmul(g, at_matmul(g, q, w), swap_last(g, kv));
        break;
    }
    case AT_NLU_ATTN_ADDITIVE: {
        const int64_t q_axis = 2, k_axis = 1, last = 3;
        snprintf(nm, sizeof nm, "%s.wq", name);
        at_val qa = nlu_linear(c, q, dq, a, false, NLU_INIT_XAVIER, group, nm);
        snprintf(nm, sizeof nm, "%s.wk", name);
        at_val ka = nlu_linear(c, kv, d, a, true, NLU_INIT_XAVIER, group, nm);
        at_val e = at_tanh(g, at_add(g, at_unsqueeze(g, qa, 1, &q_axis),
                                     at_unsqueeze(g, ka, 1, &k_axis))); /* [B,Tq,Tk,a] */
        at_val v = nlu_param(c, group, AT_SHAPE(a, 1), NLU_INIT_XAVIER, "%s.v", name);
        scores = at_squeeze(g, at_matmul(g, e, v), 1, &last);
        break;
    }
    case AT_NLU_ATTN_NEG_DISTANCE: {
        /* -||q - k||^2 = 2 q.k - |q|^2 - |k|^2, over sqrt(d) like the scaled dot, so the
         * softmax does not saturate at d = 256. */
        const int64_t last = -1;
        at_val qk = at_mul(g, at_matmul(g, q, swap_last(g, kv)), at_const_f32(g, 2.0f));
        at_val qq = at_reduce_sum(g, at_mul(g, q, q), 1, &last, 1);
        at_val kk = swap_last(g, at_reduce_sum(g, at_mul(g, kv, kv), 1, &last, 1));
        scores = scale(g, at_sub(g, at_sub(g, qk, qq), kk), d);
        break;
    }
    case AT_NLU_ATTN_KEY_VALUE: {
        /* Daniluk et al. (2017): the first half of a state is its key, the second its value;
         * a full-size query (a state itself) uses its key half. */
        at_val kvh[2], qh[2];
        if (at_split_into(g, kv, 2, 2, NULL, kvh) != AT_OK) return AT_NONE;
        at_val qk = q;
        if (dq == d) {
            if (at_split_into(g, q, 2, 2, NULL, qh) != AT_OK) return AT_NONE;
            qk = qh[0];
        } else if (dq != d / 2) {
            at_graph_fail(g, AT_E_SHAPE, "%s: key_value query size %lld, want %lld or %lld", name,
                          (long long)dq, (long long)d, (long long)d / 2);
            return AT_NONE;
        }
        scores = scale(g, at_matmul(g, qk, swap_last(g, kvh[0])), d / 2);
        values = kvh[1];
        break;
    }
    case AT_NLU_ATTN_MULTIHEAD:
        break;
    }
    at_val w = weights_of(c, at_add(g, scores, c->kbias), hard);
    if (weights) *weights = w;
    return at_matmul(g, w, values);
}
