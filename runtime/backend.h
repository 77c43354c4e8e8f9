/* The interface between the session and a device backend (CUDA so far). Internal.
 *
 * The session keeps the plan, the value table and every host-side decision; a backend owns
 * device memory, one stream and the kernel table. Copies are ordered on the backend's stream:
 * an upload's source must stay valid until the next sync, a download's destination is
 * complete after the next sync. Kernels take the same at_kernel_ctx as the CPU ones, with
 * device pointers in in[] / out[] / ws and the backend's per-node state in k->backend (made
 * by node_state). */
#ifndef ATTUNE_RUNTIME_BACKEND_H
#define ATTUNE_RUNTIME_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attune/status.h"
#include "ops/op.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CUDA graphs (at_session_opts.cuda_graph). A run's launches depend on the device memory they
 * touch and on what the session laid out on the host side: the plan, the base addresses of the
 * buffers its steps address (arena, kernel scratch, feed slots, folded values) and where each
 * feed sits. Two runs that agree on all of that (and on the host data of any feed a kernel
 * read while being captured, which the backend notes itself) may replay one graph. */
typedef struct at_backend_feed {
    int val;          /* the graph value fed */
    size_t off;       /* its slot in the feed buffer */
    size_t bytes;     /* its size */
    const void *host; /* the caller's data this run */
} at_backend_feed;

enum { AT_GRAPH_BUFS = 4 };

typedef struct at_backend_graph_run {
    const void *plan;
    const void *bufs[AT_GRAPH_BUFS];
    const at_backend_feed *feeds;
    int n_feeds;
    uint64_t step; /* the session step: random streams read it from the device under a graph */
} at_backend_graph_run;

/* graph_begin's verdict. */
enum {
    AT_GRAPH_REPLAYED,   /* a graph for this run was launched: the steps are queued */
    AT_GRAPH_CAPTURING,  /* launch the steps now (they are captured), then call graph_end */
    AT_GRAPH_UNCAPTURED, /* this run cannot be captured: launch the steps as usual */
};

typedef struct at_backend_ops {
    const char *name;
    /* Opens the device, its stream and library handles. AT_E_DEVICE with the reason when
     * there is no usable device ("no CUDA device (...)"). */
    at_status (*init)(void **state, at_err *err);
    void (*shutdown)(void *state);

    /* Device memory; free(NULL) is a no-op. Sizes of 0 give a valid, unique pointer. */
    at_status (*alloc)(void *state, size_t bytes, void **ptr, at_err *err);
    void (*free)(void *state, void *ptr);
    /* Page-locked host memory for staging feeds and fetches. */
    at_status (*alloc_host)(void *state, size_t bytes, void **ptr, at_err *err);
    void (*free_host)(void *state, void *ptr);

    /* Stream-ordered copies and fill (see above). */
    at_status (*upload)(void *state, void *dst, const void *src, size_t bytes, at_err *err);
    at_status (*download)(void *state, void *dst, const void *src, size_t bytes, at_err *err);
    at_status (*copy)(void *state, void *dst, const void *src, size_t bytes, at_err *err);
    at_status (*sync)(void *state, at_err *err);

    /* The kernel of an op on this backend, or NULL when it has none; the scratch bytes that
     * kernel needs for the concrete shapes in k (NULL: none). */
    at_kernel_fn (*kernel)(int op);
    at_workspace_fn (*workspace)(int op);

    /* The value for k->backend for one node: host_in[i] is input i's data where the host
     * knows it (fed, constant or folded), else NULL. Valid until the next call. */
    void *(*node_state)(void *state, const void *const *host_in, int n_in);

    /* Kernels that find bad data (an index out of range) record it on the device instead of
     * stopping the stream: the first such record, read and cleared here (this syncs). AT_OK
     * when none; else the status, *node the node's index and msg the reason. */
    at_status (*poll_error)(void *state, int *node, char *msg, size_t cap);

    /* The index of the first non-finite element of a float32 tensor on the device, or -1, and
     * its value (syncs; for at_session_opts.check_finite). */
    at_status (*first_nonfinite)(void *state, const float *x, int64_t n, int64_t *index,
                                 float *value, at_err *err);

    /* CUDA graphs (see at_backend_graph_run). graph_begin replays a graph made for an equal run,
     * or starts capturing the kernels the session launches next, or says the run cannot be
     * captured. graph_end (after CAPTURING only) ends the capture: ok false when a kernel
     * failed meanwhile. *captured true: the graph was made and launched; false: nothing ran,
     * and the session launches the steps uncaptured (a run found uncapturable is not captured
     * again). graph_reset forgets every graph (the session's plans are gone). */
    at_status (*graph_begin)(void *state, const at_backend_graph_run *run, int *mode, at_err *err);
    at_status (*graph_end)(void *state, bool ok, bool *captured, at_err *err);
    void (*graph_reset)(void *state);
} at_backend_ops;

/* The CUDA backend, or NULL in a build without CUDA. */
const at_backend_ops *at_cuda_backend(void);

#ifdef __cplusplus
}
#endif
#endif
