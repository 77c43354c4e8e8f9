/* The NLU data reader, vocabularies, label fractions, epoch plans, batches, word dropout. */
#include "attune/dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char g_src[2048];
static char g_tmp[256];

/* ---- helpers ---------------------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const char *data, size_t len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        CHECK(0, "cannot write %s", path);
        return;
    }
    if (len) fwrite(data, 1, len, f);
    fclose(f);
}

static void write_str(const char *dir, const char *name, const char *s) {
    write_file(dir, name, s, strlen(s));
}

static void remove_split_files(const char *dir) {
    const char *names[] = {"seq.in", "seq.out", "label"};
    char path[1024];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        remove(path);
    }
}

/* Writes a three-file split into the temp folder (a NULL content leaves that file out). */
static void write_split(const char *in, const char *out, const char *label) {
    remove_split_files(g_tmp);
    if (in) write_str(g_tmp, "seq.in", in);
    if (out) write_str(g_tmp, "seq.out", out);
    if (label) write_str(g_tmp, "label", label);
}

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* Reads the temp split and expects failure with code and every needle in the message. */
static void expect_split_error(const char *what, at_status code, const char *n1, const char *n2) {
    at_split *s = NULL;
    at_err e = {0};
    at_status st = at_dataset_split(&s, g_tmp, &e);
    CHECK(st == code, "%s: status %s, want %s (%s)", what, at_status_str(st), at_status_str(code),
          e.msg);
    CHECK(s == NULL, "%s: split returned on error", what);
    CHECK(!n1 || strstr(e.msg, n1), "%s: message \"%s\" lacks \"%s\"", what, e.msg, n1);
    CHECK(!n2 || strstr(e.msg, n2), "%s: message \"%s\" lacks \"%s\"", what, e.msg, n2);
    at_split_free(s);
}

static at_split *load(const char *dir) {
    at_split *s = NULL;
    at_err e = {0};
    at_status st = at_dataset_split(&s, dir, &e);
    CHECK(st == AT_OK, "reading %s: %s", dir, e.msg);
    return st == AT_OK ? s : NULL;
}

static int64_t sent_len(const at_split *s, int64_t i) {
    return s->start[i + 1] - s->start[i];
}

/* ---- malformed and edge-case files ------------------------------------------------------ */

static void test_malformed(void) {
    /* Line 3 of seq.out has 2 labels for 3 tokens. */
    write_split("a b\nc d e\nf g h\ni\n", "O O\nO O O\nO O\nO\n", "x\ny\nx\ny\n");
    expect_split_error("count mismatch", AT_E_FORMAT, "seq.out:3:", "seq.in:3");

    /* label has 3 lines, the others 4. */
    write_split("a\nb\nc\nd\n", "O\nO\nO\nO\n", "x\ny\nx\n");
    expect_split_error("line count", AT_E_FORMAT, "has 4 lines", "/label has 3");
    /* seq.out misses line 2 entirely: the message also points at line 2. */
    write_split("a\nb c\nd\n", "O\nO\n", "x\ny\nz\n");
    expect_split_error("missing line", AT_E_FORMAT, "/seq.out has 2", "differ at line 2");

    /* Invalid UTF-8 on line 2, in three forms: a stray 0xff, an overlong '/', a surrogate. */
    const char *bad[] = {"ok\nbad\xff word\n", "ok\nbad \xc0\xaf\n", "ok\n\xed\xa0\x80\n"};
    for (int i = 0; i < 3; i++) {
        write_split(bad[i], "O\nO O\n", "x\ny\n");
        expect_split_error("utf-8", AT_E_FORMAT, "seq.in:2:", "UTF-8");
    }
    /* Valid multi-byte UTF-8 is fine (2-, 3- and 4-byte forms). */
    write_split("clásicos \xe2\x82\xac \xf0\x9f\x8e\xb5\n", "O O O\n", "x\n");
    at_split *s = load(g_tmp);
    CHECK(s && s->n == 1 && s->n_tokens == 3, "multi-byte tokens");
    at_split_free(s);

    write_split("a\n", "", "x\n");
    expect_split_error("empty file", AT_E_FORMAT, "seq.out", "empty file");
    write_split(" \n\t\n", " \n\n", "\n");
    expect_split_error("whitespace-only file", AT_E_FORMAT, "seq.in", "empty file");

    write_split("a\nb\n", "O\nO\n", NULL);
    expect_split_error("missing file", AT_E_IO, "/label", "cannot open");
    {
        at_split *none = NULL;
        at_err e = {0};
        CHECK(at_dataset_split(&none, "/nonexistent/attune/split", &e) == AT_E_IO, "no folder");
        CHECK(strstr(e.msg, "/nonexistent/attune/split/seq.in") != NULL, "%s", e.msg);
    }

    write_split("a\n\nb\n", "O\n\nO\n", "x\n\ny\n");
    expect_split_error("blank line", AT_E_FORMAT, "seq.in:2:", "blank line");

    write_split("a b\n", "O O\n", "x y\n");
    expect_split_error("two intents", AT_E_FORMAT, "label:1:", "one intent");

    write_file(g_tmp, "seq.in", "a\nb\0c\n", 6);
    expect_split_error("NUL byte", AT_E_FORMAT, "seq.in:2:", "NUL");

    /* Over the line limits: one line of 2 MiB, one line of 600 tokens. */
    size_t big = (size_t)2 << 20;
    char *huge = malloc(big + 8);
    if (huge) {
        memset(huge, 'a', big);
        memcpy(huge + big, "\n", 2);
        write_split(huge, "O\n", "x\n");
        expect_split_error("huge line", AT_E_FORMAT, "seq.in:1:", "bytes");
        char *p = huge;
        for (int i = 0; i < 600; i++) p += sprintf(p, "w ");
        strcpy(p, "\n");
        write_split("x\n", "O\n", "x\n");
        write_str(g_tmp, "seq.in", huge);
        expect_split_error("many tokens", AT_E_FORMAT, "seq.in:1:", "600 tokens");
        free(huge);
    }

    /* Runs of spaces, tabs, trailing spaces, CRLF and trailing blank lines are all fine. */
    write_split("  a \t b   \r\nc  \r\n\n\n", "O  B-x \r\nO\n", "i1\r\n  i2  \n\n");
    s = load(g_tmp);
    if (s) {
        CHECK(s->n == 2 && s->n_tokens == 3, "n %lld tokens %lld", (long long)s->n,
              (long long)s->n_tokens);
        CHECK(strcmp(s->words[0], "a") == 0 && strcmp(s->words[1], "b") == 0 &&
                  strcmp(s->words[2], "c") == 0,
              "tokens");
        CHECK(strcmp(s->slots[1], "B-x") == 0, "slot '%s'", s->slots[1]);
        CHECK(strcmp(s->intents[0], "i1") == 0 && strcmp(s->intents[1], "i2") == 0, "intents");
        CHECK(s->max_len == 2 && s->n_labelled == 2, "max_len %d", s->max_len);
    }
    at_split_free(s);
    remove_split_files(g_tmp);
}

