/* The split loops of ops/parallel.h. First at_par_range itself: every item runs once, blocks are
 * ordered and start on multiples of `align`, with no pool (1 and 2 OpenMP threads) and pools of
 * 1 and 3 helpers. Then a training step through every kernel that splits its work (Conv and its
 * gradients, Transpose tiled and strided, broadcast Add / Mul / Div, Gelu, Tanh, Dropout,
 * LayerNorm, Softmax over the last and a middle axis, batched MatMul, Concat, Split, Slice,
 * SumToShape, ClipGlobalNorm, AdamW and their gradients), at 1, 2 and 3 threads: the loss and
 * every parameter after three steps must be bit-identical, because no kernel's result may
 * depend on how its work was cut. */
#include <stdlib.h>
#include <string.h>

#include "attune/attune.h"
#include "check.h"
#include "ops/parallel.h"
#include "runtime/cpu/pool.h"

/* ---- at_par_range ---- */

enum { MAX_N = 5000 };

typedef struct {
    int count[MAX_N];
    int64_t lo[MAX_N], hi[MAX_N]; /* blocks seen (by lo) */
    int64_t align;
    int bad_align;
} range_seen;

static void mark(void *arg, int64_t lo, int64_t hi) {
    range_seen *r = arg;
    if (lo % r->align) __atomic_add_fetch(&r->bad_align, 1, __ATOMIC_RELAXED);
    r->lo[lo] = lo, r->hi[lo] = hi;
    for (int64_t i = lo; i < hi; i++) __atomic_add_fetch(&r->count[i], 1, __ATOMIC_RELAXED);
}

static void range_case(at_pool *pool, int threads, int64_t n, int64_t grain, int64_t align) {
    static range_seen r;
    memset(&r, 0, sizeof r);
    r.align = align;
    at_kernel_ctx k;
    memset(&k, 0, sizeof k);
    k.threads = threads;
    k.pool = pool;
    at_par_range(&k, n, grain, align, mark, &r);
    int64_t missed = 0;
    for (int64_t i = 0; i < n; i++) missed += r.count[i] != 1;
    CHECK(missed == 0, "n %lld grain %lld threads %d pool %d: %lld items not run exactly once",
          (long long)n, (long long)grain, threads, at_pool_threads(pool), (long long)missed);
    CHECK(r.bad_align == 0, "n %lld align %lld: %d blocks off the alignment", (long long)n,
          (long long)align, r.bad_align);
    /* each block's grain: every block but the last holds at least grain / 2 items (edges are
     * rounded down to the alignment) */
    int blocks = 0;
    for (int64_t i = 0; i < n; i++)
        if (r.hi[i] > r.lo[i] || (i == 0 && r.hi[0])) blocks++;
    CHECK(n == 0 || blocks >= 1, "n %lld: no block ran", (long long)n);
    CHECK(n < 2 * grain || at_pool_threads(pool) * threads < 2 || blocks >= 2 || align > n / 2,
          "n %lld grain %lld: %d block(s), the work was not split", (long long)n, (long long)grain,
          blocks);
}

static void range_cases(void) {
    at_pool *p1 = at_pool_new(1), *p3 = at_pool_new(3);
    CHECK(p1 && p3, "pools did not start");
    const int64_t ns[] = {0, 1, 7, 64, 1000, 4999};
    const int64_t grains[] = {1, 16, 300};
    const int64_t aligns[] = {1, 16};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof grains / sizeof grains[0]; b++)
            for (size_t c = 0; c < sizeof aligns / sizeof aligns[0]; c++) {
                range_case(NULL, 1, ns[a], grains[b], aligns[c]);
                range_case(NULL, 2, ns[a], grains[b], aligns[c]);
                range_case(p1, 1, ns[a], grains[b], aligns[c]);
                range_case(p3, 1, ns[a], grains[b], aligns[c]);
            }
    at_pool_free(p1);
    at_pool_free(p3);
}

