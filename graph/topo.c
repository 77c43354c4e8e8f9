/* Topological order and whole-graph validation. */
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"

at_status at_graph_topo_order(const at_graph *g, int *order, at_err *err) {
    int nn = g->n_nodes;
    int *indeg = calloc((size_t)nn + 1, sizeof(int));
    int *head = malloc(sizeof(int) * ((size_t)g->n_vals + 1)); /* consumers list per value */
    int *next = NULL, *who = NULL;
    int n_edges = 0;
    for (int i = 0; i < nn; i++) n_edges += g->nodes[i].n_in;
    next = malloc(sizeof(int) * ((size_t)n_edges + 1));
    who = malloc(sizeof(int) * ((size_t)n_edges + 1));
    at_status st = AT_OK;
    if (!indeg || !head || !next || !who) {
        st = at_err_set(err, AT_E_NOMEM, "out of memory ordering %d nodes", nn);
        goto done;
    }
    for (int v = 0; v < g->n_vals; v++) head[v] = -1;
    int e = 0;
    for (int i = 0; i < nn; i++) {
        const at_node_rec *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            at_val v = n->in[k];
            if (v == AT_NONE || g->vals[v].producer < 0) continue;
            indeg[i]++;
            who[e] = i;
            next[e] = head[v];
            head[v] = e++;
        }
    }
    /* Kahn's algorithm with a FIFO seeded in node order, so the order is
     * stable: nodes keep their creation order where dependencies allow. */
    int qh = 0, qt = 0;
    for (int i = 0; i < nn; i++)
        if (!indeg[i]) order[qt++] = i;
    while (qh < qt) {
        const at_node_rec *n = &g->nodes[order[qh++]];
        for (int j = 0; j < n->n_out; j++)
            for (int x = head[n->out[j]]; x >= 0; x = next[x])
                if (--indeg[who[x]] == 0) order[qt++] = who[x];
    }
    if (qt != nn) {
        for (int i = 0; i < nn; i++)
            if (indeg[i]) {
                st = at_err_set(err, AT_E_INVALID, "graph has a cycle through node '%s' (%s)",
                                g->nodes[i].name, g->nodes[i].op_type);
                break;
            }
    }
done:
    free(indeg);
    free(head);
    free(next);
    free(who);
    return st;
}

/* The read-only part of validation: known ops, defined inputs, no cycle.
 * Sessions use it, so several may start on one shared graph at once. */
at_status at_graph_check(const at_graph *g, at_err *err) {
    if (g->status != AT_OK) return at_err_set(err, g->status, "%s", g->err);
    for (int i = 0; i < g->n_nodes; i++) {
        const at_node_rec *n = &g->nodes[i];
        if (n->op < 0 || n->op >= AT_OP_COUNT)
            return at_err_set(err, AT_E_UNSUPPORTED, "node '%s': unknown op '%s'", n->name,
                              n->op_type);
        for (int k = 0; k < n->n_in; k++) {
            at_val v = n->in[k];
            if (v == AT_NONE) continue;
            if (v < 0 || v >= g->n_vals)
                return at_err_set(err, AT_E_INVALID, "node '%s' (%s): input %d undefined", n->name,
                                  n->op_type, k);
            const at_value_rec *r = &g->vals[v];
            if (r->kind == AT_VALUE_INTERMEDIATE && r->producer < 0)
                return at_err_set(err, AT_E_INVALID,
                                  "node '%s' (%s): input '%s' is produced by no node", n->name,
                                  n->op_type, r->name);
        }
    }
    int *order = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
    if (!order) return at_err_set(err, AT_E_NOMEM, "out of memory");
    at_status st = at_graph_topo_order(g, order, err);
    free(order);
    return st;
}

at_status at_graph_validate(at_graph *g) {
    at_err err;
    at_status st = at_graph_check(g, &err);
    if (st != AT_OK) return at_graph_fail(g, st, "%s", err.msg);
    int *order = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
    if (!order) return at_graph_fail(g, AT_E_NOMEM, "out of memory");
    st = at_graph_topo_order(g, order, &err);
    for (int i = 0; st == AT_OK && i < g->n_nodes; i++) st = at_graph_infer_node(g, order[i]);
    free(order);
    return st;
}
