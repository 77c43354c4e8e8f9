/* The model object: config, vocabularies, graph and session; model files. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
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
    nlu_train_state ts;
};

static const char *const meta_vocab_keys[4] = {"attune.nlu.words", "attune.nlu.chars",
                                               "attune.nlu.slots", "attune.nlu.intents"};
#define META_CONFIG      "attune.nlu.config"
#define META_TRAIN_STATE "attune.nlu.train_state"
#define BEST_PREFIX      "attune.best/"

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
    nlu_train_state_clear(&m->ts);
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

at_status nlu_model_check_finite(at_nlu_model *m, bool on, at_err *e) {
    uint64_t step = m->sess ? at_session_step(m->sess) : 0;
    at_session_opts o = m->sess_opts;
    o.check_finite = on;
    at_status st = at_nlu_model_set_session(m, &o, e);
    if (!st) at_session_set_step(m->sess, step);
    return st;
}

bool nlu_model_checks_finite(const at_nlu_model *m) {
    return m->sess_opts.check_finite;
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

/* ---- the training state in a checkpoint ----
 * Scalars go into one metadata entry as "key=value" lines (doubles with 17 digits, so they
 * read back bit-exact); the best parameters so far as initializers named BEST_PREFIX + the
 * parameter's name. */

nlu_train_state *nlu_model_train_state(at_nlu_model *m) {
    return &m->ts;
}

void nlu_train_state_clear(nlu_train_state *ts) {
    free(ts->best);
    memset(ts, 0, sizeof *ts);
}

typedef enum field_kind { F_INT, F_I64, F_U64, F_BOOL, F_F64, F_F32 } field_kind;
typedef struct field {
    char name[32];
    field_kind kind;
    void *p;
} field;

enum { MAX_FIELDS = 64 };

static int state_fields(nlu_train_state *ts, field *f) {
    int n = 0;
#define F(nm, k, ptr) f[n++] = (field){nm, k, ptr}
    F("phase", F_INT, &ts->phase);
    F("epoch", F_INT, &ts->epoch);
    F("batch", F_I64, &ts->batch);
    F("epoch_done", F_BOOL, &ts->epoch_done);
    F("done", F_I64, &ts->done);
    F("global", F_I64, &ts->global);
    F("sess_step", F_U64, &ts->sess_step);
    F("lambda", F_F32, &ts->lambda);
    for (int i = 0; i < NLU_LOSSES; i++) {
        f[n] = (field){"", F_F64, &ts->loss_sum[i]};
        snprintf(f[n++].name, sizeof f->name, "loss_sum%d", i);
        f[n] = (field){"", F_I64, &ts->loss_cnt[i]};
        snprintf(f[n++].name, sizeof f->name, "loss_cnt%d", i);
    }
    F("next_unl", F_INT, &ts->next_unl);
    for (int i = 0; i < NLU_MAX_UNL; i++) {
        f[n] = (field){"", F_I64, &ts->unl_next[i]};
        snprintf(f[n++].name, sizeof f->name, "unl_next%d", i);
        f[n] = (field){"", F_I64, &ts->unl_round[i]};
        snprintf(f[n++].name, sizeof f->name, "unl_round%d", i);
    }
    F("bad_epochs", F_INT, &ts->bad_epochs);
    F("have_best", F_BOOL, &ts->have_best);
    F("best_phase", F_INT, &ts->best_phase);
    F("best_epoch", F_INT, &ts->best_epoch);
    at_metrics_summary *b = &ts->best_sum;
    F("best.sentences", F_I64, &b->sentences);
    F("best.intents", F_I64, &b->intents);
    F("best.intent_correct", F_I64, &b->intent_correct);
    F("best.sentence_correct", F_I64, &b->sentence_correct);
    F("best.tokens", F_I64, &b->tokens);
    F("best.token_correct", F_I64, &b->token_correct);
    F("best.intent_acc", F_F64, &b->intent_acc);
    F("best.sentence_acc", F_F64, &b->sentence_acc);
    F("best.token_acc", F_F64, &b->token_acc);
    F("best.slots.gold", F_I64, &b->slots.gold);
    F("best.slots.pred", F_I64, &b->slots.pred);
    F("best.slots.correct", F_I64, &b->slots.correct);
    F("best.slots.precision", F_F64, &b->slots.precision);
    F("best.slots.recall", F_F64, &b->slots.recall);
    F("best.slots.f1", F_F64, &b->slots.f1);
#undef F
    return n;
}