static void test_sentences(void) {
    at_split *s = NULL;
    at_err e = {0};
    CHECK_OK(at_dataset_sentences_text(&s, "book a table\n\tplay  jazz \n", "cli", &e));
    if (s) {
        CHECK(s->n == 2 && s->n_tokens == 5 && s->slots == NULL && s->intents == NULL, "text");
        CHECK(s->n_labelled == 0 && s->labelled[0] == 0, "unlabelled");
    }
    at_split_free(s);
    s = NULL;
    CHECK(at_dataset_sentences_text(&s, "fine\nnot \xff fine\n", "cli", &e) == AT_E_FORMAT,
          "bad text");
    CHECK(strstr(e.msg, "cli:2:") != NULL, "%s", e.msg);
    CHECK(at_dataset_sentences_text(&s, "", "cli", &e) == AT_E_FORMAT, "empty text");

    char path[1024];
    snprintf(path, sizeof path, "%s/unlabelled.txt", g_tmp);
    write_str(g_tmp, "unlabelled.txt", "one two\nthree\n");
    CHECK_OK(at_dataset_sentences(&s, path, &e));
    if (s) CHECK(s->n == 2 && s->max_len == 2 && !s->slots, "sentence file");
    /* An unlabelled split cannot give a label fraction or a vocabulary. */
    CHECK(at_split_label_fraction(s, 0.5, 1, &e) == AT_E_INVALID, "fraction of nothing");
    at_nlu_vocab v;
    CHECK(at_nlu_vocab_build(&v, s, NULL, &e) == AT_E_INVALID, "vocab from unlabelled");
    at_nlu_vocab_free(&v);
    at_split_free(s);
    remove(path);
}

/* ---- vocabularies ------------------------------------------------------------------------ */

static void test_vocab_order(void) {
    /* Counts: b 3, a 2, c 1, z 1, y 1 -> b, a, then the ones in byte order: c, y, z. */
    write_split("b a b\nc a b\nz y\n", "B-x O B-x\nO O I-x\nB-a O\n", "p\nq\np\n");
    at_split *s = load(g_tmp);
    if (!s) return;
    at_nlu_vocab v;
    at_err e = {0};
    CHECK_OK(at_nlu_vocab_build(&v, s, NULL, &e));
    const char *want[] = {"<pad>", "<unk>", "b", "a", "c", "y", "z"};
    CHECK(at_vocab_size(v.words) == 7, "words %d", at_vocab_size(v.words));
    for (int i = 0; i < 7; i++)
        CHECK(at_vocab_str(v.words, i) && strcmp(at_vocab_str(v.words, i), want[i]) == 0,
              "word %d is %s, want %s", i, at_vocab_str(v.words, i), want[i]);
    CHECK(at_vocab_lookup(v.words, "never") == AT_UNK_ID, "unknown word");
    CHECK(at_vocab_find(v.words, "never") == -1, "find");
    CHECK(at_vocab_unk(v.words) == AT_UNK_ID, "unk id");
    const char *slots[] = {"O", "B-a", "B-x", "I-x"};
    CHECK(at_vocab_size(v.slots) == 4, "slots %d", at_vocab_size(v.slots));
    for (int i = 0; i < 4; i++)
        CHECK(strcmp(at_vocab_str(v.slots, i), slots[i]) == 0, "slot %d", i);
    CHECK(at_vocab_unk(v.slots) == -1 && at_vocab_lookup(v.slots, "B-new") == -1, "no unk");
    CHECK(at_vocab_size(v.intents) == 2 && strcmp(at_vocab_str(v.intents, 0), "p") == 0, "intent");
    CHECK(at_vocab_size(v.chars) == 2 + 5, "chars %d", at_vocab_size(v.chars));
    at_nlu_vocab_free(&v);

    /* A minimum count of 2 keeps only b and a. */
    at_vocab_opts o = {2, 0, 0};
    CHECK_OK(at_nlu_vocab_build(&v, s, &o, &e));
    CHECK(at_vocab_size(v.words) == 4, "min count: %d", at_vocab_size(v.words));
    CHECK(at_vocab_lookup(v.words, "c") == AT_UNK_ID, "c became <unk>");
    at_nlu_vocab_free(&v);
    o = (at_vocab_opts){0, 0, 3};
    CHECK_OK(at_nlu_vocab_build(&v, s, &o, &e));
    CHECK(at_vocab_size(v.words) == 3 && at_vocab_find(v.words, "b") == 2, "max words");
    at_nlu_vocab_free(&v);
    at_split_free(s);
}