/* ---- a training step at 1, 2 and 3 threads ---- */

enum { B = 6, C = 24, L = 48, M = 32, D = 128, H = 4, STEPS = 3, NP = 8 };

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f - 0.5f;
}

typedef struct net {
    at_graph *g;
    at_val x, lr, loss, params[NP], updates[NP];
} net;

static at_val perm3(at_graph *g, at_val v, int64_t a, int64_t b, int64_t c) {
    int64_t p[3] = {a, b, c};
    return at_transpose(g, v, 3, p);
}

static int build(net *n) {
    at_graph *g = n->g = at_graph_new();
    if (!g) return 1;
    n->x = at_input(g, "x", AT_F32, AT_SHAPE(B, C, L));
    n->lr = at_input(g, "lr", AT_F32, at_shape_make(0, NULL));
    static const char *names[NP] = {"cw", "cb", "w1", "b1", "ln_s", "ln_b", "w2", "w3"};
    at_shape shapes[NP] = {AT_SHAPE(M, C, 5), AT_SHAPE(M), AT_SHAPE(M, D), AT_SHAPE(D),
                           AT_SHAPE(D),       AT_SHAPE(D), AT_SHAPE(D, D), AT_SHAPE(2 * D, 1)};
    uint64_t seed = 7;
    for (int i = 0; i < NP; i++) {
        n->params[i] = at_param(g, names[i], AT_F32, shapes[i], 0);
        float *d = at_value_data(g, n->params[i]);
        if (!d) return 1;
        int64_t cnt = at_shape_numel(&shapes[i]);
        for (int64_t e = 0; e < cnt; e++) d[e] = i == 4 ? 1.0f + 0.1f * frand(&seed) : frand(&seed);
    }
    at_val *p = n->params;
    at_val training = at_const(g, "training", AT_BOOL, at_shape_make(0, NULL), &(uint8_t){1});
    /* Conv over [B, C, L], then to [B, L, M] (a tiled transpose) */
    at_val h = at_conv1d(g, n->x, p[0], p[1], 2, 2, 1, 1, 1);
    h = perm3(g, at_tanh(g, h), 0, 2, 1);
    /* a dense layer with a broadcast bias, Gelu, Dropout, LayerNorm */
    h = at_add(g, at_matmul(g, h, p[2]), p[3]);
    h = at_dropout(g, at_gelu(g, h), 0.2f, training, NULL);
    h = at_layer_norm(g, h, p[4], p[5], -1, 1e-5f);
    /* heads: [B, L, H, D/H] -> [B, H, L, D/H] (a strided copy), scores, two softmaxes */
    int64_t hs[4] = {B, L, H, D / H}, hp[4] = {0, 2, 1, 3}, kp[4] = {0, 1, 3, 2};
    at_val q = at_transpose(g, at_reshape(g, h, 4, hs), 4, hp);
    at_val kt = at_transpose(g, q, 4, kp);
    at_val sc = at_mul(g, at_matmul(g, q, kt), at_const_f32(g, 0.125f));
    at_val att = at_add(g, at_softmax(g, sc, -1), at_softmax(g, sc, 2));
    at_val ctx = at_matmul(g, att, q); /* [B, H, L, D/H] */
    int64_t back[4] = {0, 2, 1, 3}, flat[3] = {B, L, D};
    ctx = at_reshape(g, at_transpose(g, ctx, 4, back), 3, flat);
    at_val u = at_div(g, at_matmul(g, ctx, p[6]), at_const_f32(g, 4.0f));
    /* Concat, Split, Slice, then a score per position */
    at_val both[2] = {u, h}, parts[2];
    at_val cat = at_concat(g, 2, both, -1);
    if (at_split_into(g, cat, 1, 2, NULL, parts) != AT_OK) return 1;
    at_val joined[2] = {parts[1], parts[0]};
    cat = at_concat(g, 2, joined, 1);
    int64_t st[1] = {1}, en[1] = {L}, ax[1] = {1};
    cat = at_slice(g, cat, 1, st, en, ax, NULL);
    at_val score = at_matmul(g, cat, p[7]); /* [B, L - 1, 1] */
    n->loss = at_reduce_mean(g, at_mul(g, score, score), 0, NULL, 0);
    at_val grads[NP], clipped[NP];
    if (at_backward(g, n->loss, p, NP, grads) != AT_OK) return 1;
    if (at_clip_global_norm(g, NP, grads, 1.0f, clipped, NULL) != AT_OK) return 1;
    at_adam_opts o = {0.9f, 0.999f, 1e-8f, 0.01f};
    return at_adamw(g, NP, p, clipped, n->lr, &o, n->updates) != AT_OK;
}

