/* The op definition: everything about one op in one record, defined in
 * its family's file (ops/<family>.c) and listed once in ops/ops.def. */
#ifndef ATTUNE_OPS_OP_H
#define ATTUNE_OPS_OP_H

#include <stdarg.h>

#include "attune/ops.h"
#include "graph/ir.h"

/* Shape/dtype inference for one node. Runs symbolically while building
 * (dims may be symbols; concrete == false) and concretely when a session
 * plans for bound shapes (concrete == true). Arrays have n_in / n_out
 * entries; an absent optional input has in_dtype AT_UNDEFINED. in_data[i]
 * is the data of input i when it is known before running (initializers,
 * constants, values folded at plan time), else NULL. An infer function may
 * set out_data[j] (pointing into out_buf, AT_INFER_BUF bytes) to publish a
 * value it can compute from shapes alone (Shape does). */
#define AT_INFER_BUF 256
typedef struct at_infer_ctx {
    at_graph *g; /* for at_sym_fresh while building; NULL when concrete */
    const at_node_rec *node;
    bool concrete;
    int n_in, n_out;
    const at_shape *in_shape;
    const at_dtype *in_dtype;
    const void *const *in_data;
    at_shape *out_shape;
    at_dtype *out_dtype;
    const void **out_data;
    unsigned char (*out_buf)[AT_INFER_BUF];
    char msg[512]; /* set by at_infer_fail; the caller adds node, op, shapes */
} at_infer_ctx;

