/* What the joint NLU model tests share: the sample corpus's training split (encoded with its
 * own vocabularies), a small model configuration, a padded batch of four sentences of
 * different lengths, and the feeds of a model's net for that batch. Include once per test. */
#ifndef ATTUNE_TESTS_NLU_FIXTURE_H
#define ATTUNE_TESTS_NLU_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "attune/dataset.h"
#include "attune/nlu.h"
#include "attune/session.h"
#include "check.h"

static at_split *g_train;
static int g_threads = 1; /* the sessions of make() */

typedef struct batch {
    at_batch b;
    int64_t chars[64 * 32 * AT_CHAR_WIDTH];
    bool training;
    bool with_eps; /* feed attack_eps (graphs whose fetches use the attack values) */
    float lambda, lr, eps;
} batch;

/* The first sentences of four different lengths, so the batch has padding. */
static void fill_batch(batch *bt, float lambda, float lr) {
    at_err e = {0};
    int64_t idx[4];
    int n = 0;
    for (int64_t i = 0; i < g_train->n && n < 4; i++) {
        int64_t len = g_train->start[i + 1] - g_train->start[i];
        bool seen = false;
        for (int k = 0; k < n; k++)
            seen |= g_train->start[idx[k] + 1] - g_train->start[idx[k]] == len;
        if (!seen) idx[n++] = i;
    }
    CHECK_OK(at_batch_alloc(&bt->b, 4, g_train->max_len, AT_CHAR_WIDTH, &e));
    CHECK_OK(at_batch_fill(&bt->b, g_train, idx, n, &e));
    /* The graph takes the full character window. */
    int64_t B = bt->b.B, T = bt->b.T, W = bt->b.W;
    for (int64_t p = 0; p < B * T; p++)
        for (int64_t w = 0; w < AT_CHAR_WIDTH; w++)
            bt->chars[p * AT_CHAR_WIDTH + w] = w < W ? bt->b.chars[p * W + w] : 0;
    bt->training = false;
    bt->lambda = lambda;
    bt->lr = lr;
    bt->eps = 0;
}

static int feeds(const at_nlu_net *n, batch *bt, at_feed *f) {
    const at_batch *b = &bt->b;
    at_shape bt2 = AT_SHAPE(b->B, b->T), bv = AT_SHAPE(b->B);
    int k = 0;
    f[k++] = (at_feed){n->tokens, {AT_I64, bt2, b->tokens}};
    f[k++] = (at_feed){n->mask, {AT_F32, bt2, b->mask}};
    if (n->lengths != AT_NONE) f[k++] = (at_feed){n->lengths, {AT_I64, bv, b->lengths}};
    if (n->chars != AT_NONE)
        f[k++] = (at_feed){n->chars, {AT_I64, AT_SHAPE(b->B, b->T, AT_CHAR_WIDTH), bt->chars}};
    f[k++] = (at_feed){n->training, {AT_BOOL, AT_SCALAR, &bt->training}};
    f[k++] = (at_feed){n->slots, {AT_I64, bt2, b->slots}};
    f[k++] = (at_feed){n->intents, {AT_I64, bv, b->intents}};
    f[k++] = (at_feed){n->lambda, {AT_F32, AT_SCALAR, &bt->lambda}};
    f[k++] = (at_feed){n->lr, {AT_F32, AT_SCALAR, &bt->lr}};
    if (bt->with_eps) f[k++] = (at_feed){n->attack_eps, {AT_F32, AT_SCALAR, &bt->eps}};
    return k;
}

/* Small enough for finite differences; each test changes what it studies. */
static at_nlu_config small_config(void) {
    at_nlu_config c = at_nlu_config_default();
    c.emb_dim = 12;
    c.d_model = 16;
    c.heads = 2;
    c.ffn_dim = 24;
    c.g_dim = 8;
    c.g_heads = 2;
    c.attn_dim = 8;
    c.attn_heads = 2;
    c.d_channels = 4;
    c.d_hidden = 6;
    c.char_channels = 5;
    c.dropout = 0.1f;
    return c;
}

static at_nlu_model *make(const at_nlu_config *c) {
    at_err e = {0};
    at_nlu_model *m = NULL;
    at_status st = at_nlu_model_from_split(&m, c, g_train, &e);
    CHECK(st == AT_OK, "build: %s", e.msg);
    if (m) {
        at_session_opts o = at_session_defaults();
        o.threads = g_threads;
        CHECK_OK(at_nlu_model_set_session(m, &o, &e));
    }
    return m;
}

/* Reads $ATTUNE_SRC/data/sample/train into g_train and encodes it with its own vocabularies.
 * 0, or -1 with a message naming the test. */
static int nlu_fixture_open(const char *test) {
    const char *src = getenv("ATTUNE_SRC");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/data/sample/train", src ? src : "..");
    at_err e = {0};
    if (at_dataset_split(&g_train, dir, &e)) {
        fprintf(stderr, "%s: %s\n", test, e.msg);
        return -1;
    }
    at_nlu_vocab v = {0};
    CHECK_OK(at_nlu_vocab_build(&v, g_train, NULL, &e));
    CHECK_OK(at_split_encode(g_train, &v, NULL, &e));
    at_nlu_vocab_free(&v);
    return 0;
}

static void nlu_fixture_close(void) {
    at_split_free(g_train);
    g_train = NULL;
}

#endif
