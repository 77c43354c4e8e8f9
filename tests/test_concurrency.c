/* The concurrency contract of include/attune/session.h: one model, loaded
 * once, shared read-only by several sessions, each driven by its own thread.
 *
 * A small attention classifier (embedding, layer norm, masked self-attention,
 * GELU feed-forward, masked mean pooling, softmax) with random weights is
 * built, serialized and loaded back, so the shared graph is a loaded model as
 * an embedding program has it. One session first predicts every input alone;
 * then NTHREADS threads start together, each creates its own session on the
 * shared graph and predicts every input ROUNDS times in its own order, with
 * batch and sequence sizes changing from call to call (so the sessions also
 * plan concurrently). Every result must equal the single-threaded one bit for
 * bit, and the shared graph must be unchanged afterwards. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attune/attune.h>

#include "check.h"

enum {
    V = 50,       /* vocabulary */
    D = 32,       /* model size */
    F = 64,       /* feed-forward size */
    C = 5,        /* classes */
    NIN = 40,     /* distinct inputs */
    MAXB = 6,     /* largest batch */
    MAXT = 11,    /* longest sequence */
    NTHREADS = 4, /* threads, one session each */
    ROUNDS = 50,  /* passes over the inputs per thread */
    OMP_THREADS = 2,
};

typedef struct {
    uint64_t s;
} rng;

static uint32_t rng_next(rng *r) {
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(r->s >> 33);
}
static float rng_unit(rng *r) {
    return (float)rng_next(r) / 2147483648.0f - 1.0f;
}

/* ---- the model ---- */

static at_graph *build_model(void) {
    at_graph *g = at_graph_new();
    if (!g) return NULL;
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T");
    at_val tok = at_input(g, "tokens", AT_I64, AT_SHAPE(B, T));
    at_val mask = at_input(g, "mask", AT_F32, AT_SHAPE(B, T));
    at_val emb = at_param(g, "embed", AT_F32, AT_SHAPE(V, D), 0);
    at_val ln_s = at_param(g, "ln.scale", AT_F32, AT_SHAPE(D), 0);
    at_val ln_b = at_param(g, "ln.bias", AT_F32, AT_SHAPE(D), 0);
    at_val wq = at_param(g, "wq", AT_F32, AT_SHAPE(D, D), 0);
    at_val wk = at_param(g, "wk", AT_F32, AT_SHAPE(D, D), 0);
    at_val wv = at_param(g, "wv", AT_F32, AT_SHAPE(D, D), 0);
    at_val w1 = at_param(g, "ff.w1", AT_F32, AT_SHAPE(D, F), 0);
    at_val b1 = at_param(g, "ff.b1", AT_F32, AT_SHAPE(F), 0);
    at_val w2 = at_param(g, "ff.w2", AT_F32, AT_SHAPE(F, D), 0);
    at_val wo = at_param(g, "out.w", AT_F32, AT_SHAPE(D, C), 0);
    at_val bo = at_param(g, "out.b", AT_F32, AT_SHAPE(C), 0);
    const at_val params[] = {emb, ln_s, ln_b, wq, wk, wv, w1, b1, w2, wo, bo};
    if (at_graph_status(g) != AT_OK) return g;
    rng r = {12345};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        at_shape sh = at_value_shape(g, params[i]);
        float *p = at_value_data(g, params[i]);
        float scale = sh.rank == 2 ? 2.0f / sqrtf((float)sh.dim[0]) : 0.2f;
        for (int64_t j = 0; j < at_shape_numel(&sh); j++) p[j] = rng_unit(&r) * scale;
    }

    const int64_t ax1[] = {1}, ax2[] = {2}, perm[] = {0, 2, 1};
    at_val x = at_gather(g, emb, tok, 0); /* [B,T,D] */
    at_val h = at_layer_norm(g, x, ln_s, ln_b, -1, 1e-5f);
    at_val q = at_matmul(g, h, wq), k = at_matmul(g, h, wk), v = at_matmul(g, h, wv);
    at_val scores = at_mul(g, at_matmul(g, q, at_transpose(g, k, 3, perm)),
                           at_const_f32(g, 1.0f / sqrtf((float)D)));
    /* Padding keys get (mask - 1) * 1e9, broadcast over the query dim. */
    at_val key_bias = at_unsqueeze(
        g, at_mul(g, at_sub(g, mask, at_const_f32(g, 1.0f)), at_const_f32(g, 1e9f)), 1, ax1);
    at_val attn = at_softmax(g, at_add(g, scores, key_bias), -1); /* [B,T,T] */
    at_val ctx = at_add(g, x, at_matmul(g, attn, v));
    at_val ff = at_matmul(g, at_gelu(g, at_add(g, at_matmul(g, ctx, w1), b1)), w2);
    at_val y = at_add(g, ctx, ff);
    /* Masked mean over T. */
    at_val m3 = at_unsqueeze(g, mask, 1, ax2); /* [B,T,1] */
    at_val pooled = at_div(g, at_reduce_sum(g, at_mul(g, y, m3), 1, ax1, 0),
                           at_reduce_sum(g, m3, 1, ax1, 0)); /* [B,D] */
    at_val probs = at_softmax(g, at_add(g, at_matmul(g, pooled, wo), bo), -1);
    at_value_rename(g, probs, "probs");
    at_value_rename(g, attn, "attn");
    at_output(g, probs);
    at_output(g, attn);
    return g;
}

