/* Reverse-mode autodiff as a graph transform: walk the nodes between the
 * wrt values and the loss in reverse topological order, let each op's
 * gradient rule emit ordinary nodes, and sum contributions where a value
 * feeds several nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attune/autodiff.h"
#include "ops/op.h"

typedef struct bw {
    at_graph *g;
    int n_vals, n_nodes; /* the graph as it was before this call */
    int *order;
    bool *to_loss;  /* value: the loss depends on it */
    bool *from_wrt; /* value: it depends on a wrt value through differentiable inputs */
    at_val *grad;   /* value: accumulated gradient so far */
} bw;

static bool input_flows(const at_node_rec *n, int i) {
    const at_op_def *def = at_op_table[n->op];
    if (n->in[i] == AT_NONE) return false;
    if (i < 64 && (def->nondiff >> i) & 1) return false;
    return true;
}

static void mark_to_loss(bw *b, at_val loss) {
    b->to_loss[loss] = true;
    for (int s = b->n_nodes - 1; s >= 0; s--) {
        const at_node_rec *n = &b->g->nodes[b->order[s]];
        bool any = false;
        for (int j = 0; j < n->n_out; j++) any |= b->to_loss[n->out[j]];
        if (!any) continue;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] != AT_NONE) b->to_loss[n->in[i]] = true;
    }
}

static void mark_from_wrt(bw *b, const at_val *wrt, int n_wrt) {
    for (int i = 0; i < n_wrt; i++) b->from_wrt[wrt[i]] = true;
    for (int s = 0; s < b->n_nodes; s++) {
        const at_node_rec *n = &b->g->nodes[b->order[s]];
        bool any = false;
        for (int i = 0; i < n->n_in; i++) any |= input_flows(n, i) && b->from_wrt[n->in[i]];
        if (!any) continue;
        for (int j = 0; j < n->n_out; j++) b->from_wrt[n->out[j]] = true;
    }
}

static at_status accumulate(bw *b, at_val v, at_val d) {
    if (d == AT_NONE) return AT_OK;
    b->grad[v] = b->grad[v] == AT_NONE ? d : at_add(b->g, b->grad[v], d);
    return at_graph_status(b->g);
}

static at_status run_rule(bw *b, int node) {
    at_graph *g = b->g;
    const at_node_rec *n = &g->nodes[node];
    const at_op_def *def = at_op_table[n->op];
    int ni = n->n_in, no = n->n_out;
    bool any_dy = false, any_need = false;
    at_val *dy = malloc(sizeof(at_val) * (size_t)(no + 1));
    at_val *dx = malloc(sizeof(at_val) * (size_t)(ni + 1));
    bool *need = calloc((size_t)ni + 1, 1);
    at_val *in = malloc(sizeof(at_val) * (size_t)(ni + 1));
    at_status st = AT_OK;
    if (!dy || !dx || !need || !in) {
        st = at_graph_fail(g, AT_E_NOMEM, "out of memory in autodiff");
        goto done;
    }
    for (int j = 0; j < no; j++) {
        dy[j] = b->grad[n->out[j]];
        any_dy |= dy[j] != AT_NONE;
    }
    for (int i = 0; i < ni; i++) {
        in[i] = n->in[i];
        dx[i] = AT_NONE;
        need[i] = input_flows(n, i) && b->from_wrt[n->in[i]] && b->to_loss[n->in[i]] &&
                  at_value_dtype(g, n->in[i]) == AT_F32;
        any_need |= need[i];
    }
    if (!any_dy || !any_need) goto done;
    if (!def->grad) {
        st = at_graph_fail(g, AT_E_UNSUPPORTED,
                           "autodiff: node '%s' (%s) has no gradient rule, but a gradient must "
                           "flow through it (wrap its input in StopGradient if none should)",
                           n->name, n->op_type);
        goto done;
    }
    at_grad_ctx c = {g, node, ni, no, dy, dx, need};
    st = def->grad(&c);
    if (st == AT_OK) st = at_graph_status(g);
    if (st != AT_OK) {
        if (at_graph_status(g) == AT_OK)
            at_graph_fail(g, st, "autodiff: gradient rule of node '%s' (%s) failed",
                          g->nodes[node].name, g->nodes[node].op_type);
        goto done;
    }
    for (int i = 0; i < ni && st == AT_OK; i++)
        if (need[i]) st = accumulate(b, in[i], dx[i]);
done:
    free(dy);
    free(dx);
    free(need);
    free(in);
    return st;
}

