/* Typed builders: one function per op. Each adds a node to g and returns
 * its output (or writes its outputs), inferring dtypes and shapes
 * symbolically. On error they record it in g and return AT_NONE.
 * Semantics are ONNX's wherever ONNX defines the op (opset 21). */
#ifndef ATTUNE_OPS_H
#define ATTUNE_OPS_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AT_DOMAIN_ONNX   ""
#define AT_DOMAIN_ATTUNE "ai.attune"

/* ---- elementwise (ops/elementwise.c); binary ops broadcast numpy-style ---- */
at_val at_add(at_graph *g, at_val a, at_val b);
at_val at_sub(at_graph *g, at_val a, at_val b);
at_val at_mul(at_graph *g, at_val a, at_val b);
at_val at_div(at_graph *g, at_val a, at_val b);
at_val at_pow(at_graph *g, at_val a, at_val b);
at_val at_equal(at_graph *g, at_val a, at_val b); /* -> bool */
at_val at_where(at_graph *g, at_val cond, at_val a, at_val b);
at_val at_neg(at_graph *g, at_val x);
at_val at_abs(at_graph *g, at_val x);
at_val at_sign(at_graph *g, at_val x);
at_val at_relu(at_graph *g, at_val x);
at_val at_leaky_relu(at_graph *g, at_val x, float alpha);
at_val at_gelu(at_graph *g, at_val x); /* exact (erf) form */
at_val at_tanh(at_graph *g, at_val x);
at_val at_sigmoid(at_graph *g, at_val x);
at_val at_exp(at_graph *g, at_val x);
at_val at_log(at_graph *g, at_val x);
at_val at_sqrt(at_graph *g, at_val x);
at_val at_erf(at_graph *g, at_val x); /* ops/misc.c */
at_val at_not(at_graph *g, at_val x);
at_val at_identity(at_graph *g, at_val x);
at_val at_cast(at_graph *g, at_val x, at_dtype to);
/* Clip with constant bounds (ONNX min/max inputs are made as constants). */
at_val at_clip(at_graph *g, at_val x, float lo, float hi);
/* ai.attune: identity forward, zero gradient. */
at_val at_stop_gradient(at_graph *g, at_val x);
/* ai.attune: identity forward, -lambda * gradient backward; lambda is a
 * float scalar value, usually a graph input fed each step. */
at_val at_gradient_reversal(at_graph *g, at_val x, at_val lambda);
/* ai.attune: x summed over the broadcast dims so it has ref's shape (the
 * gradient of a broadcast input); ref is read for its shape only. */
at_val at_sum_to_shape(at_graph *g, at_val x, at_val ref);

/* ---- linear algebra (ops/matmul.c, ops/conv.c) ---- */
at_val at_matmul(at_graph *g, at_val a, at_val b); /* batched, broadcasting */
/* Y = alpha * op(A) op(B) + beta * C; c may be AT_NONE. */
at_val at_gemm(at_graph *g, at_val a, at_val b, at_val c, float alpha, float beta, int trans_a,
               int trans_b);
/* 1-D convolution, ONNX Conv: x [N, C, L], w [M, C/group, K], b [M] or AT_NONE. */
at_val at_conv1d(at_graph *g, at_val x, at_val w, at_val b, int pad_begin, int pad_end, int stride,
                 int dilation, int group);

/* ---- reductions and normalization (ops/reduce.c, ops/softmax.c,
 *      ops/layernorm.c, ops/loss.c) ---- */
at_val at_reduce_sum(at_graph *g, at_val x, int n_axes, const int64_t *axes, int keepdims);
at_val at_reduce_mean(at_graph *g, at_val x, int n_axes, const int64_t *axes, int keepdims);
at_val at_reduce_max(at_graph *g, at_val x, int n_axes, const int64_t *axes, int keepdims);
at_val at_softmax(at_graph *g, at_val x, int axis);
at_val at_log_softmax(at_graph *g, at_val x, int axis);
/* ONNX LayerNormalization over dims [axis, rank); scale and bias have the
 * normalized shape (bias may be AT_NONE). */
at_val at_layer_norm(at_graph *g, at_val x, at_val scale, at_val bias, int axis, float epsilon);
/* ONNX SoftmaxCrossEntropyLoss: scores [N, C] or [N, C, D...], labels [N] or
 * [N, D...] int64, weight [C] or AT_NONE; reduction "mean", "sum" or "none";
 * labels equal to ignore_index contribute nothing (pass INT64_MIN for none). */
