/* The model object: config, vocabularies, graph and session; model files. */
#include <stdlib.h>
#include <string.h>

#include "attune/dataset.h"
#include "attune/io.h"
#include "attune/session.h"
#include "models/nlu_model.h"

struct at_nlu_model {
    at_nlu_config cfg;
    at_nlu_vocab vocab;
    at_graph *g;
    at_nlu_net net;
    at_session *sess;
    at_session_opts sess_opts;
};

static const char *const meta_vocab_keys[4] = {"attune.nlu.words", "attune.nlu.chars",
                                               "attune.nlu.slots", "attune.nlu.intents"};
#define META_CONFIG "attune.nlu.config"

static at_status set_meta(at_nlu_model *m, at_err *e) {
    char *text = NULL;
    at_status st = at_nlu_config_to_string(&m->cfg, &text, e);
    if (!st) st = at_graph_set_meta(m->g, META_CONFIG, text);
    free(text);
    at_vocab *v[4] = {m->vocab.words, m->vocab.chars, m->vocab.slots, m->vocab.intents};
    for (int i = 0; i < 4 && !st; i++) {
        if (!v[i]) continue;
        text = NULL;
        st = at_vocab_to_string(v[i], &text, NULL, e);
        if (!st) st = at_graph_set_meta(m->g, meta_vocab_keys[i], text);
        free(text);
    }
    if (st && e && !e->msg[0]) at_err_set(e, st, "model metadata: %s", at_graph_error(m->g));
    return st;
}

at_status at_nlu_model_new(at_nlu_model **out, const at_nlu_config *cfg, at_nlu_vocab *vocab,
                           at_err *e) {
    *out = NULL;
    at_status st = at_nlu_config_check(cfg, e);
    if (st) return st;
    if (!vocab->words || !vocab->slots || !vocab->intents || at_vocab_size(vocab->words) < 2 ||
        at_vocab_size(vocab->slots) < 1 || at_vocab_size(vocab->intents) < 1)
        return at_err_set(e, AT_E_INVALID, "model: empty vocabularies (words, slots or intents)");
    if (cfg->char_dim > 0 && (!vocab->chars || at_vocab_size(vocab->chars) < 2))
        return at_err_set(e, AT_E_INVALID, "model: char_dim > 0 needs a character vocabulary");
    at_nlu_model *m = calloc(1, sizeof *m);
    if (!m) return at_err_set(e, AT_E_NOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->vocab = *vocab;
    m->sess_opts = at_session_defaults();
    nlu_sizes sz = {at_vocab_size(vocab->words), vocab->chars ? at_vocab_size(vocab->chars) : 0,
                    at_vocab_size(vocab->slots), at_vocab_size(vocab->intents)};
    m->g = at_graph_new();
    st = m->g ? nlu_build(m->g, cfg, &sz, &m->net) : AT_E_NOMEM;
    if (st) {
        at_err_set(e, st, "building the model: %s", m->g ? at_graph_error(m->g) : "out of memory");
    } else {
        st = set_meta(m, e);
    }
    if (st) {
        memset(&m->vocab, 0, sizeof m->vocab); /* the caller keeps its vocabularies on error */
        at_nlu_model_free(m);
        return st;
    }
    memset(vocab, 0, sizeof *vocab);
    *out = m;
    return AT_OK;
}

at_status at_nlu_model_from_split(at_nlu_model **out, const at_nlu_config *cfg,
                                  const at_split *train, at_err *e) {
    at_nlu_vocab v = {0};
    at_vocab_opts o = {.word_min_count = cfg->word_min_count, .max_words = cfg->max_words};
    at_status st = at_nlu_vocab_build(&v, train, &o, e);
    if (!st) st = at_nlu_model_new(out, cfg, &v, e);
    at_nlu_vocab_free(&v);
    return st;
}

void at_nlu_model_free(at_nlu_model *m) {
    if (!m) return;
    at_session_free(m->sess);
    nlu_net_free(&m->net);
    at_graph_free(m->g);
    at_nlu_vocab_free(&m->vocab);
    free(m);
}

const at_nlu_config *at_nlu_model_config(const at_nlu_model *m) {
    return &m->cfg;
}
const at_nlu_vocab *at_nlu_model_vocab(const at_nlu_model *m) {
    return &m->vocab;
}
at_graph *at_nlu_model_graph(at_nlu_model *m) {
    return m->g;
}
const at_nlu_net *at_nlu_model_net(const at_nlu_model *m) {
    return &m->net;
}

int64_t at_nlu_model_num_params(const at_nlu_model *m, uint32_t group_mask) {
    at_val dummy;
    int n = at_graph_params(m->g, group_mask, &dummy, 0);
    at_val *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    if (!p) return -1;
    at_graph_params(m->g, group_mask, p, n);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        at_shape s = at_value_shape(m->g, p[i]);
        total += at_shape_numel(&s);
    }
    free(p);
    return total;
}

at_status at_nlu_model_set_session(at_nlu_model *m, const at_session_opts *opts, at_err *e) {
    if (m->sess) at_session_sync(m->sess);
    at_session_free(m->sess);
    m->sess = NULL;
    m->sess_opts = opts ? *opts : at_session_defaults();
    m->sess = at_session_new(m->g, &m->sess_opts, e);
    return m->sess ? AT_OK : (e && e->code ? e->code : AT_E_INVALID);
}

