/* CRFLoss, its backward op and CRFDecode against brute force over every tag path (tiny K and
 * T), a plain log-space forward algorithm (larger cases), finite differences, masking and
 * padding, untagged (unlabelled) and partly tagged sentences, bad tags, and the same numbers
 * on 1 and 2 threads. */
#include "op_harness.h"

#include <stdint.h>

#define IG (-100)

typedef struct sent {
    const float *x, *tr, *st, *en;
    const int64_t *tags; /* NULL: no constraint */
    int64_t L, K;
} sent;

static bool tag_ok(const sent *s, int64_t t, int64_t j) {
    return !s->tags || s->tags[t] == IG || s->tags[t] == j;
}

static double path_score(const sent *s, const int64_t *y) {
    double v = s->st[y[0]] + s->en[y[s->L - 1]];
    for (int64_t t = 0; t < s->L; t++) {
        v += s->x[t * s->K + y[t]];
        if (t) v += s->tr[y[t - 1] * s->K + y[t]];
    }
    return v;
}

/* Enumerates every path (K^L of them): log-sum-exp of the allowed ones' scores, and the best
 * path (when best is set). */
static double brute(const sent *s, int64_t *best) {
    int64_t y[16] = {0}, n = 1;
    for (int64_t t = 0; t < s->L; t++) n *= s->K;
    double m = -INFINITY, z = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int64_t p = 0; p < n; p++) {
            bool ok = true;
            for (int64_t t = 0, q = p; t < s->L; t++, q /= s->K) {
                y[t] = q % s->K;
                ok = ok && tag_ok(s, t, y[t]);
            }
            if (!ok) continue;
            double v = path_score(s, y);
            if (pass == 1) {
                z += exp(v - m);
            } else if (v > m) {
                m = v;
                if (best) memcpy(best, y, (size_t)s->L * sizeof *y);
            }
        }
    return m + log(z);
}

/* The textbook forward algorithm in log space (K^2 exps a step). */
static double forward_dp(const sent *s) {
    double a[64], b[64];
    int64_t K = s->K;
    for (int64_t j = 0; j < K; j++) a[j] = tag_ok(s, 0, j) ? s->st[j] + s->x[j] : -INFINITY;
    for (int64_t t = 1; t < s->L; t++) {
        for (int64_t j = 0; j < K; j++) {
            double m = -INFINITY, z = 0;
            for (int64_t i = 0; i < K; i++) m = fmax(m, a[i] + s->tr[i * K + j]);
            for (int64_t i = 0; i < K; i++) z += exp(a[i] + s->tr[i * K + j] - m);
            b[j] = tag_ok(s, t, j) ? m + log(z) + s->x[t * K + j] : -INFINITY;
        }
        memcpy(a, b, (size_t)K * sizeof *a);
    }
    double m = -INFINITY, z = 0;
    for (int64_t j = 0; j < K; j++) m = fmax(m, a[j] + s->en[j]);
    for (int64_t j = 0; j < K; j++) z += exp(a[j] + s->en[j] - m);
    return m + log(z);
}

/* Sentence b of the inputs (logits, [tags,] mask, transitions, start, end). */
static sent sentence(const at_tensor *in, bool has_tags, int64_t b) {
    const at_tensor *x = &in[0], *mask = &in[has_tags ? 2 : 1];
    int64_t T = x->shape.dim[1], K = x->shape.dim[2], L = 0;
    for (int64_t t = 0; t < T; t++) L += ((const float *)mask->data)[b * T + t] > 0.5f;
    int o = has_tags ? 1 : 0;
    sent s = {(const float *)x->data + b * T * K,
              (const float *)in[2 + o].data,
              (const float *)in[3 + o].data,
              (const float *)in[4 + o].data,
              has_tags ? (const int64_t *)in[1].data + b * T : NULL,
              L,
              K};
    return s;
}

static bool untagged(const sent *s) {
    for (int64_t t = 0; t < s->L; t++)
        if (s->tags[t] != IG) return false;
    return true;
}

