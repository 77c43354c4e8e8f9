/* Reverse-mode autodiff as a graph transform. */
#ifndef ATTUNE_AUTODIFF_H
#define ATTUNE_AUTODIFF_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Adds to g the nodes that compute d(loss)/d(wrt[i]) for i < n and writes
 * the gradient values to grads_out[i]. loss must be a float scalar (rank 0
 * or one element). wrt may name any values: params, inputs, intermediates.
 * A wrt value that loss does not depend on gets a zero gradient of its own
 * shape. Paths through StopGradient and through non-differentiable inputs
 * (indices, masks, labels) carry no gradient. The graph may already hold
 * gradient nodes (from an earlier call, for another loss): they are
 * ordinary nodes. On error, returns it and records it in g. */
at_status at_backward(at_graph *g, at_val loss, const at_val *wrt, int n, at_val *grads_out);

#ifdef __cplusplus
}
#endif
#endif
