/* attune: a tensor-graph engine with reverse-mode autodiff. Include this.
 *
 * The public API, one header per part (each documents its functions: what
 * they do, who owns what, which errors they return, thread-safety):
 *   status.h    status codes and error reports (at_err)
 *   tensor.h    dtypes, shapes with symbolic dims, tensor views
 *   graph.h     the graph IR and its builder
 *   ops.h       one typed builder per op
 *   autodiff.h  gradients as a graph transform (at_backward)
 *   session.h   running graphs; the concurrency contract
 *   io.h        ONNX model files, checkpoints, text and DOT forms
 * and, included separately: dataset.h, metrics.h (the NLU data and
 * metrics) and nlu.h (the joint NLU model: build, train, predict).
 *
 * Handles (at_graph, at_session) are opaque; free each with its own
 * function. Link with -lattune (pkg-config: attune; CMake: attune::attune);
 * see README.md, "Embedding attune in a C program".
 *
 * Versions: AT_VERSION_* describe the headers compiled against, at_version()
 * the library linked at run time; the shared library's soname is
 * libattune.so.<AT_VERSION_MAJOR>. */
#ifndef ATTUNE_ATTUNE_H
#define ATTUNE_ATTUNE_H

#define AT_VERSION_MAJOR  0
#define AT_VERSION_MINOR  1
#define AT_VERSION_PATCH  0
#define AT_VERSION_STRING "0.1.0"

#include "status.h"
#include "tensor.h"
#include "graph.h"
#include "ops.h"
#include "autodiff.h"
#include "session.h"
#include "io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library linked at run time, "MAJOR.MINOR.PATCH"
 * ("0.1.0"): compare it with AT_VERSION_STRING to detect a header/library
 * mismatch. A static string (never NULL, do not free). Thread-safe. */
const char *at_version(void);

#ifdef __cplusplus
}
#endif
#endif
