/* conlleval spans and F1, per-type counts, intent, token and sentence accuracy, the report. */
#include "attune/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attune/dataset.h"
#include "check.h"

#define N(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

static void check_spans(const char *what, const char *const *tags, int64_t n, const at_span *want,
                        int64_t n_want) {
    at_span got[16];
    int64_t k = at_bio_spans(tags, n, got, 16);
    CHECK(k == n_want, "%s: %lld spans, want %lld", what, (long long)k, (long long)n_want);
    for (int64_t i = 0; i < k && i < n_want; i++)
        CHECK(got[i].start == want[i].start && got[i].end == want[i].end &&
                  strcmp(got[i].type, want[i].type) == 0,
              "%s: span %lld is [%lld,%lld) %s, want [%lld,%lld) %s", what, (long long)i,
              (long long)got[i].start, (long long)got[i].end, got[i].type, (long long)want[i].start,
              (long long)want[i].end, want[i].type);
}

static void test_spans(void) {
    /* Plain BIO. */
    const char *a[] = {"B-artist", "I-artist", "O", "B-song"};
    check_spans("plain", a, N(a), (at_span[]){{0, 2, "artist"}, {3, 4, "song"}}, 2);
    /* An I- with no B- before it starts a span, after O and at the sentence start. */
    const char *b[] = {"I-x", "O", "I-x", "I-x"};
    check_spans("I without B", b, N(b), (at_span[]){{0, 1, "x"}, {2, 4, "x"}}, 2);
    /* B-x B-x: two adjacent spans of one type. */
    const char *c[] = {"B-x", "B-x", "I-x"};
    check_spans("adjacent", c, N(c), (at_span[]){{0, 1, "x"}, {1, 3, "x"}}, 2);
    /* B-x I-y: the type change ends x and starts y. */
    const char *d[] = {"B-x", "I-y", "I-y", "O"};
    check_spans("type change", d, N(d), (at_span[]){{0, 1, "x"}, {1, 3, "y"}}, 2);
    /* A span open at the end of the sentence is closed there; types may contain '-'. */
    const char *e[] = {"O", "B-from-city", "I-from-city"};
    check_spans("at the end", e, N(e), (at_span[]){{1, 3, "from-city"}}, 1);
    const char *f[] = {"O", "O"};
    check_spans("none", f, N(f), NULL, 0);
    check_spans("empty", NULL, 0, NULL, 0);
    /* cap limits what is written, not the count. */
    at_span one[1];
    CHECK(at_bio_spans(c, N(c), one, 1) == 2 && one[0].end == 1, "cap");
}

/* Five sentences whose span counts are worked out by hand below. */
static void add_corpus(at_metrics *m) {
    at_err e = {0};
    /* S1, perfect. gold: artist[0,2) song[3,4); pred the same. 2 gold, 2 pred, 2 correct.
     * tokens 4/4; intent right; sentence right. */
    const char *g1[] = {"B-artist", "I-artist", "O", "B-song"};
    CHECK_OK(at_metrics_add(m, "play", "play", g1, g1, 4, &e));
    /* S2, I- without B- in gold: gold artist[1,3) (the I after O starts it); pred
     * artist[1,3) from B-artist I-artist. 1, 1, 1. tokens 3/4 (token 1 differs as a tag);
     * intent wrong; sentence wrong. */
    const char *g2[] = {"O", "I-artist", "I-artist", "O"};
    const char *p2[] = {"O", "B-artist", "I-artist", "O"};
    CHECK_OK(at_metrics_add(m, "play", "book", g2, p2, 4, &e));
    /* S3, adjacent spans of one type: gold city[0,1) city[1,2); pred city[0,2).
     * 2 gold, 1 pred, 0 correct. tokens 2/3; intent right; sentence wrong. */
    const char *g3[] = {"B-city", "B-city", "O"};
    const char *p3[] = {"B-city", "I-city", "O"};
    CHECK_OK(at_metrics_add(m, "weather", "weather", g3, p3, 3, &e));
    /* S4, type mismatch: gold city[0,2); pred B-city I-song = city[0,1) song[1,2).
     * 1 gold, 2 pred, 0 correct. tokens 1/2; intent right; sentence wrong. */
    const char *g4[] = {"B-city", "I-city"};
    const char *p4[] = {"B-city", "I-song"};
    CHECK_OK(at_metrics_add(m, "weather", "weather", g4, p4, 2, &e));
    /* S5, all wrong: gold song[0,1) artist[2,3); pred song[1,2). 2 gold, 1 pred, 0 correct.
     * tokens 0/3; intent wrong. */
    const char *g5[] = {"B-song", "O", "B-artist"};
    const char *p5[] = {"O", "B-song", "O"};
    CHECK_OK(at_metrics_add(m, "play", "weather", g5, p5, 3, &e));
}

