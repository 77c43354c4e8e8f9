/* The memory planner on a real training graph: a 2-layer pre-LN
 * transformer (multi-head self-attention, GELU FFN) with loss, backward
 * and AdamW. The arena must be much smaller than the sum of the values it
 * holds, and the results must be bit-identical to a run where every value
 * has its own memory. Also: plans are reused across steps, and a run
 * executes only the nodes its fetches need. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "attune/attune.h"
#include "check.h"

enum { B = 4, T = 12, D = 32, NH = 4, DH = D / NH, F = 64, V = 50, L = 2, NC = 3 };

static uint64_t rng_state = 42;
static float frand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) / 16777216.0) * 2.0f - 1.0f;
}

static at_val param(at_graph *g, const char *name, at_shape s, float scale, float base) {
    at_val p = at_param(g, name, AT_F32, s, 0);
    float *d = at_value_data(g, p);
    for (int64_t i = 0; d && i < at_shape_numel(&s); i++) d[i] = base + scale * frand();
    return p;
}

/* [B,T,D] -> [B,NH,T,DH] */
static at_val heads(at_graph *g, at_val x, int64_t b, int64_t t) {
    const int64_t sh[4] = {b, t, NH, DH}, perm[4] = {0, 2, 1, 3};
    return at_transpose(g, at_reshape(g, x, 4, sh), 4, perm);
}

typedef struct model {
    at_graph *g;
    at_val tokens, labels, lr, loss, logits, updates[64];
    int n_params;
} model;

static void build(model *m) {
    rng_state = 42;
    at_graph *g = m->g = at_graph_new();
    m->tokens = at_input(g, "tokens", AT_I64, AT_SHAPE(B, T));
    m->labels = at_input(g, "labels", AT_I64, AT_SHAPE(B));
    m->lr = at_input(g, "lr", AT_F32, AT_SCALAR);
    at_val emb = param(g, "emb", AT_SHAPE(V, D), 0.5f, 0);
    at_val h = at_gather(g, emb, m->tokens, 0);
    const int64_t back[3] = {B, T, D}, perm[4] = {0, 2, 1, 3}, swap[4] = {0, 1, 3, 2};
    for (int l = 0; l < L; l++) {
        char n[32];
#define P(nm, sh, sc, bs) (snprintf(n, sizeof n, "l%d.%s", l, nm), param(g, n, sh, sc, bs))
        at_val ln1 = at_layer_norm(g, h, P("ln1_g", AT_SHAPE(D), 0, 1),
                                   P("ln1_b", AT_SHAPE(D), 0, 0), -1, 1e-5f);
        at_val q = heads(g, at_matmul(g, ln1, P("wq", AT_SHAPE(D, D), 0.2f, 0)), B, T);
        at_val k = heads(g, at_matmul(g, ln1, P("wk", AT_SHAPE(D, D), 0.2f, 0)), B, T);
        at_val v = heads(g, at_matmul(g, ln1, P("wv", AT_SHAPE(D, D), 0.2f, 0)), B, T);
        at_val s = at_mul(g, at_matmul(g, q, at_transpose(g, k, 4, swap)),
                          at_const_f32(g, 1.0f / sqrtf((float)DH)));
        at_val a = at_matmul(g, at_softmax(g, s, -1), v);
        a = at_reshape(g, at_transpose(g, a, 4, perm), 3, back);
        h = at_add(g, h, at_matmul(g, a, P("wo", AT_SHAPE(D, D), 0.2f, 0)));
        at_val ln2 = at_layer_norm(g, h, P("ln2_g", AT_SHAPE(D), 0, 1),
                                   P("ln2_b", AT_SHAPE(D), 0, 0), -1, 1e-5f);
        at_val f = at_gelu(g, at_add(g, at_matmul(g, ln2, P("w1", AT_SHAPE(D, F), 0.2f, 0)),
                                     P("b1", AT_SHAPE(F), 0, 0)));
        h = at_add(g, h,
                   at_add(g, at_matmul(g, f, P("w2", AT_SHAPE(F, D), 0.1f, 0)),
                          P("b2", AT_SHAPE(D), 0, 0)));
#undef P
    }
    const int64_t t_axis[1] = {1};
    at_val pooled = at_reduce_mean(g, h, 1, t_axis, 0);
    m->logits = at_add(g, at_matmul(g, pooled, param(g, "cls_w", AT_SHAPE(D, NC), 0.2f, 0)),
                       param(g, "cls_b", AT_SHAPE(NC), 0, 0));
    m->loss = at_softmax_cross_entropy(g, m->logits, m->labels, AT_NONE, "mean", INT64_MIN);
    at_val params[64], grads[64];
    m->n_params = at_graph_params(g, ~0u, params, 64);
    at_backward(g, m->loss, params, m->n_params, grads);
    at_adam_opts o = {0.9f, 0.999f, 1e-8f, 0.01f};
    at_adamw(g, m->n_params, params, grads, m->lr, &o, m->updates);
}