/* ---- inputs ---- */

typedef struct {
    int b, t;
    int64_t tokens[MAXB * MAXT];
    float mask[MAXB * MAXT];
} input;

static input inputs[NIN];

static void make_inputs(void) {
    rng r = {777};
    for (int i = 0; i < NIN; i++) {
        input *in = &inputs[i];
        in->b = 1 + (int)(rng_next(&r) % MAXB);
        in->t = 2 + (int)(rng_next(&r) % (MAXT - 1));
        for (int s = 0; s < in->b; s++) {
            int len = 1 + (int)(rng_next(&r) % (unsigned)in->t); /* at least one token */
            for (int j = 0; j < in->t; j++) {
                in->tokens[s * in->t + j] = j < len ? (int64_t)(rng_next(&r) % V) : 0;
                in->mask[s * in->t + j] = j < len ? 1.0f : 0.0f;
            }
        }
    }
}

/* ---- prediction ---- */

typedef struct {
    float probs[MAXB * C];
    float attn[MAXB * MAXT * MAXT];
} result;

static result reference[NIN];

/* One prediction through session s; 0 on success, else the error in msg. */
static int predict(at_session *s, const at_graph *g, const input *in, result *res, char *msg,
                   size_t cap) {
    at_val tokens = at_graph_find(g, "tokens"), mask = at_graph_find(g, "mask");
    at_val fetch[2] = {at_graph_find(g, "probs"), at_graph_find(g, "attn")};
    at_feed feeds[2] = {{tokens, {AT_I64, AT_SHAPE(in->b, in->t), (void *)in->tokens}},
                        {mask, {AT_F32, AT_SHAPE(in->b, in->t), (void *)in->mask}}};
    at_tensor out[2];
    if (at_session_run(s, feeds, 2, fetch, 2, out, NULL, 0) != AT_OK) {
        snprintf(msg, cap, "run: %s", at_session_error(s));
        return -1;
    }
    size_t np = (size_t)in->b * C, na = (size_t)in->b * in->t * in->t;
    if (out[0].dtype != AT_F32 || at_shape_numel(&out[0].shape) != (int64_t)np ||
        out[1].dtype != AT_F32 || at_shape_numel(&out[1].shape) != (int64_t)na) {
        snprintf(msg, cap, "unexpected output shapes");
        return -1;
    }
    memcpy(res->probs, out[0].data, np * sizeof(float));
    memcpy(res->attn, out[1].data, na * sizeof(float));
    return 0;
}

static int same_result(const input *in, const result *a, const result *b) {
    return !memcmp(a->probs, b->probs, sizeof(float) * (size_t)in->b * C) &&
           !memcmp(a->attn, b->attn, sizeof(float) * (size_t)in->b * in->t * in->t);
}

/* ---- threads ---- */

typedef struct {
    int id;
    const at_graph *g;
    pthread_barrier_t *start;
    int runs, mismatches, failed;
    char msg[1200];
} worker;

static void *work(void *arg) {
    worker *w = arg;
    at_session_opts o = at_session_defaults();
    o.threads = OMP_THREADS;
    /* Start together, so session creation and planning overlap as well. */
    pthread_barrier_wait(w->start);
    at_err err;
    /* The contract: sessions take the graph read-only; the cast only meets
     * at_session_new's signature. */
    at_session *s = at_session_new((at_graph *)w->g, &o, &err);
    if (!s) {
        snprintf(w->msg, sizeof w->msg, "thread %d: session: %s", w->id, err.msg);
        w->failed = 1;
        return NULL;
    }
    result res;
    for (int round = 0; round < ROUNDS && !w->failed; round++) {
        for (int j = 0; j < NIN; j++) {
            /* Each thread walks the inputs in its own order (stride 7 is coprime to NIN). */
            int i = (j * 7 + w->id * 11 + round * 3) % NIN;
            char msg[1100];
            if (predict(s, w->g, &inputs[i], &res, msg, sizeof msg)) {
                snprintf(w->msg, sizeof w->msg, "thread %d, input %d: %s", w->id, i, msg);
                w->failed = 1;
                break;
            }
            w->runs++;
            if (!same_result(&inputs[i], &res, &reference[i])) w->mismatches++;
        }
    }
    at_session_free(s);
    return NULL;
}

