/* Writes the model-loader seed corpus: small graphs built with attune itself, covering what a
 * model file can hold (symbolic and concrete dims, every attribute kind, initializers of
 * several dtypes, parameter groups and state, checkpoint metadata, inference and whole
 * training graphs). Small on purpose: the fuzzer mutates a few hundred bytes well, and the
 * graphs with concrete shapes run in the harness's session.
 *
 *   make_seeds DIR    (scripts/fuzz.sh --seeds runs it on fuzz/corpus/model_load) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attune/attune.h"

static int failures;

static void fill(at_graph *g, at_val v, float scale) {
    float *p = at_value_data(g, v);
    at_shape s = at_value_shape(g, v);
    int64_t n = at_shape_numel(&s);
    for (int64_t i = 0; i < n; i++) p[i] = scale * (float)((i * 37 % 11) - 5) / 5.0f;
}

static void save(at_graph *g, const char *dir, const char *name, bool inference) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    at_err err = {0};
    at_status st = at_graph_status(g);
    if (st == AT_OK) {
        at_save_opts o = {.inference = inference, .graph_name = "seed"};
        st = at_graph_save(g, path, &o, &err);
    } else {
        snprintf(err.msg, sizeof err.msg, "build: %s", at_graph_error(g));
    }
    if (st != AT_OK) {
        fprintf(stderr, "make_seeds: %s: %s\n", name, err.msg);
        failures++;
    } else {
        printf("%s\n", path);
    }
    at_graph_free(g);
}

/* An inference MLP with a symbolic batch, as `attune train` would write a model. */
static at_graph *mlp(bool train) {
    at_graph *g = at_graph_new();
    int64_t B = at_sym(g, "B");
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(B, 4));
    at_val w1 = at_param(g, "w1", AT_F32, AT_SHAPE(4, 3), 0);
    at_val b1 = at_param(g, "b1", AT_F32, AT_SHAPE(3), 1);
    fill(g, w1, 1.0f);
    at_val h = at_relu(g, at_add(g, at_matmul(g, x, w1), b1));
    at_val p = at_softmax(g, h, -1);
    at_output(g, p);
    at_graph_set_meta(g, "attune.words", "<pad>\n<unk>\nflight\n");
    if (train) {
        at_val y = at_input(g, "y", AT_I64, AT_SHAPE(B));
        at_val lr = at_input(g, "lr", AT_F32, AT_SCALAR);
        at_val loss = at_softmax_cross_entropy(g, h, y, AT_NONE, "mean", -100);
        at_val params[2] = {w1, b1}, grads[2], clipped[2], upd[2];
        at_backward(g, loss, params, 2, grads);
        at_clip_global_norm(g, 2, grads, 1.0f, clipped, NULL);
        at_adam_opts o = {0.9f, 0.999f, 1e-8f, 0.01f};
        at_adamw(g, 2, params, clipped, lr, &o, upd);
        at_output(g, loss);
    }
    return g;
}

/* Concrete shapes throughout, so that the harness runs it: shape ops with int attributes and
 * int lists, a Constant node (tensor attribute), gathers, reductions, casts, comparisons. */
static at_graph *shapes(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(2, 3));
    at_val idx = at_input(g, "idx", AT_I64, AT_SHAPE(2));
    float ed[5 * 3];
    for (int i = 0; i < 15; i++) ed[i] = (float)i * 0.25f - 1.0f;
    at_val emb = at_const(g, "emb", AT_F32, AT_SHAPE(5, 3), ed);
    at_val e = at_gather(g, emb, idx, 0);
    at_val s = at_add(g, x, e);
    at_val scale = at_param(g, "ln.scale", AT_F32, AT_SHAPE(3), 0);
    fill(g, scale, 1.0f);
    at_val ln = at_layer_norm(g, s, scale, AT_NONE, -1, 1e-5f);
    int64_t perm[2] = {1, 0}, shp[3] = {3, 1, 2}, ax1[1] = {1}, st[1] = {0}, en[1] = {2};
    at_val t = at_transpose(g, ln, 2, perm);
    at_val r = at_reshape(g, t, 3, shp);
    at_val sq = at_squeeze(g, r, 1, ax1);
    at_val two[2] = {sq, sq};
    at_val c = at_concat(g, 2, two, 0);
    at_val sl = at_slice(g, c, 1, st, en, NULL, NULL);
    at_val m = at_reduce_mean(g, sl, 1, ax1, 1);
    int64_t k[1] = {2};
    at_tensor kt = {AT_I64, AT_SHAPE(1), k};
    at_val kc = at_constant(g, &kt);
    at_val cast = at_cast(g, at_equal(g, at_cast(g, m, AT_I64), kc), AT_F32);
    at_val w = at_where(g, at_equal(g, cast, at_const_f32(g, 1.0f)), m, at_neg(g, m));
    at_val sh = at_shape_of(g, x);
    at_val z = at_constant_of_shape(g, sh, AT_F32, 0.5);
    at_val ex = at_expand(g, at_const_f32(g, 2.0f), sh);
    at_output(g, w);
    at_output(g, at_log_softmax(g, at_mul(g, z, ex), 1));
    at_output(g, at_clip(g, at_gelu(g, x), -1.0f, 1.0f));
    return g;
}

