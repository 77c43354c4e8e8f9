/* The NLU data: split folders (DESIGN.md section 8), vocabularies, label fractions, batches.
 *
 * A split folder holds three line-aligned files: seq.in (tokens), seq.out (one BIO slot label
 * per token) and label (one intent per line). Lines are split on runs of ASCII whitespace, so
 * trailing spaces are harmless. Trailing blank lines at the end of a file are ignored; any
 * other blank line is an error. Every error names the file, and the line where there is one.
 *
 * Ids. Words: 0 = "<pad>", 1 = "<unk>", then by descending count, ties in byte order.
 * Characters (Unicode code points, as UTF-8 strings): the same scheme. Slot labels: 0 = "O",
 * then the other labels in byte order, so B-x and I-x sit side by side; a batch position that
 * must not count in a loss holds AT_IGNORE_INDEX instead. Intents: byte order. All orders are
 * deterministic functions of the training split.
 *
 * Labels the training split did not have (a slot label or intent seen only in valid or test)
 * cannot be predicted, so they encode to AT_IGNORE_INDEX, like padding and unlabelled
 * sentences: losses skip them. They are counted in at_encode_stats, and the split keeps the
 * original strings, so metrics computed from those strings count them as errors.
 *
 * Nothing here keeps global state; randomness comes from the seeds passed in. */
#ifndef ATTUNE_DATASET_H
#define ATTUNE_DATASET_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "attune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The label of a position or sentence that no loss may use: padding, unlabelled, unknown.
 * The value is PyTorch's and ONNX SoftmaxCrossEntropyLoss's usual ignore_index. */
#define AT_IGNORE_INDEX (-100)

#define AT_PAD_ID    0 /* "<pad>" in the word and character vocabularies */
#define AT_UNK_ID    1 /* "<unk>" in the word and character vocabularies */
#define AT_SLOT_O_ID 0

/* Reader limits: a line over either is an error, so a corrupt file cannot exhaust memory. */
#define AT_DATA_MAX_LINE_BYTES (1 << 20)
#define AT_DATA_MAX_TOKENS     512
/* Characters kept per word for the character features; longer words are cut. */
#define AT_CHAR_WIDTH 16

/* ------------------------------------------------------------------------------------------ */
/* Vocabularies: string <-> dense id. */

typedef struct at_vocab at_vocab;

at_status at_vocab_new(at_vocab **out, at_err *e);
void at_vocab_free(at_vocab *v);
/* Adds s if absent; *id (may be NULL) gets its id either way. s must be non-empty UTF-8
 * without whitespace, so that the one-entry-a-line text form can hold it. */
at_status at_vocab_add(at_vocab *v, const char *s, int32_t *id, at_err *e);
/* The id of s, or -1. */
int32_t at_vocab_find(const at_vocab *v, const char *s);
/* The id of s; if absent, the id of the entry "<unk>", or -1 if there is none. */
int32_t at_vocab_lookup(const at_vocab *v, const char *s);
/* The string of an id, or NULL when id is out of range. Valid until the vocab is freed. */
const char *at_vocab_str(const at_vocab *v, int32_t id);
int32_t at_vocab_size(const at_vocab *v);
/* The id of "<unk>", or -1. */
int32_t at_vocab_unk(const at_vocab *v);

/* Text form for a model file's metadata: each entry followed by '\n', in id order (an empty
 * vocab is ""). *out is malloc'd, NUL-terminated, freed by the caller with free(); *len (may
 * be NULL) gets its length. at_vocab_from_string(at_vocab_to_string(v)) is v, and the text
 * survives the round trip byte for byte. A last line without '\n' is accepted. */
at_status at_vocab_to_string(const at_vocab *v, char **out, size_t *len, at_err *e);
at_status at_vocab_from_string(at_vocab **out, const char *text, at_err *e);

/* ------------------------------------------------------------------------------------------ */
/* Splits. All fields are read-only for callers; at_split_free releases everything. */