static void test_corpus(void) {
    at_metrics *m = NULL;
    at_err e = {0};
    CHECK_OK(at_metrics_new(&m, &e));
    if (!m) return;
    add_corpus(m);
    at_metrics_summary s;
    at_metrics_get(m, &s);
    /* Totals: gold 2+1+2+1+2 = 8, pred 2+1+1+2+1 = 7, correct 2+1 = 3.
     * P = 3/7, R = 3/8, F1 = 2*3/(8+7) = 0.4. */
    CHECK(s.slots.gold == 8 && s.slots.pred == 7 && s.slots.correct == 3, "counts %lld %lld %lld",
          (long long)s.slots.gold, (long long)s.slots.pred, (long long)s.slots.correct);
    CHECK_NEAR(s.slots.precision, 3.0 / 7.0, 1e-12);
    CHECK_NEAR(s.slots.recall, 3.0 / 8.0, 1e-12);
    CHECK_NEAR(s.slots.f1, 0.4, 1e-12);
    /* Tokens 4+4+3+2+3 = 16, right 4+3+2+1+0 = 10; intents 3 of 5; sentences 1 of 5. */
    CHECK(s.tokens == 16 && s.token_correct == 10, "tokens");
    CHECK_NEAR(s.token_acc, 10.0 / 16.0, 1e-12);
    CHECK(s.sentences == 5 && s.intents == 5 && s.intent_correct == 3, "intents");
    CHECK_NEAR(s.intent_acc, 0.6, 1e-12);
    CHECK(s.sentence_correct == 1, "sentences right %lld", (long long)s.sentence_correct);
    CHECK_NEAR(s.sentence_acc, 0.2, 1e-12);

    /* Per type, in byte order:
     *   artist: gold S1 S2 S5 = 3, pred S1 S2 = 2, correct 2: P 1, R 2/3, F1 0.8
     *   city:   gold S3 x2, S4 = 3, pred S3 S4 = 2, correct 0: all 0
     *   song:   gold S1 S5 = 2, pred S1 S4 S5 = 3, correct 1: P 1/3, R 1/2, F1 0.4 */
    CHECK(at_metrics_n_types(m) == 3, "types %d", at_metrics_n_types(m));
    const char *names[] = {"artist", "city", "song"};
    const int64_t gold[] = {3, 3, 2}, pred[] = {2, 2, 3}, corr[] = {2, 0, 1};
    const double P[] = {1.0, 0.0, 1.0 / 3.0}, R[] = {2.0 / 3.0, 0.0, 0.5}, F[] = {0.8, 0.0, 0.4};
    for (int i = 0; i < 3; i++) {
        at_prf p;
        const char *name = at_metrics_type(m, i, &p);
        CHECK(name && strcmp(name, names[i]) == 0, "type %d is %s", i, name ? name : "NULL");
        CHECK(p.gold == gold[i] && p.pred == pred[i] && p.correct == corr[i], "%s counts",
              names[i]);
        CHECK_NEAR(p.precision, P[i], 1e-12);
        CHECK_NEAR(p.recall, R[i], 1e-12);
        CHECK_NEAR(p.f1, F[i], 1e-12);
    }
    CHECK(at_metrics_type(m, 3, NULL) == NULL && at_metrics_type(m, -1, NULL) == NULL, "range");

    /* The report. */
    size_t need = at_metrics_format(m, NULL, 0);
    char *buf = malloc(need + 1);
    if (buf) {
        CHECK(at_metrics_format(m, buf, need + 1) == need && strlen(buf) == need, "length");
        CHECK(strstr(buf, "processed 16 tokens with 8 phrases; found: 7 phrases; correct: 3.\n"),
              "%s", buf);
        CHECK(strstr(buf, "accuracy:  62.50%; precision:  42.86%; recall:  37.50%; FB1:  40.00\n"),
              "%s", buf);
        CHECK(strstr(buf, "           artist: precision: 100.00%; recall:  66.67%; FB1:  80.00  2"
                          "  (gold 3, correct 2)\n"),
              "%s", buf);
        CHECK(strstr(buf, "intent accuracy:  60.00% (3 of 5); sentence accuracy:  20.00% (1 of 5)"),
              "%s", buf);
        /* Too small a buffer: cut, NUL-terminated, same return value. */
        char small[20];
        CHECK(at_metrics_format(m, small, sizeof small) == need && strlen(small) == 19 &&
                  strncmp(small, buf, 19) == 0,
              "truncation");
        /* The stream form writes the same text. */
        FILE *f = tmpfile();
        if (f) {
            CHECK_OK(at_metrics_print(m, f, &e));
            rewind(f);
            char *back = calloc(need + 2, 1);
            size_t got = back ? fread(back, 1, need + 1, f) : 0;
            CHECK(got == need && back && memcmp(back, buf, need) == 0, "print == format");
            free(back);
            fclose(f);
        }
        free(buf);
    }

    /* Errors leave the counts alone. */
    const char *ok[] = {"O", "B-x"};
    const char *with_null[] = {"O", NULL};
    CHECK(at_metrics_add(m, "a", "a", ok, NULL, 2, &e) == AT_E_INVALID, "NULL array");
    CHECK(at_metrics_add(m, "a", "a", ok, with_null, 2, &e) == AT_E_INVALID, "NULL tag");
    CHECK(at_metrics_add(m, "a", "a", ok, ok, -1, &e) == AT_E_INVALID, "negative n");
    at_metrics_get(m, &s);
    CHECK(s.sentences == 5 && s.slots.gold == 8, "unchanged after errors");

    /* Reset starts over. */
    at_metrics_reset(m);
    at_metrics_get(m, &s);
    CHECK(s.sentences == 0 && s.slots.gold == 0 && at_metrics_n_types(m) == 0, "reset");
    CHECK(s.slots.f1 == 0.0 && s.intent_acc == 0.0, "empty metrics are 0, not NaN");
    at_metrics_free(m);
}

