/* The graph IR: values, nodes with typed attributes, initializers,
 * metadata; symbolic dims; validation. Mirrors ONNX's GraphProto.
 *
 * Errors while building are sticky: a builder call that fails records the
 * message in the graph and returns AT_NONE; later calls that get AT_NONE as
 * an input return AT_NONE without a new message. Check at_graph_status()
 * once after building. A graph is not thread-safe; share it read-only. */
#ifndef ATTUNE_GRAPH_H
#define ATTUNE_GRAPH_H

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct at_graph at_graph;

/* A value handle: an index into its graph's value table. */
typedef int32_t at_val;
#define AT_NONE ((at_val)-1)

typedef enum at_value_kind {
    AT_VALUE_INPUT = 1,        /* fed at run time */
    AT_VALUE_PARAM = 2,        /* trainable initializer */
    AT_VALUE_CONST = 3,        /* non-trainable initializer */
    AT_VALUE_STATE = 4,        /* persistent, updated in place (optimizer state, step) */
    AT_VALUE_INTERMEDIATE = 5, /* output of a node */
} at_value_kind;

/* Attribute kinds, numbered as ONNX's AttributeProto.AttributeType. */
typedef enum at_attr_kind {
    AT_ATTR_UNDEFINED = 0,
    AT_ATTR_FLOAT = 1,
    AT_ATTR_INT = 2,
    AT_ATTR_STRING = 3,
    AT_ATTR_TENSOR = 4,
    AT_ATTR_FLOATS = 6,
    AT_ATTR_INTS = 7,
    AT_ATTR_STRINGS = 8,
} at_attr_kind;

/* An attribute as passed to at_node_add (copied by the graph). */
typedef struct at_attr {
    const char *name;
    at_attr_kind kind;
    int64_t i;
    float f;
    const char *s;
    int n; /* element count of ints / floats */
    const int64_t *ints;
    const float *floats;
    const at_tensor *t;
    const char *const *strs; /* n strings for AT_ATTR_STRINGS */
} at_attr;

#define AT_ATTR_I(nm, v) ((at_attr){.name = (nm), .kind = AT_ATTR_INT, .i = (v)})
#define AT_ATTR_F(nm, v) ((at_attr){.name = (nm), .kind = AT_ATTR_FLOAT, .f = (v)})
#define AT_ATTR_S(nm, v) ((at_attr){.name = (nm), .kind = AT_ATTR_STRING, .s = (v)})
#define AT_ATTR_INTS(nm, cnt, p) ((at_attr){.name = (nm), .kind = AT_ATTR_INTS, .n = (cnt), .ints = (p)})
#define AT_ATTR_FLOATS(nm, cnt, p)                                                                 \
    ((at_attr){.name = (nm), .kind = AT_ATTR_FLOATS, .n = (cnt), .floats = (p)})
#define AT_ATTR_STRS(nm, cnt, p)                                                                   \
    ((at_attr){.name = (nm), .kind = AT_ATTR_STRINGS, .n = (cnt), .strs = (p)})
#define AT_ATTR_T(nm, tp) ((at_attr){.name = (nm), .kind = AT_ATTR_TENSOR, .t = (tp)})

/* ---- graph lifetime ---- */

/* A new empty graph; NULL only when out of memory. Free with at_graph_free. */
at_graph *at_graph_new(void);
void at_graph_free(at_graph *g);
/* A deep copy (values, nodes, data, metadata). NULL when out of memory. */
at_graph *at_graph_clone(const at_graph *g);