static int field_print(const field *f, char *buf, size_t cap) {
    switch (f->kind) {
    case F_INT:
        return snprintf(buf, cap, "%s=%d\n", f->name, *(int *)f->p);
    case F_I64:
        return snprintf(buf, cap, "%s=%" PRId64 "\n", f->name, *(int64_t *)f->p);
    case F_U64:
        return snprintf(buf, cap, "%s=%" PRIu64 "\n", f->name, *(uint64_t *)f->p);
    case F_BOOL:
        return snprintf(buf, cap, "%s=%d\n", f->name, *(bool *)f->p ? 1 : 0);
    case F_F64:
        return snprintf(buf, cap, "%s=%.17g\n", f->name, *(double *)f->p);
    case F_F32:
        return snprintf(buf, cap, "%s=%.9g\n", f->name, (double)*(float *)f->p);
    }
    return 0;
}

static char *state_to_text(nlu_train_state *ts) {
    field f[MAX_FIELDS];
    int n = state_fields(ts, f);
    size_t cap = (size_t)n * 64, len = 0;
    char *text = malloc(cap);
    for (int i = 0; text && i < n; i++) len += (size_t)field_print(&f[i], text + len, cap - len);
    return text;
}

/* Parses one value; false when it is not a whole number of the field's kind. */
static bool field_parse(const field *f, const char *v) {
    char *end = NULL;
    errno = 0;
    if (f->kind == F_F64 || f->kind == F_F32) {
        double d = strtod(v, &end);
        if (f->kind == F_F64)
            *(double *)f->p = d;
        else
            *(float *)f->p = (float)d;
    } else if (f->kind == F_U64) {
        *(uint64_t *)f->p = strtoull(v, &end, 10);
    } else {
        long long x = strtoll(v, &end, 10);
        if (f->kind == F_I64) *(int64_t *)f->p = x;
        if (f->kind == F_INT) {
            if (x < -2147483647LL || x > 2147483647LL) return false;
            *(int *)f->p = (int)x;
        }
        if (f->kind == F_BOOL) {
            if (x != 0 && x != 1) return false;
            *(bool *)f->p = x == 1;
        }
    }
    return errno == 0 && end != v && (*end == '\n' || *end == 0);
}

static at_status state_from_text(nlu_train_state *ts, const char *text, const char *path,
                                 at_err *e) {
    field f[MAX_FIELDS];
    int n = state_fields(ts, f);
    bool seen[MAX_FIELDS] = {false};
    for (const char *line = text; *line;) {
        const char *eq = strchr(line, '='), *nl = strchr(line, '\n');
        if (!nl) nl = line + strlen(line);
        int k = -1;
        for (int i = 0; eq && eq < nl && i < n && k < 0; i++)
            if (strlen(f[i].name) == (size_t)(eq - line) &&
                !memcmp(f[i].name, line, (size_t)(eq - line)))
                k = i;
        if (k < 0 || !field_parse(&f[k], eq + 1))
            return at_err_set(e, AT_E_FORMAT, "%s: training state: bad line '%.*s'", path,
                              (int)(nl - line > 60 ? 60 : nl - line), line);
        seen[k] = true;
        line = *nl ? nl + 1 : nl;
    }
    for (int i = 0; i < n; i++)
        if (!seen[i])
            return at_err_set(e, AT_E_FORMAT, "%s: training state: '%s' is missing", path,
                              f[i].name);
    if (ts->phase < 0 || ts->phase > 2 || ts->epoch < 0 || ts->batch < 0 || ts->done < 0 ||
        ts->global < 0 || ts->next_unl < 0 || ts->next_unl >= NLU_MAX_UNL)
        return at_err_set(e, AT_E_FORMAT, "%s: training state out of range", path);
    ts->valid = true;
    return AT_OK;
}

/* g's parameters in at_graph_params order with their total size. */
static at_val *params_of(const at_graph *g, int *n, int64_t *numel) {
    at_val dummy;
    *n = at_graph_params(g, ~0u, &dummy, 0);
    at_val *p = malloc((size_t)(*n ? *n : 1) * sizeof *p);
    if (!p) return NULL;
    at_graph_params(g, ~0u, p, *n);
    *numel = 0;
    for (int i = 0; i < *n; i++) {
        at_shape sh = at_value_shape(g, p[i]);
        *numel += at_shape_numel(&sh);
    }
    return p;
}

at_status nlu_best_copy(at_nlu_model *m, bool save, at_err *e) {
    int n = 0;
    int64_t numel = 0;
    at_val *p = params_of(m->g, &n, &numel);
    nlu_train_state *ts = &m->ts;
    if (p && save && (!ts->best || ts->best_numel != numel)) {
        free(ts->best);
        ts->best_numel = numel;
        ts->best = malloc((size_t)(numel ? numel : 1) * sizeof *ts->best);
    }
    if (!p || !ts->best || ts->best_numel != numel) {
        free(p);
        return at_err_set(e, AT_E_NOMEM, "training: out of memory");
    }
    float *d = ts->best;
    for (int i = 0; i < n; i++) {
        at_shape sh = at_value_shape(m->g, p[i]);
        size_t k = (size_t)at_shape_numel(&sh) * sizeof *d;
        if (save)
            memcpy(d, at_value_data(m->g, p[i]), k);
        else
            memcpy(at_value_data(m->g, p[i]), d, k);
        d += at_shape_numel(&sh);
    }
    free(p);
    return AT_OK;
}