static void test_vocab_roundtrip(const at_split *train) {
    at_nlu_vocab v;
    at_err e = {0};
    CHECK_OK(at_nlu_vocab_build(&v, train, NULL, &e));
    at_vocab *all[4] = {v.words, v.chars, v.slots, v.intents};
    for (int k = 0; k < 4; k++) {
        char *text = NULL, *again = NULL;
        size_t len = 0, len2 = 0;
        at_vocab *back = NULL;
        CHECK_OK(at_vocab_to_string(all[k], &text, &len, &e));
        CHECK_OK(at_vocab_from_string(&back, text ? text : "", &e));
        CHECK(at_vocab_size(back) == at_vocab_size(all[k]), "size");
        CHECK(at_vocab_unk(back) == at_vocab_unk(all[k]), "unk");
        int same = 1;
        for (int32_t i = 0; i < at_vocab_size(all[k]); i++)
            same &= strcmp(at_vocab_str(back, i), at_vocab_str(all[k], i)) == 0 &&
                    at_vocab_find(back, at_vocab_str(all[k], i)) == i;
        CHECK(same, "entries of vocab %d", k);
        CHECK_OK(at_vocab_to_string(back, &again, &len2, &e));
        CHECK(text && again && len == len2 && strcmp(text, again) == 0, "text round trip");
        CHECK(text && len == strlen(text), "length");
        free(text);
        free(again);
        at_vocab_free(back);
    }
    at_nlu_vocab_free(&v);

    /* Hand-made texts: a last line without '\n', non-ASCII, and each kind of bad entry. */
    at_vocab *x = NULL;
    CHECK_OK(at_vocab_from_string(&x, "<pad>\n<unk>\nclásicos\nlast", &e));
    CHECK(at_vocab_size(x) == 4 && at_vocab_find(x, "last") == 3 && at_vocab_unk(x) == 1, "tail");
    at_vocab_free(x);
    CHECK_OK(at_vocab_from_string(&x, "", &e));
    CHECK(at_vocab_size(x) == 0, "empty vocab");
    char *t = NULL;
    CHECK_OK(at_vocab_to_string(x, &t, NULL, &e));
    CHECK(t && t[0] == '\0', "empty text");
    free(t);
    CHECK(at_vocab_add(x, "two words", NULL, &e) == AT_E_INVALID, "space in entry");
    CHECK(at_vocab_add(x, "", NULL, &e) == AT_E_INVALID, "empty entry");
    at_vocab_free(x);
    struct {
        const char *text, *needle;
    } bad[] = {{"a\nb\na\n", "line 3: duplicate of line 1"},
               {"a\n\nb\n", "line 2: empty"},
               {"a\nb c\n", "line 2: entry contains whitespace"},
               {"a\r\n", "line 1: entry contains whitespace"},
               {"\xc3\n", "line 1: entry is not valid UTF-8"}};
    for (int i = 0; i < 5; i++) {
        x = NULL;
        CHECK(at_vocab_from_string(&x, bad[i].text, &e) == AT_E_FORMAT && x == NULL, "bad %d", i);
        CHECK(strstr(e.msg, bad[i].needle) != NULL, "\"%s\" lacks \"%s\"", e.msg, bad[i].needle);
    }
}

/* ---- encoding and unknown labels --------------------------------------------------------- */

