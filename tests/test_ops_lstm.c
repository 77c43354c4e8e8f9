/* LSTM and LSTMGrad: harness rows (forward against a plain double-precision LSTM written
 * here, gradients of every float input against finite differences) over directions, bias,
 * mixed sequence lengths (zero included), initial states, both layouts and gradient paths
 * through Y, Y_h or Y_c alone; then custom checks for rejected features and bad data. */
#include "check.h"
#include "op_harness.h"

typedef struct lcfg {
    const char *dir;
    bool b, seq, h0, c0;
    int layout;
} lcfg;

static const lcfg cfgs[] = {
    {"forward", 0, 0, 0, 0, 0},       /* 0 */
    {"forward", 1, 0, 0, 0, 0},       /* 1 */
    {"reverse", 1, 1, 1, 1, 0},       /* 2 */
    {"bidirectional", 1, 1, 1, 1, 0}, /* 3 */
    {"bidirectional", 0, 0, 1, 0, 0}, /* 4 */
    {"forward", 1, 1, 1, 1, 0},       /* 5 */
    {"bidirectional", 1, 1, 1, 1, 1}, /* 6 */
    {"reverse", 0, 1, 0, 1, 1},       /* 7 */
};

/* ---- the reference: one batch item and one step at a time, in double ---- */

static double sg(double v) {
    return 1.0 / (1.0 + exp(-v));
}

static void ref_cfg(const lcfg *cf, const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in;
    int p = 3;
    const float *X = in[0].data, *W = in[1].data, *R = in[2].data;
    const float *Bb = cf->b ? in[p++].data : NULL;
    const int32_t *seq = cf->seq ? in[p++].data : NULL;
    const float *h0 = cf->h0 ? in[p++].data : NULL;
    const float *c0 = cf->c0 ? in[p++].data : NULL;
    int L = cf->layout;
    int64_t T = in[0].shape.dim[L ? 1 : 0], B = in[0].shape.dim[L ? 0 : 1];
    int64_t I = in[0].shape.dim[2], D = in[1].shape.dim[0], H = in[2].shape.dim[2];
#define XI(t, b, i) X[((L ? (b)*T + (t) : (t)*B + (b)) * I) + (i)]
#define YI(t, d, b) ((L ? (((b)*T + (t)) * D + (d)) : (((t)*D + (d)) * B + (b))) * H)
#define SI(d, b)    ((L ? ((b)*D + (d)) : ((d)*B + (b))) * H)
    out[0].dtype = AT_F32;
    out[0].shape = L ? AT_SHAPE(B, T, D, H) : AT_SHAPE(T, D, B, H);
    for (int j = 1; j < n_out; j++) {
        out[j].dtype = AT_F32;
        out[j].shape = L ? AT_SHAPE(B, D, H) : AT_SHAPE(D, B, H);
    }
    float *Y = out[0].data, *Yh = n_out > 1 ? out[1].data : NULL;
    float *Yc = n_out > 2 ? out[2].data : NULL;
    for (int64_t d = 0; d < D; d++) {
        bool rev = !strcmp(cf->dir, "reverse") || d == 1;
        const float *Wd = W + d * 4 * H * I, *Rd = R + d * 4 * H * H;
        for (int64_t b = 0; b < B; b++) {
            double h[256], c[256], a[1024];
            for (int64_t j = 0; j < H; j++) {
                h[j] = h0 ? h0[SI(d, b) + j] : 0;
                c[j] = c0 ? c0[SI(d, b) + j] : 0;
            }
            for (int64_t t = 0; t < T; t++)
                for (int64_t j = 0; j < H; j++) Y[YI(t, d, b) + j] = 0;
            int64_t len = seq ? seq[b] : T;
            for (int64_t k = 0; k < len; k++) {
                int64_t t = rev ? len - 1 - k : k;
                for (int64_t r = 0; r < 4 * H; r++) {
                    double v = Bb ? (double)Bb[d * 8 * H + r] + Bb[d * 8 * H + 4 * H + r] : 0;
                    for (int64_t i = 0; i < I; i++) v += (double)Wd[r * I + i] * XI(t, b, i);
                    for (int64_t j = 0; j < H; j++) v += (double)Rd[r * H + j] * h[j];
                    a[r] = v;
                }
                for (int64_t j = 0; j < H; j++) {
                    double gi = sg(a[j]), go = sg(a[H + j]), gf = sg(a[2 * H + j]);
                    double gc = tanh(a[3 * H + j]);
                    c[j] = gf * c[j] + gi * gc;
                    h[j] = go * tanh(c[j]);
                    Y[YI(t, d, b) + j] = (float)h[j];
                }
            }
            for (int64_t j = 0; j < H; j++) {
                if (Yh) Yh[SI(d, b) + j] = (float)h[j];
                if (Yc) Yc[SI(d, b) + j] = (float)c[j];
            }
        }
    }
#undef XI
#undef YI
#undef SI
}

