/* Evaluation of joint intent + slot predictions: intent accuracy, slot F1 by the conlleval
 * rules, per-type precision / recall / F1, token and sentence accuracy.
 *
 * Spans (chunks) come from BIO tags as conlleval (CoNLL-2000, version 2004-01-26) finds them:
 * a tag splits at its first '-' into prefix and type ("B-city" -> "B", "city"; "O" -> "O",
 * ""); a chunk starts at B, at an I after O (an I-X with no B-X before it starts a span), and
 * wherever the type changes on a tag that is not O; it ends before O, before B, and where the
 * type changes. A predicted span counts as correct when a gold span has the same first token,
 * last token and type. conlleval's other chunk tags (E, '[', ']', '.') follow its rules too.
 * Sentences are evaluated separately: a span never crosses them.
 *
 * Works on label strings, so gold labels the model never saw still count as errors. */
#ifndef ATTUNE_METRICS_H
#define ATTUNE_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "attune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One span: tokens [start, end), type a suffix of the tag it came from ("" when the tag has
 * no '-'), so valid as long as the tags are. */
typedef struct at_span {
    int64_t start, end;
    const char *type;
} at_span;

/* Writes the spans of tags[0..n) (at most cap of them) and returns how many there are. */
int64_t at_bio_spans(const char *const *tags, int64_t n, at_span *out, int64_t cap);

/* Precision, recall and F1 of spans; all fractions in [0, 1], 0 where undefined (as
 * conlleval prints 0.00 when nothing was found). */
typedef struct at_prf {
    int64_t gold;    /* spans in the gold labels */
    int64_t pred;    /* spans in the predictions */
    int64_t correct; /* predicted spans that match a gold span exactly */
    double precision, recall, f1;
} at_prf;

typedef struct at_metrics at_metrics;

at_status at_metrics_new(at_metrics **out, at_err *e);
void at_metrics_free(at_metrics *m);
void at_metrics_reset(at_metrics *m);

/* Adds one sentence. gold_intent and pred_intent may both be NULL (no intent task); a NULL
 * prediction with a gold intent counts as wrong. gold_tags and pred_tags hold n tags each
 * (n may be 0; both may then be NULL). AT_E_INVALID for inconsistent arguments, AT_E_NOMEM
 * when a new type cannot be stored; the counts are unchanged on error. */
at_status at_metrics_add(at_metrics *m, const char *gold_intent, const char *pred_intent,
                         const char *const *gold_tags, const char *const *pred_tags, int64_t n,
                         at_err *e);

typedef struct at_metrics_summary {
    int64_t sentences;
    int64_t intents; /* sentences added with a gold intent */
    int64_t intent_correct;
    int64_t sentence_correct; /* intent (where given) and every tag right */
    int64_t tokens;
    int64_t token_correct;                      /* tag string equal */
    double intent_acc, sentence_acc, token_acc; /* fractions; 0 when their count is 0 */
    at_prf slots;                               /* over all types: micro-averaged, slot F1 */
} at_metrics_summary;

void at_metrics_get(const at_metrics *m, at_metrics_summary *out);
/* Types seen in gold or predicted spans, in byte order. */
int32_t at_metrics_n_types(const at_metrics *m);
/* Name of type i (NULL when out of range) and its counts in *out (may be NULL). */
const char *at_metrics_type(const at_metrics *m, int32_t i, at_prf *out);

/* The conlleval-style report: totals, then one line per type with precision, recall, F1 (as
 * percentages) and the predicted, gold and correct counts; then intent and sentence accuracy.
 * Writes at most cap bytes including the NUL (buf may be NULL when cap is 0) and returns the
 * length the whole text needs, as snprintf does. */
size_t at_metrics_format(const at_metrics *m, char *buf, size_t cap);
/* The same to a stream; AT_E_IO when writing fails. */
at_status at_metrics_print(const at_metrics *m, FILE *f, at_err *e);

#ifdef __cplusplus
}
#endif
#endif