static void test_unknown_labels(void) {
    write_split("play jazz\nbook it\n", "O B-genre\nO O\n", "play\nbook\n");
    at_split *train = load(g_tmp);
    write_split("play techno now\nfly away\n", "O B-genre B-when\nO B-dest\n", "play\nfly\n");
    at_split *test = load(g_tmp);
    if (!train || !test) goto done;
    at_nlu_vocab v;
    at_err e = {0};
    CHECK_OK(at_nlu_vocab_build(&v, train, NULL, &e));
    at_encode_stats st;
    CHECK_OK(at_split_encode(test, &v, &st, &e));
    /* Unknown: techno, now, fly, away (4 words); B-when, B-dest; intent fly. */
    CHECK(st.tokens == 5 && st.unk_words == 4, "unk words %lld", (long long)st.unk_words);
    CHECK(st.unk_slot_labels == 2 && st.unk_intents == 1, "unknown labels %lld %lld",
          (long long)st.unk_slot_labels, (long long)st.unk_intents);
    CHECK(strcmp(st.unknown, "B-when B-dest fly") == 0, "names '%s'", st.unknown);
    CHECK(test->slot_ids[2] == AT_IGNORE_INDEX && test->slot_ids[4] == AT_IGNORE_INDEX, "ignored");
    CHECK(test->slot_ids[1] == at_vocab_find(v.slots, "B-genre"), "known slot");
    CHECK(test->intent_ids[0] == at_vocab_find(v.intents, "play"), "known intent");
    CHECK(test->intent_ids[1] == AT_IGNORE_INDEX, "unknown intent");
    CHECK(test->word_ids[0] == at_vocab_find(v.words, "play") && test->word_ids[1] == AT_UNK_ID,
          "word ids");
    char line[512];
    at_encode_stats_str(&st, "test", line, sizeof line);
    CHECK(strstr(line, "1 intents and 2 slot labels") && strstr(line, "B-when"), "%s", line);
    /* The strings stay for metrics. */
    CHECK(strcmp(test->slots[2], "B-when") == 0, "gold string kept");
    at_nlu_vocab_free(&v);
done:
    at_split_free(train);
    at_split_free(test);
    remove_split_files(g_tmp);
}

/* ---- batches ----------------------------------------------------------------------------- */

static void test_batches(void) {
    /* Sentence 1 holds a 20-letter word and a 2-byte character. */
    write_split("play jazz\nbook a table now abcdefghijklmnopqrst\nhé\n",
                "O B-genre\nO O O B-time B-x\nO\n", "play\nbook\nhi\n");
    at_split *s = load(g_tmp);
    if (!s) return;
    at_nlu_vocab v;
    at_err e = {0};
    CHECK_OK(at_nlu_vocab_build(&v, s, NULL, &e));
    CHECK_OK(at_split_encode(s, &v, NULL, &e));
    at_batch b;
    CHECK_OK(at_batch_alloc(&b, 4, s->max_len, AT_CHAR_WIDTH, &e));
    int64_t idx[3] = {0, 1, 2};
    CHECK_OK(at_batch_fill(&b, s, idx, 3, &e));
    CHECK(b.B == 3 && b.T == 5 && b.W == 16, "shape %lld %lld %lld", (long long)b.B, (long long)b.T,
          (long long)b.W);
    int64_t lens[3] = {2, 5, 1};
    float mask_sum = 0;
    int ok_pad = 1, ok_real = 1;
    for (int i = 0; i < 3; i++) {
        CHECK(b.lengths[i] == lens[i] && b.index[i] == i, "length %d", i);
        CHECK(b.intents[i] == s->intent_ids[i] && b.intents[i] >= 0, "intent %d", i);
        for (int t = 0; t < b.T; t++) {
            int64_t o = i * b.T + t;
            mask_sum += b.mask[o];
            if (t >= lens[i]) {
                ok_pad &=
                    b.tokens[o] == AT_PAD_ID && b.mask[o] == 0.0f && b.slots[o] == AT_IGNORE_INDEX;
                for (int k = 0; k < b.W; k++) ok_pad &= b.chars[o * b.W + k] == AT_PAD_ID;
            } else {
                int64_t tok = s->start[i] + t;
                ok_real &= b.tokens[o] == at_vocab_find(v.words, s->words[tok]) &&
                           b.mask[o] == 1.0f && b.slots[o] == at_vocab_find(v.slots, s->slots[tok]);
            }
        }
    }
    CHECK(mask_sum == 8.0f, "mask sum %g", mask_sum);
    CHECK(ok_pad, "padding positions");
    CHECK(ok_real, "real positions");
    /* Characters: "jazz" is j a z z then padding; the long word is cut at 16; "hé" is 2. */
    int64_t *jazz = b.chars + (0 * b.T + 1) * b.W;
    CHECK(jazz[0] == at_vocab_find(v.chars, "j") && jazz[2] == at_vocab_find(v.chars, "z") &&
              jazz[3] == jazz[2] && jazz[4] == AT_PAD_ID,
          "chars of jazz");
    int64_t *lw = b.chars + (1 * b.T + 4) * b.W;
    CHECK(lw[15] == at_vocab_find(v.chars, "p") && lw[0] == at_vocab_find(v.chars, "a"),
          "long word cut at 16");
    int64_t *he = b.chars + (2 * b.T + 0) * b.W;
    CHECK(he[1] == at_vocab_find(v.chars, "é") && he[1] > AT_UNK_ID && he[2] == AT_PAD_ID,
          "two-byte character is one char");

    /* Without the long word, W is the longest word: "play" and "jazz" = 4. */
    int64_t idx2[2] = {2, 0};
    CHECK_OK(at_batch_fill(&b, s, idx2, 2, &e));
    CHECK(b.B == 2 && b.T == 2 && b.W == 4, "W %lld", (long long)b.W);
    CHECK(b.index[0] == 2 && b.lengths[0] == 1 && b.tokens[1] == AT_PAD_ID, "order kept");

    /* Capacity and argument errors. */
    int64_t five[5] = {0, 1, 2, 0, 1};
    CHECK(at_batch_fill(&b, s, five, 5, &e) == AT_E_SHAPE, "B over capacity");
    int64_t out_of_range[1] = {3};
    CHECK(at_batch_fill(&b, s, out_of_range, 1, &e) == AT_E_INVALID, "index range");
    CHECK(at_batch_fill(&b, s, idx, 0, &e) == AT_E_INVALID, "empty batch");
    at_batch_free(&b);
    CHECK(b.tokens == NULL, "freed");
    CHECK(at_batch_alloc(&b, 0, 4, 0, &e) == AT_E_INVALID, "bad capacity");
    CHECK(at_batch_alloc(&b, 4, 4, 17, &e) == AT_E_INVALID, "W over AT_CHAR_WIDTH");

    /* Caller-owned arrays, T capacity 3, no chars and no slots wanted. */
    int64_t tokens[2 * 3], lengths[2], intents[2];
    float mask[2 * 3];
    at_batch mine = {0};
    mine.cap_B = 2;
    mine.cap_T = 3;
    mine.tokens = tokens;
    mine.lengths = lengths;
    mine.mask = mask;
    mine.intents = intents;
    int64_t pair[2] = {0, 2};
    CHECK_OK(at_batch_fill(&mine, s, pair, 2, &e));
    CHECK(mine.T == 2 && mine.W == 0 && tokens[3] == AT_PAD_ID && mask[3] == 0.0f, "caller");
    int64_t long1[1] = {1};
    CHECK(at_batch_fill(&mine, s, long1, 1, &e) == AT_E_SHAPE, "T over capacity");
    CHECK(strstr(e.msg, "T=5") != NULL, "%s", e.msg);
    at_batch_free(&mine); /* forgets, does not free the stack arrays */
    CHECK(mine.tokens == NULL, "forgotten");

    /* Unlabelled sentences batch with ignored labels. */
    CHECK_OK(at_split_label_fraction(s, 0.0, 7, &e));
    CHECK_OK(at_batch_alloc(&b, 4, s->max_len, 0, &e));
    CHECK_OK(at_batch_fill(&b, s, idx, 3, &e));
    int all_ignored = 1;
    for (int i = 0; i < 3; i++) {
        all_ignored &= b.intents[i] == AT_IGNORE_INDEX;
        for (int t = 0; t < b.T; t++) all_ignored &= b.slots[i * b.T + t] == AT_IGNORE_INDEX;
    }
    CHECK(all_ignored && b.chars == NULL && b.W == 0, "unlabelled batch");
    at_batch_free(&b);

    /* Batching before encoding is an error, not a crash. */
    at_split *raw = load(g_tmp);
    CHECK_OK(at_batch_alloc(&b, 4, 8, 0, &e));
    CHECK(raw && at_batch_fill(&b, raw, idx, 1, &e) == AT_E_INVALID, "not encoded");
    at_batch_free(&b);
    at_split_free(raw);
    at_nlu_vocab_free(&v);
    at_split_free(s);
    remove_split_files(g_tmp);
}

