/* The packed-weight GEMM (runtime/cpu/gemm_packed.h) against a double-precision reference over
 * edge sizes (rows not a multiple of the tile, columns not a multiple of the panel, K = 1),
 * transposed weights, alpha, accumulate, strides and threads; then the session side: which
 * weights a plan packs (inference weights yes, weights an optimizer updates no, unless
 * opts.pack_trained, and then made again after each update), that packed runs give the
 * reference's results, and that at_session_invalidate picks up a weight written through
 * at_value_data. Skips (77) on CPUs without a packed kernel. */
#include <stdlib.h>
#include <string.h>

#include "attune/attune.h"
#include "check.h"
#include "runtime/cpu/gemm_packed.h"
#include "runtime/plan.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* C = alpha A op(B) (+ C0), in double. */
static void ref(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                const float *B, bool trans, const float *C0, int64_t ldc, double *out) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)A[i * lda + k] * (trans ? B[j * K + k] : B[k * N + j]);
            out[i * N + j] = alpha * s + (C0 ? C0[i * ldc + j] : 0.0);
        }
}

static void one_case(int64_t M, int64_t N, int64_t K, bool trans, float alpha, bool beta,
                     at_pool *pool) {
    int64_t lda = K + 3, ldc = N + 5; /* strides wider than the rows */
    float *A = malloc(sizeof(float) * (size_t)(M * lda)),
          *B = malloc(sizeof(float) * (size_t)(K * N));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc)),
          *C0 = malloc(sizeof(float) * (size_t)(M * ldc));
    float *P = aligned_alloc(64, (at_gemm_pack_floats(K, N) * sizeof(float) + 63) / 64 * 64);
    double *R = malloc(sizeof(double) * (size_t)(M * N));
    if (!A || !B || !C || !C0 || !P || !R) {
        CHECK(0, "out of memory");
        exit(1);
    }
    for (int64_t i = 0; i < M * lda; i++) A[i] = frand();
    for (int64_t i = 0; i < K * N; i++) B[i] = frand();
    for (int64_t i = 0; i < M * ldc; i++) C0[i] = C[i] = frand();
    at_gemm_pack(B, K, N, trans, P);
    /* a bias on every other case, padded to whole panels as plans pack it */
    int64_t nb = (N + 31) / 32 * 32;
    float *bias = aligned_alloc(64, (size_t)nb * sizeof(float));
    if (!bias) exit(1);
    bool with_bias = (M + N + K) % 2 == 0;
    for (int64_t j = 0; j < nb; j++) bias[j] = j < N ? frand() : 0.0f;
    at_gemm_packed(pool, M, N, K, alpha, A, lda, P, beta, with_bias ? bias : NULL, C, ldc);
    ref(M, N, K, alpha, A, lda, B, trans, beta ? C0 : NULL, ldc, R);
    if (with_bias)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) R[i * N + j] += bias[j];
    double worst = 0;
    int64_t bad = -1;
    for (int64_t i = 0; i < M && bad < 0; i++)
        for (int64_t j = 0; j < N; j++) {
            double e = fabs(C[i * ldc + j] - R[i * N + j]);
            if (e > 1e-5 * (double)K + 1e-6) {
                bad = i * N + j;
                break;
            }
            if (e > worst) worst = e;
        }
    CHECK(bad < 0, "M %lld N %lld K %lld trans %d alpha %g beta %d pool %d: element %lld off",
          (long long)M, (long long)N, (long long)K, trans, alpha, beta, pool != NULL,
          (long long)bad);
    /* the padding between rows of C (ldc > N) is never written */
    int64_t touched = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = N; j < ldc; j++) touched += C[i * ldc + j] != C0[i * ldc + j];
    CHECK(touched == 0, "M %lld N %lld: %lld padding elements of C written", (long long)M,
          (long long)N, (long long)touched);
    free(A), free(B), free(C), free(C0), free(P), free(R), free(bias);
}

