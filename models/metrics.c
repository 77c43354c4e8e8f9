/* Intent accuracy, conlleval slot F1, token and sentence accuracy. */
#include "attune/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* conlleval's chunk rules. */

typedef struct tag {
    const char *pre; /* prefix, not NUL-terminated: plen bytes */
    size_t plen;
    const char *type; /* NUL-terminated suffix of the tag */
} tag;

static const tag TAG_O = {"O", 1, ""};

static tag parse_tag(const char *s) {
    const char *dash = strchr(s, '-');
    if (!dash) return (tag){s, strlen(s), ""};
    return (tag){s, (size_t)(dash - s), dash + 1};
}

static bool pre_is(const tag *t, const char *lit) {
    return t->plen == strlen(lit) && memcmp(t->pre, lit, t->plen) == 0;
}

static bool end_of_chunk(const tag *prev, const tag *cur) {
    if ((pre_is(prev, "B") || pre_is(prev, "I")) && (pre_is(cur, "B") || pre_is(cur, "O")))
        return true;
    if (pre_is(prev, "E") && (pre_is(cur, "E") || pre_is(cur, "I") || pre_is(cur, "O")))
        return true;
    if (!pre_is(prev, "O") && !pre_is(prev, ".") && strcmp(prev->type, cur->type) != 0) return true;
    return pre_is(prev, "]") || pre_is(prev, "[");
}

static bool start_of_chunk(const tag *prev, const tag *cur) {
    if ((pre_is(prev, "B") || pre_is(prev, "I") || pre_is(prev, "O")) && pre_is(cur, "B"))
        return true;
    if (pre_is(prev, "O") && (pre_is(cur, "I") || pre_is(cur, "E"))) return true;
    if (pre_is(prev, "E") && (pre_is(cur, "E") || pre_is(cur, "I"))) return true;
    if (!pre_is(cur, "O") && !pre_is(cur, ".") && strcmp(prev->type, cur->type) != 0) return true;
    return pre_is(cur, "[") || pre_is(cur, "]");
}

int64_t at_bio_spans(const char *const *tags, int64_t n, at_span *out, int64_t cap) {
    if (!tags || n <= 0) return 0;
    tag prev = TAG_O;
    bool open = false;
    int64_t start = 0, count = 0;
    const char *type = "";
    for (int64_t i = 0; i <= n; i++) {
        tag cur = i < n && tags[i] ? parse_tag(tags[i]) : TAG_O;
        /* The end of the sentence closes any span, as conlleval's boundary line does. */
        bool close = open && (i == n || end_of_chunk(&prev, &cur));
        bool begin = i < n && start_of_chunk(&prev, &cur);
        if (open && (close || begin)) {
            if (out && count < cap) out[count] = (at_span){start, i, type};
            count++;
            open = false;
        }
        if (begin) {
            open = true;
            start = i;
            type = cur.type;
        }
        prev = cur;
    }
    return count;
}

/* ------------------------------------------------------------------------------------------ */
/* Accumulation. */

typedef struct type_count {
    char *name;
    int64_t gold, pred, correct;
} type_count;

struct at_metrics {
    type_count *types; /* sorted by name */
    int32_t n_types, cap_types;
    int64_t sentences, intents, intent_correct, sentence_correct, tokens, token_correct;
    at_span *gold, *pred; /* scratch, cap_spans each */
    int64_t cap_spans;
};