/* A copy of m's graph with the training state added, for a checkpoint. */
static at_graph *with_state(at_nlu_model *m, at_err *e) {
    at_graph *c = at_graph_clone(m->g);
    char *text = state_to_text(&m->ts);
    at_status st = c && text ? at_graph_set_meta(c, META_TRAIN_STATE, text) : AT_E_NOMEM;
    free(text);
    int n = 0;
    int64_t numel = 0;
    at_val *p = !st && m->ts.have_best && m->ts.best ? params_of(m->g, &n, &numel) : NULL;
    if (!st && m->ts.have_best && m->ts.best && (!p || numel != m->ts.best_numel))
        st = AT_E_INVALID;
    const float *d = m->ts.best;
    char name[1024];
    for (int i = 0; !st && p && i < n; i++) {
        at_shape sh = at_value_shape(m->g, p[i]);
        snprintf(name, sizeof name, BEST_PREFIX "%s", at_value_name(m->g, p[i]));
        if (at_const(c, name, AT_F32, sh, d) == AT_NONE) st = at_graph_status(c);
        d += at_shape_numel(&sh);
    }
    free(p);
    if (st) {
        at_err_set(e, st ? st : AT_E_NOMEM, "checkpoint: %s",
                   c && at_graph_status(c) ? at_graph_error(c) : "out of memory");
        at_graph_free(c);
        return NULL;
    }
    return c;
}

/* Reads the training state (if src has one) into m. */
static at_status read_state(at_nlu_model *m, const at_graph *src, const char *path, at_err *e) {
    const char *text = at_graph_meta(src, META_TRAIN_STATE);
    if (!text) return AT_OK;
    nlu_train_state *ts = &m->ts;
    nlu_train_state_clear(ts);
    at_status st = state_from_text(ts, text, path, e);
    if (st || !ts->have_best) return st;
    int n = 0;
    at_val *p = params_of(m->g, &n, &ts->best_numel);
    ts->best = malloc((size_t)(ts->best_numel ? ts->best_numel : 1) * sizeof *ts->best);
    if (!p || !ts->best) {
        free(p);
        return at_err_set(e, AT_E_NOMEM, "%s: out of memory", path);
    }
    float *d = ts->best;
    char name[1024];
    for (int i = 0; !st && i < n; i++) {
        at_shape sh = at_value_shape(m->g, p[i]);
        snprintf(name, sizeof name, BEST_PREFIX "%s", at_value_name(m->g, p[i]));
        at_val q = at_graph_find(src, name);
        at_shape qs;
        if (q != AT_NONE) qs = at_value_shape(src, q);
        if (q == AT_NONE || !at_value_data(src, q) || at_value_dtype(src, q) != AT_F32 ||
            !at_shape_equal(&sh, &qs))
            st = at_err_set(e, AT_E_FORMAT, "%s: the best-model copy of '%s' is missing", path,
                            at_value_name(m->g, p[i]));
        else
            memcpy(d, at_value_data(src, q), (size_t)at_shape_numel(&sh) * sizeof *d);
        d += at_shape_numel(&sh);
    }
    free(p);
    if (st) nlu_train_state_clear(ts);
    return st;
}

at_status at_nlu_checkpoint_save(at_nlu_model *m, const at_checkpoint_info *info, const char *path,
                                 at_err *e) {
    at_status st = sync(m, path, e);
    if (st) return st;
    if (!m->ts.valid) return at_checkpoint_save(m->g, info, path, e);
    if (m->sess) m->ts.sess_step = at_session_step(m->sess); /* evaluation runs count too */
    at_graph *c = with_state(m, e);
    if (!c) return e && e->code ? e->code : AT_E_NOMEM;
    st = at_checkpoint_save(c, info, path, e);
    at_graph_free(c);
    return st;
}

at_status at_nlu_checkpoint_load(at_nlu_model **out, at_checkpoint_info *info, const char *path,
                                 at_err *e) {
    *out = NULL;
    at_graph *src = at_checkpoint_load(path, info, e);
    if (!src) return e && e->code ? e->code : AT_E_IO;
    at_status st = from_graph(out, src, true, path, e);
    if (!st) st = read_state(*out, src, path, e);
    if (st) {
        at_nlu_model_free(*out);
        *out = NULL;
    }
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
