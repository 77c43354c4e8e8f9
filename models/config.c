/* The model config: defaults (DESIGN.md's starting hyperparameters), checks, and the
 * "key=value" text form stored in model files. One table drives set, to_string and
 * from_string, so a new field is one row. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attune/dataset.h"
#include "attune/nlu.h"
#include "graph/quote.h"

at_nlu_config at_nlu_config_default(void) {
    at_nlu_config c = {
        .encoder = AT_NLU_TRANSFORMER,
        .layers = 2,
        .emb_dim = 128,
        .d_model = 256,
        .heads = 4,
        .ffn_dim = 0,
        .max_positions = 128,
        .char_dim = 0,
        .char_channels = 64,
        .use_g = true,
        .g_dim = 128,
        .g_layers = 1,
        .g_heads = 4,
        .attn1 = AT_NLU_ATTN_ADDITIVE,
        .attn2 = AT_NLU_ATTN_ADDITIVE,
        .attn_dim = 128,
        .attn_heads = 4,
        .attn1_hard = false,
        .attn2_hard = false,
        .slot_gate = false,
        .crf = false,
        .adv = AT_NLU_ADV_GAN,
        .d_soft = false,
        .d_channels = 64,
        .d_widths = {3, 5},
        .n_d_widths = 2,
        .d_hidden = 64,
        .d_steps = 1,
        .reg_l1 = false,
        .beta = 0.01f,
        .lambda_max = 0.1f,
        .gamma = 10.0f,
        .dropout = 0.2f,
        .word_dropout = 0.0f,
        .word_min_count = 1,
        .max_words = 0,
        .batch = 32,
        .lr = 1e-3f,
        .weight_decay = 0.01f,
        .clip = 5.0f,
        .epochs = {20, 3, 10},
        .patience = 5,
        .select = AT_NLU_SELECT_SENTENCE,
        .label_fraction = 1.0f,
        .adv_train = AT_NLU_ADV_TRAIN_NONE,
        .adv_eps = 0.02f,
        .adv_alpha = 0.5f,
        .vat = false,
        .vat_eps = 1.0f,
        .vat_xi = 1e-3f,
        .vat_weight = 1.0f,
        .seed = 1,
    };
    return c;
}

static const char *const encoder_names[] = {"transformer", "bilstm", NULL};
static const char *const attn_names[] = {"additive",  "general",   "dot",          "scaled_dot",
                                         "multihead", "key_value", "neg_distance", NULL};
static const char *const adv_names[] = {"none", "gan", "grl", NULL};
static const char *const d_input_names[] = {"hard", "soft", NULL};
static const char *const reg_names[] = {"l2", "l1", NULL};
static const char *const select_names[] = {"sentence", "slot_f1", "intent", NULL};
static const char *const adv_train_names[] = {"none", "fgsm", NULL};

const char *at_nlu_attn_name(at_nlu_attn_kind k) {
    return (unsigned)k <= AT_NLU_ATTN_NEG_DISTANCE ? attn_names[k] : "?";
}

typedef enum kind { K_INT, K_I64, K_U64, K_FLOAT, K_BOOL, K_ENUM, K_EPOCHS, K_WIDTHS } kind;

typedef struct field {
    const char *key;
    kind k;
    size_t off;
    const char *const *names; /* K_ENUM (bool-as-enum for d_input / reg) */
    double lo, hi;            /* numeric range */
} field;

#define F(key, k, member, names, lo, hi)                                                           \
    { key, k, offsetof(at_nlu_config, member), names, lo, hi }
