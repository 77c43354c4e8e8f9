/* The graph IR: values, nodes with typed attributes, initializers,
 * metadata; symbolic dims; validation. Mirrors ONNX's GraphProto.
 *
 * Errors while building are sticky: a builder call that fails records the
 * message in the graph and returns AT_NONE (or -1, or the status); while
 * an error is recorded, calls that add values or nodes do nothing and
 * return AT_NONE without a new message, so AT_NONE results may be passed on
 * unchecked. Check at_graph_status() once after building. A failed call
 * adds no node.
 *
 * Ownership: the graph owns everything in it (names, shapes, attribute
 * copies, initializer data, metadata). Strings and pointers it hands out
 * stay valid until the graph is freed or the item they describe is changed
 * (renamed, set again). Everything passed in is copied; the caller keeps
 * ownership of its arguments.
 *
 * Thread-safety: a graph has no lock. Calls taking a non-const at_graph *
 * change it and need exclusive access. Calls taking a const at_graph * only
 * read it: any number of threads may make them at once, and run sessions on
 * the graph (see session.h), while no thread changes it. Distinct graphs
 * are independent.
 *
 * Unless a function says otherwise, g must be non-NULL; an out-of-range
 * value or node index gives the documented "none" result (AT_NONE, NULL,
 * 0, -1), not a crash. */
#ifndef ATTUNE_GRAPH_H
#define ATTUNE_GRAPH_H

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct at_graph at_graph;

/* A value handle: an index into its graph's value table (0, 1, ... in
 * creation order). Valid for the graph that made it and for its clones;
 * after a save and load, find values by name (at_graph_find), as handles
 * may differ. */
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

/* An attribute as passed to at_node_add (deep-copied by the graph: the
 * caller's strings, arrays and tensor may be freed right after the call).
 * Use the AT_ATTR_* initializers below; only the fields of its kind are
 * read. */
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
#define AT_ATTR_INTS(nm, cnt, p)                                                                   \
    ((at_attr){.name = (nm), .kind = AT_ATTR_INTS, .n = (cnt), .ints = (p)})
#define AT_ATTR_FLOATS(nm, cnt, p)                                                                 \
    ((at_attr){.name = (nm), .kind = AT_ATTR_FLOATS, .n = (cnt), .floats = (p)})
#define AT_ATTR_STRS(nm, cnt, p)                                                                   \
    ((at_attr){.name = (nm), .kind = AT_ATTR_STRINGS, .n = (cnt), .strs = (p)})
#define AT_ATTR_T(nm, tp) ((at_attr){.name = (nm), .kind = AT_ATTR_TENSOR, .t = (tp)})

/* ---- graph lifetime ---- */

/* A new empty graph, owned by the caller; NULL only when out of memory.
 * Free with at_graph_free. */
at_graph *at_graph_new(void);
/* Frees g and everything it owns (initializer data included: pointers from
 * at_value_data die with it). Sessions on g must be freed first. NULL is a
 * no-op. */
void at_graph_free(at_graph *g);
/* A deep copy (symbols, values with the same handles, nodes, initializer
 * data, metadata, and a recorded error), owned by the caller. NULL when out
 * of memory. Reads g only: safe on a shared graph. */
at_graph *at_graph_clone(const at_graph *g);

/* The first error recorded while building (AT_OK when none); AT_E_INVALID
 * for a NULL g. */
at_status at_graph_status(const at_graph *g);
/* Its message ("" when none; "no graph" for NULL), owned by g, valid until
 * the error is cleared or g is freed. */
const char *at_graph_error(const at_graph *g);
/* Forgets the recorded error so building can go on (the failed call itself
 * added nothing, but values built from its AT_NONE result are missing). */
void at_graph_clear_error(at_graph *g);
/* Records an error with a printf-style message (sticky: while an error is
 * recorded, a new one is dropped) and returns code. For code that extends
 * the builder (model builders, loaders). */
