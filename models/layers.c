/* Small building blocks shared by the model's parts: named parameters with their
 * initialization, linear layers, layer norm, dropout, softplus, one-hot rows, masked means. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/nlu_parts.h"

/* splitmix64: the init stream is a pure function of the config's seed and creation order. */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) {
    return ((next_u64(s) >> 11) + 0.5) / 9007199254740992.0;
}
static double normal(uint64_t *s) {
    double u = uniform01(s), v = uniform01(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void fill(nlu_ctx *c, float *d, const at_shape *s, nlu_init init) {
    int64_t n = at_shape_numel(s);
    int r = s->rank;
    double fan_out = r ? (double)s->dim[r - 1] : 1, fan_in = r > 1 ? (double)s->dim[r - 2] : 1;
    double a = init == NLU_INIT_XAVIER ? sqrt(6.0 / (fan_in + fan_out))
               : init == NLU_INIT_LSTM ? 1.0 / sqrt(fan_out)
               : init == NLU_INIT_CONV ? 1.0 / sqrt(fan_in * fan_out)
                                       : 0;
    for (int64_t i = 0; i < n; i++) {
        switch (init) {
        case NLU_INIT_ZERO:
            d[i] = 0;
            break;
        case NLU_INIT_ONE:
            d[i] = 1;
            break;
        case NLU_INIT_XAVIER:
        case NLU_INIT_LSTM:
        case NLU_INIT_CONV:
            d[i] = (float)(a * (2 * uniform01(&c->rng) - 1));
            break;
        case NLU_INIT_EMBED:
            d[i] = (float)(0.1 * normal(&c->rng));
            break;
        case NLU_INIT_SMALL:
            d[i] = (float)(0.02 * normal(&c->rng));
            break;
        }
    }
}

at_val nlu_param(nlu_ctx *c, int group, at_shape s, nlu_init init, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    at_val p = at_graph_find(c->g, name);
    if (p != AT_NONE) return p;
    p = at_param(c->g, name, AT_F32, s, group);
    float *d = at_value_data(c->g, p);
    if (d) fill(c, d, &s, init);
    return p;
}

at_val nlu_linear(nlu_ctx *c, at_val x, int64_t in, int64_t out, bool bias, nlu_init init,
                  int group, const char *name) {
    at_val w = nlu_param(c, group, AT_SHAPE(in, out), init, "%s.w", name);
    at_val y = at_matmul(c->g, x, w);
    if (bias) y = at_add(c->g, y, nlu_param(c, group, AT_SHAPE(out), NLU_INIT_ZERO, "%s.b", name));
    return y;
}

at_val nlu_layer_norm(nlu_ctx *c, at_val x, int64_t d, int group, const char *name) {
    at_val gam = nlu_param(c, group, AT_SHAPE(d), NLU_INIT_ONE, "%s.g", name);
    at_val bet = nlu_param(c, group, AT_SHAPE(d), NLU_INIT_ZERO, "%s.b", name);
    return at_layer_norm(c->g, x, gam, bet, -1, 1e-5f);
}

void nlu_tape_free(nlu_tape *t) {
    free(t->v);
    memset(t, 0, sizeof *t);
}

static void tape_push(nlu_ctx *c, at_val v) {
    nlu_tape *t = c->rec;
    if (!t || v == AT_NONE) return;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        at_val *nv = realloc(t->v, (size_t)cap * sizeof *nv);
        if (!nv) {
            at_graph_fail(c->g, AT_E_NOMEM, "random draws: out of memory");
            return;
        }
        t->v = nv;
        t->cap = cap;
    }
    t->v[t->n++] = v;
}

static at_val tape_next(nlu_ctx *c) {
    if (c->play_pos >= c->play->n) {
        at_graph_fail(c->g, AT_E_INTERNAL,
                      "a perturbed forward draws more random values than its clean forward (%d)",
                      c->play->n);
        return AT_NONE;
    }
    return c->play->v[c->play_pos++];
}

at_val nlu_dropout(nlu_ctx *c, at_val x) {
    at_graph *g = c->g;
    float r = c->cfg->dropout;
    if (r <= 0) return x;
    if (c->play) {
        at_val in[4] = {x, tape_next(c), at_const_f32(g, r), c->training}, y = AT_NONE;
        if (in[1] == AT_NONE) return AT_NONE;
        at_node_add(g, "DropoutGrad", AT_DOMAIN_ATTUNE, in, 4, &y, 1, NULL, 0);
        return y;
    }
    at_val mask = AT_NONE;
    at_val y = at_dropout(g, x, r, c->training, c->rec ? &mask : NULL);
    tape_push(c, mask);
    return y;
}

at_val nlu_gumbel(nlu_ctx *c, at_val x) {
    at_graph *g = c->g;
    if (c->play) return tape_next(c);
    /* u is a multiple of 2^-24 in [0, 1): clipped away from 0, -log(-log u) lies in
     * [-3.3, 16.7], and eval's zero factor never meets an infinity. */
    at_val u = at_clip(g, at_node1(g, "RandomUniformLike", &x, 1, NULL, 0), 1e-12f, 1.0f);
    at_val noise = at_neg(g, at_log(g, at_neg(g, at_log(g, u))));
    noise = at_mul(g, noise, at_cast(g, c->training, AT_F32));
    tape_push(c, noise);
    return noise;
}

/* log(1 + e^x) = relu(x) + log(1 + e^-|x|), finite for every x. */
at_val nlu_softplus(nlu_ctx *c, at_val x) {
    at_graph *g = c->g;
    at_val t = at_exp(g, at_neg(g, at_abs(g, x)));
    return at_add(g, at_relu(g, x), at_log(g, at_add(g, t, at_const_f32(g, 1.0f))));
}

at_val nlu_one_hot(nlu_ctx *c, at_val labels, int64_t n) {
    at_graph *g = c->g;
    int64_t *iota = malloc((size_t)n * sizeof *iota);
    if (!iota) {
        at_graph_fail(g, AT_E_NOMEM, "one-hot of %lld classes: out of memory", (long long)n);
        return AT_NONE;
    }
    for (int64_t i = 0; i < n; i++) iota[i] = i;
    at_val classes = at_const_i64s(g, (int)n, iota);
    free(iota);
    const int64_t last = at_value_shape(g, labels).rank;
    return at_cast(g, at_equal(g, at_unsqueeze(g, labels, 1, &last), classes), AT_F32);
}

at_val nlu_hard_one_hot(nlu_ctx *c, at_val probs) {
    at_graph *g = c->g;
    const int64_t last = -1;
    at_val top = at_reduce_max(g, probs, 1, &last, 1);
    return at_stop_gradient(g, at_cast(g, at_equal(g, probs, top), AT_F32));
}

at_val nlu_weighted_mean(nlu_ctx *c, at_val wx, at_val w) {
    at_graph *g = c->g;
    at_val den = at_clip(g, at_reduce_sum(g, w, 0, NULL, 0), 1.0f, 3e38f);
    return at_div(g, at_reduce_sum(g, wx, 0, NULL, 0), den);
}