/* Sequence layers: Conv1d (int attributes), LSTM (string attribute, several outputs),
 * Dropout with its mask, GradientReversal and StopGradient (ai.attune domain). */
static at_graph *seq(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(1, 2, 4));
    at_val cw = at_param(g, "conv.w", AT_F32, AT_SHAPE(2, 2, 3), 0);
    at_val cb = at_param(g, "conv.b", AT_F32, AT_SHAPE(2), 0);
    fill(g, cw, 0.5f);
    at_val c = at_conv1d(g, x, cw, cb, 1, 1, 1, 1, 1);
    int64_t perm[3] = {2, 0, 1};
    at_val xs = at_transpose(g, c, 3, perm); /* [T=4, B=1, I=2] */
    at_val W = at_param(g, "lstm.W", AT_F32, AT_SHAPE(1, 8, 2), 1);
    at_val R = at_param(g, "lstm.R", AT_F32, AT_SHAPE(1, 8, 2), 1);
    fill(g, W, 0.3f);
    fill(g, R, 0.2f);
    at_val y, yh;
    at_lstm(g, xs, W, R, AT_NONE, AT_NONE, AT_NONE, AT_NONE, 2, "forward", &y, &yh, NULL);
    at_val training = at_input(g, "training", AT_BOOL, AT_SCALAR);
    at_val mask;
    at_val d = at_dropout(g, y, 0.25f, training, &mask);
    at_val lambda = at_input(g, "lambda", AT_F32, AT_SCALAR);
    at_output(g, at_gradient_reversal(g, at_tanh(g, d), lambda));
    at_output(g, at_stop_gradient(g, at_sigmoid(g, yh)));
    at_output(g, mask);
    return g;
}

/* The remaining elementwise ops, Gemm, Split, Unsqueeze and the other reductions, concrete. */
static at_graph *math(void) {
    at_graph *g = at_graph_new();
    at_val x = at_input(g, "x", AT_F32, AT_SHAPE(2, 4));
    at_val w = at_param(g, "w", AT_F32, AT_SHAPE(4, 4), 0);
    fill(g, w, 0.7f);
    at_val y = at_gemm(g, x, w, AT_NONE, 0.5f, 1.0f, 0, 1);
    at_val a = at_abs(g, at_sub(g, y, x));
    at_val b = at_div(g, at_sqrt(g, at_add(g, a, at_const_f32(g, 1.0f))), at_exp(g, x));
    at_val c = at_pow(g, at_log(g, at_add(g, a, at_const_f32(g, 2.0f))), at_const_f32(g, 2.0f));
    at_val d = at_mul(g, at_sign(g, x), at_leaky_relu(g, at_add(g, b, c), 0.1f));
    at_val parts[2];
    at_split_into(g, d, 1, 2, NULL, parts);
    int64_t ax0[1] = {0}, ax1[1] = {1};
    at_val u = at_unsqueeze(g, at_reduce_sum(g, parts[0], 1, ax1, 0), 1, ax0);
    at_val mx = at_reduce_max(g, parts[1], 1, ax0, 1);
    at_output(g, u);
    at_output(g, mx);
    at_output(g, at_not(g, at_equal(g, at_cast(g, x, AT_BOOL), at_cast(g, y, AT_BOOL))));
    at_output(g, at_identity(g, at_cast(g, at_cast(g, d, AT_I32), AT_I64)));
    return g;
}