static void kernel_cases(void) {
    const int64_t Ms[] = {1, 5, 8, 13, 16, 64}, Ns[] = {1, 15, 16, 17, 33, 100}, Ks[] = {1, 7, 256};
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
            for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++)
                one_case(Ms[a], Ns[b], Ks[c], (a + b) % 2, 1.0f, false, NULL);
    one_case(16, 70, 33, true, 0.5f, true, NULL);
    one_case(7, 40, 9, false, -2.0f, true, NULL);
    /* big enough for the threads to split the panels */
    at_pool *pool = at_pool_new(2);
    CHECK(pool != NULL, "at_pool_new(2)");
    for (int rep = 0; rep < 20; rep++) {
        one_case(16, 1024, 256, false, 1.0f, false, pool);
        one_case(33, 300, 512, true, 1.0f, true, pool);
        one_case(64, 96, 100, false, 1.0f, false, pool);
    }
    at_pool_free(pool);
}

/* y = x W1 (MatMul, W1 [K, N]) and z = Gemm(x2, W2, transB) with x [1, T, K], x2 [T, K]. */
static void session_cases(void) {
    enum { T = 5, K = 40, N = 24 };
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(1, T, K));
    at_val x2 = at_input(g, "x2", AT_F32, AT_SHAPE(T, K));
    float w1[K * N], w2[N * K], xs[T * K];
    for (int i = 0; i < K * N; i++) w1[i] = frand(), w2[i] = frand();
    for (int i = 0; i < T * K; i++) xs[i] = frand();
    at_val W1 = at_const(g, "W1", AT_F32, AT_SHAPE(K, N), w1);
    at_val W2 = at_const(g, "W2", AT_F32, AT_SHAPE(N, K), w2);
    at_val y = at_matmul(g, x, W1);
    at_val z = at_gemm(g, x2, W2, AT_NONE, 1.0f, 1.0f, 0, 1);
    CHECK(y != AT_NONE && z != AT_NONE, "building: %s", at_graph_error(g));
    at_err e = {0};
    at_session *s = at_session_new(g, NULL, &e);
    CHECK(s != NULL, "session: %s", e.msg);
    at_feed f[2] = {{x, {AT_F32, AT_SHAPE(1, T, K), xs}}, {x2, {AT_F32, AT_SHAPE(T, K), xs}}};
    at_val fetch[2] = {y, z};
    at_tensor out[2];
    double r1[T * N], r2[T * N];
    CHECK_OK(at_session_run(s, f, 2, fetch, 2, out, NULL, 0));
    CHECK(at_session_get_stats(s).packed_weights == 2, "packed %d weights, want 2",
          at_session_get_stats(s).packed_weights);
    ref(T, N, K, 1.0f, xs, K, w1, false, NULL, 0, r1);
    ref(T, N, K, 1.0f, xs, K, w2, true, NULL, 0, r2);
    for (int i = 0; i < T * N; i++) {
        CHECK_NEAR(((float *)out[0].data)[i], r1[i], 1e-4);
        CHECK_NEAR(((float *)out[1].data)[i], r2[i], 1e-4);
    }
    /* a weight written from outside: seen after at_session_invalidate */
    float *w = at_value_data(g, W1);
    for (int i = 0; i < K * N; i++) w[i] = w1[i] = -w1[i] + 0.25f;
    at_session_invalidate(s);
    CHECK_OK(at_session_run(s, f, 2, fetch, 2, out, NULL, 0));
    ref(T, N, K, 1.0f, xs, K, w1, false, NULL, 0, r1);
    for (int i = 0; i < T * N; i++) CHECK_NEAR(((float *)out[0].data)[i], r1[i], 1e-4);
    at_session_free(s);
    at_graph_free(g);
}

/* A batch-1 plan at 2 threads: the packed GEMM and the Tanh after it go through the session's
 * pool (64 x 512 = 32768 outputs, enough to split); results as the reference's. */