/* A checksum of every initializer's bytes, to see the graph stayed unchanged. */
static uint64_t graph_digest(const at_graph *g) {
    uint64_t h = 1469598103934665603ull;
    for (int v = 0; v < at_graph_num_values(g); v++) {
        const unsigned char *p = at_value_data(g, v);
        if (!p) continue;
        at_shape sh = at_value_shape(g, v);
        size_t n = (size_t)at_shape_numel(&sh) * at_dtype_size(at_value_dtype(g, v));
        for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    }
    return h ^ (uint64_t)at_graph_num_nodes(g) << 32 ^ (uint64_t)at_graph_num_values(g);
}

int main(void) {
    at_graph *built = build_model();
    CHECK(built && at_graph_status(built) == AT_OK, "build: %s",
          built ? at_graph_error(built) : "out of memory");
    if (!built || at_graph_status(built) != AT_OK) return check_done("test_concurrency");

    /* Round trip through the file format: the shared graph is a loaded model. */
    at_err err;
    void *buf = NULL;
    size_t len = 0;
    at_save_opts so = {.inference = true};
    CHECK_OK(at_graph_save_bytes(built, &so, &buf, &len, &err));
    at_graph *g = buf ? at_graph_load_bytes(buf, len, &err) : NULL;
    CHECK(g != NULL, "load: %s", err.msg);
    free(buf);
    at_graph_free(built);
    if (!g) return check_done("test_concurrency");
    CHECK(at_graph_num_inputs(g) == 2 && at_graph_num_outputs(g) == 2, "%d inputs, %d outputs",
          at_graph_num_inputs(g), at_graph_num_outputs(g));
    uint64_t digest = graph_digest(g);

    make_inputs();
    at_session_opts o = at_session_defaults();
    o.threads = OMP_THREADS;
    at_session *s = at_session_new(g, &o, &err);
    CHECK(s != NULL, "session: %s", err.msg);
    if (!s) {
        at_graph_free(g);
        return check_done("test_concurrency");
    }
    int ref_ok = 1;
    for (int i = 0; i < NIN && ref_ok; i++) {
        char msg[1100];
        ref_ok = !predict(s, g, &inputs[i], &reference[i], msg, sizeof msg);
        CHECK(ref_ok, "single-threaded input %d: %s", i, msg);
    }
    /* The reference is a prediction, not garbage: rows sum to 1. */
    for (int i = 0; ref_ok && i < NIN; i++)
        for (int b = 0; b < inputs[i].b; b++) {
            double sum = 0;
            for (int c = 0; c < C; c++) sum += reference[i].probs[b * C + c];
            if (fabs(sum - 1.0) > 1e-5) {
                CHECK(0, "input %d row %d: probabilities sum to %g", i, b, sum);
                ref_ok = 0;
                break;
            }
        }
    /* The same session again: the reference itself is reproducible. */
    int repeat_same = 1;
    for (int i = 0; ref_ok && i < NIN; i++) {
        result again;
        char msg[1100];
        if (predict(s, g, &inputs[i], &again, msg, sizeof msg) ||
            !same_result(&inputs[i], &again, &reference[i]))
            repeat_same = 0;
    }
    CHECK(repeat_same, "a second single-threaded pass differs from the first");
    at_session_free(s);
    if (!ref_ok) {
        at_graph_free(g);
        return check_done("test_concurrency");
    }

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    worker w[NTHREADS];
    pthread_t th[NTHREADS];
    int started = 0;
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker){.id = i, .g = g, .start = &start};
        if (pthread_create(&th[i], NULL, work, &w[i]) != 0) break;
        started++;
    }
    CHECK(started == NTHREADS, "started %d of %d threads", started, NTHREADS);
    if (started < NTHREADS) {
        /* The barrier would never open; nothing sensible is left to test. */
        fprintf(stderr, "cannot start threads\n");
        return 1;
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);

    int runs = 0;
    for (int i = 0; i < NTHREADS; i++) {
        CHECK(!w[i].failed, "%s", w[i].msg);
        CHECK(w[i].mismatches == 0,
              "thread %d: %d of %d predictions differ from the "
              "single-threaded ones",
              i, w[i].mismatches, w[i].runs);
        runs += w[i].runs;
    }
    CHECK(runs == NTHREADS * ROUNDS * NIN, "%d runs", runs);
    CHECK(graph_digest(g) == digest, "the shared graph changed while sessions used it");
    printf("%d threads x %d predictions on one shared model: %d runs\n", NTHREADS, ROUNDS * NIN,
           runs);
    at_graph_free(g);
    return check_done("test_concurrency");
}