at_status at_graph_fail(at_graph *g, at_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- symbols ---- */

/* The dim code (< 0) of the symbol called name, created on first use
 * (the same name gives the same code), for use in at_shape dims. Returns 0
 * with a recorded error for a NULL or empty name (AT_E_INVALID) or when
 * out of memory (AT_E_NOMEM). Works even while an error is recorded. */
int64_t at_sym(at_graph *g, const char *name);
/* The name of a symbolic dim code, owned by g; NULL if d is not a symbol
 * of g (d >= 0 included). */
const char *at_sym_name(const at_graph *g, int64_t d);
/* Number of symbols; codes are -1 .. -at_graph_num_syms(g). */
int at_graph_num_syms(const at_graph *g);
/* Shape as text with symbol names, "[B,T,256]", into buf (cap bytes,
 * NUL-terminated, truncated to fit); returns buf. g may be NULL (symbols
 * print as "?"). */
const char *at_graph_shape_str(const at_graph *g, const at_shape *s, char *buf, size_t cap);

/* ---- values ---- */

/* Values. Every value has a name unique in its graph: pass NULL or "" to
 * get a generated one ("v<k>"). Each of these returns the new handle, or
 * AT_NONE with the error recorded: AT_E_INVALID for a used name, an invalid
 * dtype or a group outside 0..31; AT_E_SHAPE for a rank outside
 * 0..AT_MAX_RANK, a symbol not of g, or (initializers) a symbolic shape or
 * more than 2^34 elements; AT_E_NOMEM. */

/* A graph input fed at run time (at_feed). Its dims may be symbols, bound
 * by each run's feeds. Inputs are listed in creation order. */
at_val at_input(at_graph *g, const char *name, at_dtype dt, at_shape shape);
/* A trainable parameter (zero-filled; fill it through at_value_data) in
 * parameter group `group` (0..31; groups can be frozen per training phase). */
at_val at_param(at_graph *g, const char *name, at_dtype dt, at_shape shape, int group);
/* A constant initializer; data (numel * dtype size bytes, or NULL for
 * zeros) is copied. */
at_val at_const(at_graph *g, const char *name, at_dtype dt, at_shape shape, const void *data);
at_val at_const_f32(at_graph *g, float v);                  /* scalar, generated name */
at_val at_const_i64(at_graph *g, int64_t v);                /* scalar, generated name */
at_val at_const_i64s(at_graph *g, int n, const int64_t *v); /* 1-D [n], generated name */
/* Persistent state updated in place by update ops (zero-filled). */
at_val at_state(at_graph *g, const char *name, at_dtype dt, at_shape shape);
/* Marks v as a graph output (what inference returns and files record), in
 * call order; marking it again is a no-op. AT_E_INVALID (recorded) when v is
 * not a value of g. */
at_status at_output(at_graph *g, at_val v);

/* Counts, and the i-th input / output (AT_NONE when i is out of range). */
int at_graph_num_values(const at_graph *g);
int at_graph_num_nodes(const at_graph *g);
int at_graph_num_inputs(const at_graph *g);
int at_graph_num_outputs(const at_graph *g);
at_val at_graph_input(const at_graph *g, int i);
at_val at_graph_output(const at_graph *g, int i);
/* The value called name (a hash lookup), or AT_NONE; g and name may be
 * NULL (AT_NONE). */
at_val at_graph_find(const at_graph *g, const char *name);

/* The value's name, owned by g (valid until renamed); NULL for an invalid v. */
const char *at_value_name(const at_graph *g, at_val v);
/* Renames v (the name is copied). AT_E_INVALID (recorded) for an invalid v,
 * a NULL or empty name, or a name another value has; AT_E_NOMEM. Renaming
 * counts as a change: sessions on g re-plan at their next run. */
at_status at_value_rename(at_graph *g, at_val v, const char *name);
/* dtype, shape and kind; AT_UNDEFINED, a rank -1 shape and 0 for an
 * invalid v. Shapes are as inferred at build time (dims may be symbols). */
at_dtype at_value_dtype(const at_graph *g, at_val v);
at_shape at_value_shape(const at_graph *g, at_val v);
at_value_kind at_value_kind_of(const at_graph *g, at_val v);
/* Initializer data (params, consts, state): numel * dtype size bytes,
 * row-major, owned by the graph and valid until it is freed; NULL for other
 * kinds and invalid v. Writable through the pointer (to initialize
 * parameters) while no session runs on g; on CPU, update ops write trained
 * values here in place. */
void *at_value_data(const at_graph *g, at_val v);
/* The parameter group of a param (0 for other kinds); -1 for an invalid v. */
int at_value_group(const at_graph *g, at_val v);
/* Index of the node producing v, or -1 (inputs, initializers, invalid v). */
int at_value_producer(const at_graph *g, at_val v);

/* Trainable params whose group bit is set in group_mask, in creation order.
 * Writes up to cap handles to out (which may be NULL when cap is 0) and
 * returns the total count, so a first call with cap 0 sizes the array. */
int at_graph_params(const at_graph *g, uint32_t group_mask, at_val *out, int cap);

/* ---- nodes ---- */

/* Adds a node of op op_type in domain ("" for ONNX, "ai.attune") and
 * creates its n_out outputs, with dtypes and shapes inferred symbolically;
 * writes their handles to out (may be NULL). in[i] may be AT_NONE for an
 * absent optional input. Attributes are checked against the op's schema and
 * copied. The node is named "<Op>_<k>". Returns the node index (0, 1, ...
 * in creation order), or -1 with the error recorded (and no node added):
 * AT_E_UNSUPPORTED for an unknown op; AT_E_INVALID for wrong input/output
 * counts, a missing required input, an input not of g, or an unknown,
 * mistyped or missing attribute; AT_E_SHAPE (or the op's own code) when
 * the inputs' shapes or dtypes do not fit, with a message naming the node,
 * the op and the shapes; AT_E_NOMEM. */
int at_node_add(at_graph *g, const char *op_type, const char *domain, const at_val *in, int n_in,
                at_val *out, int n_out, const at_attr *attrs, int n_attrs);
/* Builder convenience: a node with one output, the op looked up in the ONNX
 * domain first, then in ai.attune; returns the output or AT_NONE (errors as
 * at_node_add). */
at_val at_node1(at_graph *g, const char *op_type, const at_val *in, int n_in, const at_attr *attrs,
                int n_attrs);

/* Node accessors: op type, domain and name (owned by g; NULL for an invalid
 * node), input/output counts (0 for an invalid node) and the i-th input or
 * output (AT_NONE when absent or out of range). */
const char *at_node_op(const at_graph *g, int node);
const char *at_node_domain(const at_graph *g, int node);
const char *at_node_name(const at_graph *g, int node);
/* Renames a node (copied; node names need not be unique). AT_E_INVALID
 * (recorded) for an invalid node or a NULL name; AT_E_NOMEM. */
at_status at_node_rename(at_graph *g, int node, const char *name);
int at_node_num_inputs(const at_graph *g, int node);
int at_node_num_outputs(const at_graph *g, int node);
at_val at_node_input(const at_graph *g, int node, int i);
at_val at_node_output(const at_graph *g, int node, int i);

/* ---- metadata (string key/value pairs; vocabularies, labels, config) ----
 * Saved in model files as ONNX metadata_props. Keys starting "attune." are
 * reserved for attune's own use. */

/* Sets key to value (both copied; an existing key's value is replaced).
 * AT_E_INVALID (recorded) for a NULL key or value; AT_E_NOMEM. Does not
 * count as a change for sessions. */
at_status at_graph_set_meta(at_graph *g, const char *key, const char *value);
/* The value of key (non-NULL), or NULL. Owned by the graph, valid until the
 * key is set again or the graph is freed. */
const char *at_graph_meta(const at_graph *g, const char *key);
/* Number of keys, and the i-th key in insertion order (NULL out of range). */
int at_graph_num_meta(const at_graph *g);
const char *at_graph_meta_key(const at_graph *g, int i);

/* ---- checks ---- */

/* Checks that every node's op is known and its inputs defined, that the
 * graph is acyclic, and re-infers every node's shapes (writing them back).
 * Returns the recorded error if there is one, else AT_OK, or the new error,
 * also recorded: AT_E_UNSUPPORTED (unknown op), AT_E_INVALID (undefined
 * input, cycle), AT_E_SHAPE and the ops' codes (message names the node, op
 * and shapes). Changes g: not for a graph that sessions share (they check
 * what they need read-only). */
at_status at_graph_validate(at_graph *g);
/* A topological order of all nodes into order[at_graph_num_nodes(g)],
 * stable (creation order where dependencies allow). AT_E_INVALID in *err
 * for a cycle; AT_E_NOMEM. Reads g only. */
at_status at_graph_topo_order(const at_graph *g, int *order, at_err *err);

#ifdef __cplusplus
}
#endif
#endif