static void pooled_case(void) {
    enum { T = 64, K = 40, N = 500 }; /* N: GEMV tails and a partial panel */
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(1, T, K));
    float *w = malloc(sizeof(float) * K * N), *xs = malloc(sizeof(float) * T * K);
    double *r = malloc(sizeof(double) * T * N);
    if (!w || !xs || !r) {
        CHECK(0, "out of memory");
        exit(1);
    }
    for (int i = 0; i < K * N; i++) w[i] = 0.2f * frand();
    for (int i = 0; i < T * K; i++) xs[i] = frand();
    at_val W = at_const(g, "W", AT_F32, AT_SHAPE(K, N), w);
    at_val y = at_tanh(g, at_matmul(g, x, W));
    float v[N];
    for (int i = 0; i < N; i++) v[i] = frand();
    at_val score = at_matmul(g, y, at_const(g, "v", AT_F32, AT_SHAPE(N, 1), v)); /* [1, T, 1] */
    at_session_opts o = at_session_defaults();
    o.threads = 2;
    at_err e = {0};
    at_session *s = at_session_new(g, &o, &e);
    CHECK(s != NULL, "session: %s", e.msg);
    at_feed f = {x, {AT_F32, AT_SHAPE(1, T, K), xs}};
    at_tensor out;
    ref(T, N, K, 1.0f, xs, K, w, false, NULL, 0, r);
    /* a batched product of two fed operands (attention heads) in the same batch-1 plan */
    enum { H = 4, D = 16, S = 20 };
    at_val q = at_input(g, "q", AT_F32, AT_SHAPE(1, H, T, D));
    at_val kt = at_input(g, "kt", AT_F32, AT_SHAPE(1, H, D, S));
    at_val att = at_matmul(g, q, kt);
    float *qs = malloc(sizeof(float) * H * T * D), *ks = malloc(sizeof(float) * H * D * S);
    if (!qs || !ks) exit(1);
    for (int i = 0; i < H * T * D; i++) qs[i] = frand();
    for (int i = 0; i < H * D * S; i++) ks[i] = frand();
    at_feed fs[3] = {
        f, {q, {AT_F32, AT_SHAPE(1, H, T, D), qs}}, {kt, {AT_F32, AT_SHAPE(1, H, D, S), ks}}};
    at_val fetch[3] = {y, score, att};
    at_tensor outs[3];
    for (int rep = 0; rep < 50 && s; rep++) {
        CHECK_OK(at_session_run(s, fs, 3, fetch, 3, outs, NULL, 0));
        int64_t bad_att = 0;
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++)
                for (int j = 0; j < S; j++) {
                    double want = 0;
                    for (int d = 0; d < D; d++)
                        want += (double)qs[(h * T + t) * D + d] * ks[(h * D + d) * S + j];
                    bad_att += fabs(((float *)outs[2].data)[(h * T + t) * S + j] - want) > 1e-4;
                }
        CHECK(bad_att == 0, "run %d: %lld attention products off", rep, (long long)bad_att);
        int64_t bad = 0, bad_score = 0;
        for (int i = 0; i < T * N; i++) bad += fabs(((float *)outs[0].data)[i] - tanh(r[i])) > 1e-4;
        for (int t = 0; t < T; t++) {
            double want = 0;
            for (int i = 0; i < N; i++) want += tanh(r[t * N + i]) * v[i];
            bad_score += fabs(((float *)outs[1].data)[t] - want) > 1e-3;
        }
        CHECK(bad == 0, "run %d: %lld outputs off", rep, (long long)bad);
        CHECK(bad_score == 0, "run %d: %lld scores off", rep, (long long)bad_score);
    }
    (void)out;
    CHECK(at_session_get_stats(s).packed_weights == 1, "the weight was not packed");
    at_session_free(s);
    at_graph_free(g);
    free(w), free(xs), free(r), free(qs), free(ks);
}