at_session *at_nlu_model_session(at_nlu_model *m, at_err *e) {
    if (!m->sess) m->sess = at_session_new(m->g, &m->sess_opts, e);
    return m->sess;
}

at_status nlu_model_params_changed(at_nlu_model *m, at_err *e) {
    if (!m->sess || m->sess_opts.device == AT_DEVICE_CPU) return AT_OK;
    uint64_t step = at_session_step(m->sess);
    at_session_free(m->sess);
    m->sess = at_session_new(m->g, &m->sess_opts, e);
    if (!m->sess) return e && e->code ? e->code : AT_E_DEVICE;
    at_session_set_step(m->sess, step); /* the dropout stream goes on */
    return AT_OK;
}

/* Copies every parameter (and with state, every optimizer state value) of m from src by
 * name; shapes must match. A model file has no discriminator (inference does not need it):
 * D keeps its fresh initialization then. */
static at_status copy_values(at_nlu_model *m, const at_graph *src, bool state, const char *path,
                             at_err *e) {
    for (at_val v = 0; v < at_graph_num_values(m->g); v++) {
        at_value_kind k = at_value_kind_of(m->g, v);
        if (k != AT_VALUE_PARAM && !(state && k == AT_VALUE_STATE)) continue;
        const char *name = at_value_name(m->g, v);
        at_val q = at_graph_find(src, name);
        if (q == AT_NONE && !state && at_value_group(m->g, v) == AT_NLU_G_DISCRIMINATOR) continue;
        at_shape a = at_value_shape(m->g, v), b;
        if (q != AT_NONE) b = at_value_shape(src, q);
        if (q == AT_NONE || !at_value_data(src, q) || !at_shape_equal(&a, &b) ||
            at_value_dtype(src, q) != at_value_dtype(m->g, v))
            return at_err_set(e, AT_E_FORMAT, "%s: '%s' is missing or has another type", path,
                              name);
        memcpy(at_value_data(m->g, v), at_value_data(src, q),
               (size_t)at_shape_numel(&a) * at_dtype_size(at_value_dtype(m->g, v)));
    }
    return AT_OK;
}

/* A model rebuilt from the config and vocabularies in src's metadata, with src's values. */
static at_status from_graph(at_nlu_model **out, const at_graph *src, bool state, const char *path,
                            at_err *e) {
    at_nlu_config cfg = at_nlu_config_default();
    at_nlu_vocab v = {0};
    at_vocab **slot[4] = {&v.words, &v.chars, &v.slots, &v.intents};
    const char *text = at_graph_meta(src, META_CONFIG);
    at_status st = text ? at_nlu_config_from_string(&cfg, text, e)
                        : at_err_set(e, AT_E_FORMAT, "%s: not an NLU model (no %s metadata)", path,
                                     META_CONFIG);
    for (int i = 0; i < 4 && !st; i++) {
        text = at_graph_meta(src, meta_vocab_keys[i]);
        if (!text && i == 1) continue; /* characters are optional */
        st = text ? at_vocab_from_string(slot[i], text, e)
                  : at_err_set(e, AT_E_FORMAT, "%s: no %s metadata", path, meta_vocab_keys[i]);
    }
    at_nlu_model *m = NULL;
    if (!st) st = at_nlu_model_new(&m, &cfg, &v, e);
    if (!st) st = copy_values(m, src, state, path, e);
    at_nlu_vocab_free(&v);
    if (st) {
        at_nlu_model_free(m);
        return st;
    }
    *out = m;
    return AT_OK;
}

static at_status sync(at_nlu_model *m, const char *path, at_err *e) {
    at_status st = m->sess ? at_session_sync(m->sess) : AT_OK;
    return st ? at_err_set(e, st, "saving %s: %s", path, at_session_error(m->sess)) : AT_OK;
}

at_status at_nlu_save(at_nlu_model *m, const char *path, at_err *e) {
    at_status st = sync(m, path, e);
    return st ? st : at_model_save(m->g, path, e);
}

at_status at_nlu_checkpoint_save(at_nlu_model *m, const at_checkpoint_info *info, const char *path,
                                 at_err *e) {
    at_status st = sync(m, path, e);
    return st ? st : at_checkpoint_save(m->g, info, path, e);
}

at_status at_nlu_checkpoint_load(at_nlu_model **out, at_checkpoint_info *info, const char *path,
                                 at_err *e) {
    *out = NULL;
    at_graph *src = at_checkpoint_load(path, info, e);
    if (!src) return e && e->code ? e->code : AT_E_IO;
    at_status st = from_graph(out, src, true, path, e);
    at_graph_free(src);
    return st;
}

at_status at_nlu_load(at_nlu_model **out, const char *path, at_err *e) {
    *out = NULL;
    at_graph *src = at_graph_load(path, e);
    if (!src) return e && e->code ? e->code : AT_E_IO;
    at_status st = from_graph(out, src, false, path, e);
    at_graph_free(src);
    return st;
}
