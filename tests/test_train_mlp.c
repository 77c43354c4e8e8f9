/* Training end to end: forward, at_backward, at_clip_global_norm and at_adamw in one graph,
 * stepped with at_session_run (fetch the loss, target the updates).
 *
 * Part 1: an MLP (Gemm, Relu, Gemm, Relu, Gemm, SoftmaxCrossEntropyLoss) on 2-D points from 8
 * Gaussian blobs on a circle, class = blob mod 4, so each class is two opposite blobs and no
 * linear model separates them (the Bayes accuracy is about 99%). It must reach >= 95% on
 * held-out points, its loss must fall, and two identical runs must give bit-identical
 * parameters and losses.
 * Part 2: an attention classifier (Gather embedding, scaled-dot self-attention with MatMul
 * and Softmax, a residual, mean pooling, MatMul + Add) on token sequences, label = whether
 * token 7 occurs. It must reach >= 95% on held-out sequences. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attune/attune.h"
#include "check.h"

#define PI 3.14159265358979323846

/* ------------------------------------------------------------------------------------------ */
/* The test's own seeded generator (splitmix64), for data and initial weights. */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_unif(rng *r) {
    return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}
static double rng_normal(rng *r) {
    double u1 = rng_unif(r), u2 = rng_unif(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * PI * u2);
}

/* torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void init_uniform(at_graph *g, at_val p, int64_t fan_in, rng *r) {
    at_shape sh = at_value_shape(g, p);
    float *d = at_value_data(g, p);
    double a = 1.0 / sqrt((double)fan_in);
    for (int64_t i = 0; i < at_shape_numel(&sh); i++) d[i] = (float)(a * (2.0 * rng_unif(r) - 1.0));
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static at_tensor tens(at_dtype dt, at_shape sh, void *data) {
    return (at_tensor){dt, sh, data};
}

/* Adds backward, clipping and AdamW for the loss; writes the updates. */
static at_status add_training(at_graph *g, at_val loss, int n, const at_val *params, at_val lr,
                              float max_norm, at_val *updates, at_val *norm) {
    at_val grads[16], clipped[16];
    at_status st = at_backward(g, loss, params, n, grads);
    if (st != AT_OK) return st;
    st = at_clip_global_norm(g, n, grads, max_norm, clipped, norm);
    if (st != AT_OK) return st;
    at_adam_opts o = {0.9f, 0.999f, 1e-8f, 0.01f};
    return at_adamw(g, n, params, clipped, lr, &o, updates);
}

/* ------------------------------------------------------------------------------------------ */
/* Part 1: the MLP. */

#define MLP_IN    2
#define MLP_H     32
#define MLP_C     4
#define MLP_TRAIN 1024
#define MLP_TEST  1000
#define MLP_BATCH 64
#define MLP_STEPS 600
#define MLP_NP    6

static void blobs(rng *r, int n, float *x, int64_t *y) {
    for (int i = 0; i < n; i++) {
        int k = (int)(rng_next(r) % 8);
        double a = k * PI / 4.0;
        x[2 * i] = (float)(2.5 * cos(a) + 0.35 * rng_normal(r));
        x[2 * i + 1] = (float)(2.5 * sin(a) + 0.35 * rng_normal(r));
        y[i] = k % 4;
    }
}

typedef struct run_result {
    float losses[MLP_STEPS];
    float *params; /* all parameters, concatenated (malloc'd) */
    size_t n_params;
    double accuracy;
    double seconds;
    int ok;
} run_result;

static int64_t argmax_row(const float *row, int n) {
    int64_t best = 0;
    for (int c = 1; c < n; c++)
        if (row[c] > row[best]) best = c;
    return best;
}

