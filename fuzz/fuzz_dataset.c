/* libFuzzer target: the NLU data reader on arbitrary bytes.
 *
 * The input is read three ways. Whole, as unlabelled sentences (at_dataset_sentences_text)
 * and as a vocabulary's text form (what a model file's metadata holds). Then cut at the first
 * two '|' bytes into seq.in, seq.out and label of a split folder in a temporary directory
 * (fewer pieces leave files missing) and read with at_dataset_split. Whatever the reader
 * accepts then goes through everything training does with it: the vocabularies (and their
 * text form, which must round-trip), encoding, label fractions, epoch plans, batches, word
 * dropout, and the slot metrics with the labels as gold and shifted labels as predictions.
 * The split is also encoded with the vocabularies of a "training split" made of its first
 * line only, so that unknown words and labels occur. Errors are fine; crashes, leaks,
 * sanitizer reports and inconsistent results are not. */
#define _GNU_SOURCE /* mkdtemp */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attune/dataset.h"
#include "attune/metrics.h"

#define DELIM '|'

static const char *const NAMES[3] = {"seq.in", "seq.out", "label"};
static char dir[256], sub[2][300]; /* sub[0]: the split, sub[1]: its first line */
static char paths[2][3][320];
static FILE *devnull;

static void cleanup(void) {
    for (int d = 0; d < 2; d++) {
        for (int k = 0; k < 3; k++) unlink(paths[d][k]);
        rmdir(sub[d]);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    /* Every input is written to a file: memory-backed /dev/shm keeps that cheap. */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/attune_fuzz_dataset_XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    for (int d = 0; d < 2; d++) {
        snprintf(sub[d], sizeof sub[d], "%s/%s", dir, d ? "train" : "split");
        if (mkdir(sub[d], 0700) != 0) {
            perror("mkdir");
            abort();
        }
        for (int k = 0; k < 3; k++)
            snprintf(paths[d][k], sizeof paths[d][k], "%s/%s", sub[d], NAMES[k]);
    }
    atexit(cleanup);
    devnull = fopen("/dev/null", "w");
    return 0;
}

static void fail(const char *fmt, const char *a) {
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    abort();
}

static void check_err(const char *what, at_status st, const at_err *e) {
    if (st != AT_OK && (e->code != st || e->msg[0] == '\0'))
        fail("%s: error without a message", what);
}

static void write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) fail("cannot write %s", path);
}

static void vocab_roundtrip(const at_vocab *v) {
    at_err e = {0};
    char *text = NULL;
    size_t len = 0;
    at_status st = at_vocab_to_string(v, &text, &len, &e);
    check_err("at_vocab_to_string", st, &e);
    if (st != AT_OK) return;
    at_vocab *w = NULL;
    st = at_vocab_from_string(&w, text, &e);
    if (st != AT_OK) fail("a vocabulary's own text does not load: %s", e.msg);
    if (at_vocab_size(w) != at_vocab_size(v)) fail("vocabulary round trip changed its size%s", "");
    for (int32_t i = 0; i < at_vocab_size(v); i++) {
        if (strcmp(at_vocab_str(v, i), at_vocab_str(w, i)) != 0 ||
            at_vocab_find(w, at_vocab_str(v, i)) != i ||
            at_vocab_lookup(w, at_vocab_str(v, i)) != i)
            fail("vocabulary round trip changed entry '%s'", at_vocab_str(v, i));
    }
    at_vocab_free(w);
    free(text);
}

/* Slot metrics with the gold tags as gold and each sentence's tags rotated by one as the
 * prediction, so that spans both match and miss. */
static void metrics(const at_split *s) {
    at_metrics *m = NULL;
    at_err e = {0};
    if (at_metrics_new(&m, &e) != AT_OK) return;
    const char **pred = malloc(sizeof(char *) * (size_t)(s->max_len ? s->max_len : 1));
    for (int64_t i = 0; pred && i < s->n; i++) {
        int64_t lo = s->start[i], n = s->start[i + 1] - lo;
        for (int64_t t = 0; t < n; t++) pred[t] = s->slots[lo + (t + 1) % n];
        const char *pi = i + 1 < s->n ? s->intents[i + 1] : NULL;
        at_status st = at_metrics_add(m, s->intents[i], pi, s->slots + lo, pred, n, &e);
        check_err("at_metrics_add", st, &e);
    }
    at_metrics_summary sum;
    at_metrics_get(m, &sum);
    if (sum.slots.correct > sum.slots.pred || sum.slots.correct > sum.slots.gold ||
        !(sum.slots.f1 >= 0.0 && sum.slots.f1 <= 1.0))
        fail("slot metrics out of range%s", "");
    for (int32_t i = 0; i < at_metrics_n_types(m); i++) at_metrics_type(m, i, NULL);
    char small[64];
    size_t need = at_metrics_format(m, small, sizeof small);
    char *big = malloc(need + 1);
    if (big && at_metrics_format(m, big, need + 1) != need) fail("at_metrics_format: length%s", "");
    free(big);
    if (devnull) at_metrics_print(m, devnull, &e);
    free(pred);
    at_metrics_free(m);
}