/* The first error recorded while building, and its message ("" when none). */
at_status at_graph_status(const at_graph *g);
const char *at_graph_error(const at_graph *g);
void at_graph_clear_error(at_graph *g);
/* Records an error (sticky: only the first is kept); returns code. */
at_status at_graph_fail(at_graph *g, at_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- symbols ---- */

/* The dim code of the symbol called name (created on first use), for use
 * in at_shape dims. Returns 0 with a recorded error on failure. */
int64_t at_sym(at_graph *g, const char *name);
/* The name of a symbolic dim code, or NULL if d is not a symbol of g. */
const char *at_sym_name(const at_graph *g, int64_t d);
int at_graph_num_syms(const at_graph *g);
/* Shape as text with symbol names: "[B,T,256]". */
const char *at_graph_shape_str(const at_graph *g, const at_shape *s, char *buf, size_t cap);

/* ---- values ---- */

/* A graph input fed at run time. */
at_val at_input(at_graph *g, const char *name, at_dtype dt, at_shape shape);
/* A trainable parameter (zero-filled; fill it through at_value_data) in
 * parameter group `group` (0..31; groups can be frozen per training phase). */
at_val at_param(at_graph *g, const char *name, at_dtype dt, at_shape shape, int group);
/* A constant initializer; data (numel * dtype size bytes) is copied. */
at_val at_const(at_graph *g, const char *name, at_dtype dt, at_shape shape, const void *data);
at_val at_const_f32(at_graph *g, float v);                /* scalar */
at_val at_const_i64(at_graph *g, int64_t v);              /* scalar */
at_val at_const_i64s(at_graph *g, int n, const int64_t *v); /* 1-D */
/* Persistent state updated in place by update ops (zero-filled). */
at_val at_state(at_graph *g, const char *name, at_dtype dt, at_shape shape);
/* Marks v as a graph output (what inference returns and files record). */
at_status at_output(at_graph *g, at_val v);

int at_graph_num_values(const at_graph *g);
int at_graph_num_nodes(const at_graph *g);
int at_graph_num_inputs(const at_graph *g);
int at_graph_num_outputs(const at_graph *g);
at_val at_graph_input(const at_graph *g, int i);
at_val at_graph_output(const at_graph *g, int i);
/* The value called name, or AT_NONE. */
at_val at_graph_find(const at_graph *g, const char *name);

const char *at_value_name(const at_graph *g, at_val v);
at_status at_value_rename(at_graph *g, at_val v, const char *name);
at_dtype at_value_dtype(const at_graph *g, at_val v);
at_shape at_value_shape(const at_graph *g, at_val v);
at_value_kind at_value_kind_of(const at_graph *g, at_val v);
/* Initializer data (params, consts, state), owned by the graph; NULL otherwise. */
void *at_value_data(const at_graph *g, at_val v);
int at_value_group(const at_graph *g, at_val v);
/* Index of the node producing v, or -1. */
int at_value_producer(const at_graph *g, at_val v);

/* Trainable params whose group bit is set in group_mask, in creation order.
 * Writes up to cap handles; returns the total count. */
int at_graph_params(const at_graph *g, uint32_t group_mask, at_val *out, int cap);

/* ---- nodes ---- */

/* Adds a node and creates its n_out outputs (types and shapes inferred,
 * symbolically). in[i] may be AT_NONE for an absent optional input. Returns
 * the node index, or -1 with the error recorded. */
int at_node_add(at_graph *g, const char *op_type, const char *domain, const at_val *in, int n_in,
                at_val *out, int n_out, const at_attr *attrs, int n_attrs);
/* Builder convenience: a node with one output; returns it or AT_NONE. */
at_val at_node1(at_graph *g, const char *op_type, const at_val *in, int n_in, const at_attr *attrs,
                int n_attrs);

const char *at_node_op(const at_graph *g, int node);
const char *at_node_domain(const at_graph *g, int node);
const char *at_node_name(const at_graph *g, int node);
at_status at_node_rename(at_graph *g, int node, const char *name);
int at_node_num_inputs(const at_graph *g, int node);
int at_node_num_outputs(const at_graph *g, int node);
at_val at_node_input(const at_graph *g, int node, int i);
at_val at_node_output(const at_graph *g, int node, int i);

/* ---- metadata (string key/value pairs; vocabularies, labels, config) ---- */

at_status at_graph_set_meta(at_graph *g, const char *key, const char *value);
/* The value of key, or NULL. Owned by the graph. */
const char *at_graph_meta(const at_graph *g, const char *key);
int at_graph_num_meta(const at_graph *g);
const char *at_graph_meta_key(const at_graph *g, int i);

/* ---- checks ---- */

/* Checks every node against its op schema, re-infers shapes, and checks
 * that the graph is acyclic. The error names the node, op and shapes. */
at_status at_graph_validate(at_graph *g);
/* A topological order of all nodes into order[num_nodes]. */
at_status at_graph_topo_order(const at_graph *g, int *order, at_err *err);

#ifdef __cplusplus
}
#endif
#endif