static void test_word_dropout(const at_split *s) {
    at_batch b;
    at_err e = {0};
    if (at_batch_alloc(&b, 64, s->max_len, 0, &e) != AT_OK) {
        CHECK(0, "%s", e.msg);
        return;
    }
    int64_t idx[64];
    for (int i = 0; i < 64; i++) idx[i] = i;
    CHECK_OK(at_batch_fill(&b, s, idx, 64, &e));
    int64_t real = 0;
    for (int i = 0; i < 64; i++) real += b.lengths[i];
    int64_t *orig = malloc(sizeof(int64_t) * (size_t)(b.B * b.T));
    int64_t *first = malloc(sizeof(int64_t) * (size_t)(b.B * b.T));
    if (!orig || !first) {
        CHECK(0, "malloc");
        goto done;
    }
    memcpy(orig, b.tokens, sizeof(int64_t) * (size_t)(b.B * b.T));
    CHECK(at_batch_word_dropout(&b, 0.0, AT_UNK_ID, 1, 0) == 0, "p = 0");
    int64_t d = at_batch_word_dropout(&b, 0.5, AT_UNK_ID, 1, 0);
    memcpy(first, b.tokens, sizeof(int64_t) * (size_t)(b.B * b.T));
    /* About half of the real tokens (those not <unk> already); 5 sigma is about +-0.09. */
    CHECK(d > real * 0.35 && d < real * 0.65, "dropped %lld of %lld", (long long)d,
          (long long)real);
    int pad_kept = 1, only_unk = 1;
    for (int64_t i = 0; i < b.B; i++)
        for (int64_t t = 0; t < b.T; t++) {
            int64_t o = i * b.T + t;
            if (t >= b.lengths[i])
                pad_kept &= b.tokens[o] == AT_PAD_ID;
            else
                only_unk &= b.tokens[o] == orig[o] || b.tokens[o] == AT_UNK_ID;
        }
    CHECK(pad_kept && only_unk, "padding untouched, changes are <unk>");
    /* Same seed and step: same mask; another step: another mask. */
    memcpy(b.tokens, orig, sizeof(int64_t) * (size_t)(b.B * b.T));
    CHECK(at_batch_word_dropout(&b, 0.5, AT_UNK_ID, 1, 0) == d, "repeatable count");
    CHECK(memcmp(b.tokens, first, sizeof(int64_t) * (size_t)(b.B * b.T)) == 0, "repeatable");
    memcpy(b.tokens, orig, sizeof(int64_t) * (size_t)(b.B * b.T));
    at_batch_word_dropout(&b, 0.5, AT_UNK_ID, 1, 1);
    CHECK(memcmp(b.tokens, first, sizeof(int64_t) * (size_t)(b.B * b.T)) != 0, "step varies");
    memcpy(b.tokens, orig, sizeof(int64_t) * (size_t)(b.B * b.T));
    int64_t all = at_batch_word_dropout(&b, 1.0, AT_UNK_ID, 1, 2);
    int64_t unk_before = 0;
    for (int64_t i = 0; i < b.B * b.T; i++) unk_before += orig[i] == AT_UNK_ID;
    CHECK(all == real - unk_before, "p = 1 drops %lld of %lld", (long long)all, (long long)real);
done:
    free(orig);
    free(first);
    at_batch_free(&b);
}