static const field fields[] = {
    F("encoder", K_ENUM, encoder, encoder_names, 0, 0),
    F("layers", K_INT, layers, NULL, 1, 8),
    F("emb_dim", K_INT, emb_dim, NULL, 1, 65536),
    F("d_model", K_INT, d_model, NULL, 2, 65536),
    F("heads", K_INT, heads, NULL, 1, 256),
    F("ffn_dim", K_INT, ffn_dim, NULL, 0, 1 << 20),
    F("max_positions", K_INT, max_positions, NULL, 1, AT_DATA_MAX_TOKENS),
    F("char_dim", K_INT, char_dim, NULL, 0, 4096),
    F("char_channels", K_INT, char_channels, NULL, 1, 4096),
    F("use_g", K_BOOL, use_g, NULL, 0, 0),
    F("g_dim", K_INT, g_dim, NULL, 1, 65536),
    F("g_layers", K_INT, g_layers, NULL, 0, 16),
    F("g_heads", K_INT, g_heads, NULL, 1, 256),
    F("attn1", K_ENUM, attn1, attn_names, 0, 0),
    F("attn2", K_ENUM, attn2, attn_names, 0, 0),
    F("attn_dim", K_INT, attn_dim, NULL, 1, 65536),
    F("attn_heads", K_INT, attn_heads, NULL, 1, 256),
    F("attn1_hard", K_BOOL, attn1_hard, NULL, 0, 0),
    F("attn2_hard", K_BOOL, attn2_hard, NULL, 0, 0),
    F("slot_gate", K_BOOL, slot_gate, NULL, 0, 0),
    F("crf", K_BOOL, crf, NULL, 0, 0),
    F("adv", K_ENUM, adv, adv_names, 0, 0),
    F("d_input", K_ENUM, d_soft, d_input_names, 0, 0),
    F("d_channels", K_INT, d_channels, NULL, 1, 65536),
    F("d_widths", K_WIDTHS, d_widths, NULL, 1, 31),
    F("d_hidden", K_INT, d_hidden, NULL, 1, 65536),
    F("d_steps", K_INT, d_steps, NULL, 1, 100),
    F("reg", K_ENUM, reg_l1, reg_names, 0, 0),
    F("beta", K_FLOAT, beta, NULL, 0, 1e6),
    F("lambda_max", K_FLOAT, lambda_max, NULL, 0, 1e6),
    F("gamma", K_FLOAT, gamma, NULL, 0, 1e6),
    F("dropout", K_FLOAT, dropout, NULL, 0, 0.95),
    F("word_dropout", K_FLOAT, word_dropout, NULL, 0, 0.95),
    F("word_min_count", K_I64, word_min_count, NULL, 0, 1e12),
    F("max_words", K_I64, max_words, NULL, 0, 1e12),
    F("batch", K_INT, batch, NULL, 1, 1 << 16),
    F("lr", K_FLOAT, lr, NULL, 0, 10),
    F("weight_decay", K_FLOAT, weight_decay, NULL, 0, 10),
    F("clip", K_FLOAT, clip, NULL, 0, 1e9),
    F("epochs", K_EPOCHS, epochs, NULL, 0, 100000),
    F("patience", K_INT, patience, NULL, 0, 100000),
    F("select", K_ENUM, select, select_names, 0, 0),
    F("label_fraction", K_FLOAT, label_fraction, NULL, 0, 1),
    F("adv_train", K_ENUM, adv_train, adv_train_names, 0, 0),
    F("adv_eps", K_FLOAT, adv_eps, NULL, 0, 1e3),
    F("adv_alpha", K_FLOAT, adv_alpha, NULL, 0, 1),
    F("vat", K_BOOL, vat, NULL, 0, 0),
    F("vat_eps", K_FLOAT, vat_eps, NULL, 0, 1e3),
    F("vat_xi", K_FLOAT, vat_xi, NULL, 1e-9, 1e3),
    F("vat_weight", K_FLOAT, vat_weight, NULL, 0, 1e6),
    F("seed", K_U64, seed, NULL, 0, 0),
};
#undef F
enum { N_FIELDS = sizeof fields / sizeof *fields };

/* Enums and bools are stored as int / bool; d_input and reg are bools named by a list. */
static bool is_bool_member(const field *f) {
    return f->k == K_BOOL || f->off == offsetof(at_nlu_config, d_soft) ||
           f->off == offsetof(at_nlu_config, reg_l1);
}

/* Equal ignoring '-' and '_' ("multi-head" is "multihead", "scaled-dot" is "scaled_dot"). */
static bool same_name(const char *a, const char *b) {
    for (;;) {
        while (*a == '-' || *a == '_') a++;
        while (*b == '-' || *b == '_') b++;
        if (*a != *b) return false;
        if (!*a) return true;
        a++, b++;
    }
}

static bool parse_i64(const char *s, long long *v) {
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return *s && !*end && !errno;
}