static at_val zeros_like(at_graph *g, at_val v) {
    at_shape s = at_value_shape(g, v);
    if (at_shape_is_concrete(&s)) {
        int64_t n = at_shape_numel(&s);
        float *z = calloc((size_t)(n ? n : 1), sizeof(float));
        if (!z) {
            at_graph_fail(g, AT_E_NOMEM, "out of memory");
            return AT_NONE;
        }
        at_val c = at_const(g, NULL, AT_F32, s, z);
        free(z);
        return c;
    }
    return at_constant_of_shape(g, at_shape_of(g, v), AT_F32, 0.0);
}

static void name_grad(at_graph *g, at_val gv, at_val of) {
    const char *cur = at_value_name(g, gv);
    if (at_value_kind_of(g, gv) != AT_VALUE_INTERMEDIATE || !cur || !strchr(cur, ':')) return;
    char name[256];
    snprintf(name, sizeof name, "%s.grad", at_value_name(g, of));
    if (at_graph_find(g, name) == AT_NONE) at_value_rename(g, gv, name);
}

at_status at_backward(at_graph *g, at_val loss, const at_val *wrt, int n, at_val *grads_out) {
    if (!g) return AT_E_INVALID;
    if (g->status != AT_OK) return g->status;
    if (loss < 0 || loss >= g->n_vals || n < 0 || (n && (!wrt || !grads_out)))
        return at_graph_fail(g, AT_E_INVALID, "at_backward: invalid arguments");
    at_shape ls = at_value_shape(g, loss);
    if (at_value_dtype(g, loss) != AT_F32 || at_shape_numel(&ls) != 1) {
        char b[96];
        return at_graph_fail(g, AT_E_SHAPE,
                             "at_backward: loss '%s' must be a float32 scalar, got %s %s",
                             at_value_name(g, loss), at_dtype_name(at_value_dtype(g, loss)),
                             at_graph_shape_str(g, &ls, b, sizeof b));
    }
    for (int i = 0; i < n; i++)
        if (wrt[i] < 0 || wrt[i] >= g->n_vals)
            return at_graph_fail(g, AT_E_INVALID, "at_backward: wrt[%d] is not a value", i);
    bw b;
    memset(&b, 0, sizeof b);
    b.g = g;
    b.n_vals = g->n_vals;
    b.n_nodes = g->n_nodes;
    b.order = malloc(sizeof(int) * ((size_t)b.n_nodes + 1));
    b.to_loss = calloc((size_t)b.n_vals + 1, 1);
    b.from_wrt = calloc((size_t)b.n_vals + 1, 1);
    b.grad = malloc(sizeof(at_val) * ((size_t)b.n_vals + 1));
    at_status st = AT_OK;
    if (!b.order || !b.to_loss || !b.from_wrt || !b.grad) {
        st = at_graph_fail(g, AT_E_NOMEM, "out of memory in autodiff");
        goto done;
    }
    at_err err;
    if ((st = at_graph_topo_order(g, b.order, &err)) != AT_OK) {
        at_graph_fail(g, st, "%s", err.msg);
        goto done;
    }
    for (int v = 0; v < b.n_vals; v++) b.grad[v] = AT_NONE;
    mark_to_loss(&b, loss);
    mark_from_wrt(&b, wrt, n);
    float one = 1.0f;
    b.grad[loss] = at_const(g, NULL, AT_F32, ls, &one);
    for (int s = b.n_nodes - 1; s >= 0 && st == AT_OK; s--) st = run_rule(&b, b.order[s]);
    for (int i = 0; i < n && st == AT_OK; i++) {
        at_val gv = b.grad[wrt[i]];
        if (gv == AT_NONE)
            gv = zeros_like(g, wrt[i]);
        else
            name_grad(g, gv, wrt[i]);
        grads_out[i] = gv;
        st = at_graph_status(g);
    }
done:
    free(b.order);
    free(b.to_loss);
    free(b.from_wrt);
    free(b.grad);
    return st;
}