/* Runs STEPS steps at `threads`; loss[] gets each step's loss, params the final values. */
static void train(int threads, float *loss, float **params) {
    net n;
    memset(&n, 0, sizeof n);
    CHECK(build(&n) == 0, "graph: %s", n.g ? at_graph_error(n.g) : "out of memory");
    at_session_opts o = at_session_defaults();
    o.threads = threads;
    o.seed = 11;
    at_err e = {0};
    at_session *s = at_session_new(n.g, &o, &e);
    CHECK(s != NULL, "session: %s", e.msg);
    static float xs[B * C * L];
    uint64_t seed = 3;
    for (int i = 0; i < B * C * L; i++) xs[i] = frand(&seed);
    float lrv = 1e-3f;
    at_feed f[2] = {{n.x, {AT_F32, AT_SHAPE(B, C, L), xs}},
                    {n.lr, {AT_F32, at_shape_make(0, NULL), &lrv}}};
    for (int step = 0; step < STEPS && s; step++) {
        at_tensor out;
        CHECK_OK(at_session_run(s, f, 2, &n.loss, 1, &out, n.updates, NP));
        loss[step] = *(const float *)out.data;
    }
    for (int i = 0; i < NP; i++) {
        at_shape sh = at_value_shape(n.g, n.params[i]);
        size_t bytes = sizeof(float) * (size_t)at_shape_numel(&sh);
        params[i] = malloc(bytes);
        if (params[i]) memcpy(params[i], at_value_data(n.g, n.params[i]), bytes);
    }
    at_session_free(s);
    at_graph_free(n.g);
}

static void threads_cases(void) {
    float loss[3][STEPS];
    float *params[3][NP];
    const int threads[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) train(threads[t], loss[t], params[t]);
    CHECK(loss[0][STEPS - 1] < loss[0][0], "no training: loss %g -> %g", (double)loss[0][0],
          (double)loss[0][STEPS - 1]);
    net shapes;
    memset(&shapes, 0, sizeof shapes);
    CHECK(build(&shapes) == 0, "graph");
    for (int t = 1; t < 3; t++) {
        for (int step = 0; step < STEPS; step++)
            CHECK(memcmp(&loss[t][step], &loss[0][step], sizeof(float)) == 0,
                  "%d threads, step %d: loss %.9g, 1 thread %.9g", threads[t], step,
                  (double)loss[t][step], (double)loss[0][step]);
        for (int i = 0; i < NP; i++) {
            at_shape sh = at_value_shape(shapes.g, shapes.params[i]);
            int64_t cnt = at_shape_numel(&sh), diff = 0;
            for (int64_t e = 0; e < cnt && params[t][i] && params[0][i]; e++)
                diff += memcmp(&params[t][i][e], &params[0][i][e], sizeof(float)) != 0;
            CHECK(diff == 0, "%d threads: %lld of %lld elements of param %d differ from 1 thread",
                  threads[t], (long long)diff, (long long)cnt, i);
        }
    }
    at_graph_free(shapes.g);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < NP; i++) free(params[t][i]);
}

int main(void) {
    range_cases();
    threads_cases();
    return check_done("test_parallel");
}