static void test_special_cases(void) {
    at_metrics *m = NULL;
    at_err e = {0};
    CHECK_OK(at_metrics_new(&m, &e));
    if (!m) return;
    /* No intent task, a NULL predicted intent, an empty sentence. */
    const char *g[] = {"B-x", "I-x"};
    CHECK_OK(at_metrics_add(m, NULL, NULL, g, g, 2, &e));
    CHECK_OK(at_metrics_add(m, "a", NULL, g, g, 2, &e));
    CHECK_OK(at_metrics_add(m, "a", "a", NULL, NULL, 0, &e));
    at_metrics_summary s;
    at_metrics_get(m, &s);
    /* Sentence 1 has no intent and counts as right by its tags; sentence 2 misses its intent;
     * sentence 3 is right. */
    CHECK(s.sentences == 3 && s.intents == 2 && s.intent_correct == 1, "intents");
    CHECK(s.sentence_correct == 2, "sentences right %lld", (long long)s.sentence_correct);
    CHECK(s.slots.gold == 2 && s.slots.correct == 2 && s.slots.f1 == 1.0, "perfect slots");
    at_metrics_reset(m);

    /* Only O predicted: nothing found, so precision is 0 (not NaN), recall 0, F1 0. */
    const char *gold[] = {"B-x", "O", "B-y"};
    const char *none[] = {"O", "O", "O"};
    CHECK_OK(at_metrics_add(m, NULL, NULL, gold, none, 3, &e));
    at_metrics_get(m, &s);
    CHECK(s.slots.pred == 0 && s.slots.gold == 2 && s.slots.precision == 0.0 &&
              s.slots.recall == 0.0 && s.slots.f1 == 0.0,
          "all O");
    at_metrics_free(m);
}

