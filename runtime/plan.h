/* A plan: what one run of a session does for one fetch/target set and one
 * binding of the graph's symbols: the nodes in order, every value's
 * concrete type and where its memory lives. Internal. */
#ifndef ATTUNE_RUNTIME_PLAN_H
#define ATTUNE_RUNTIME_PLAN_H

#include "attune/session.h"
#include "ops/op.h"

typedef enum at_loc {
    AT_LOC_NONE = 0, /* not used by this plan */
    AT_LOC_FEED,     /* caller's feed buffer */
    AT_LOC_GRAPH,    /* initializer buffer owned by the graph */
    AT_LOC_ARENA,    /* session arena at offset */
    AT_LOC_FOLDED,   /* computed while planning, owned by the plan */
} at_loc;

typedef struct at_plan_step {
    int node;
    int first_in, first_out; /* into the plan's io tensor array */
    int64_t ws_off;          /* arena offset of the workspace, or -1 */
    size_t ws_size;
    float *packed; /* plan-owned packed copy of the weight input 1 (at_plan_pack), or NULL */
    /* what packed was made from (the weight's graph value, K, N, transposed), so the session can
     * make it again when another plan updated the weight (pack_ver: the session's write count
     * of that value when it was made; bias_ver: the same for the fused bias) */
    at_val pack_src;
    int64_t pack_k, pack_n;
    bool pack_trans;
    uint64_t pack_ver, bias_ver;
    /* Bias fusion (CPU): a packed MatMul whose only reader is Add(y, b) of a [N] constant adds
     * b itself (bias_val; bias: at_plan_pack's copy padded to whole panels) into its output,
     * which the Add's output shares; the Add's step is then skipped. (The fusion is chosen only
     * for MatMuls at_plan_pack will pack: at_plan_packable with the same rule, checked before
     * memory assignment, when views are not yet resolved, so at most as often.) */
    at_val bias_val;
    float *bias;
    /* Additive-score fusion (CPU): a MatMul of Tanh(Add(a, b)) by a [K, 1] vector whose Add and
     * Tanh outputs nothing else reads computes each row's v . tanh(a + b) itself from the Add's
     * inputs (score_a, score_b; AT_NONE when not fused), the same sums as unfused; the Add's
     * and Tanh's steps are skipped (the [..., K] tensors between them are never written). */
    at_val score_a, score_b;
    bool skip;
} at_plan_step;

typedef struct at_plan {
    /* key */
    int n_key;
    at_val *key;      /* sorted fetch + target values */
    int64_t *sym_val; /* bound value of each graph symbol (-1 unbound) */
    int n_syms;
    uint64_t graph_version;

    int n_steps;
    at_plan_step *steps;
    at_tensor *io; /* per step: inputs then outputs (data filled per run) */
    int n_io;

    int n_vals;
    at_loc *loc;
    int64_t *offset; /* arena offset per value, or -1 */
    at_dtype *dtype; /* concrete type per value */
    at_shape *shape;
    void **folded;       /* plan-owned data of folded values */
    size_t arena_bytes;  /* arena this plan needs */
    size_t values_bytes; /* what the arena values would need without reuse */
    int n_packed;        /* steps with a packed weight */
    at_val *writes;      /* graph values this plan's steps update in place (at_plan_pack) */
    int n_writes;
    int n_fused;  /* bias Adds done by their MatMul */
    int n_scores; /* additive scores fused into their MatMul */
    size_t packed_bytes;
} at_plan;

/* Builds the plan for the given feeds (types only are read), fetch and
 * targets. cpu_pack: the plan runs on the CPU with packed weights: at_plan_build packs them
 * (at_plan_pack, with `trained`), fuses bias Adds after packed MatMuls and additive scores into
 * their MatMul (see at_plan_step). On error returns NULL with the message in err. */
at_plan *at_plan_build(const at_graph *g, const at_feed *feeds, int n_feeds, const at_val *want,
                       int n_want, int threads, bool no_reuse, bool cpu_pack, bool trained,
                       at_err *err);
void at_plan_free(at_plan *p);

/* CPU only: packs, for this plan, the 2-D weight of each MatMul and Gemm step that multiplies a
 * few rows (at most AT_PACK_MAX_ROWS) by an initializer w does not mark as written in place (w:
 * by any node of the graph, or with opts.pack_trained by the plan's own steps) (runtime/cpu/
 * gemm_packed.h); the kernels then read the packed copy. Other plans (a training step) may
 * then update the weight: the session makes the copy again before this plan's next run
 * (at_plan_repack, the pack_* fields). Also lists the values the plan itself updates (own) as
 * p->writes. Called by at_plan_build (cpu_pack). A no-op on CPUs without a packed kernel.
 * AT_E_NOMEM on failure. */
#define AT_PACK_MAX_ROWS 64
at_status at_plan_pack(const at_graph *g, at_plan *p, const bool *own, const bool *w, at_err *err);

/* Makes step s's packed weight (and padded bias) again from the graph's current values. */
void at_plan_repack(const at_graph *g, at_plan *p, int s);

/* For at_plan_build (runtime/plan_pack.c): values that the nodes[n] update in place (calloc'd,
 * the caller frees; NULL when out of memory), and whether node n's weight input 1 would be
 * packed in plan p (shapes and locations known), with its K, N and transposition. */
bool *at_plan_written_in_place(const at_graph *g, const int *nodes, int n);
bool at_plan_packable(const at_graph *g, const at_plan *p, const at_node_rec *n, const bool *w,
                      int64_t *K, int64_t *N, bool *trans);

#endif