/* A training graph with concrete shapes, so that the harness runs its backward and update
 * kernels too: embedding, conv, LSTM, layer norm, dropout, softmax cross-entropy, with SGD on
 * some parameters and Adam on the others. */
static at_graph *train_small(void) {
    at_graph *g = at_graph_new();
    at_val tok = at_input(g, "tok", AT_I64, AT_SHAPE(1, 3));
    at_val lab = at_input(g, "lab", AT_I64, AT_SHAPE(3));
    at_val lr = at_input(g, "lr", AT_F32, AT_SCALAR);
    at_val emb = at_param(g, "emb", AT_F32, AT_SHAPE(4, 2), 0);
    at_val cw = at_param(g, "cw", AT_F32, AT_SHAPE(2, 2, 1), 0);
    at_val W = at_param(g, "W", AT_F32, AT_SHAPE(1, 8, 2), 1);
    at_val R = at_param(g, "R", AT_F32, AT_SHAPE(1, 8, 2), 1);
    at_val ls = at_param(g, "ls", AT_F32, AT_SHAPE(2), 1);
    fill(g, emb, 1.0f);
    fill(g, cw, 0.8f);
    fill(g, W, 0.4f);
    fill(g, R, 0.3f);
    fill(g, ls, 1.0f);
    int64_t p021[3] = {0, 2, 1}, p102[3] = {1, 0, 2}, sq[1] = {1}, shp2[2] = {3, 2};
    at_val e = at_gather(g, emb, tok, 0); /* [1,3,2] */
    at_val c = at_conv1d(g, at_transpose(g, e, 3, p021), cw, AT_NONE, 0, 0, 1, 1, 1);
    at_val xs = at_transpose(g, at_transpose(g, c, 3, p021), 3, p102); /* [3,1,2] */
    at_val y;
    at_lstm(g, xs, W, R, AT_NONE, AT_NONE, AT_NONE, AT_NONE, 2, "forward", &y, NULL, NULL);
    at_val h = at_reshape(g, at_squeeze(g, y, 1, sq), 2, shp2); /* [3,2] */
    h = at_layer_norm(g, at_tanh(g, h), ls, AT_NONE, -1, 1e-5f);
    at_val on = at_const(g, "train", AT_BOOL, AT_SCALAR, &(uint8_t){1});
    h = at_dropout(g, at_gelu(g, at_sigmoid(g, h)), 0.1f, on, NULL);
    at_val loss = at_softmax_cross_entropy(g, h, lab, AT_NONE, "mean", -100);
    at_val p1[2] = {emb, cw}, p2[3] = {W, R, ls}, g1[2], g2[3], u1[2], u2[3];
    at_backward(g, loss, p1, 2, g1);
    at_backward(g, loss, p2, 3, g2);
    at_sgd(g, 2, p1, g1, lr, 0.9f, 0.0f, u1);
    at_adam_opts o = {0.9f, 0.999f, 1e-8f, 0.0f};
    at_adam(g, 3, p2, g2, lr, &o, u2);
    at_output(g, loss);
    for (int i = 0; i < 2; i++) at_output(g, u1[i]);
    for (int i = 0; i < 3; i++) at_output(g, u2[i]);
    return g;
}

/* A trained-model-like graph with state and a checkpoint's training position. */
static void checkpoint(const char *dir) {
    at_graph *g = mlp(true);
    char path[1024];
    snprintf(path, sizeof path, "%s/gen_checkpoint.onnx", dir);
    at_checkpoint_info info = {.step = 12, .epoch = 3, .phase = 1, .rng_seed = 42};
    at_err err = {0};
    if (at_graph_status(g) != AT_OK || at_checkpoint_save(g, &info, path, &err) != AT_OK) {
        fprintf(stderr, "make_seeds: checkpoint: %s%s\n", at_graph_error(g), err.msg);
        failures++;
    } else {
        printf("%s\n", path);
    }
    at_graph_free(g);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    save(mlp(false), dir, "gen_mlp_model.onnx", true);
    save(mlp(true), dir, "gen_mlp_train.onnx", false);
    save(shapes(), dir, "gen_shapes.onnx", false);
    save(seq(), dir, "gen_seq.onnx", false);
    save(math(), dir, "gen_math.onnx", false);
    save(train_small(), dir, "gen_train_small.onnx", false);
    checkpoint(dir);
    return failures ? 1 : 0;
}