static void train(model *m, bool no_reuse, float *losses, at_session_stats *stats) {
    at_session_opts o = at_session_defaults();
    o.no_reuse = no_reuse;
    o.threads = 2;
    at_err err;
    at_session *s = at_session_new(m->g, &o, &err);
    CHECK(s != NULL, "session: %s", err.msg);
    if (!s) return;
    int64_t tok[B * T], lab[B];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 7 + 3) % V;
    for (int i = 0; i < B; i++) lab[i] = i % NC;
    float lr = 1e-2f;
    at_feed f[3] = {{m->tokens, {AT_I64, AT_SHAPE(B, T), tok}},
                    {m->labels, {AT_I64, AT_SHAPE(B), lab}},
                    {m->lr, {AT_F32, AT_SCALAR, &lr}}};
    for (int step = 0; step < 4; step++) {
        at_tensor out;
        CHECK_OK(at_session_run(s, f, 3, &m->loss, 1, &out, m->updates, m->n_params));
        losses[step] = ((float *)out.data)[0];
    }
    *stats = at_session_get_stats(s);
    /* Inference only: the same graph runs just the forward nodes. */
    at_tensor lg;
    CHECK_OK(at_session_run(s, f, 1, &m->logits, 1, &lg, NULL, 0));
    at_session_stats inf = at_session_get_stats(s);
    CHECK(inf.nodes_run < stats->nodes_run / 2, "inference runs %d of %d training nodes",
          inf.nodes_run, stats->nodes_run);
    at_session_free(s);
}

/* Reshapes share their input's arena buffer (no copy), except where a node updates that
 * buffer in place: there the reshape must keep the value from before the update. */
static void test_views(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(4, 6));
    at_val y = at_relu(g, x);
    const int64_t sh[2] = {6, 4};
    at_val r = at_reshape(g, y, 2, sh);
    at_val z = at_mul(g, r, at_const_f32(g, 2.0f));
    /* SGD(y2, grad 1, lr 0.5) updates a second arena value in place */
    at_val y2 = at_relu(g, at_add(g, x, at_const_f32(g, 1.0f)));
    at_val r2 = at_reshape(g, y2, 2, sh);
    at_val ones = at_add(g, at_mul(g, x, at_const_f32(g, 0.0f)), at_const_f32(g, 1.0f));
    at_val in[3] = {y2, ones, at_const_f32(g, 0.5f)}, upd;
    CHECK(at_node_add(g, "SGD", "ai.attune", in, 3, &upd, 1, NULL, 0) >= 0, "SGD node");
    CHECK_OK(at_graph_status(g));
    at_session_opts o = at_session_defaults();
    o.threads = 1;
    at_err err;
    at_session *s = at_session_new(g, &o, &err);
    CHECK(s != NULL, "session: %s", err.msg);
    if (!s) return;
    float xv[24];
    for (int i = 0; i < 24; i++) xv[i] = (float)i - 10.0f;
    at_feed f = {x, {AT_F32, AT_SHAPE(4, 6), xv}};
    at_val fetch[5] = {y, r, z, r2, upd};
    at_tensor out[5];
    CHECK_OK(at_session_run(s, &f, 1, fetch, 5, out, NULL, 0));
    CHECK(out[1].data == out[0].data, "the reshape of an arena value shares its buffer");
    CHECK(out[1].shape.rank == 2 && out[1].shape.dim[0] == 6, "the view has its own shape");
    CHECK(out[3].data != out[4].data, "a value updated in place is not shared by a view");
    const float *yv = out[0].data, *rv = out[1].data, *zv = out[2].data, *r2v = out[3].data,
                *uv = out[4].data;
    int bad = 0;
    for (int i = 0; i < 24; i++) {
        float relu = xv[i] > 0 ? xv[i] : 0.0f, relu1 = xv[i] + 1 > 0 ? xv[i] + 1 : 0.0f;
        bad += yv[i] != relu || rv[i] != relu || zv[i] != 2 * relu;
        bad += r2v[i] != relu1 || uv[i] != relu1 - 0.5f;
    }
    CHECK(bad == 0, "view values (%d wrong)", bad);
    at_session_free(s);
    at_graph_free(g);
}

int main(void) {
    model a, b;
    build(&a);
    build(&b);
    CHECK_OK(at_graph_status(a.g));
    if (at_graph_status(a.g)) {
        fprintf(stderr, "%s\n", at_graph_error(a.g));
        return 1;
    }
    float la[4], lb[4];
    at_session_stats sa, sb;
    train(&a, false, la, &sa);
    train(&b, true, lb, &sb);
    printf("training graph: %d nodes run, arena %zu bytes vs %zu bytes of values (%.1f%%)\n",
           sa.nodes_run, sa.arena_bytes, sa.values_bytes, 100.0 * sa.arena_bytes / sa.values_bytes);
    CHECK(sa.plans == 1, "one plan across 4 steps, got %d", sa.plans);
    CHECK(sa.arena_bytes * 2 < sa.values_bytes, "arena %zu not well below values %zu",
          sa.arena_bytes, sa.values_bytes);
    CHECK(sb.arena_bytes >= sb.values_bytes, "no-reuse arena holds every value");
    for (int i = 0; i < 4; i++)
        CHECK(memcmp(&la[i], &lb[i], sizeof(float)) == 0, "step %d loss %.9g vs %.9g", i, la[i],
              lb[i]);
    CHECK(la[3] < la[0], "loss decreases: %g -> %g", la[0], la[3]);
    at_val pa[64], pb[64];
    int n = at_graph_params(a.g, ~0u, pa, 64);
    at_graph_params(b.g, ~0u, pb, 64);
    int same = 1;
    for (int i = 0; i < n; i++) {
        at_shape s = at_value_shape(a.g, pa[i]);
        same &= memcmp(at_value_data(a.g, pa[i]), at_value_data(b.g, pb[i]),
                       (size_t)at_shape_numel(&s) * 4) == 0;
    }
    CHECK(same, "parameters after 4 steps are bit-identical with and without reuse");
    at_graph_free(a.g);
    at_graph_free(b.g);
    test_views();
    return check_done("test_planner");
}