static int build_cfg(const lcfg *cf, int H, at_graph *g, const at_val *in, at_val *out) {
    int p = 3;
    at_val b = cf->b ? in[p++] : AT_NONE, seq = cf->seq ? in[p++] : AT_NONE;
    at_val h0 = cf->h0 ? in[p++] : AT_NONE, c0 = cf->c0 ? in[p++] : AT_NONE;
    if (cf->layout == 0) {
        if (at_lstm(g, in[0], in[1], in[2], b, seq, h0, c0, H, cf->dir, &out[0], &out[1],
                    &out[2]) != AT_OK)
            return -1;
        return 3;
    }
    at_val x[7] = {in[0], in[1], in[2], b, seq, h0, c0};
    at_attr a[3] = {AT_ATTR_I("hidden_size", H), AT_ATTR_S("direction", cf->dir),
                    AT_ATTR_I("layout", 1)};
    return at_node_add(g, "LSTM", "", x, 7, out, 3, a, 3) < 0 ? -1 : 3;
}

#define LSTM_FNS(k, H)                                                                             \
    static int build_##k(at_graph *g, const at_val *in, at_val *out) {                             \
        return build_cfg(&cfgs[k], H, g, in, out);                                                 \
    }                                                                                              \
    static void ref_##k(const at_tensor *in, int n_in, at_tensor *out, int n_out) {                \
        ref_cfg(&cfgs[k], in, n_in, out, n_out);                                                   \
    }
LSTM_FNS(0, 4)
LSTM_FNS(1, 4)
LSTM_FNS(2, 4)
LSTM_FNS(3, 4)
LSTM_FNS(4, 4)
LSTM_FNS(5, 4)
LSTM_FNS(6, 4)
LSTM_FNS(7, 4)
static int build_3_big(at_graph *g, const at_val *in, at_val *out) {
    return build_cfg(&cfgs[3], 64, g, in, out);
}

/* T = 4, B = 3, I = 5, H = 4 */
static const int32_t lens_mixed[3] = {4, 1, 3};
static const int32_t lens_zero[3] = {2, 0, 4};

#define X_(...) OH_F32(-1, 1, __VA_ARGS__)
#define WR(...) OH_F32(-0.6f, 0.6f, __VA_ARGS__)
#define ST(...) OH_F32(-0.8f, 0.8f, __VA_ARGS__)
#define SEQ(p)                                                                                     \
    { .dt = AT_I32, .shape = AT_SHAPE(3), .data = (p) }
#define TOL .atol = 2e-5, .rtol = 1e-4, .grad_atol = 2e-3, .grad_rtol = 2e-2