at_status at_metrics_new(at_metrics **out, at_err *e) {
    if (!out) return at_err_set(e, AT_E_INVALID, "at_metrics_new: out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out) return at_err_set(e, AT_E_NOMEM, "at_metrics_new: out of memory");
    return AT_OK;
}

void at_metrics_reset(at_metrics *m) {
    if (!m) return;
    for (int32_t i = 0; i < m->n_types; i++) free(m->types[i].name);
    m->n_types = 0;
    m->sentences = m->intents = m->intent_correct = m->sentence_correct = 0;
    m->tokens = m->token_correct = 0;
}

void at_metrics_free(at_metrics *m) {
    if (!m) return;
    at_metrics_reset(m);
    free(m->types);
    free(m->gold);
    free(m->pred);
    free(m);
}

/* Index of name, inserting it (zero counts) in sorted position if absent; -1 on no memory. */
static int32_t type_index(at_metrics *m, const char *name) {
    int32_t lo = 0, hi = m->n_types;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->types[mid].name, name);
        if (c == 0) return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (m->n_types == m->cap_types) {
        int32_t nc = m->cap_types ? m->cap_types * 2 : 16;
        type_count *nt = realloc(m->types, sizeof *nt * (size_t)nc);
        if (!nt) return -1;
        m->types = nt;
        m->cap_types = nc;
    }
    size_t len = strlen(name);
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, name, len + 1);
    memmove(m->types + lo + 1, m->types + lo, sizeof *m->types * (size_t)(m->n_types - lo));
    m->types[lo] = (type_count){copy, 0, 0, 0};
    m->n_types++;
    return lo;
}