/* MatMul then Add of a [N] bias: the plan does the Add inside the GEMM (fused_bias) with the
 * same results as apart, in either operand order of the Add; not when the MatMul's output is
 * fetched too or read by another node. Then a chain of two fused layers whose buffers the
 * planner reuses, at 1 and 2 threads, against the same graph at no_reuse (nothing fused). */
static void fused_case(void) {
    enum { T = 7, K = 24, N = 40 };
    float w[K * N], b[N], xs[T * K];
    for (int i = 0; i < K * N; i++) w[i] = frand();
    for (int i = 0; i < N; i++) b[i] = frand();
    for (int i = 0; i < T * K; i++) xs[i] = frand();
    double r[T * N];
    ref(T, N, K, 1.0f, xs, K, w, false, NULL, 0, r);
    for (int i = 0; i < T * N; i++) r[i] += b[i % N];
    for (int variant = 0; variant < 4; variant++) {
        at_graph *g = at_graph_new();
        at_val x = at_input(g, "x", AT_F32, AT_SHAPE(1, T, K));
        at_val W = at_const(g, "W", AT_F32, AT_SHAPE(K, N), w);
        at_val B = at_const(g, "b", AT_F32, AT_SHAPE(N), b);
        at_val y = at_matmul(g, x, W);
        at_val z = variant == 1 ? at_add(g, B, y) : at_add(g, y, B);
        at_val other = variant == 3 ? at_tanh(g, y) : AT_NONE; /* a second reader of y */
        at_session_opts o = at_session_defaults();
        o.threads = 1;
        at_err e = {0};
        at_session *s = at_session_new(g, &o, &e);
        CHECK(s != NULL, "variant %d: %s", variant, e.msg);
        at_feed f = {x, {AT_F32, AT_SHAPE(1, T, K), xs}};
        at_val fetch[2] = {z, variant == 2 ? y : other};
        at_tensor out[2];
        CHECK_OK(at_session_run(s, &f, 1, fetch, variant >= 2 ? 2 : 1, out, NULL, 0));
        int want = variant >= 2 ? 0 : 1;
        int nodes = variant >= 2 ? 2 + (variant == 3) : 1; /* a fused Add does not run */
        CHECK(at_session_get_stats(s).nodes_run == nodes, "variant %d: %d nodes ran, want %d",
              variant, at_session_get_stats(s).nodes_run, nodes);
        CHECK(at_session_get_stats(s).fused_bias == want, "variant %d: fused %d, want %d", variant,
              at_session_get_stats(s).fused_bias, want);
        int64_t bad = 0;
        for (int i = 0; i < T * N; i++) bad += fabs(((float *)out[0].data)[i] - r[i]) > 1e-4;
        CHECK(bad == 0, "variant %d: %lld outputs off", variant, (long long)bad);
        at_session_free(s);
        at_graph_free(g);
    }
    /* x -> LayerNorm-free chain: h = tanh(x W1 + b1), o = h W2 + b2 (N back to K) */
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(1, T, K));
    float w2[N * K], b2[K];
    for (int i = 0; i < N * K; i++) w2[i] = frand();
    for (int i = 0; i < K; i++) b2[i] = frand();
    at_val h = at_tanh(g, at_add(g, at_matmul(g, x, at_const(g, "W1", AT_F32, AT_SHAPE(K, N), w)),
                                 at_const(g, "b1", AT_F32, AT_SHAPE(N), b)));
    at_val o2 = at_add(g, at_matmul(g, h, at_const(g, "W2", AT_F32, AT_SHAPE(N, K), w2)),
                       at_const(g, "b2", AT_F32, AT_SHAPE(K), b2));
    at_feed f = {x, {AT_F32, AT_SHAPE(1, T, K), xs}};
    float want[T * K], got[T * K];
    for (int mode = 0; mode < 3; mode++) { /* no_reuse (reference), 1 thread, 2 threads */
        at_session_opts o = at_session_defaults();
        o.no_reuse = mode == 0;
        o.threads = mode == 2 ? 2 : 1;
        at_err e = {0};
        at_session *s = at_session_new(g, &o, &e);
        at_tensor out;
        CHECK_OK(at_session_run(s, &f, 1, &o2, 1, &out, NULL, 0));
        memcpy(mode ? got : want, out.data, sizeof want);
        CHECK(at_session_get_stats(s).fused_bias == (mode ? 2 : 0), "chain mode %d: fused %d", mode,
              at_session_get_stats(s).fused_bias);
        if (mode) CHECK(memcmp(got, want, sizeof want) == 0, "chain mode %d differs", mode);
        at_session_free(s);
    }
    at_graph_free(g);
}

