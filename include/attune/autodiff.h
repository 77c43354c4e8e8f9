/* Reverse-mode autodiff as a graph transform: gradients are ordinary nodes
 * added to the graph, so they can be inspected, saved and run on any
 * backend like the rest. */
#ifndef ATTUNE_AUTODIFF_H
#define ATTUNE_AUTODIFF_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Adds to g the nodes that compute d(loss)/d(wrt[i]) for i < n and writes
 * the gradient values to grads_out[i] (handles in g, float32, each of its
 * wrt value's shape; named "<wrt name>.grad" where that name is free).
 * loss must be a float32 scalar (rank 0 or one element). wrt may name any
 * values: params, inputs, intermediates. A wrt value that loss does not
 * depend on gets a zero gradient of its own shape. Paths through
 * StopGradient and through non-differentiable inputs (indices, masks,
 * labels, non-float values) carry no gradient. The graph may already hold
 * gradient nodes (from an earlier call, for another loss): they are
 * ordinary nodes. Nothing runs here: the gradients are computed by
 * fetching them (or update ops reading them) in a session.
 *
 * Errors (returned and recorded in g, like a builder call): g's recorded
 * error if it already has one (nothing is added); AT_E_INVALID for a NULL
 * g, an invalid loss or wrt value, NULL arrays with n > 0, or a cycle;
 * AT_E_SHAPE when loss is not a float32 scalar; AT_E_UNSUPPORTED when a
 * gradient must flow through an op without a gradient rule (the message
 * names the node; wrap its input in StopGradient if none should flow);
 * AT_E_NOMEM. On error, nodes added before the failure stay in g but
 * grads_out is not fully written: treat g as failed.
 *
 * Changes g: exclusive access needed; sessions already on g re-plan at
 * their next run. */
at_status at_backward(at_graph *g, at_val loss, const at_val *wrt, int n, at_val *grads_out);

#ifdef __cplusplus
}
#endif
#endif