/* ---- epochs and label fractions ---------------------------------------------------------- */

static int is_permutation(const at_epoch *ep, int64_t n_split, int64_t want) {
    if (ep->n != want || ep->start[0] != 0 || ep->start[ep->n_batches] != ep->n) return 0;
    char *seen = calloc((size_t)n_split + 1, 1);
    if (!seen) return 0;
    int ok = 1;
    for (int64_t i = 0; i < ep->n; i++) {
        int64_t k = ep->order[i];
        if (k < 0 || k >= n_split || seen[k])
            ok = 0;
        else
            seen[k] = 1;
    }
    free(seen);
    return ok;
}

static void test_epochs(const at_split *s, int64_t bs) {
    at_epoch file, shuf, buck, buck2, buck_e1;
    at_err e = {0};
    CHECK_OK(at_epoch_plan(&file, s, AT_SUBSET_ALL, AT_ORDER_FILE, bs, 5, 0, &e));
    CHECK_OK(at_epoch_plan(&shuf, s, AT_SUBSET_ALL, AT_ORDER_SHUFFLE, bs, 5, 0, &e));
    CHECK_OK(at_epoch_plan(&buck, s, AT_SUBSET_ALL, AT_ORDER_BUCKET, bs, 5, 0, &e));
    CHECK_OK(at_epoch_plan(&buck2, s, AT_SUBSET_ALL, AT_ORDER_BUCKET, bs, 5, 0, &e));
    CHECK_OK(at_epoch_plan(&buck_e1, s, AT_SUBSET_ALL, AT_ORDER_BUCKET, bs, 5, 1, &e));
    int64_t nb = (s->n + bs - 1) / bs;
    CHECK(file.n_batches == nb && shuf.n_batches == nb && buck.n_batches == nb, "batches");
    CHECK(is_permutation(&file, s->n, s->n) && is_permutation(&shuf, s->n, s->n) &&
              is_permutation(&buck, s->n, s->n),
          "each sentence once");
    int identity = 1;
    for (int64_t i = 0; i < s->n; i++) identity &= file.order[i] == i;
    CHECK(identity, "file order");
    int sizes = 1, short_batches = 0;
    for (int64_t k = 0; k < nb; k++) {
        int64_t n = buck.start[k + 1] - buck.start[k];
        sizes &= n >= 1 && n <= bs;
        short_batches += n < bs;
    }
    CHECK(sizes && short_batches <= 1, "batch sizes");
    CHECK(memcmp(buck.order, buck2.order, sizeof(int64_t) * (size_t)s->n) == 0, "deterministic");
    CHECK(memcmp(buck.order, buck_e1.order, sizeof(int64_t) * (size_t)s->n) != 0,
          "epoch varies the order");
    /* Bucketing must cut padding well below a random order's. */
    int64_t pad_shuf = at_epoch_padding(&shuf, s), pad_buck = at_epoch_padding(&buck, s);
    printf("%s: padding per epoch at batch %lld: shuffled %lld, bucketed %lld\n", s->path,
           (long long)bs, (long long)pad_shuf, (long long)pad_buck);
    CHECK(pad_buck * 4 < pad_shuf, "bucketed padding %lld vs shuffled %lld", (long long)pad_buck,
          (long long)pad_shuf);
    /* Bucketed batches are cut from one sorted order, so their length ranges only touch at
     * the ends: the spreads add up to at most the longest minus the shortest length. */
    int64_t spread = 0, lo_all = INT64_MAX, hi_all = 0;
    for (int64_t k = 0; k < nb; k++) {
        int64_t lo = INT64_MAX, hi = 0;
        for (int64_t i = buck.start[k]; i < buck.start[k + 1]; i++) {
            int64_t l = sent_len(s, buck.order[i]);
            lo = l < lo ? l : lo;
            hi = l > hi ? l : hi;
        }
        spread += hi - lo;
        lo_all = lo < lo_all ? lo : lo_all;
        hi_all = hi > hi_all ? hi : hi_all;
    }
    CHECK(spread <= hi_all - lo_all, "length spreads add up to %lld, range %lld", (long long)spread,
          (long long)(hi_all - lo_all));
    at_epoch_free(&file);
    at_epoch_free(&shuf);
    at_epoch_free(&buck);
    at_epoch_free(&buck2);
    at_epoch_free(&buck_e1);
    CHECK(at_epoch_plan(&file, s, AT_SUBSET_ALL, AT_ORDER_BUCKET, 0, 5, 0, &e) == AT_E_INVALID,
          "batch size 0");
}