/* A weight an optimizer updates in place is never packed, and training still learns. */
static void training_case(void) {
    enum { T = 4, K = 16, N = 8 };
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(T, K));
    at_val W = at_param(g, "W", AT_F32, AT_SHAPE(K, N), 0);
    float *w = at_value_data(g, W);
    for (int i = 0; i < K * N; i++) w[i] = frand();
    at_val y = at_matmul(g, x, W);
    at_val loss = at_reduce_sum(g, at_mul(g, y, y), 0, NULL, 0);
    at_val grad, upd, lr = at_const_f32(g, 0.01f);
    CHECK_OK(at_backward(g, loss, &W, 1, &grad));
    CHECK_OK(at_sgd(g, 1, &W, &grad, lr, 0.0f, 0.0f, &upd));
    float xs[T * K];
    for (int i = 0; i < T * K; i++) xs[i] = frand();
    at_err e = {0};
    at_session *s = at_session_new(g, NULL, &e);
    at_feed f = {x, {AT_F32, AT_SHAPE(T, K), xs}};
    at_tensor out;
    float first = 0, last = 0;
    for (int it = 0; it < 5; it++) {
        CHECK_OK(at_session_run(s, &f, 1, &loss, 1, &out, &upd, 1));
        last = *(float *)out.data;
        if (!it) first = last;
        CHECK(at_session_get_stats(s).packed_weights == 0, "a trained weight was packed");
    }
    CHECK(last < first, "loss %g -> %g: the updates were not seen", first, last);
    at_session_free(s);
    at_graph_free(g);
}

/* opts.pack_trained: a training graph's inference plan (fetch y only) packs the trained weight
 * and its bias (fused), and after every training step the next prediction uses the updated
 * values (the copies are made again: stats.repacks); without the option nothing is packed. */
static void trained_case(void) {
    enum { T = 4, K = 16, N = 40 };
    for (int on = 0; on < 2; on++) {
        at_graph *g = at_graph_new();
        at_val x = at_input(g, "x", AT_F32, AT_SHAPE(T, K));
        at_val W = at_param(g, "W", AT_F32, AT_SHAPE(K, N), 0);
        at_val b = at_param(g, "b", AT_F32, AT_SHAPE(N), 0);
        float *w = at_value_data(g, W), *bv = at_value_data(g, b);
        for (int i = 0; i < K * N; i++) w[i] = frand();
        for (int i = 0; i < N; i++) bv[i] = frand();
        at_val y = at_add(g, at_matmul(g, x, W), b);
        at_val loss = at_reduce_sum(g, at_mul(g, y, y), 0, NULL, 0);
        at_val params[2] = {W, b}, grads[2], upd[2], lr = at_const_f32(g, 0.01f);
        CHECK_OK(at_backward(g, loss, params, 2, grads));
        CHECK_OK(at_sgd(g, 2, params, grads, lr, 0.0f, 0.0f, upd));
        float xs[T * K];
        for (int i = 0; i < T * K; i++) xs[i] = frand();
        at_session_opts o = at_session_defaults();
        o.threads = 1;
        o.pack_trained = on;
        at_err e = {0};
        at_session *s = at_session_new(g, &o, &e);
        CHECK(s != NULL, "session: %s", e.msg);
        at_feed f = {x, {AT_F32, AT_SHAPE(T, K), xs}};
        at_tensor out;
        double r[T * N];
        for (int it = 0; it < 4 && s; it++) {
            CHECK_OK(at_session_run(s, &f, 1, &y, 1, &out, NULL, 0));
            at_session_stats st = at_session_get_stats(s);
            CHECK(st.packed_weights == on, "pack_trained %d: %d weights packed", on,
                  st.packed_weights);
            CHECK(st.fused_bias == on, "pack_trained %d: %d biases fused", on, st.fused_bias);
            CHECK(st.repacks == (on ? it : 0), "pack_trained %d, run %d: %d repacks", on, it,
                  st.repacks);
            ref(T, N, K, 1.0f, xs, K, w, false, NULL, 0, r);
            int64_t bad = 0;
            for (int t = 0; t < T; t++)
                for (int j = 0; j < N; j++)
                    bad += fabs(((float *)out.data)[t * N + j] - (r[t * N + j] + bv[j])) > 1e-4;
            CHECK(bad == 0, "pack_trained %d, run %d: %lld outputs do not use the current weights",
                  on, it, (long long)bad);
            CHECK_OK(at_session_run(s, &f, 1, NULL, 0, NULL, upd, 2)); /* a training step */
        }
        at_session_free(s);
        at_graph_free(g);
    }
}

