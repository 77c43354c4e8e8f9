/* A session runs a graph on one backend: plans once per bound shape
 * signature and fetch set, reuses arena memory by value lifetimes, keeps
 * parameters and optimizer state in persistent buffers.
 *
 * Ownership: a session borrows its graph: the graph must outlive it, and
 * stay unchanged while it runs. Parameters and state live in the graph's
 * initializer buffers (on CPU, updated in place by update ops; on CUDA,
 * copied back by at_session_sync). The session owns its plans, its arena and
 * every tensor it hands out.
 *
 * Concurrency contract (tests/test_concurrency.c checks it with 4 threads):
 *   - One graph may be shared by any number of sessions, created and run on
 *     any threads at once, provided that while they exist no thread changes
 *     the graph (builder calls, at_backward, renames, at_graph_validate,
 *     writes through at_value_data) and no session runs update ops (targets
 *     that write parameters or state in place): inference only. Training
 *     uses one session per graph.
 *   - Each session is used by one thread at a time: a session holds its plan
 *     cache, arena, step counter and last error, so concurrent calls on one
 *     session are a data race. Handing a session to another thread needs the
 *     caller's own synchronization (a mutex, a queue, a join).
 *   - Sessions never share mutable state with each other, so a run's results
 *     depend only on the graph, the feeds, the session's options and its
 *     step: the same feeds give bit-identical outputs in every session with
 *     the same options, whatever other sessions do meanwhile.
 *   - Threads: a CPU session with opts.threads > 1 starts its own pool of
 *     threads - 1 helper threads at its first run (freed with the session);
 *     its kernels split their loops and GEMMs over the pool (where threads
 *     cannot start, over OpenMP teams instead). N concurrent sessions use
 *     about N * threads cores; give each session cores / N. at_session_new
 *     sets OpenBLAS to one thread (process-wide: attune splits GEMMs itself,
 *     and OpenBLAS's own workers would spin beside the pool's). Results do
 *     not depend on opts.threads: the same feeds give bit-identical outputs
 *     at every thread count (tests/test_parallel.c).
 *   - Tensors fetched from a session may be read by other threads only while
 *     the owning thread does not run or free that session. */
#ifndef ATTUNE_SESSION_H
#define ATTUNE_SESSION_H

#include <stdio.h>

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct at_session at_session;

typedef enum at_device {
    AT_DEVICE_CPU = 0,
    AT_DEVICE_CUDA = 1,
} at_device;

/* Options, copied by at_session_new. Start from at_session_defaults() so
 * fields added later get their defaults. */
typedef struct at_session_opts {
    at_device device;
    int threads;       /* 0: OpenMP's default */
    uint64_t seed;     /* RNG key for dropout and other random ops */
    bool check_finite; /* stop at the first node producing NaN/Inf, naming it */
    bool no_reuse;     /* give every value its own memory (to check the planner) */
    /* CUDA only: capture a run's kernel launches into a CUDA graph (on its second run; the
     * first warms up) and replay the graph on later runs with the same fetches, targets and feed
     * shapes (one launch instead of one per kernel); same results as without. Runs that cannot
     * be captured run as usual.
     * Ignored on CPU and with check_finite. The environment variable ATTUNE_CUDA_GRAPH=1 turns
     * it on for every session of the process (for benchmarks of tools without the option). */
    bool cuda_graph;
    /* CPU only: time every kernel (wall clock) for at_session_profile; costs two clock reads a
     * node. Ignored on CUDA, whose kernels run asynchronously. */
    bool profile;
    /* CPU only: batch-1 plans also pack weights that other plans of this session update (a
     * training graph used for prediction: attune predict / eval); the session makes the copies
     * again after those updates. Writes to such a weight from outside (at_value_data: loading
     * a checkpoint, finite differences) then need at_session_invalidate, as writes to constant
     * weights always do. Off: only weights no node of the graph updates are packed. */
    bool pack_trained;
} at_session_opts;

/* CPU, threads 0 (OpenMP's default), seed 0x5eed, check_finite, no_reuse,
 * cuda_graph and profile off. Thread-safe. */
at_session_opts at_session_defaults(void);

/* A session for g on opts->device (opts NULL: defaults), owned by the
 * caller (at_session_free); g is borrowed. Checks g read-only (known ops,
 * defined inputs, no cycle) and returns NULL with *err set: the graph's
 * recorded error if it has one; AT_E_INVALID (NULL g, an input produced by
 * no node, a cycle); AT_E_UNSUPPORTED (unknown op); AT_E_DEVICE (device not
 * available in this build or machine, or failing to start); AT_E_NOMEM.
 * On CPU this is cheap: plans are made by the runs. A CUDA session opens
 * the device and keeps its own device copy of the parameters. Safe to call
 * from several threads on one shared graph (see the concurrency contract
 * above). */
at_session *at_session_new(at_graph *g, const at_session_opts *opts, at_err *err);
/* Frees the session, its plans and arena; tensors it handed out die with it.
 * The graph is left as it is (trained parameters stay in it). NULL is a
 * no-op. */
void at_session_free(at_session *s);

/* One feed: a graph input and a tensor whose data stays owned by the caller,
 * must stay valid for the duration of at_session_run, and is only read
 * (attune never updates a fed buffer in place). */
