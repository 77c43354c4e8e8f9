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

#include <stddef.h>
#include <stdint.h>

#include "attune/status.h"
#include "ops/op.h"

#ifdef __cplusplus
extern "C" {
#endif

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
} at_backend_ops;

/* The CUDA backend, or NULL in a build without CUDA. */
const at_backend_ops *at_cuda_backend(void);

#ifdef __cplusplus
}
#endif
#endif