static void test_label_fraction(at_split *s) {
    at_err e = {0};
    int64_t n = s->n;
    uint8_t *ten = malloc((size_t)n), *again = malloc((size_t)n);
    if (!ten || !again) {
        free(ten);
        free(again);
        CHECK(0, "malloc");
        return;
    }
    CHECK_OK(at_split_label_fraction(s, 0.10, 42, &e));
    int64_t want10 = (int64_t)floor(0.10 * (double)n + 0.5);
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) count += s->labelled[i];
    CHECK(s->n_labelled == want10 && count == want10, "10%%: %lld of %lld", (long long)count,
          (long long)n);
    memcpy(ten, s->labelled, (size_t)n);
    CHECK_OK(at_split_label_fraction(s, 0.10, 42, &e));
    CHECK(memcmp(ten, s->labelled, (size_t)n) == 0, "same seed, same sentences");
    CHECK_OK(at_split_label_fraction(s, 0.10, 43, &e));
    CHECK(memcmp(ten, s->labelled, (size_t)n) != 0, "another seed, other sentences");
    CHECK_OK(at_split_label_fraction(s, 0.02, 42, &e));
    int64_t want2 = (int64_t)floor(0.02 * (double)n + 0.5), subset = 1;
    for (int64_t i = 0; i < n; i++) subset &= !s->labelled[i] || ten[i];
    CHECK(s->n_labelled == want2 && subset, "2%% is %lld and inside the 10%%",
          (long long)s->n_labelled);
    memcpy(again, s->labelled, (size_t)n);

    /* Epoch subsets follow the flags. */
    at_epoch lab, unl;
    CHECK_OK(at_epoch_plan(&lab, s, AT_SUBSET_LABELLED, AT_ORDER_BUCKET, 32, 1, 0, &e));
    CHECK_OK(at_epoch_plan(&unl, s, AT_SUBSET_UNLABELLED, AT_ORDER_SHUFFLE, 32, 1, 0, &e));
    CHECK(is_permutation(&lab, n, want2) && is_permutation(&unl, n, n - want2), "subsets");
    int flags = 1;
    for (int64_t i = 0; i < lab.n; i++) flags &= s->labelled[lab.order[i]] == 1;
    for (int64_t i = 0; i < unl.n; i++) flags &= s->labelled[unl.order[i]] == 0;
    CHECK(flags, "subset members");
    at_epoch_free(&lab);
    at_epoch_free(&unl);

    CHECK_OK(at_split_label_fraction(s, 0.0, 42, &e));
    CHECK(s->n_labelled == 0, "0%%");
    CHECK_OK(at_epoch_plan(&lab, s, AT_SUBSET_LABELLED, AT_ORDER_BUCKET, 32, 1, 0, &e));
    CHECK(lab.n == 0 && lab.n_batches == 0, "empty subset");
    at_epoch_free(&lab);
    CHECK(at_split_label_fraction(s, 1.5, 42, &e) == AT_E_INVALID, "fraction > 1");
    CHECK(at_split_label_fraction(s, NAN, 42, &e) == AT_E_INVALID, "NaN fraction");
    CHECK(at_split_label_fraction(s, -0.1, 42, &e) == AT_E_INVALID, "fraction < 0");
    CHECK_OK(at_split_label_fraction(s, 1.0, 42, &e));
    CHECK(s->n_labelled == n, "100%%");
    free(ten);
    free(again);
}

/* ---- the sample corpus and SNIPS --------------------------------------------------------- */