/* With a label the training split never had: metrics on strings count it as a miss. */
static void test_unknown_gold(void) {
    at_metrics *m = NULL;
    at_err e = {0};
    CHECK_OK(at_metrics_new(&m, &e));
    if (!m) return;
    const char *gold[] = {"B-new", "O"};
    const char *pred[] = {"B-old", "O"};
    CHECK_OK(at_metrics_add(m, "unseen", "seen", gold, pred, 2, &e));
    at_metrics_summary s;
    at_metrics_get(m, &s);
    CHECK(s.slots.gold == 1 && s.slots.pred == 1 && s.slots.correct == 0, "unknown type");
    CHECK(s.intent_correct == 0 && at_metrics_n_types(m) == 2, "unknown intent");
    at_metrics_free(m);
}

/* Gold against itself and against all-O on SNIPS test: F1 1 and 0, and the span count. */
static void test_snips(void) {
    const char *src = getenv("ATTUNE_SRC");
    char dir[2400];
    snprintf(dir, sizeof dir, "%s/../shared/data/snips/test", src && *src ? src : "..");
    at_split *s = NULL;
    at_err e = {0};
    if (at_dataset_split(&s, dir, &e) != AT_OK) {
        printf("test_metrics: %s not readable (%s); skipping the SNIPS checks\n", dir, e.msg);
        return;
    }
    at_metrics *same = NULL, *zero = NULL;
    CHECK_OK(at_metrics_new(&same, &e));
    CHECK_OK(at_metrics_new(&zero, &e));
    const char **all_o = malloc(sizeof(char *) * (size_t)(s->max_len ? s->max_len : 1));
    if (same && zero && all_o) {
        for (int32_t t = 0; t < s->max_len; t++) all_o[t] = "O";
        for (int64_t i = 0; i < s->n; i++) {
            const char *const *g = s->slots + s->start[i];
            int64_t n = s->start[i + 1] - s->start[i];
            CHECK_OK(at_metrics_add(same, s->intents[i], s->intents[i], g, g, n, &e));
            CHECK_OK(at_metrics_add(zero, s->intents[i], "none", g, all_o, n, &e));
        }
        at_metrics_summary a, b;
        at_metrics_get(same, &a);
        at_metrics_get(zero, &b);
        /* 1790 spans, counted independently with a short Python script over the file. */
        CHECK(a.slots.gold == 1790 && a.slots.correct == 1790, "spans %lld",
              (long long)a.slots.gold);
        CHECK(a.slots.f1 == 1.0 && a.intent_acc == 1.0 && a.sentence_acc == 1.0, "gold = gold");
        CHECK(b.slots.f1 == 0.0 && b.intent_acc == 0.0 && b.slots.gold == 1790, "gold vs O");
        CHECK(b.tokens == 6354 && b.token_correct > 0, "tokens");
        /* 39 slot types appear in SNIPS test. */
        CHECK(at_metrics_n_types(same) == 39, "types %d", at_metrics_n_types(same));
    }
    free(all_o);
    at_metrics_free(same);
    at_metrics_free(zero);
    at_split_free(s);
}

int main(void) {
    test_spans();
    test_corpus();
    test_special_cases();
    test_unknown_gold();
    test_snips();
    return check_done("test_metrics");
}