static int run_rows(int argc, char **argv) {
    const oh_case cases[] = {
        {.name = "lstm_forward_plain",
         .n_in = 3,
         .in = {X_(4, 3, 5), WR(1, 16, 5), WR(1, 16, 4)},
         .build = build_0,
         .ref = ref_0,
         TOL},
        {.name = "lstm_forward_bias",
         .n_in = 4,
         .in = {X_(4, 3, 5), WR(1, 16, 5), WR(1, 16, 4), WR(1, 32)},
         .build = build_1,
         .ref = ref_1,
         TOL},
        {.name = "lstm_reverse_bias_seq_init",
         .n_in = 7,
         .in = {X_(4, 3, 5), WR(1, 16, 5), WR(1, 16, 4), WR(1, 32), SEQ(lens_mixed), ST(1, 3, 4),
                ST(1, 3, 4)},
         .build = build_2,
         .ref = ref_2,
         TOL},
        {.name = "lstm_bidirectional_all",
         .n_in = 7,
         .in = {X_(4, 3, 5), WR(2, 16, 5), WR(2, 16, 4), WR(2, 32), SEQ(lens_mixed), ST(2, 3, 4),
                ST(2, 3, 4)},
         .build = build_3,
         .ref = ref_3,
         TOL},
        {.name = "lstm_bidirectional_h0_only",
         .n_in = 4,
         .in = {X_(4, 3, 5), WR(2, 16, 5), WR(2, 16, 4), ST(2, 3, 4)},
         .build = build_4,
         .ref = ref_4,
         TOL},
        {.name = "lstm_forward_zero_length",
         .n_in = 7,
         .in = {X_(4, 3, 5), WR(1, 16, 5), WR(1, 16, 4), WR(1, 32), SEQ(lens_zero), ST(1, 3, 4),
                ST(1, 3, 4)},
         .build = build_5,
         .ref = ref_5,
         TOL},
        {.name = "lstm_layout1_bidirectional",
         .n_in = 7,
         .in = {X_(3, 4, 5), WR(2, 16, 5), WR(2, 16, 4), WR(2, 32), SEQ(lens_mixed), ST(3, 2, 4),
                ST(3, 2, 4)},
         .build = build_6,
         .ref = ref_6,
         TOL},
        {.name = "lstm_layout1_reverse_c0",
         .n_in = 5,
         .in = {X_(3, 4, 5), WR(1, 16, 5), WR(1, 16, 4), SEQ(lens_zero), ST(3, 1, 4)},
         .build = build_7,
         .ref = ref_7,
         TOL},
        /* the gradient through one output at a time: the other dY inputs of LSTMGrad are absent */
        {.name = "lstm_bidirectional_grad_y_only",
         .n_in = 7,
         .in = {X_(4, 3, 5), WR(2, 16, 5), WR(2, 16, 4), WR(2, 32), SEQ(lens_mixed), ST(2, 3, 4),
                ST(2, 3, 4)},
         .build = build_3,
         .ref = ref_3,
         TOL,
         .grad_outputs = 1},
        {.name = "lstm_reverse_grad_yh_only",
         .n_in = 7,
         .in = {X_(4, 3, 5), WR(1, 16, 5), WR(1, 16, 4), WR(1, 32), SEQ(lens_mixed), ST(1, 3, 4),
                ST(1, 3, 4)},
         .build = build_2,
         .ref = ref_2,
         TOL,
         .grad_outputs = 2},
        {.name = "lstm_forward_grad_yc_only",
         .n_in = 7,
         .in = {X_(4, 3, 5), WR(1, 16, 5), WR(1, 16, 4), WR(1, 32), SEQ(lens_zero), ST(1, 3, 4),
                ST(1, 3, 4)},
         .build = build_5,
         .ref = ref_5,
         TOL,
         .grad_outputs = 4},
        /* big enough for the threaded gate loops; random lengths in [0, 5] */
        {.name = "lstm_bidirectional_wide_forward_only",
         .n_in = 7,
         .in = {OH_F32_NG(-1, 1, 5, 64, 16),
                OH_F32_NG(-0.3f, 0.3f, 2, 256, 16),
                OH_F32_NG(-0.2f, 0.2f, 2, 256, 64),
                OH_F32_NG(-0.5f, 0.5f, 2, 512),
                {.dt = AT_I32, .shape = AT_SHAPE(64), .lo = 0, .hi = 6},
                OH_F32_NG(-1, 1, 2, 64, 64),
                OH_F32_NG(-1, 1, 2, 64, 64)},
         .build = build_3_big,
         .ref = ref_3,
         .atol = 5e-5,
         .rtol = 1e-4},
    };
    return oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_lstm rows", argc, argv);
}

/* ---- rejected features and bad data ---- */

static at_graph *base_graph(at_val v[7]) {
    at_graph *g = at_graph_new();
    v[0] = at_input(g, "X", AT_F32, AT_SHAPE(4, 3, 5));
    v[1] = at_input(g, "W", AT_F32, AT_SHAPE(1, 16, 5));
    v[2] = at_input(g, "R", AT_F32, AT_SHAPE(1, 16, 4));
    v[3] = AT_NONE;
    v[4] = at_input(g, "seq", AT_I32, AT_SHAPE(3));
    v[5] = v[6] = AT_NONE;
    return g;
}

static void expect_build_error(const char *what, at_status want, const at_attr *extra, int n_extra,
                               bool peephole) {
    at_val v[8], out[3];
    at_graph *g = base_graph(v);
    v[7] = peephole ? at_input(g, "P", AT_F32, AT_SHAPE(1, 12)) : AT_NONE;
    at_attr a[4] = {AT_ATTR_I("hidden_size", 4)};
    for (int i = 0; i < n_extra; i++) a[1 + i] = extra[i];
    int node = at_node_add(g, "LSTM", "", v, peephole ? 8 : 7, out, 3, a, 1 + n_extra);
    CHECK(node < 0 && at_graph_status(g) == want, "%s: node %d, status %d (%s)", what, node,
          (int)at_graph_status(g), at_graph_error(g));
    at_graph_free(g);
}