static void ref_loss(const at_tensor *in, at_tensor *out, bool use_brute) {
    int64_t B = in[0].shape.dim[0];
    out[0].dtype = AT_F32;
    out[0].shape = AT_SHAPE(B);
    for (int64_t b = 0; b < B; b++) {
        sent s = sentence(in, true, b);
        double nll = 0;
        if (s.L && !untagged(&s)) {
            double zc = use_brute ? brute(&s, NULL) : forward_dp(&s);
            s.tags = NULL;
            nll = (use_brute ? brute(&s, NULL) : forward_dp(&s)) - zc;
        }
        ((float *)out[0].data)[b] = (float)nll;
    }
}

static void ref_brute(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    ref_loss(in, out, true);
}

static void ref_dp(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    ref_loss(in, out, false);
}

static void ref_decode(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in, (void)n_out;
    int64_t B = in[0].shape.dim[0], T = in[0].shape.dim[1];
    out[0].dtype = AT_I64;
    out[0].shape = AT_SHAPE(B, T);
    int64_t *o = out[0].data;
    for (int64_t b = 0; b < B; b++) {
        sent s = sentence(in, false, b);
        for (int64_t t = 0; t < T; t++) o[b * T + t] = 0;
        if (s.L) brute(&s, o + b * T);
    }
}

static int loss_build(at_graph *g, const at_val *in, at_val *out) {
    at_attr ig = AT_ATTR_I("ignore_index", IG);
    return at_node_add(g, "CRFLoss", AT_DOMAIN_ATTUNE, in, 6, out, 1, &ig, 1) < 0 ? 0 : 1;
}

static int decode_build(at_graph *g, const at_val *in, at_val *out) {
    return at_node_add(g, "CRFDecode", AT_DOMAIN_ATTUNE, in, 5, out, 1, NULL, 0) < 0 ? 0 : 1;
}

/* B = 4, T = 4, K = 3: full length and fully tagged; length 2 (padding tags IG) with an
 * untagged position inside; untagged (unlabelled); length 3, fully tagged. */
static const int64_t tags4[16] = {0, 2, 1, 1, 2, IG, IG, IG, IG, IG, IG, IG, 1, 0, 2, IG};
static const float mask4[16] = {1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0};
/* A length-0 sentence, a length-1 one, one partly tagged: T = 3. */
static const int64_t tags3[9] = {IG, IG, IG, 2, IG, IG, IG, 1, IG};
static const float mask3[9] = {0, 0, 0, 1, 0, 0, 1, 1, 1};
/* Larger: B = 3, T = 7, K = 12. */
static const int64_t tags7[21] = {3,  11, 0,  0, 5, 7, 2, 1,  1,  4, IG,
                                  IG, 9,  10, 8, 0, 6, 2, IG, IG, IG};
static const float mask7[21] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0};
static const float ones7[21] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
static const float mask5[15] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0};
static const int64_t tags_bad[4] = {0, 1, 3, 0};

#define LOGITS(lo, hi, ...) OH_F32(lo, hi, __VA_ARGS__)
#define FIXED(dt_, arr, ...)                                                                       \
    { .dt = dt_, .shape = AT_SHAPE(__VA_ARGS__), .data = (arr) }
#define PARAMS(K, lo, hi)    OH_F32(lo, hi, K, K), OH_F32(lo, hi, K), OH_F32(lo, hi, K)
#define PARAMS_NG(K, lo, hi) OH_F32_NG(lo, hi, K, K), OH_F32_NG(lo, hi, K), OH_F32_NG(lo, hi, K)
#define ROW(name_, build_, ref_, n, ...)                                                           \
    {                                                                                              \
        .name = name_, .n_in = n, .in = {__VA_ARGS__}, .build = build_, .ref = ref_, .atol = 2e-5, \
        .rtol = 2e-5, .grad_atol = 2e-3, .grad_rtol = 2e-2                                         \
    }

/* A tag outside [0, K) at a real token fails the run naming it; the same tag at padding is
 * not looked at. */