/* In plan p, no value written from the fused score's skipped Add (exclusive) to its MatMul
 * (inclusive) may take the buffer of an input of the Add: the MatMul still reads them. */
static void check_score_liveness(const at_graph *g, const at_plan *p) {
    for (int s = 0; s < p->n_steps; s++) {
        const at_plan_step *ms = &p->steps[s];
        if (ms->score_a == AT_NONE) continue;
        int add = -1;
        for (int t = 0; t < s; t++)
            if (p->steps[t].skip && g->nodes[p->steps[t].node].op == AT_OP_Add) add = t;
        CHECK(add >= 0, "fused score without its skipped Add");
        at_val xs[2] = {ms->score_a, ms->score_b};
        for (int i = 0; i < 2; i++) {
            if (p->loc[xs[i]] != AT_LOC_ARENA) continue;
            int64_t lo = p->offset[xs[i]];
            int64_t hi = lo + at_shape_numel(&p->shape[xs[i]]) * (int64_t)sizeof(float);
            for (int t = add + 1; t <= s; t++) {
                const at_node_rec *n = &g->nodes[p->steps[t].node];
                for (int j = 0; !p->steps[t].skip && j < n->n_out; j++) {
                    at_val o = n->out[j];
                    if (p->loc[o] != AT_LOC_ARENA) continue;
                    int64_t olo = p->offset[o];
                    int64_t ohi = olo + at_shape_numel(&p->shape[o]) * (int64_t)sizeof(float);
                    CHECK(ohi <= lo || olo >= hi,
                          "step %d's output takes the buffer of score input %d", t, i);
                }
            }
        }
    }
}

/* The additive-score fusion (runtime/plan.h): v . tanh(qa_i + ka_j) computed inside the
 * MatMul, bit-identical to the unfused Add, Tanh and MatMul of a no_reuse plan, at 1 and 2
 * threads; its Add and Tanh do not run. Not fused when the Tanh's output is also fetched. */
