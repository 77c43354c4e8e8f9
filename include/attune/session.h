/* A session runs a graph on one backend: plans once per bound shape
 * signature and fetch set, reuses arena memory by value lifetimes, keeps
 * parameters and optimizer state in persistent buffers.
 *
 * A session borrows its graph: the graph must outlive it. Parameters and
 * state live in the graph's initializer buffers (on CPU, updated in place
 * by update ops; on CUDA, copied back by at_session_sync). Several sessions
 * may share one graph read-only when none of them runs update ops; each
 * session is used by one thread at a time. */
#ifndef ATTUNE_SESSION_H
#define ATTUNE_SESSION_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct at_session at_session;

typedef enum at_device {
    AT_DEVICE_CPU = 0,
    AT_DEVICE_CUDA = 1,
} at_device;

typedef struct at_session_opts {
    at_device device;
    int threads;       /* 0: OpenMP's default */
    uint64_t seed;     /* RNG key for dropout and other random ops */
    bool check_finite; /* stop at the first node producing NaN/Inf, naming it */
    bool no_reuse;     /* give every value its own memory (to check the planner) */
} at_session_opts;

at_session_opts at_session_defaults(void);

/* Compiles g for opts->device (NULL: defaults). Returns NULL with *err set
 * when the graph does not validate or the device is not available. */
at_session *at_session_new(at_graph *g, const at_session_opts *opts, at_err *err);
void at_session_free(at_session *s);

/* One feed: the value and a tensor whose data stays owned by the caller and
 * must stay valid for the duration of at_session_run. */
typedef struct at_feed {
    at_val val;
    at_tensor t;
} at_feed;

/* Runs the nodes needed for fetch[] and targets[] (values whose producing
 * nodes must run, e.g. optimizer updates), with inputs from feeds. out[i]
 * receives fetch[i]: a view owned by the session, valid until the next run
 * or at_session_free. Shapes and dtypes of feeds are checked against the
 * graph; symbols are bound by the feeds. Increments the session step (RNG
 * counter) after the run. Not thread-safe for one session. */
at_status at_session_run(at_session *s, const at_feed *feeds, int n_feeds, const at_val *fetch,
                         int n_fetch, at_tensor *out, const at_val *targets, int n_targets);

/* The last error message of s ("" when none). */
const char *at_session_error(const at_session *s);

uint64_t at_session_step(const at_session *s);
void at_session_set_step(at_session *s, uint64_t step);

/* Copies device-side parameters and state back into the graph's buffers
 * (no-op on CPU). Call before saving a model trained on CUDA. */
at_status at_session_sync(at_session *s);

/* Memory statistics of the last run's plan. */
typedef struct at_session_stats {
    size_t arena_bytes;      /* bytes of the shared arena */
    size_t values_bytes;     /* sum of all arena values' sizes (no reuse) */
    size_t persistent_bytes; /* params, consts, state */
    int plans;               /* plans built so far (cache misses) */
    int nodes_run;           /* nodes executed by the last run */
} at_session_stats;
at_session_stats at_session_get_stats(const at_session *s);

#ifdef __cplusplus
}
#endif
#endif