static int check_bad_tag(void) {
    at_graph *g = at_graph_new();
    at_val in[6] = {
        at_input(g, "x", AT_F32, AT_SHAPE(1, 4, 3)), at_input(g, "y", AT_I64, AT_SHAPE(1, 4)),
        at_input(g, "m", AT_F32, AT_SHAPE(1, 4)),    at_input(g, "tr", AT_F32, AT_SHAPE(3, 3)),
        at_input(g, "s", AT_F32, AT_SHAPE(3)),       at_input(g, "e", AT_F32, AT_SHAPE(3))};
    at_val loss;
    at_node_add(g, "CRFLoss", AT_DOMAIN_ATTUNE, in, 6, &loss, 1, NULL, 0);
    at_err err;
    at_session *s = at_session_new(g, NULL, &err);
    if (!s) {
        fprintf(stderr, "FAIL bad_tag: session: %s\n", err.msg);
        at_graph_free(g);
        return 1;
    }
    float x[12] = {0}, tr[9] = {0}, v[3] = {0};
    float m_full[4] = {1, 1, 1, 1}, m_short[4] = {1, 1, 0, 0};
    int bad = 0;
    for (int k = 0; k < 2; k++) {
        at_feed f[6] = {{in[0], {AT_F32, AT_SHAPE(1, 4, 3), x}},
                        {in[1], {AT_I64, AT_SHAPE(1, 4), (void *)tags_bad}},
                        {in[2], {AT_F32, AT_SHAPE(1, 4), k ? m_short : m_full}},
                        {in[3], {AT_F32, AT_SHAPE(3, 3), tr}},
                        {in[4], {AT_F32, AT_SHAPE(3), v}},
                        {in[5], {AT_F32, AT_SHAPE(3), v}}};
        at_tensor out;
        at_status st = at_session_run(s, f, 6, &loss, 1, &out, NULL, 0);
        /* uniform scores: nll = log(number of paths) = L log 3 */
        bool want_ok = k == 1;
        if (want_ok ? st != AT_OK || fabsf(((float *)out.data)[0] - 2 * logf(3)) > 1e-5f
                    : st == AT_OK || !strstr(at_session_error(s), "tag 3")) {
            fprintf(stderr, "FAIL bad_tag: case %d: status %d, '%s'\n", k, (int)st,
                    at_session_error(s));
            bad = 1;
        }
    }
    if (!bad) printf("ok   bad_tag_error\n");
    at_session_free(s);
    at_graph_free(g);
    return bad;
}

/* The loss and every gradient are bit-identical on 1 and 2 threads (large enough to go
 * parallel). */
static int check_threads(void) {
    enum { B = 16, T = 12, K = 24 };
    at_graph *g = at_graph_new();
    at_val in[6] = {
        at_input(g, "x", AT_F32, AT_SHAPE(B, T, K)), at_input(g, "y", AT_I64, AT_SHAPE(B, T)),
        at_input(g, "m", AT_F32, AT_SHAPE(B, T)),    at_input(g, "tr", AT_F32, AT_SHAPE(K, K)),
        at_input(g, "s", AT_F32, AT_SHAPE(K)),       at_input(g, "e", AT_F32, AT_SHAPE(K))};
    at_val loss, fetch[6];
    at_node_add(g, "CRFLoss", AT_DOMAIN_ATTUNE, in, 6, &loss, 1, NULL, 0);
    at_val total = at_reduce_sum(g, loss, 0, NULL, 0), wrt[4] = {in[0], in[3], in[4], in[5]};
    fetch[0] = loss;
    at_node_add(g, "CRFDecode", AT_DOMAIN_ATTUNE, (at_val[]){in[0], in[2], in[3], in[4], in[5]}, 5,
                &fetch[5], 1, NULL, 0);
    if (at_backward(g, total, wrt, 4, fetch + 1) != AT_OK) {
        fprintf(stderr, "FAIL threads: backward: %s\n", at_graph_error(g));
        at_graph_free(g);
        return 1;
    }
    static float x[B * T * K], m[B * T], tr[K * K], sv[K], ev[K];
    static int64_t y[B * T];
    uint64_t rng = 7;
    for (int i = 0; i < B * T * K; i++) x[i] = (float)(oh_unif(&rng) * 6 - 3);
    for (int i = 0; i < K * K; i++) tr[i] = (float)(oh_unif(&rng) * 2 - 1);
    for (int i = 0; i < K; i++) sv[i] = (float)oh_unif(&rng), ev[i] = (float)oh_unif(&rng);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            m[b * T + t] = t < 1 + (b * 5) % T;
            y[b * T + t] = b % 4 == 3 ? IG : (int64_t)(oh_next(&rng) % K);
        }
    at_feed f[6] = {{in[0], {AT_F32, AT_SHAPE(B, T, K), x}}, {in[1], {AT_I64, AT_SHAPE(B, T), y}},
                    {in[2], {AT_F32, AT_SHAPE(B, T), m}},    {in[3], {AT_F32, AT_SHAPE(K, K), tr}},
                    {in[4], {AT_F32, AT_SHAPE(K), sv}},      {in[5], {AT_F32, AT_SHAPE(K), ev}}};
    void *keep[6] = {0};
    int bad = 0;
    for (int th = 1; th <= 2 && !bad; th++) {
        at_session_opts o = at_session_defaults();
        o.threads = th;
        at_err err;
        at_session *s = at_session_new(g, &o, &err);
        at_tensor out[6];
        if (!s || at_session_run(s, f, 6, fetch, 6, out, NULL, 0) != AT_OK) {
            fprintf(stderr, "FAIL threads: run: %s\n", s ? at_session_error(s) : err.msg);
            bad = 1;
        }
        for (int j = 0; j < 6 && !bad; j++) {
            size_t n = at_tensor_nbytes(&out[j]);
            if (th == 1) {
                keep[j] = malloc(n);
                memcpy(keep[j], out[j].data, n);
            } else if (memcmp(keep[j], out[j].data, n) != 0) {
                fprintf(stderr, "FAIL threads: output %d differs on 2 threads\n", j);
                bad = 1;
            }
        }
        at_session_free(s);
    }
    for (int j = 0; j < 6; j++) free(keep[j]);
    if (!bad) printf("ok   thread_count_independent\n");
    at_graph_free(g);
    return bad;
}