static void run_mlp(uint64_t seed, run_result *res) {
    memset(res, 0, sizeof *res);
    double t0 = now_s();
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, MLP_IN));
    at_val y = at_input(g, "y", AT_I64, AT_SHAPE(B));
    at_val lr = at_input(g, "lr", AT_F32, at_shape_make(0, NULL));
    at_val p[MLP_NP] = {
        at_param(g, "mlp.w1", AT_F32, AT_SHAPE(MLP_IN, MLP_H), 0),
        at_param(g, "mlp.b1", AT_F32, AT_SHAPE(MLP_H), 0),
        at_param(g, "mlp.w2", AT_F32, AT_SHAPE(MLP_H, MLP_H), 0),
        at_param(g, "mlp.b2", AT_F32, AT_SHAPE(MLP_H), 0),
        at_param(g, "mlp.w3", AT_F32, AT_SHAPE(MLP_H, MLP_C), 0),
        at_param(g, "mlp.b3", AT_F32, AT_SHAPE(MLP_C), 0),
    };
    at_val h = at_relu(g, at_gemm(g, x, p[0], p[1], 1.0f, 1.0f, 0, 0));
    h = at_relu(g, at_gemm(g, h, p[2], p[3], 1.0f, 1.0f, 0, 0));
    at_val logits = at_gemm(g, h, p[4], p[5], 1.0f, 1.0f, 0, 0);
    at_val loss = at_softmax_cross_entropy(g, logits, y, AT_NONE, "mean", INT64_MIN);
    at_val updates[MLP_NP], norm;
    at_status st = add_training(g, loss, MLP_NP, p, lr, 5.0f, updates, &norm);
    CHECK(st == AT_OK && at_graph_status(g) == AT_OK, "mlp build: %s", at_graph_error(g));
    if (st != AT_OK || at_graph_status(g) != AT_OK) {
        at_graph_free(g);
        return;
    }

    rng r = {seed};
    static const int64_t fan_in[MLP_NP] = {MLP_IN, MLP_IN, MLP_H, MLP_H, MLP_H, MLP_H};
    for (int i = 0; i < MLP_NP; i++) init_uniform(g, p[i], fan_in[i], &r);
    static float xtr[MLP_TRAIN * MLP_IN], xte[MLP_TEST * MLP_IN];
    static int64_t ytr[MLP_TRAIN], yte[MLP_TEST];
    rng dr = {1234}; /* the data are the same for every run */
    blobs(&dr, MLP_TRAIN, xtr, ytr);
    blobs(&dr, MLP_TEST, xte, yte);

    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "mlp session: %s", err.msg);
    if (!s) {
        at_graph_free(g);
        return;
    }
    float lrv = 1e-2f;
    int ok = 1;
    for (int step = 0; step < MLP_STEPS && ok; step++) {
        int b0 = (step * MLP_BATCH) % MLP_TRAIN;
        at_feed feeds[3] = {
            {x, tens(AT_F32, AT_SHAPE(MLP_BATCH, MLP_IN), &xtr[b0 * MLP_IN])},
            {y, tens(AT_I64, AT_SHAPE(MLP_BATCH), &ytr[b0])},
            {lr, tens(AT_F32, at_shape_make(0, NULL), &lrv)},
        };
        at_tensor out;
        st = at_session_run(s, feeds, 3, &loss, 1, &out, updates, MLP_NP);
        CHECK(st == AT_OK, "mlp step %d: %s", step, at_session_error(s));
        ok = st == AT_OK;
        if (ok) res->losses[step] = *(const float *)out.data;
    }
    if (ok) {
        /* Held-out accuracy: a forward-only run with another batch size. */
        at_feed feed = {x, tens(AT_F32, AT_SHAPE(MLP_TEST, MLP_IN), xte)};
        at_tensor out;
        st = at_session_run(s, &feed, 1, &logits, 1, &out, NULL, 0);
        CHECK(st == AT_OK, "mlp eval: %s", at_session_error(s));
        ok = st == AT_OK;
        if (ok) {
            int right = 0;
            for (int i = 0; i < MLP_TEST; i++)
                right += argmax_row((const float *)out.data + i * MLP_C, MLP_C) == yte[i];
            res->accuracy = (double)right / MLP_TEST;
        }
    }
    if (ok) {
        size_t total = 0;
        for (int i = 0; i < MLP_NP; i++) {
            at_shape sh = at_value_shape(g, p[i]);
            total += (size_t)at_shape_numel(&sh);
        }
        res->params = malloc(total * sizeof(float));
        res->n_params = total;
        size_t off = 0;
        for (int i = 0; i < MLP_NP; i++) {
            at_shape sh = at_value_shape(g, p[i]);
            size_t n = (size_t)at_shape_numel(&sh);
            memcpy(res->params + off, at_value_data(g, p[i]), n * sizeof(float));
            off += n;
        }
        res->ok = 1;
    }
    res->seconds = now_s() - t0;
    at_session_free(s);
    at_graph_free(g);
}