static void score_case(int TQ, int TK, int K) {
    enum { B = 2, KIN = 12, MAXT = 16, MAXK = 64 };
    float wq[KIN * MAXK], wk[KIN * MAXK], bk[MAXK], v[MAXK], qs[B * MAXT * KIN], ks[B * MAXT * KIN];
    for (int i = 0; i < KIN * K; i++) wq[i] = frand(), wk[i] = frand();
    for (int i = 0; i < K; i++) bk[i] = frand(), v[i] = frand();
    for (int i = 0; i < B * TQ * KIN; i++) qs[i] = frand();
    for (int i = 0; i < B * TK * KIN; i++) ks[i] = frand();
    at_graph *g = at_graph_new();
    at_val q = at_input(g, "q", AT_F32, AT_SHAPE(B, TQ, KIN));
    at_val kv = at_input(g, "kv", AT_F32, AT_SHAPE(B, TK, KIN));
    at_val qa = at_matmul(g, q, at_const(g, "wq", AT_F32, AT_SHAPE(KIN, K), wq));
    at_val ka = at_add(g, at_matmul(g, kv, at_const(g, "wk", AT_F32, AT_SHAPE(KIN, K), wk)),
                       at_const(g, "bk", AT_F32, AT_SHAPE(K), bk));
    const int64_t q_axis = 2, k_axis = 1, last = 3;
    at_val e =
        at_tanh(g, at_add(g, at_unsqueeze(g, qa, 1, &q_axis), at_unsqueeze(g, ka, 1, &k_axis)));
    at_val sc =
        at_squeeze(g, at_matmul(g, e, at_const(g, "v", AT_F32, AT_SHAPE(K, 1), v)), 1, &last);
    at_val att = at_softmax(g, sc, -1);
    at_feed f[2] = {{q, {AT_F32, AT_SHAPE(B, TQ, KIN), qs}},
                    {kv, {AT_F32, AT_SHAPE(B, TK, KIN), ks}}};
    at_err perr = {0};
    at_plan *plan = at_plan_build(g, f, 2, &att, 1, 1, false, true, false, &perr);
    CHECK(plan != NULL, "plan: %s", perr.msg);
    if (plan) {
        CHECK(plan->n_scores == 1, "%d scores fused in the plan", plan->n_scores);
        check_score_liveness(g, plan);
    }
    at_plan_free(plan);
    for (int also_e = 0; also_e < 2; also_e++) {
        float want[B * MAXT * MAXT], got[B * MAXT * MAXT];
        size_t bytes = sizeof(float) * (size_t)(B * TQ * TK);
        int ref_nodes = 0;
        for (int mode = 0; mode < 3; mode++) { /* no_reuse (reference), 1 thread, 2 threads */
            at_session_opts o = at_session_defaults();
            o.no_reuse = mode == 0;
            o.threads = mode == 2 ? 2 : 1;
            at_err err = {0};
            at_session *s = at_session_new(g, &o, &err);
            CHECK(s != NULL, "session: %s", err.msg);
            at_val fetch[2] = {att, e};
            at_tensor out[2];
            CHECK_OK(at_session_run(s, f, 2, fetch, 1 + also_e, out, NULL, 0));
            memcpy(mode ? got : want, out[0].data, bytes);
            at_session_stats st = at_session_get_stats(s);
            int fused = mode && !also_e;
            CHECK(st.fused_scores == fused, "fetch e %d, mode %d: %d scores fused", also_e, mode,
                  st.fused_scores);
            if (!mode)
                ref_nodes = st.nodes_run;
            else
                CHECK(st.nodes_run == ref_nodes - st.fused_bias - 2 * fused,
                      "fetch e %d, mode %d: %d nodes ran (reference %d, %d biases fused)", also_e,
                      mode, st.nodes_run, ref_nodes, st.fused_bias);
            if (mode)
                CHECK(memcmp(got, want, bytes) == 0,
                      "%d x %d x %d, fetch e %d, mode %d: scores differ", TQ, TK, K, also_e, mode);
            at_session_free(s);
        }
    }
    at_graph_free(g);
}

int main(void) {
    if (!at_gemm_pack_nr()) {
        printf("test_gemm_packed: skipped: this CPU has neither AVX-512 nor AVX2 + FMA\n");
        return 77;
    }
    kernel_cases();
    session_cases();
    fused_case();
    pooled_case();
    training_case();
    trained_case();
    /* K odd (a tanh tail); TK = K: the scores are as big as qa, whose buffer they must not take */
    score_case(5, 7, 37);
    score_case(6, 8, 8);
    score_case(16, 16, 16);
    score_case(3, 16, 64);
    return check_done("test_gemm_packed");
}
