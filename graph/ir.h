/* Internal layout of the IR. Only graph/, ops/, autodiff/ and runtime/
 * include this; users see the opaque handles of include/attune/graph.h. */
#ifndef ATTUNE_GRAPH_IR_H
#define ATTUNE_GRAPH_IR_H

#include "attune/graph.h"

typedef struct at_attr_rec {
    char *name;
    at_attr_kind kind;
    int64_t i;
    float f;
    char *s;
    int n;
    int64_t *ints;
    float *floats;
    at_tensor *t; /* t and t->data owned */
    char **strs;  /* n owned strings for AT_ATTR_STRINGS */
} at_attr_rec;

typedef struct at_node_rec {
    char *name;
    char *op_type;
    char *domain; /* "" for ONNX's default domain */
    int op;       /* index into the op registry; -1 if unknown */
    int n_in, n_out;
    at_val *in; /* AT_NONE for absent optional inputs */
    at_val *out;
    int n_attrs;
    at_attr_rec *attrs;
} at_node_rec;

typedef struct at_value_rec {
    char *name;
    at_dtype dtype;
    at_shape shape;
    at_value_kind kind;
    int producer; /* node index or -1 */
    int group;    /* parameter group */
    void *data;   /* initializer bytes, owned; NULL for inputs/intermediates */
} at_value_rec;

struct at_graph {
    at_value_rec *vals;
    int n_vals, cap_vals;
    at_node_rec *nodes;
    int n_nodes, cap_nodes;
    at_val *inputs;
    int n_inputs, cap_inputs;
    at_val *outputs;
    int n_outputs, cap_outputs;
    char **syms;
    int n_syms, cap_syms;
    char **meta_keys, **meta_vals;
    int n_meta, cap_meta;
    int *hash; /* open addressing over value names: index + 1, 0 empty */
    int hash_cap;
    int next_id;      /* for generated names */
    uint64_t version; /* bumped by every structural change; sessions re-plan */
    at_status status;
    char err[1024];
};

/* Attribute lookups for infer functions, kernels and gradient rules. */
const at_attr_rec *at_attr_find(const at_node_rec *n, const char *name);
int64_t at_attr_int(const at_node_rec *n, const char *name, int64_t dflt);
float at_attr_float(const at_node_rec *n, const char *name, float dflt);
const char *at_attr_str(const at_node_rec *n, const char *name, const char *dflt);

/* Adds an output-less value record (used by builders and loaders). */
at_val at_graph_add_value(at_graph *g, const char *name, at_dtype dt, at_shape shape,
                          at_value_kind kind);
/* A fresh anonymous symbol, for dims shape inference cannot express. */
int64_t at_sym_fresh(at_graph *g);
/* Re-runs symbolic shape inference of one node; outputs get new shapes. */
at_status at_graph_infer_node(at_graph *g, int node);
/* Read-only validation (ops known, inputs defined, acyclic): safe on a
 * graph shared by several threads. */
at_status at_graph_check(const at_graph *g, at_err *err);
/* Appends an output value to an existing node (e.g. Dropout's mask, wanted
 * by its gradient rule) and re-infers; returns it or AT_NONE. */
at_val at_node_append_output(at_graph *g, int node);

/* Runs node n's shape rule on the given input types. Used symbolically by
 * the builder (g non-NULL) and concretely by the planner (g NULL). On
 * failure msg says node, op, input shapes and the reason. out_data[j] is
 * set when an output's contents are known from shapes or constant inputs;
 * out_buf holds n_out blocks of AT_INFER_BUF bytes for such data. */
at_status at_infer_run(at_graph *g, const at_graph *names, const at_node_rec *n, bool concrete,
                       const at_shape *in_shape, const at_dtype *in_dtype,
                       const void *const *in_data, at_shape *out_shape, at_dtype *out_dtype,
                       const void **out_data, void *out_buf, char *msg, size_t cap);

static inline at_node_rec *at_node_rec_of(const at_graph *g, int node) {
    return &g->nodes[node];
}

#endif