static double mean_of(const float *v, int from, int to) {
    double s = 0;
    for (int i = from; i < to; i++) s += v[i];
    return s / (to - from);
}

static void test_mlp(void) {
    static run_result a, b;
    run_mlp(7, &a);
    if (!a.ok) return;
    double first = mean_of(a.losses, 0, 20), last = mean_of(a.losses, MLP_STEPS - 20, MLP_STEPS);
    printf("mlp: loss %.4f -> %.4f over %d steps, held-out accuracy %.1f%%, %.2f s\n", first, last,
           MLP_STEPS, 100 * a.accuracy, a.seconds);
    CHECK(a.accuracy >= 0.95, "mlp held-out accuracy %.3f < 0.95", a.accuracy);
    CHECK(last < 0.5 * first && last < 0.3, "mlp loss did not fall enough: %.4f -> %.4f", first,
          last);
    int finite = 1;
    for (int i = 0; i < MLP_STEPS; i++) finite &= isfinite(a.losses[i]) != 0;
    CHECK(finite, "mlp: a loss is not finite");

    run_mlp(7, &b);
    if (b.ok) {
        CHECK(a.n_params == b.n_params &&
                  memcmp(a.params, b.params, a.n_params * sizeof(float)) == 0,
              "mlp: two identical runs gave different parameters");
        CHECK(memcmp(a.losses, b.losses, sizeof a.losses) == 0,
              "mlp: two identical runs gave different losses");
    }
    free(a.params);
    free(b.params);
}

/* ------------------------------------------------------------------------------------------ */
/* Part 2: the attention classifier. */

#define ATT_V     16
#define ATT_T     8
#define ATT_D     16
#define ATT_TRAIN 2048
#define ATT_TEST  1000
#define ATT_BATCH 32
#define ATT_STEPS 500
#define ATT_NP    6
#define ATT_MARK  7

/* Half the sequences hold token 7 once or twice; the others never do. */
static void token_task(rng *r, int n, int64_t *tok, int64_t *y) {
    for (int i = 0; i < n; i++) {
        for (int t = 0; t < ATT_T; t++) {
            int64_t v = (int64_t)(rng_next(r) % (ATT_V - 1));
            tok[i * ATT_T + t] = v >= ATT_MARK ? v + 1 : v;
        }
        y[i] = (int64_t)(rng_next(r) & 1);
        if (y[i]) {
            int k = 1 + (int)(rng_next(r) % 2);
            for (int j = 0; j < k; j++) tok[i * ATT_T + (int)(rng_next(r) % ATT_T)] = ATT_MARK;
        }
    }
}