typedef struct at_split {
    char path[512];       /* the folder or file read, for messages */
    int64_t n;            /* sentences */
    int64_t n_tokens;     /* tokens over all sentences */
    int32_t max_len;      /* tokens in the longest sentence */
    int64_t *start;       /* [n + 1]: sentence i is tokens start[i] .. start[i+1]-1 */
    const char **words;   /* [n_tokens] */
    const char **slots;   /* [n_tokens] gold BIO labels; NULL when the source had none */
    const char **intents; /* [n] gold intents; NULL when the source had none */
    uint8_t *labelled;    /* [n]: 1 where training may use the labels (see label_fraction) */
    int64_t n_labelled;   /* sentences with labelled[i] == 1 */
    /* Filled by at_split_encode (NULL before): */
    int32_t *word_ids;   /* [n_tokens] */
    int32_t *slot_ids;   /* [n_tokens]; AT_IGNORE_INDEX for unknown or absent labels */
    int32_t *intent_ids; /* [n]; AT_IGNORE_INDEX for unknown or absent labels */
    int32_t *char_ids;   /* [n_tokens * AT_CHAR_WIDTH], 0-padded */
    uint8_t *n_chars;    /* [n_tokens]: code points kept, 1 .. AT_CHAR_WIDTH */
    struct at_split_priv_ *priv_;
} at_split;

/* Reads a split folder: dir/seq.in, dir/seq.out, dir/label. Errors: a missing or unreadable
 * file (AT_E_IO); an empty file, line counts that differ between the files, a line whose
 * token and label counts differ, a label line that is not exactly one intent, a blank line,
 * invalid UTF-8, a NUL byte, a line over the limits (AT_E_FORMAT, naming file:line). */
at_status at_dataset_split(at_split **out, const char *dir, at_err *e);
/* Reads unlabelled sentences: one seq.in-style file. slots and intents are NULL and every
 * sentence is unlabelled. */
at_status at_dataset_sentences(at_split **out, const char *path, at_err *e);
/* The same from text in memory ("book a table\nplay jazz\n"); name is used in messages. */
at_status at_dataset_sentences_text(at_split **out, const char *text, const char *name, at_err *e);
void at_split_free(at_split *s);

/* Keeps the labels of round(fraction * n) sentences, chosen by a seeded shuffle, and marks
 * the others unlabelled (their labels stay readable, but at_batch_fill gives them
 * AT_IGNORE_INDEX). The same (split, fraction, seed) always picks the same sentences, and a
 * smaller fraction with the same seed picks a subset of a larger one. fraction in [0, 1]. */
at_status at_split_label_fraction(at_split *s, double fraction, uint64_t seed, at_err *e);

/* ------------------------------------------------------------------------------------------ */
/* The vocabularies of a model. */

typedef struct at_nlu_vocab {
    at_vocab *words;   /* <pad>, <unk>, then by count */
    at_vocab *chars;   /* <pad>, <unk>, then by count */
    at_vocab *slots;   /* O, then byte order */
    at_vocab *intents; /* byte order */
} at_nlu_vocab;

typedef struct at_vocab_opts {
    int64_t word_min_count; /* words seen fewer times become <unk>; 0 or 1 keeps all */
    int64_t char_min_count; /* the same for characters */
    int64_t max_words;      /* cap on the word vocabulary size, specials included; 0 = none */
} at_vocab_opts;

/* Builds the four vocabularies from a training split (opts may be NULL: keep everything).
 * Words and characters come from every sentence; slot labels and intents from every sentence
 * that has them, labelled or not, since the label set is the task's schema. On error *v is
 * left empty. Free with at_nlu_vocab_free (safe on a zeroed struct). */
at_status at_nlu_vocab_build(at_nlu_vocab *v, const at_split *train, const at_vocab_opts *opts,
                             at_err *e);
void at_nlu_vocab_free(at_nlu_vocab *v);

typedef struct at_encode_stats {
    int64_t tokens;          /* tokens encoded */
    int64_t unk_words;       /* tokens that became <unk> */
    int64_t unk_slot_labels; /* gold slot labels absent from the vocabulary */
    int64_t unk_intents;     /* gold intents absent from the vocabulary */
    char unknown[256];       /* the first distinct unknown labels, space-separated */
} at_encode_stats;

/* Fills the split's id arrays from the vocabularies (again if called twice). Unknown words
 * become <unk>; unknown labels become AT_IGNORE_INDEX and are counted in *st (may be NULL),
 * never an error. Label ids are filled wherever the source has labels, whatever labelled[]
 * says (evaluation may use them); at_batch_fill is what hides the labels of unlabelled
 * sentences, so at_split_label_fraction may come before or after this. */
at_status at_split_encode(at_split *s, const at_nlu_vocab *v, at_encode_stats *st, at_err *e);
/* One line for a log: "test: 1 of 700 intents and 3 of 6354 slot labels unknown to the
 * training split (B-foo I-foo); 52 words <unk>". Returns buf. */