static void test_rejections(void) {
    expect_build_error("peepholes", AT_E_UNSUPPORTED, NULL, 0, true);
    at_attr clip = AT_ATTR_F("clip", 3.0f);
    expect_build_error("clip", AT_E_UNSUPPORTED, &clip, 1, false);
    at_attr forget = AT_ATTR_I("input_forget", 1);
    expect_build_error("input_forget", AT_E_UNSUPPORTED, &forget, 1, false);
    float alpha = 1.0f;
    at_attr act = AT_ATTR_FLOATS("activation_alpha", 1, &alpha);
    expect_build_error("activation_alpha", AT_E_UNSUPPORTED, &act, 1, false);
    at_attr dir = AT_ATTR_S("direction", "sideways");
    expect_build_error("direction", AT_E_INVALID, &dir, 1, false);
    at_attr lay = AT_ATTR_I("layout", 2);
    expect_build_error("layout", AT_E_INVALID, &lay, 1, false);
    /* W's gate dim must be 4 * hidden_size */
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "X", AT_F32, AT_SHAPE(4, 3, 5));
    at_val w = at_input(g, "W", AT_F32, AT_SHAPE(1, 12, 5));
    at_val r = at_input(g, "R", AT_F32, AT_SHAPE(1, 16, 4));
    at_val y;
    CHECK(at_lstm(g, x, w, r, AT_NONE, AT_NONE, AT_NONE, AT_NONE, 4, "forward", &y, NULL, NULL) ==
              AT_E_SHAPE,
          "W [1,12,5] with hidden 4: %s", at_graph_error(g));
    at_graph_free(g);
}

static void test_bad_lengths(void) {
    at_val v[7], out[3];
    at_graph *g = base_graph(v);
    CHECK(at_lstm(g, v[0], v[1], v[2], AT_NONE, v[4], AT_NONE, AT_NONE, 4, "reverse", &out[0],
                  &out[1], &out[2]) == AT_OK,
          "build: %s", at_graph_error(g));
    at_err e;
    at_session *s = at_session_new(g, NULL, &e);
    CHECK(s != NULL, "session: %s", s ? "" : e.msg);
    if (s) {
        static float X[60], W[80], R[64];
        int32_t lens[3] = {2, 5, 1};
        at_feed f[4] = {{v[0], {AT_F32, AT_SHAPE(4, 3, 5), X}},
                        {v[1], {AT_F32, AT_SHAPE(1, 16, 5), W}},
                        {v[2], {AT_F32, AT_SHAPE(1, 16, 4), R}},
                        {v[4], {AT_I32, AT_SHAPE(3), lens}}};
        at_tensor t;
        CHECK(at_session_run(s, f, 4, &out[0], 1, &t, NULL, 0) != AT_OK, "length 5 > T = 4");
        CHECK(strstr(at_session_error(s), "sequence_lens") != NULL, "message: %s",
              at_session_error(s));
        lens[1] = -1;
        CHECK(at_session_run(s, f, 4, &out[0], 1, &t, NULL, 0) != AT_OK, "length -1");
        lens[1] = 4;
        CHECK(at_session_run(s, f, 4, &out[0], 1, &t, NULL, 0) == AT_OK, "valid lengths: %s",
              at_session_error(s));
        at_session_free(s);
    }
    at_graph_free(g);
}