at_status at_metrics_add(at_metrics *m, const char *gold_intent, const char *pred_intent,
                         const char *const *gold_tags, const char *const *pred_tags, int64_t n,
                         at_err *e) {
    if (!m) return at_err_set(e, AT_E_INVALID, "at_metrics_add: metrics is NULL");
    if (n < 0) return at_err_set(e, AT_E_INVALID, "at_metrics_add: %lld tags", (long long)n);
    if (n > 0 && (!gold_tags || !pred_tags))
        return at_err_set(e, AT_E_INVALID, "at_metrics_add: %lld tags but a NULL tag array",
                          (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (!gold_tags[i] || !pred_tags[i])
            return at_err_set(e, AT_E_INVALID, "at_metrics_add: tag %lld is NULL", (long long)i);
    if (n > m->cap_spans) {
        at_span *g = malloc(sizeof *g * (size_t)n), *p = malloc(sizeof *p * (size_t)n);
        if (!g || !p) {
            free(g);
            free(p);
            return at_err_set(e, AT_E_NOMEM, "at_metrics_add: out of memory for %lld tags",
                              (long long)n);
        }
        free(m->gold);
        free(m->pred);
        m->gold = g;
        m->pred = p;
        m->cap_spans = n;
    }
    /* Spans never outnumber tokens, so cap n is enough. */
    int64_t ng = at_bio_spans(gold_tags, n, m->gold, n);
    int64_t np = at_bio_spans(pred_tags, n, m->pred, n);
    /* Insert every type first, so that running out of memory leaves the counts as they were. */
    for (int64_t i = 0; i < ng + np; i++) {
        const char *t = i < ng ? m->gold[i].type : m->pred[i - ng].type;
        if (type_index(m, t) < 0)
            return at_err_set(e, AT_E_NOMEM, "at_metrics_add: out of memory for a slot type");
    }
    for (int64_t i = 0; i < ng; i++) m->types[type_index(m, m->gold[i].type)].gold++;
    int64_t g = 0;
    for (int64_t i = 0; i < np; i++) {
        const at_span *p = &m->pred[i];
        int32_t ti = type_index(m, p->type);
        m->types[ti].pred++;
        /* Spans are disjoint and in order, so one pass over the gold spans finds a match. */
        while (g < ng && m->gold[g].start < p->start) g++;
        if (g < ng && m->gold[g].start == p->start && m->gold[g].end == p->end &&
            strcmp(m->gold[g].type, p->type) == 0)
            m->types[ti].correct++;
    }
    int64_t right = 0;
    for (int64_t i = 0; i < n; i++) right += strcmp(gold_tags[i], pred_tags[i]) == 0;
    bool intent_ok = true;
    if (gold_intent) {
        intent_ok = pred_intent && strcmp(gold_intent, pred_intent) == 0;
        m->intents++;
        m->intent_correct += intent_ok;
    }
    m->sentences++;
    m->tokens += n;
    m->token_correct += right;
    m->sentence_correct += intent_ok && right == n;
    return AT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Results. */

static double ratio(int64_t a, int64_t b) {
    return b > 0 ? (double)a / (double)b : 0.0;
}

static at_prf make_prf(int64_t gold, int64_t pred, int64_t correct) {
    at_prf r = {gold, pred, correct, ratio(correct, pred), ratio(correct, gold), 0.0};
    if (r.precision + r.recall > 0) r.f1 = 2.0 * r.precision * r.recall / (r.precision + r.recall);
    return r;
}

void at_metrics_get(const at_metrics *m, at_metrics_summary *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!m) return;
    int64_t gold = 0, pred = 0, correct = 0;
    for (int32_t i = 0; i < m->n_types; i++) {
        gold += m->types[i].gold;
        pred += m->types[i].pred;
        correct += m->types[i].correct;
    }
    out->sentences = m->sentences;
    out->intents = m->intents;
    out->intent_correct = m->intent_correct;
    out->sentence_correct = m->sentence_correct;
    out->tokens = m->tokens;
    out->token_correct = m->token_correct;
    out->intent_acc = ratio(m->intent_correct, m->intents);
    out->sentence_acc = ratio(m->sentence_correct, m->sentences);
    out->token_acc = ratio(m->token_correct, m->tokens);
    out->slots = make_prf(gold, pred, correct);
}

int32_t at_metrics_n_types(const at_metrics *m) {
    return m ? m->n_types : 0;
}

const char *at_metrics_type(const at_metrics *m, int32_t i, at_prf *out) {
    if (!m || i < 0 || i >= m->n_types) {
        if (out) memset(out, 0, sizeof *out);
        return NULL;
    }
    const type_count *t = &m->types[i];
    if (out) *out = make_prf(t->gold, t->pred, t->correct);
    return t->name;
}

/* snprintf into a buffer that may be too small, keeping the length the whole text needs. */
typedef struct appender {
    char *buf;
    size_t cap, len;
} appender;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
append(appender *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *dst = a->len < a->cap ? a->buf + a->len : NULL;
    size_t room = a->len < a->cap ? a->cap - a->len : 0;
    int k = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (k > 0) a->len += (size_t)k;
}

size_t at_metrics_format(const at_metrics *m, char *buf, size_t cap) {
    appender a = {buf, buf ? cap : 0, 0};
    if (a.cap) buf[0] = '\0';
    if (!m) return 0;
    at_metrics_summary s;
    at_metrics_get(m, &s);
    append(&a, "processed %lld tokens with %lld phrases; found: %lld phrases; correct: %lld.\n",
           (long long)s.tokens, (long long)s.slots.gold, (long long)s.slots.pred,
           (long long)s.slots.correct);
    append(&a, "accuracy: %6.2f%%; precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f\n",
           100 * s.token_acc, 100 * s.slots.precision, 100 * s.slots.recall, 100 * s.slots.f1);
    for (int32_t i = 0; i < m->n_types; i++) {
        at_prf p;
        const char *name = at_metrics_type(m, i, &p);
        append(&a,
               "%17s: precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f  %lld"
               "  (gold %lld, correct %lld)\n",
               name, 100 * p.precision, 100 * p.recall, 100 * p.f1, (long long)p.pred,
               (long long)p.gold, (long long)p.correct);
    }
    append(&a,
           "intent accuracy: %6.2f%% (%lld of %lld); sentence accuracy: %6.2f%% (%lld of %lld)\n",
           100 * s.intent_acc, (long long)s.intent_correct, (long long)s.intents,
           100 * s.sentence_acc, (long long)s.sentence_correct, (long long)s.sentences);
    return a.len;
}

at_status at_metrics_print(const at_metrics *m, FILE *f, at_err *e) {
    if (!m || !f) return at_err_set(e, AT_E_INVALID, "at_metrics_print: NULL argument");
    size_t need = at_metrics_format(m, NULL, 0);
    char *buf = malloc(need + 1);
    if (!buf) return at_err_set(e, AT_E_NOMEM, "at_metrics_print: out of memory");
    at_metrics_format(m, buf, need + 1);
    size_t wrote = fwrite(buf, 1, need, f);
    free(buf);
    if (wrote != need || fflush(f) != 0)
        return at_err_set(e, AT_E_IO, "at_metrics_print: write failed");
    return AT_OK;
}