/* What a training run does with a split; labelled says whether it has slots and intents. */
static void exercise(at_split *s, const at_nlu_vocab *v, uint8_t knob) {
    at_err e = {0};
    at_encode_stats stats;
    at_status st = at_split_encode(s, v, &stats, &e);
    check_err("at_split_encode", st, &e);
    if (st != AT_OK) return;
    char line[512];
    at_encode_stats_str(&stats, "fuzz", line, sizeof line);
    if (s->slots) {
        st = at_split_label_fraction(s, (double)(knob % 5) / 4.0, knob, &e);
        check_err("at_split_label_fraction", st, &e);
    }
    int64_t bs = 1 + knob % 7;
    at_batch b;
    st = at_batch_alloc(&b, bs, s->max_len, AT_CHAR_WIDTH, &e);
    check_err("at_batch_alloc", st, &e);
    if (st != AT_OK) return;
    for (int order = AT_ORDER_FILE; order <= AT_ORDER_BUCKET; order++) {
        at_epoch ep;
        st = at_epoch_plan(&ep, s, (at_subset)(knob % 3), (at_order)order, bs, 7, knob, &e);
        check_err("at_epoch_plan", st, &e);
        if (st != AT_OK) continue;
        at_epoch_padding(&ep, s);
        for (int64_t k = 0; k < ep.n_batches; k++) {
            st = at_batch_fill(&b, s, ep.order + ep.start[k], ep.start[k + 1] - ep.start[k], &e);
            if (st != AT_OK) fail("at_batch_fill on a planned batch: %s", e.msg);
            at_batch_word_dropout(&b, 0.3, AT_UNK_ID, 5, (uint64_t)k);
        }
        at_epoch_free(&ep);
    }
    at_batch_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t knob = size ? data[size - 1] : 0;
    at_err e = {0};

    /* Whole input as unlabelled text and as a vocabulary (up to the first NUL, as a C string
     * ends there). */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    at_vocab *tv = NULL;
    at_status st = at_vocab_from_string(&tv, text, &e);
    check_err("at_vocab_from_string", st, &e);
    if (st == AT_OK) vocab_roundtrip(tv);
    at_vocab_free(tv);
    at_split *s = NULL;
    st = at_dataset_sentences_text(&s, text, "fuzz", &e);
    check_err("at_dataset_sentences_text", st, &e);
    free(text);
    if (st == AT_OK) {
        if (s->slots || s->intents || s->n < 1 || s->n_labelled != 0)
            fail("unlabelled sentences with labels%s", "");
        /* No labels to build vocabularies from: encode with empty ones (all words <unk>). */
        at_nlu_vocab v = {0};
        if (at_vocab_new(&v.words, &e) == AT_OK && at_vocab_new(&v.chars, &e) == AT_OK &&
            at_vocab_new(&v.slots, &e) == AT_OK && at_vocab_new(&v.intents, &e) == AT_OK)
            exercise(s, &v, knob);
        at_nlu_vocab_free(&v);
        at_split_free(s);
    }

    /* The input cut into the three files of a split folder. */
    const uint8_t *piece[3] = {data, NULL, NULL};
    size_t len[3] = {size, 0, 0};
    int pieces = 1;
    for (int k = 1; k < 3; k++) {
        const uint8_t *d = memchr(piece[k - 1], DELIM, len[k - 1]);
        if (!d) break;
        piece[k] = d + 1;
        len[k] = len[k - 1] - (size_t)(d + 1 - piece[k - 1]);
        len[k - 1] = (size_t)(d - piece[k - 1]);
        pieces++;
    }
    for (int k = 0; k < 3; k++) {
        if (k < pieces)
            write_file(paths[0][k], piece[k], len[k]);
        else
            unlink(paths[0][k]);
    }
    st = at_dataset_split(&s, sub[0], &e);
    check_err("at_dataset_split", st, &e);
    if (st != AT_OK) {
        if (s) fail("at_dataset_split failed but returned a split%s", "");
        return 0;
    }
    if (pieces < 3) fail("a split folder with missing files loaded%s", "");

    /* seq.in alone must read as the same sentences. */
    at_split *u = NULL;
    st = at_dataset_sentences(&u, paths[0][0], &e);
    if (st != AT_OK || u->n != s->n || u->n_tokens != s->n_tokens || u->max_len != s->max_len)
        fail("seq.in of a good split does not read alone the same way: %s", e.msg);
    at_split_free(u);

    at_vocab_opts vo = {.word_min_count = knob & 3,
                        .char_min_count = (knob >> 2) & 3,
                        .max_words = (knob >> 4) & 7};
    at_nlu_vocab v;
    st = at_nlu_vocab_build(&v, s, &vo, &e);
    check_err("at_nlu_vocab_build", st, &e);
    if (st == AT_OK) {
        vocab_roundtrip(v.words);
        vocab_roundtrip(v.chars);
        vocab_roundtrip(v.slots);
        vocab_roundtrip(v.intents);
        exercise(s, &v, knob);
        metrics(s);
        at_nlu_vocab_free(&v);
    }

    /* The first line of each file is a good split too; its vocabularies lack most of the
     * words and labels of the whole. */
    for (int k = 0; k < 3; k++) {
        const uint8_t *nl = memchr(piece[k], '\n', len[k]);
        write_file(paths[1][k], piece[k], nl ? (size_t)(nl + 1 - piece[k]) : len[k]);
    }
    at_split *train = NULL;
    st = at_dataset_split(&train, sub[1], &e);
    if (st != AT_OK || train->n != 1)
        fail("the first line of a good split does not load: %s", e.msg);
    st = at_nlu_vocab_build(&v, train, NULL, &e);
    check_err("at_nlu_vocab_build", st, &e);
    if (st == AT_OK) {
        exercise(s, &v, knob);
        at_nlu_vocab_free(&v);
    }
    at_split_free(train);
    at_split_free(s);
    return 0;
}