const char *at_encode_stats_str(const at_encode_stats *st, const char *split_name, char *buf,
                                size_t cap);

/* ------------------------------------------------------------------------------------------ */
/* Epoch orders. */

typedef enum at_order {
    AT_ORDER_FILE = 0,    /* file order, consecutive batches (evaluation) */
    AT_ORDER_SHUFFLE = 1, /* a seeded random order */
    AT_ORDER_BUCKET = 2,  /* sorted by length, ties in seeded random order, cut into batches,
                           * then the batches shuffled: little padding, random batch order */
} at_order;

typedef enum at_subset {
    AT_SUBSET_ALL = 0,
    AT_SUBSET_LABELLED = 1,
    AT_SUBSET_UNLABELLED = 2,
} at_subset;

typedef struct at_epoch {
    int64_t n;         /* sentences in the epoch */
    int64_t n_batches; /* ceil(n / batch_size); only the last batch of the sort may be short */
    int64_t *order;    /* [n] sentence numbers; batch k is order[start[k] .. start[k+1]-1] */
    int64_t *start;    /* [n_batches + 1] */
} at_epoch;

/* Plans one epoch over a subset of s. The same (s, subset, order, batch_size, seed, epoch)
 * always gives the same plan; the epoch number varies the order between epochs. An empty
 * subset gives n = n_batches = 0, not an error. Free with at_epoch_free (safe on zeroed). */
at_status at_epoch_plan(at_epoch *ep, const at_split *s, at_subset subset, at_order order,
                        int64_t batch_size, uint64_t seed, uint64_t epoch, at_err *e);
void at_epoch_free(at_epoch *ep);
/* Padded positions over all batches of the plan: sum of (B * T - sum of lengths). */
int64_t at_epoch_padding(const at_epoch *ep, const at_split *s);

/* ------------------------------------------------------------------------------------------ */
/* Batches. */

/* The arrays of one batch, each dense and row-major with the batch's own B, T and W (so
 * tokens[b * T + t]), ready to be fed as tensors [B,T], [B], [B,T,W].
 *
 * Ownership: at_batch_alloc allocates every array at its capacity and sets owned = true;
 * at_batch_free frees them. A caller may instead point the arrays at its own memory (for
 * instance a session's input tensors), set cap_B, cap_T, cap_W to what that memory holds and
 * owned = false; at_batch_free then only forgets them. Any array except tokens and lengths may
 * be NULL, and is then not filled. */
typedef struct at_batch {
    int64_t B, T, W;             /* shape of the last fill */
    int64_t cap_B, cap_T, cap_W; /* capacity: the arrays hold cap_B*cap_T(*cap_W) elements */
    int64_t *tokens;             /* [B,T] word ids; AT_PAD_ID past a sentence's end */
    int64_t *lengths;            /* [B] tokens per sentence, >= 1 */
    float *mask;                 /* [B,T] 1 for a token, 0 for padding */
    int64_t *slots;              /* [B,T] slot ids; AT_IGNORE_INDEX at padding, unknown,
                                  * unlabelled */
    int64_t *intents;            /* [B] intent ids; AT_IGNORE_INDEX for unknown, unlabelled */
    int64_t *chars;              /* [B,T,W] char ids, AT_PAD_ID-padded */
    int64_t *index;              /* [B] sentence numbers in the split */
    bool owned;
} at_batch;

/* cap_W is the widest character window wanted (at most AT_CHAR_WIDTH; 0 = no chars array). */
at_status at_batch_alloc(at_batch *b, int64_t cap_B, int64_t cap_T, int64_t cap_W, at_err *e);
void at_batch_free(at_batch *b);

/* Fills b with sentences idx[0..n-1] of an encoded split: B = n, T = the longest of them,
 * W = the longest word in code points, capped at cap_W and AT_CHAR_WIDTH (at least 1; 0 when
 * the batch has no chars array).
 * AT_E_SHAPE when the batch does not fit the capacities; b keeps its old contents then. */
at_status at_batch_fill(at_batch *b, const at_split *s, const int64_t *idx, int64_t n, at_err *e);

/* Word dropout: each real token (never padding, never an id already AT_PAD_ID or unk_id)
 * becomes unk_id with probability p, drawn from (seed, step). Returns how many changed.
 * Characters are left alone, so character features still see the word. */
int64_t at_batch_word_dropout(at_batch *b, double p, int64_t unk_id, uint64_t seed, uint64_t step);

#ifdef __cplusplus
}
#endif
#endif