int main(int argc, char **argv) {
    const oh_case cases[] = {
        ROW("crf_loss_brute_k3_t4", loss_build, ref_brute, 6, LOGITS(-2, 2, 4, 4, 3),
            FIXED(AT_I64, tags4, 4, 4), FIXED(AT_F32, mask4, 4, 4), PARAMS(3, -1, 1)),
        ROW("crf_loss_brute_empty_short_partial", loss_build, ref_brute, 6, LOGITS(-2, 2, 3, 3, 3),
            FIXED(AT_I64, tags3, 3, 3), FIXED(AT_F32, mask3, 3, 3), PARAMS(3, -1, 1)),
        ROW("crf_loss_dp_k12_t7", loss_build, ref_dp, 6, LOGITS(-3, 3, 3, 7, 12),
            FIXED(AT_I64, tags7, 3, 7), FIXED(AT_F32, mask7, 3, 7), PARAMS(12, -1, 1)),
        ROW("crf_loss_dp_no_padding", loss_build, ref_dp, 6, LOGITS(-3, 3, 3, 7, 12),
            FIXED(AT_I64, tags7, 3, 7), FIXED(AT_F32, ones7, 3, 7), PARAMS(12, -1, 1)),
        /* large scores: no overflow (forward only: float differences are too coarse here) */
        ROW("crf_loss_dp_large_scores", loss_build, ref_dp, 6, OH_F32_NG(-60, 60, 3, 7, 12),
            FIXED(AT_I64, tags7, 3, 7), FIXED(AT_F32, mask7, 3, 7), PARAMS_NG(12, -30, 30)),
        ROW("crf_decode_brute_k3_t4", decode_build, ref_decode, 5, OH_F32_NG(-2, 2, 4, 4, 3),
            FIXED(AT_F32, mask4, 4, 4), PARAMS_NG(3, -1, 1)),
        ROW("crf_decode_brute_k5_t5", decode_build, ref_decode, 5, OH_F32_NG(-2, 2, 3, 5, 5),
            FIXED(AT_F32, mask5, 3, 5), PARAMS_NG(5, -2, 2)),
        ROW("crf_decode_brute_empty_short", decode_build, ref_decode, 5, OH_F32_NG(-2, 2, 3, 3, 3),
            FIXED(AT_F32, mask3, 3, 3), PARAMS_NG(3, -1, 1)),
    };
    int rc = oh_run(cases, (int)(sizeof cases / sizeof *cases), "ops_crf", argc, argv);
    if (argc > 1) return rc;
    rc |= check_bad_tag();
    rc |= check_threads();
    return rc;
}