/* Records why inference failed; returns code (AT_E_SHAPE usually). */
at_status at_infer_fail(at_infer_ctx *c, at_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The widest row of a fused additive score (runtime/plan.h): kernels hold one on the stack. */
#define AT_SCORE_MAX_K 1024

/* A kernel call. Inputs and outputs are dense row-major tensors with
 * concrete shapes; output memory is allocated by the planner (an output
 * aliased to an input by op->alias shares that input's memory). ws is
 * scratch of the size op->workspace asked for, valid for this call only. */
typedef struct at_kernel_ctx {
    const at_node_rec *node;
    int node_id; /* index of the node in its graph: part of the RNG key */
    int n_in, n_out;
    const at_tensor *in;
    at_tensor *out;
    void *ws;
    size_t ws_size;
    int threads;
    uint64_t seed, step; /* RNG key with node_id */
    void *backend;       /* backend state (CUDA stream, handles); NULL on CPU */
    /* CPU: the plan's packed copy of weight input 1 (runtime/plan.h), or NULL */
    const float *packed;
    /* CPU: with packed, a bias to add to every output row (padded to whole panels), or NULL */
    const float *bias;
    struct at_pool *pool; /* CPU: the session's pool, or NULL (one thread) */
    /* CPU, MatMul: the two inputs of a fused additive score's Add (runtime/plan.h), or NULL */
    const at_tensor *score_in;
    char msg[512]; /* set by at_kernel_fail */
} at_kernel_ctx;

at_status at_kernel_fail(at_kernel_ctx *k, at_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* A gradient rule: given the gradients dy[j] of the node's outputs
 * (AT_NONE where no gradient flows), emit nodes through the builders and
 * set dx[i] for each input i with need[i] set. Leave dx[i] = AT_NONE for
 * no gradient. Adding nodes may move g->nodes: re-read the forward node
 * through at_grad_node(c) after building. */
typedef struct at_grad_ctx {
    at_graph *g;
    int node;
    int n_in, n_out;
    const at_val *dy;
    at_val *dx;
    const bool *need;
} at_grad_ctx;

static inline const at_node_rec *at_grad_node(const at_grad_ctx *c) {
    return &c->g->nodes[c->node];
}
static inline at_val at_grad_in(const at_grad_ctx *c, int i) {
    return c->g->nodes[c->node].in[i];
}
static inline at_val at_grad_out(const at_grad_ctx *c, int i) {
    return c->g->nodes[c->node].out[i];
}

typedef at_status (*at_infer_fn)(at_infer_ctx *c);
typedef at_status (*at_kernel_fn)(at_kernel_ctx *k);
/* Scratch bytes a kernel needs for the concrete shapes in k (data unset). */
typedef size_t (*at_workspace_fn)(const at_kernel_ctx *k);
typedef at_status (*at_grad_fn)(at_grad_ctx *c);
/* The input index output `out` must share memory with (update ops that
 * work in place), or -1. */
typedef int (*at_alias_fn)(const at_node_rec *n, int out);

typedef struct at_attr_schema {
    const char *name;
    at_attr_kind kind;
    bool required;
} at_attr_schema;

#define AT_VARIADIC (-1)

typedef struct at_op_def {
    const char *name;
    const char *domain; /* AT_DOMAIN_ONNX or AT_DOMAIN_ATTUNE */
    int min_in, max_in; /* max AT_VARIADIC: any number */
    int min_out, max_out;
    const at_attr_schema *attrs; /* terminated by {NULL} */
    at_infer_fn infer;
    at_kernel_fn cpu;
    at_workspace_fn workspace; /* NULL: no scratch */
    at_grad_fn grad;           /* NULL: not differentiable */
    uint64_t nondiff;          /* bit i: input i never gets a gradient */
    at_alias_fn alias;         /* NULL: no output aliases an input */
    /* The input an output may share unchanged (reshapes: the same bytes under another shape),
     * or -1. Unlike alias, a hint: the planner shares an arena buffer nothing updates in place
     * and otherwise gives the output its own; the kernel copies only when out != in. */
    at_alias_fn view;
} at_op_def;

/* A view fn for ops whose output 0 is input 0's bytes. */
static inline int at_view_of_in0(const at_node_rec *n, int out) {
    (void)n;
    return out == 0 ? 0 : -1;
}

/* The registry generated from ops/ops.def. */
#define AT_OP(name) AT_OP_##name,
typedef enum at_op_id {
#include "ops/ops.def"
    AT_OP_COUNT
} at_op_id;
#undef AT_OP

#define AT_OP(name) extern const at_op_def at_op_def_##name;
#include "ops/ops.def"
#undef AT_OP

extern const at_op_def *const at_op_table[AT_OP_COUNT];

/* The op called op_type in domain ("" and "ai.onnx" are the same), or -1. */
int at_op_lookup(const char *op_type, const char *domain);

/* CUDA kernels, when built: at_cuda_kernels[op] or NULL (runtime/cuda). */
extern at_kernel_fn at_cuda_kernel_for(int op);

/* ---- helpers shared by the op families ---- */

/* numpy broadcasting of two shapes (symbolic-aware). */
at_status at_broadcast_shapes(const at_shape *a, const at_shape *b, at_shape *out, char *msg,
                              size_t cap);
/* Normalizes a possibly negative axis for rank r; -1 if out of range. */
static inline int at_norm_axis(int64_t axis, int rank) {
    if (axis < -rank || axis >= rank) return -1;
    return (int)(axis < 0 ? axis + rank : axis);
}
/* Product of dims [from, to) of a concrete shape. */
int64_t at_dims_prod(const at_shape *s, int from, int to);

/* Strides (elements) of `in` aligned to an output of rank out->rank, 0 on broadcast dims. */
static inline void at_bcast_strides(const at_shape *in, const at_shape *out, int64_t *st) {
    int r = out->rank, off = r - in->rank;
    int64_t s = 1;
    for (int i = r - 1; i >= 0; i--) {
        int k = i - off;
        st[i] = k < 0 || in->dim[k] == 1 ? 0 : s;
        if (k >= 0) s *= in->dim[k];
    }
}

/* Offset of the start of output row `row` (all dims but the last) in an input with aligned
 * strides st. */
static inline int64_t at_row_offset(const at_shape *out, const int64_t *st, int64_t row) {
    int64_t off = 0;
    for (int i = out->rank - 2; i >= 0; i--) {
        int64_t d = out->dim[i];
        off += (row % d) * st[i];
        row /= d;
    }
    return off;
}

/* Reads input i, an int64 vector of n dims, into v: numbers when its data
 * is known, or, while building, the (possibly symbolic) dims of x when the
 * value is Shape(x); sym[k] tells a symbol from a number. False when
 * unknown. (ops/shape.c) */
bool at_infer_shape_input(const at_infer_ctx *c, int i, int n, int64_t *v, bool *sym);

/* Row-major SGEMM through CBLAS, C = alpha op(A) op(B) + beta C, split over the kernel's threads
 * (parallel.h) when OpenBLAS itself runs single-threaded (ops/matmul.c). */
void at_sgemm(const at_kernel_ctx *k, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
              float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc);
/* Whether OpenBLAS runs single-threaded, so kernels thread around it. */
bool at_blas_single(void);

/* Typed view helpers. */
#define AT_F32P(t) ((float *)(t)->data)
#define AT_I64P(t) ((int64_t *)(t)->data)

#endif