typedef struct at_feed {
    at_val val;
    at_tensor t;
} at_feed;

/* Runs the nodes needed for fetch[] and targets[] (values whose producing
 * nodes must run, e.g. optimizer updates), with inputs from feeds; only
 * those nodes run, and only the inputs they read must be fed. out[i]
 * receives fetch[i]: a dense tensor whose data is a view owned by the
 * session (or the graph, for an initializer), valid until the next run on s
 * or at_session_free: read or copy it, never free it. A plan is made on the
 * first run for each (fetch + targets set, symbol binding) and reused.
 *
 * Errors, with the message in at_session_error(s): AT_E_INVALID (bad
 * arguments, a feed that is no graph input or is fed twice, a needed input
 * not fed, a fetch that is no value of the graph, or a kernel rejecting its
 * data, e.g. an index out of range); AT_E_SHAPE (a feed's dtype or shape
 * does not match the graph, or two feeds bind a symbol differently);
 * AT_E_UNSUPPORTED (an op without a kernel on this device); AT_E_NUMERIC
 * (check_finite: the message names the node); AT_E_NOMEM. On error out[] is
 * not written and the step is not incremented; a training run that fails
 * part-way may have applied some of its updates.
 *
 * Increments the session step (RNG counter) after a successful run. Not
 * thread-safe for one session; see the concurrency contract above. */
at_status at_session_run(at_session *s, const at_feed *feeds, int n_feeds, const at_val *fetch,
                         int n_fetch, at_tensor *out, const at_val *targets, int n_targets);

/* Drops the session's plans, so the next run plans again from the graph as it is now. A CPU
 * plan keeps packed copies of the 2-D weights that its own nodes do not update (the MatMul and
 * Gemm weights multiplied by a few rows: batch-1 inference); call this after writing such a
 * weight's buffer directly (at_value_data) for later runs to see the new values. Updates made
 * by the graph's own nodes (an optimizer in a training plan of the same session) need nothing:
 * the session makes the copies again before the next run that reads them (stats.repacks).
 * s must be non-NULL. */
void at_session_invalidate(at_session *s);

/* The message of the last run's error ("" after a successful run; "no
 * session" for NULL), owned by s, valid until its next run or free. */
const char *at_session_error(const at_session *s);

/* The step counter: successful runs so far (or as set). Random ops draw
 * from (seed, step, node), so restoring the step of a checkpoint with
 * at_session_set_step resumes the same random streams. s must be non-NULL. */
uint64_t at_session_step(const at_session *s);
void at_session_set_step(at_session *s, uint64_t step);

/* Copies device-side parameters and state back into the graph's buffers
 * (no-op on CPU). Call before saving a model trained on CUDA. AT_E_INVALID
 * for NULL; the device's error (AT_E_DEVICE) when the copy fails, with the
 * message in at_session_error(s). Writes the graph: not while other
 * sessions run on it. */
at_status at_session_sync(at_session *s);

/* Memory statistics of the last run's plan, by value (s non-NULL). */
typedef struct at_session_stats {
    size_t arena_bytes;      /* bytes of the shared arena */
    size_t values_bytes;     /* sum of all arena values' sizes (no reuse) */
    size_t persistent_bytes; /* params, consts, state */
    int plans;               /* plans built so far (cache misses) */
    int nodes_run;           /* nodes executed by the last run */
    int graph_runs;          /* runs captured or replayed as CUDA graphs (opts.cuda_graph) */
    int packed_weights;      /* weights the last run's plan packed (see at_session_invalidate) */
    size_t packed_bytes;     /* their bytes, held beside the graph's own copies */
    int fused_bias;          /* bias Adds done inside those weights' GEMMs */
    int repacks;      /* packed weights made again after another plan updated them (all runs) */
    int fused_scores; /* v . tanh(a + b) scores whose Add and Tanh ran inside their MatMul */
} at_session_stats;
at_session_stats at_session_get_stats(const at_session *s);

/* One node's kernel time (opts.profile). */
typedef struct at_profile_entry {
    const char *node;    /* the node's name, owned by the graph */
    const char *op_type; /* owned by the graph */
    int64_t calls;       /* runs of its kernel */
    double ms;           /* wall-clock milliseconds over all calls */
} at_profile_entry;

/* Kernel times per node since the session opened or the last reset, slowest first: writes
 * min(n, cap) entries to out and returns n, the number of nodes that ran (0 when profiling is
 * off or on CUDA), or -1 when s is NULL, cap < 0, out is NULL with cap > 0, or memory runs out.
 * Entries point into the graph: valid while it is unchanged. */
int at_session_profile(const at_session *s, at_profile_entry *out, int cap);
/* Zeroes the counts (s non-NULL). */
void at_session_profile_reset(at_session *s);
/* Writes the profile as text to f: total, then time per op type (share, calls, ms per run of
 * the session's runs counted as the most calls of any node), then the top nodes (top <= 0:
 * 10). AT_E_INVALID for NULL s or f, AT_E_NOMEM. */
at_status at_session_profile_write(const at_session *s, FILE *f, int top);

#ifdef __cplusplus
}
#endif
#endif