static at_status set_field(at_nlu_config *c, const field *f, const char *v, at_err *e) {
    char *base = (char *)c + f->off;
    char q[AT_QUOTE_CAP]; /* v in messages: it may come from a file */
    long long iv;
    switch (f->k) {
    case K_INT:
    case K_I64:
        if (!parse_i64(v, &iv) || iv < f->lo || iv > f->hi)
            return at_err_set(e, AT_E_INVALID, "config %s: '%s' is not an integer in [%g, %g]",
                              f->key, at_quote(q, v), f->lo, f->hi);
        if (f->k == K_INT)
            *(int *)base = (int)iv;
        else
            *(int64_t *)base = iv;
        return AT_OK;
    case K_U64: {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(v, &end, 10);
        if (!*v || *end || errno || *v == '-')
            return at_err_set(e, AT_E_INVALID, "config %s: '%s' is not an unsigned integer", f->key,
                              at_quote(q, v));
        *(uint64_t *)base = u;
        return AT_OK;
    }
    case K_FLOAT: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d) || d < f->lo || d > f->hi)
            return at_err_set(e, AT_E_INVALID, "config %s: '%s' is not a number in [%g, %g]",
                              f->key, at_quote(q, v), f->lo, f->hi);
        *(float *)base = (float)d;
        return AT_OK;
    }
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "on"))
            *(bool *)base = true;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "off"))
            *(bool *)base = false;
        else
            return at_err_set(e, AT_E_INVALID, "config %s: '%s' is not true or false", f->key,
                              at_quote(q, v));
        return AT_OK;
    case K_ENUM: {
        const char *w = v;
        if (f->names == attn_names && !strcmp(v, "multiplicative")) w = "general";
        for (int i = 0; f->names[i]; i++) {
            if (!same_name(f->names[i], w)) continue;
            if (is_bool_member(f))
                *(bool *)base = i != 0;
            else
                *(int *)base = i;
            return AT_OK;
        }
        char list[160] = "";
        for (int i = 0; f->names[i]; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, f->names[i], sizeof list - strlen(list) - 1);
        }
        return at_err_set(e, AT_E_INVALID, "config %s: '%s' is not one of %s", f->key,
                          at_quote(q, v), list);
    }
    case K_EPOCHS: {
        int ep[3];
        const char *p = v;
        for (int i = 0; i < 3; i++) {
            char *end;
            errno = 0;
            long x = strtol(p, &end, 10);
            if (end == p || errno || x < 0 || x > f->hi || (i < 2 && *end != ',') ||
                (i == 2 && *end))
                return at_err_set(e, AT_E_INVALID,
                                  "config epochs: '%s' is not three counts like 20,3,10",
                                  at_quote(q, v));
            ep[i] = (int)x;
            p = end + 1;
        }
        memcpy(base, ep, sizeof ep);
        return AT_OK;
    }
    case K_WIDTHS: {
        int w[4], n = 0;
        for (const char *p = v;; n++) {
            char *end;
            errno = 0;
            long x = strtol(p, &end, 10);
            if (n == 4 || end == p || errno || x < f->lo || x > f->hi || x % 2 == 0 ||
                (*end && *end != ','))
                return at_err_set(e, AT_E_INVALID,
                                  "config d_widths: '%s' is not 1 to 4 odd widths like 3,5",
                                  at_quote(q, v));
            w[n] = (int)x;
            if (!*end) break;
            p = end + 1;
        }
        memcpy(base, w, sizeof w);
        c->n_d_widths = n + 1;
        return AT_OK;
    }
    }
    return AT_E_INTERNAL;
}

at_status at_nlu_config_set(at_nlu_config *c, const char *key, const char *value, at_err *e) {
    if (!c || !key || !value) return at_err_set(e, AT_E_INVALID, "config: NULL argument");
    for (int i = 0; i < N_FIELDS; i++)
        if (!strcmp(fields[i].key, key)) return set_field(c, &fields[i], value, e);
    char q[AT_QUOTE_CAP];
    return at_err_set(e, AT_E_INVALID, "config: unknown key '%s'", at_quote(q, key));
}

static int format_field(const at_nlu_config *c, const field *f, char *buf, size_t cap) {
    const char *base = (const char *)c + f->off;
    switch (f->k) {
    case K_INT:
        return snprintf(buf, cap, "%s=%d\n", f->key, *(const int *)base);
    case K_I64:
        return snprintf(buf, cap, "%s=%lld\n", f->key, (long long)*(const int64_t *)base);
    case K_U64:
        return snprintf(buf, cap, "%s=%llu\n", f->key, (unsigned long long)*(const uint64_t *)base);
    case K_FLOAT:
        return snprintf(buf, cap, "%s=%.9g\n", f->key, (double)*(const float *)base);
    case K_BOOL:
        return snprintf(buf, cap, "%s=%s\n", f->key, *(const bool *)base ? "true" : "false");
    case K_ENUM: {
        int i = is_bool_member(f) ? (int)*(const bool *)base : *(const int *)base;
        return snprintf(buf, cap, "%s=%s\n", f->key, f->names[i]);
    }
    case K_EPOCHS: {
        const int *ep = (const int *)base;
        return snprintf(buf, cap, "%s=%d,%d,%d\n", f->key, ep[0], ep[1], ep[2]);
    }
    case K_WIDTHS: {
        int k = snprintf(buf, cap, "%s=", f->key);
        for (int i = 0; i < c->n_d_widths && i < 4 && k >= 0 && (size_t)k < cap; i++)
            k += snprintf(buf + k, cap - (size_t)k, "%s%d", i ? "," : "", ((const int *)base)[i]);
        if (k >= 0 && (size_t)k < cap) k += snprintf(buf + k, cap - (size_t)k, "\n");
        return k;
    }
    }
    return 0;
}