/* Symbolic T and B pass through inference and autodiff, and one graph runs at two sizes. */
static void test_symbolic(void) {
    at_graph *g = at_graph_new();
    int64_t T = at_sym(g, "T"), B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(T, B, 5));
    at_val w = at_param(g, "w", AT_F32, AT_SHAPE(2, 16, 5), 0);
    at_val r = at_param(g, "r", AT_F32, AT_SHAPE(2, 16, 4), 0);
    uint64_t st = 5;
    float *wd = at_value_data(g, w), *rd = at_value_data(g, r);
    for (int i = 0; i < 160; i++) wd[i] = (float)(oh_unif(&st) - 0.5);
    for (int i = 0; i < 128; i++) rd[i] = (float)(oh_unif(&st) - 0.5);
    at_val y, yh;
    CHECK(at_lstm(g, x, w, r, AT_NONE, AT_NONE, AT_NONE, AT_NONE, 4, "bidirectional", &y, &yh,
                  NULL) == AT_OK,
          "build: %s", at_graph_error(g));
    at_shape ys = at_value_shape(g, y);
    CHECK(ys.rank == 4 && ys.dim[0] == T && ys.dim[1] == 2 && ys.dim[2] == B && ys.dim[3] == 4,
          "Y keeps the symbols");
    int64_t ax[4] = {0, 1, 2, 3};
    at_val loss =
        at_add(g, at_reduce_sum(g, at_mul(g, y, y), 4, ax, 0), at_reduce_sum(g, yh, 3, ax, 0));
    at_val wrt[2] = {x, w}, gr[2];
    CHECK(at_backward(g, loss, wrt, 2, gr) == AT_OK, "backward: %s", at_graph_error(g));
    at_shape gs = at_value_shape(g, gr[0]);
    CHECK(gs.rank == 3 && gs.dim[0] == T && gs.dim[1] == B && gs.dim[2] == 5, "dX keeps symbols");
    at_err e;
    at_session *s = at_session_new(g, NULL, &e);
    CHECK(s != NULL, "session: %s", s ? "" : e.msg);
    for (int k = 0; s && k < 2; k++) {
        int64_t t = k ? 6 : 3, b = k ? 4 : 2;
        float xs[6 * 4 * 5];
        for (int i = 0; i < t * b * 5; i++) xs[i] = (float)(oh_unif(&st) * 2 - 1);
        at_feed f = {x, {AT_F32, AT_SHAPE(t, b, 5), xs}};
        at_tensor out[2];
        at_status rs = at_session_run(s, &f, 1, gr, 2, out, NULL, 0);
        CHECK(rs == AT_OK, "run T=%lld B=%lld: %s", (long long)t, (long long)b,
              at_session_error(s));
        if (rs == AT_OK)
            CHECK(out[0].shape.dim[0] == t && out[0].shape.dim[1] == b, "dX [%lld,%lld,..]",
                  (long long)out[0].shape.dim[0], (long long)out[0].shape.dim[1]);
    }
    at_session_free(s);
    at_graph_free(g);
}

/* A node with only Y (as ONNX files often have) gets the same gradient as the full node. */
static void test_y_only_node(void) {
    float gw[2][80];
    for (int v = 0; v < 2; v++) {
        at_graph *g = at_graph_new();
        at_val x = at_input(g, "x", AT_F32, AT_SHAPE(4, 3, 5));
        at_val w = at_param(g, "w", AT_F32, AT_SHAPE(1, 16, 5), 0);
        at_val r = at_param(g, "r", AT_F32, AT_SHAPE(1, 16, 4), 0);
        uint64_t st = 11;
        float *wd = at_value_data(g, w), *rd = at_value_data(g, r);
        for (int i = 0; i < 80; i++) wd[i] = (float)(oh_unif(&st) - 0.5);
        for (int i = 0; i < 64; i++) rd[i] = (float)(oh_unif(&st) - 0.5);
        at_val in[3] = {x, w, r}, out[3];
        at_attr a = AT_ATTR_I("hidden_size", 4);
        CHECK(at_node_add(g, "LSTM", "", in, 3, out, v ? 1 : 3, &a, 1) >= 0, "add: %s",
              at_graph_error(g));
        int64_t ax[4] = {0, 1, 2, 3};
        at_val loss = at_reduce_sum(g, at_mul(g, out[0], out[0]), 4, ax, 0), gr;
        CHECK(at_backward(g, loss, &w, 1, &gr) == AT_OK, "backward: %s", at_graph_error(g));
        at_err e;
        at_session *s = at_session_new(g, NULL, &e);
        float xs[60];
        for (int i = 0; i < 60; i++) xs[i] = (float)(oh_unif(&st) * 2 - 1);
        at_feed f = {x, {AT_F32, AT_SHAPE(4, 3, 5), xs}};
        at_tensor t;
        memset(gw[v], 0, sizeof gw[v]);
        if (s && at_session_run(s, &f, 1, &gr, 1, &t, NULL, 0) == AT_OK)
            memcpy(gw[v], t.data, sizeof gw[v]);
        else
            CHECK(0, "run: %s", s ? at_session_error(s) : e.msg);
        at_session_free(s);
        at_graph_free(g);
    }
    CHECK(memcmp(gw[0], gw[1], sizeof gw[0]) == 0, "Y-only node: same dW");
    double norm = 0;
    for (int i = 0; i < 80; i++) norm += fabs(gw[0][i]);
    CHECK(norm > 1e-3, "dW is not trivially zero (%g)", norm);
}

int main(int argc, char **argv) {
    int rc = run_rows(argc, argv);
    if (argc > 1) return rc;
    test_rejections();
    test_bad_lengths();
    test_symbolic();
    test_y_only_node();
    return check_done("test_ops_lstm custom") | rc;
}