static void test_sample(void) {
    char dir[3][2200];
    const char *names[3] = {"train", "valid", "test"};
    const int64_t sizes[3] = {1500, 200, 200};
    at_split *sp[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        snprintf(dir[i], sizeof dir[i], "%s/data/sample/%s", g_src, names[i]);
        sp[i] = load(dir[i]);
        CHECK(sp[i] && sp[i]->n == sizes[i], "%s sentences", names[i]);
    }
    if (!sp[0] || !sp[1] || !sp[2]) goto done;
    at_nlu_vocab v;
    at_err e = {0};
    CHECK_OK(at_nlu_vocab_build(&v, sp[0], NULL, &e));
    CHECK(at_vocab_size(v.intents) == 5, "5 intents, got %d", at_vocab_size(v.intents));
    CHECK(at_vocab_size(v.slots) == 29, "29 slot labels, got %d", at_vocab_size(v.slots));
    CHECK(strcmp(at_vocab_str(v.slots, 0), "O") == 0, "O is slot 0");
    at_encode_stats st;
    CHECK_OK(at_split_encode(sp[0], &v, &st, &e));
    CHECK(st.unk_words == 0 && st.unk_slot_labels == 0, "train encodes fully");
    for (int i = 1; i < 3; i++) {
        CHECK_OK(at_split_encode(sp[i], &v, &st, &e));
        /* The held-out values of gen_sample.py are out of vocabulary; the labels are not. */
        CHECK(st.unk_words > 0 && st.unk_slot_labels == 0 && st.unk_intents == 0,
              "%s: %lld unk words", names[i], (long long)st.unk_words);
    }
    test_vocab_roundtrip(sp[0]);
    test_word_dropout(sp[0]);
    test_epochs(sp[0], 32);
    test_label_fraction(sp[0]);
    at_nlu_vocab_free(&v);
done:
    for (int i = 0; i < 3; i++) at_split_free(sp[i]);
}

static void test_snips(void) {
    char base[2200], dir[2300], probe[2400];
    snprintf(base, sizeof base, "%s/../shared/data/snips", g_src);
    snprintf(probe, sizeof probe, "%s/train/seq.in", base);
    if (!file_exists(probe)) {
        printf("test_dataset: %s not found; skipping the SNIPS checks\n", base);
        return;
    }
    const char *names[3] = {"train", "valid", "test"};
    const int64_t sizes[3] = {13084, 700, 700};
    /* Counted independently with a short Python script over the same files. */
    const int64_t tokens[3] = {117700, 6384, 6354};
    const int64_t unk_words[3] = {0, 355, 378};
    at_split *sp[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        snprintf(dir, sizeof dir, "%s/%s", base, names[i]);
        sp[i] = load(dir);
        CHECK(sp[i] && sp[i]->n == sizes[i] && sp[i]->n_tokens == tokens[i],
              "%s: %lld sentences, %lld tokens", names[i], sp[i] ? (long long)sp[i]->n : -1LL,
              sp[i] ? (long long)sp[i]->n_tokens : -1LL);
    }
    if (!sp[0] || !sp[1] || !sp[2]) goto done;
    at_split *tr = sp[0];
    CHECK(tr->max_len == 35, "longest train sentence %d", tr->max_len);
    /* Line 2 ends with a space and holds a non-ASCII word. */
    CHECK(sent_len(tr, 1) == 9 && strcmp(tr->words[tr->start[1] + 7], "clásicos") == 0, "line 2");
    CHECK(strcmp(tr->intents[0], "PlayMusic") == 0 && strcmp(tr->slots[2], "B-artist") == 0,
          "line 1");
    at_nlu_vocab v;
    at_err e = {0};
    CHECK_OK(at_nlu_vocab_build(&v, tr, NULL, &e));
    CHECK(at_vocab_size(v.intents) == 7, "7 intents, got %d", at_vocab_size(v.intents));
    CHECK(at_vocab_size(v.slots) == 72, "72 slot labels, got %d", at_vocab_size(v.slots));
    CHECK(at_vocab_size(v.words) == 11418 + 2, "words %d", at_vocab_size(v.words));
    CHECK(at_vocab_size(v.chars) == 88 + 2, "chars %d", at_vocab_size(v.chars));
    CHECK(strcmp(at_vocab_str(v.words, 2), "the") == 0 &&
              strcmp(at_vocab_str(v.words, 3), "a") == 0,
          "most frequent words first");
    CHECK(strcmp(at_vocab_str(v.intents, 0), "AddToPlaylist") == 0, "intent order");
    for (int i = 0; i < 3; i++) {
        at_encode_stats st;
        CHECK_OK(at_split_encode(sp[i], &v, &st, &e));
        CHECK(st.unk_words == unk_words[i] && st.unk_slot_labels == 0 && st.unk_intents == 0,
              "%s: %lld unk words, %lld unknown slot labels", names[i], (long long)st.unk_words,
              (long long)st.unk_slot_labels);
    }
    test_epochs(tr, 32);
    /* The 2 % setting of DESIGN.md section 6: round(0.02 * 13084) = 262 labelled. */
    CHECK_OK(at_split_label_fraction(tr, 0.02, 1, &e));
    CHECK(tr->n_labelled == 262, "2%% of SNIPS: %lld", (long long)tr->n_labelled);
    at_nlu_vocab_free(&v);
done:
    for (int i = 0; i < 3; i++) at_split_free(sp[i]);
}

int main(void) {
    const char *src = getenv("ATTUNE_SRC");
    snprintf(g_src, sizeof g_src, "%s", src && *src ? src : "..");
    const char *tmpdir = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/attune_dataset_XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "test_dataset: cannot make a temporary folder\n");
        return 1;
    }
    test_malformed();
    test_sentences();
    test_vocab_order();
    test_unknown_labels();
    test_batches();
    test_sample();
    test_snips();
    remove_split_files(g_tmp);
    rmdir(g_tmp);
    return check_done("test_dataset");
}