at_val at_softmax_cross_entropy(at_graph *g, at_val scores, at_val labels, at_val weight,
                                const char *reduction, int64_t ignore_index);

/* ---- shapes and indexing (ops/shape.c, ops/gather.c) ---- */
at_val at_shape_of(at_graph *g, at_val x); /* ONNX Shape: int64 [rank] */
at_val at_transpose(at_graph *g, at_val x, int n, const int64_t *perm);
/* Target shape as constant dims (ONNX: 0 copies the input dim, -1 is inferred). */
at_val at_reshape(at_graph *g, at_val x, int n, const int64_t *shape);
/* Target shape from an int64 [n] value (e.g. at_shape_of of another value). */
at_val at_reshape_to(at_graph *g, at_val x, at_val shape);
at_val at_concat(at_graph *g, int n, const at_val *xs, int axis);
/* Splits into n parts along axis (sizes NULL: equal parts); writes outs[n]. */
at_status at_split_into(at_graph *g, at_val x, int axis, int n, const int64_t *sizes, at_val *outs);
/* steps may be NULL (all 1); axes may be NULL (0..n-1). */
at_val at_slice(at_graph *g, at_val x, int n, const int64_t *starts, const int64_t *ends,
                const int64_t *axes, const int64_t *steps);
at_val at_unsqueeze(at_graph *g, at_val x, int n, const int64_t *axes);
at_val at_squeeze(at_graph *g, at_val x, int n, const int64_t *axes);
/* ONNX Expand to an int64 shape value (broadcast rules). */
at_val at_expand(at_graph *g, at_val x, at_val shape);
at_val at_gather(at_graph *g, at_val data, at_val indices, int axis);
/* ONNX Constant: a node holding t (copied). */
at_val at_constant(at_graph *g, const at_tensor *t);
/* ONNX ConstantOfShape: an int64 shape value -> tensor filled with value. */
at_val at_constant_of_shape(at_graph *g, at_val shape, at_dtype dt, double value);

/* ---- sequence and regularization ops ---- */
/* ONNX Dropout: training is a bool scalar value (AT_NONE = inference).
 * Masks come from the session's counter-based RNG keyed by (seed, step,
 * node). mask_out (may be NULL) receives the bool mask output. */
at_val at_dropout(at_graph *g, at_val x, float ratio, at_val training, at_val *mask_out);

/* ONNX LSTM (layout 0): X [T, B, I]; W [D, 4H, I]; R [D, 4H, H]; B [D, 8H] or
 * AT_NONE; seq_lens [B] int32 or AT_NONE; initial_h/initial_c [D, B, H] or
 * AT_NONE. direction "forward", "reverse" or "bidirectional" (D = 2). Writes
 * Y [T, D, B, H], Y_h [D, B, H], Y_c [D, B, H] into the non-NULL pointers. */
at_status at_lstm(at_graph *g, at_val x, at_val w, at_val r, at_val b, at_val seq_lens,
                  at_val initial_h, at_val initial_c, int hidden, const char *direction, at_val *y,
                  at_val *y_h, at_val *y_c);

/* ---- optimizers (ops/optim.c), all in ai.attune, updating in place ---- */
typedef struct at_adam_opts {
    float beta1, beta2, epsilon;
    float weight_decay; /* AdamW: decoupled; Adam: 0 */
} at_adam_opts;

/* Adds the update nodes for params[i] with gradients grads[i] (n of them),
 * creating the optimizer state (moments, step counter) as AT_VALUE_STATE
 * values named "<param>.adam_m" etc. lr is a float scalar value (usually a
 * graph input, so schedules need no rebuild). Writes the update nodes'
 * first outputs (the updated params) to updates[n]: fetch or target them to
 * apply the step. */
at_status at_adamw(at_graph *g, int n, const at_val *params, const at_val *grads, at_val lr,
                   const at_adam_opts *o, at_val *updates);
at_status at_adam(at_graph *g, int n, const at_val *params, const at_val *grads, at_val lr,
                  const at_adam_opts *o, at_val *updates);
at_status at_sgd(at_graph *g, int n, const at_val *params, const at_val *grads, at_val lr,
                 float momentum, float weight_decay, at_val *updates);
/* Scales grads[n] jointly so their global L2 norm is at most max_norm;
 * writes the clipped gradients to out[n] and, if norm_out is non-NULL, the
 * norm before clipping (float scalar). */
at_status at_clip_global_norm(at_graph *g, int n, const at_val *grads, float max_norm, at_val *out,
                              at_val *norm_out);

#ifdef __cplusplus
}
#endif
#endif