static void test_attention(void) {
    double t0 = now_s();
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    at_val tok = at_input(g, "tokens", AT_I64, AT_SHAPE(B, ATT_T));
    at_val y = at_input(g, "y", AT_I64, AT_SHAPE(B));
    at_val lr = at_input(g, "lr", AT_F32, at_shape_make(0, NULL));
    at_val p[ATT_NP] = {
        at_param(g, "att.embed", AT_F32, AT_SHAPE(ATT_V, ATT_D), 0),
        at_param(g, "att.wq", AT_F32, AT_SHAPE(ATT_D, ATT_D), 0),
        at_param(g, "att.wk", AT_F32, AT_SHAPE(ATT_D, ATT_D), 0),
        at_param(g, "att.wv", AT_F32, AT_SHAPE(ATT_D, ATT_D), 0),
        at_param(g, "att.wo", AT_F32, AT_SHAPE(ATT_D, 2), 0),
        at_param(g, "att.bo", AT_F32, AT_SHAPE(2), 0),
    };
    at_val x = at_gather(g, p[0], tok, 0); /* [B,T,D] */
    at_val q = at_matmul(g, x, p[1]);
    at_val k = at_matmul(g, x, p[2]);
    at_val v = at_matmul(g, x, p[3]);
    at_val kt = at_transpose(g, k, 3, (const int64_t[]){0, 2, 1});
    at_val scores = at_mul(g, at_matmul(g, q, kt), at_const_f32(g, 1.0f / sqrtf((float)ATT_D)));
    at_val attn = at_softmax(g, scores, -1); /* [B,T,T] */
    at_val h = at_add(g, x, at_matmul(g, attn, v));
    at_val pooled = at_reduce_mean(g, h, 1, (const int64_t[]){1}, 0); /* [B,D] */
    at_val logits = at_add(g, at_matmul(g, pooled, p[4]), p[5]);
    at_val loss = at_softmax_cross_entropy(g, logits, y, AT_NONE, "mean", INT64_MIN);
    at_val updates[ATT_NP], norm;
    at_status st = add_training(g, loss, ATT_NP, p, lr, 5.0f, updates, &norm);
    CHECK(st == AT_OK && at_graph_status(g) == AT_OK, "attention build: %s", at_graph_error(g));
    if (st != AT_OK || at_graph_status(g) != AT_OK) {
        at_graph_free(g);
        return;
    }

    rng r = {99};
    float *emb = at_value_data(g, p[0]);
    for (int i = 0; i < ATT_V * ATT_D; i++) emb[i] = (float)rng_normal(&r);
    for (int i = 1; i < ATT_NP; i++) init_uniform(g, p[i], ATT_D, &r);
    static int64_t ttr[ATT_TRAIN * ATT_T], tte[ATT_TEST * ATT_T], ytr[ATT_TRAIN], yte[ATT_TEST];
    rng dr = {4321};
    token_task(&dr, ATT_TRAIN, ttr, ytr);
    token_task(&dr, ATT_TEST, tte, yte);

    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    CHECK(s != NULL, "attention session: %s", err.msg);
    if (!s) {
        at_graph_free(g);
        return;
    }
    static float losses[ATT_STEPS];
    float lrv = 1e-2f;
    int ok = 1;
    for (int step = 0; step < ATT_STEPS && ok; step++) {
        int b0 = (step * ATT_BATCH) % ATT_TRAIN;
        at_feed feeds[3] = {
            {tok, tens(AT_I64, AT_SHAPE(ATT_BATCH, ATT_T), &ttr[b0 * ATT_T])},
            {y, tens(AT_I64, AT_SHAPE(ATT_BATCH), &ytr[b0])},
            {lr, tens(AT_F32, at_shape_make(0, NULL), &lrv)},
        };
        at_tensor out;
        st = at_session_run(s, feeds, 3, &loss, 1, &out, updates, ATT_NP);
        CHECK(st == AT_OK, "attention step %d: %s", step, at_session_error(s));
        ok = st == AT_OK;
        if (ok) losses[step] = *(const float *)out.data;
    }
    if (ok) {
        at_feed feed = {tok, tens(AT_I64, AT_SHAPE(ATT_TEST, ATT_T), tte)};
        at_tensor out;
        st = at_session_run(s, &feed, 1, &logits, 1, &out, NULL, 0);
        CHECK(st == AT_OK, "attention eval: %s", at_session_error(s));
        if (st == AT_OK) {
            int right = 0;
            for (int i = 0; i < ATT_TEST; i++)
                right += argmax_row((const float *)out.data + i * 2, 2) == yte[i];
            double acc = (double)right / ATT_TEST;
            double first = mean_of(losses, 0, 20),
                   last = mean_of(losses, ATT_STEPS - 20, ATT_STEPS);
            printf("attention: loss %.4f -> %.4f over %d steps, held-out accuracy %.1f%%, %.2f s\n",
                   first, last, ATT_STEPS, 100 * acc, now_s() - t0);
            CHECK(acc >= 0.95, "attention held-out accuracy %.3f < 0.95", acc);
            CHECK(last < 0.5 * first, "attention loss did not fall: %.4f -> %.4f", first, last);
        }
    }
    at_session_free(s);
    at_graph_free(g);
}

int main(int argc, char **argv) {
    (void)argv;
    (void)argc;
    test_mlp();
    test_attention();
    return check_done("train");
}