at_status at_nlu_config_to_string(const at_nlu_config *c, char **out, at_err *e) {
    size_t cap = 64 * N_FIELDS, len = 0;
    char *s = malloc(cap);
    if (!s) return at_err_set(e, AT_E_NOMEM, "config: out of memory");
    for (int i = 0; i < N_FIELDS; i++) {
        int k = format_field(c, &fields[i], s + len, cap - len);
        if (k < 0 || (size_t)k >= cap - len) {
            free(s);
            return at_err_set(e, AT_E_INTERNAL, "config: text form too long");
        }
        len += (size_t)k;
    }
    *out = s;
    return AT_OK;
}

at_status at_nlu_config_from_string(at_nlu_config *c, const char *text, at_err *e) {
    if (!c || !text) return at_err_set(e, AT_E_INVALID, "config: NULL argument");
    at_nlu_config r = at_nlu_config_default();
    int line = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        line++;
        char buf[256];
        if (n >= sizeof buf) return at_err_set(e, AT_E_FORMAT, "config line %d: too long", line);
        memcpy(buf, p, n);
        buf[n] = 0;
        p += n + (nl ? 1 : 0);
        if (n && buf[n - 1] == '\r') buf[--n] = 0;
        if (!n || buf[0] == '#') continue;
        char *eq = strchr(buf, '=');
        char q[AT_QUOTE_CAP];
        if (!eq)
            return at_err_set(e, AT_E_FORMAT, "config line %d: no '=' in '%s'", line,
                              at_quote(q, buf));
        *eq = 0;
        at_status st = at_nlu_config_set(&r, buf, eq + 1, e);
        if (st) return st;
    }
    at_status st = at_nlu_config_check(&r, e);
    if (st) return st;
    *c = r;
    return AT_OK;
}

at_status at_nlu_config_check(const at_nlu_config *c, at_err *e) {
    char *text;
    /* Ranges: a round trip through the setters checks every field. */
    at_status st = at_nlu_config_to_string(c, &text, e);
    if (st) return st;
    at_nlu_config tmp = at_nlu_config_default();
    for (char *p = text; *p && !st;) {
        char *nl = strchr(p, '\n'), *eq = strchr(p, '=');
        *nl = *eq = 0;
        st = at_nlu_config_set(&tmp, p, eq + 1, e);
        p = nl + 1;
    }
    free(text);
    if (st) return st;
    if (c->n_d_widths < 1 || c->n_d_widths > 4)
        return at_err_set(e, AT_E_INVALID, "config: n_d_widths %d is not in 1..4", c->n_d_widths);
    if ((unsigned)c->encoder > AT_NLU_BILSTM || (unsigned)c->attn1 > AT_NLU_ATTN_NEG_DISTANCE ||
        (unsigned)c->attn2 > AT_NLU_ATTN_NEG_DISTANCE || (unsigned)c->adv > AT_NLU_ADV_GRL ||
        (unsigned)c->select > AT_NLU_SELECT_INTENT ||
        (unsigned)c->adv_train > AT_NLU_ADV_TRAIN_FGSM)
        return at_err_set(e, AT_E_INVALID, "config: an enum field is out of range");
    if (c->encoder == AT_NLU_TRANSFORMER && c->d_model % c->heads)
        return at_err_set(e, AT_E_INVALID, "config: d_model %d is not divisible by heads %d",
                          c->d_model, c->heads);
    if (c->encoder == AT_NLU_BILSTM && c->d_model % 2)
        return at_err_set(e, AT_E_INVALID, "config: bilstm needs an even d_model, got %d",
                          c->d_model);
    if (c->use_g && c->g_layers > 0 && c->g_dim % c->g_heads)
        return at_err_set(e, AT_E_INVALID, "config: g_dim %d is not divisible by g_heads %d",
                          c->g_dim, c->g_heads);
    at_nlu_attn_kind a[2] = {c->attn1, c->attn2};
    for (int i = 0; i < 2; i++) {
        if (a[i] == AT_NLU_ATTN_MULTIHEAD && c->d_model % c->attn_heads)
            return at_err_set(e, AT_E_INVALID,
                              "config: attn%d multihead: d_model %d is not divisible by "
                              "attn_heads %d",
                              i + 1, c->d_model, c->attn_heads);
        if (a[i] == AT_NLU_ATTN_KEY_VALUE && c->d_model % 2)
            return at_err_set(e, AT_E_INVALID, "config: attn%d key_value needs an even d_model",
                              i + 1);
    }
    return AT_OK;
}

float at_nlu_lambda(const at_nlu_config *c, double p) {
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    return (float)(c->lambda_max * (2.0 / (1.0 + exp(-c->gamma * p)) - 1.0));
}
