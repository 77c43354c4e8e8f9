/* Graph files: ONNX ModelProto through protobuf-c (graph/onnx.proto).
 *
 * How a graph maps onto ONNX:
 *   graph inputs        -> GraphProto.input (dim_value / dim_param; an
 *                          anonymous symbol from shape inference is written
 *                          as an unknown dim, because its name means nothing
 *                          outside this graph)
 *   params/consts/state -> GraphProto.initializer (raw_data, little-endian)
 *   nodes               -> GraphProto.node, in a topological order
 *   graph outputs       -> GraphProto.output, with their inferred types
 *   metadata            -> ModelProto.metadata_props
 * ONNX has no field for an initializer's kind, so two reserved metadata keys
 * carry it; an initializer named in neither is a constant:
 *   "attune.params": one line per trainable parameter, "<group> <name>",
 *                    in value order (the order at_graph_params reports);
 *   "attune.state":  one line per state value, "<name>".
 * Value names therefore may not contain a newline.
 *
 * Files of other tools (torch.onnx.export and the like) load too: nodes of
 * default-domain opsets 7..20 whose signature has changed since are rewritten
 * into their opset-21 form (upgrade_node), and their Constant nodes become
 * constant initializers, so shape chains read them while building
 * (constant_to_initializer). Saved again, such a graph is an opset-21 file.
 *
 * Loading rebuilds the graph through the builder API, so schemas, attribute
 * kinds and shapes are checked exactly as when the graph was built. Every
 * size read from the file is checked before anything is allocated from it;
 * the protobuf parser runs under an allocator whose budget is a fixed
 * multiple of the file size. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_TMPFILE, AT_EMPTY_PATH */
#endif
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attune/attune.h"
#include "attune/io.h"
#include "graph/ir.h"
#include "graph/quote.h"
#include "onnx.pb-c.h"
#include "ops/op.h"

#define KEY_PARAMS "attune.params"
#define KEY_STATE  "attune.state"
#define KEY_STEP   "attune.step"
#define KEY_EPOCH  "attune.epoch"
#define KEY_PHASE  "attune.phase"
#define KEY_SEED   "attune.rng_seed"

/* One protobuf message is limited to 2 GiB. */
#define MAX_FILE_BYTES   ((size_t)INT32_MAX)
#define MAX_DIM          ((int64_t)1 << 31)
#define MAX_TENSOR_BYTES ((int64_t)1 << 34)
/* The oldest default-domain opset a file may declare (see upgrade_node). */
#define MIN_ONNX_OPSET 7

typedef Onnx__ModelProto ModelProto;
typedef Onnx__GraphProto GraphProto;
typedef Onnx__NodeProto NodeProto;
typedef Onnx__AttributeProto AttributeProto;
typedef Onnx__TensorProto TensorProto;
typedef Onnx__ValueInfoProto ValueInfoProto;
typedef Onnx__TypeProto TypeProto;
typedef Onnx__TensorShapeProto TensorShapeProto;
typedef Onnx__TensorShapeProto__Dimension Dimension;
typedef Onnx__StringStringEntryProto Entry;
typedef Onnx__OperatorSetIdProto OpsetId;

static bool host_is_le(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Byte-swaps n elements of size es in place (raw_data is little-endian). */
static void swap_bytes(void *p, size_t n, size_t es) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++, b += es)
        for (size_t k = 0; k < es / 2; k++) {
            unsigned char t = b[k];
            b[k] = b[es - 1 - k];
            b[es - 1 - k] = t;
        }
}

static const char *onnx_type_name(int t) {
    static const char *names[] = {"UNDEFINED",  "FLOAT",   "UINT8",  "INT8",   "UINT16",
                                  "INT16",      "INT32",   "INT64",  "STRING", "BOOL",
                                  "FLOAT16",    "DOUBLE",  "UINT32", "UINT64", "COMPLEX64",
                                  "COMPLEX128", "BFLOAT16"};
    if (t >= 0 && t < (int)(sizeof names / sizeof *names)) return names[t];
    return "unknown";
}

static const char *attr_type_name(int t) {
    static const char *names[] = {"UNDEFINED",      "FLOAT",      "INT",        "STRING",
                                  "TENSOR",         "GRAPH",      "FLOATS",     "INTS",
                                  "STRINGS",        "TENSORS",    "GRAPHS",     "SPARSE_TENSOR",
                                  "SPARSE_TENSORS", "TYPE_PROTO", "TYPE_PROTOS"};
    if (t >= 0 && t < (int)(sizeof names / sizeof *names)) return names[t];
    return "unknown";
}

/* ======================================================================
 * A pool of allocations freed together (the messages built for one save,
 * the scratch of one load).
 * ====================================================================== */

typedef struct pool {
    void **p;
    size_t n, cap;
    bool oom;
} pool;

static void *pool_alloc(pool *pl, size_t bytes) {
    if (pl->oom) return NULL;
    if (pl->n == pl->cap) {
        size_t nc = pl->cap ? pl->cap * 2 : 256;
        void **q = realloc(pl->p, nc * sizeof *q);
        if (!q) {
            pl->oom = true;
            return NULL;
        }
        pl->p = q;
        pl->cap = nc;
    }
    void *m = calloc(1, bytes ? bytes : 1);
    if (!m) {
        pl->oom = true;
        return NULL;
    }
    pl->p[pl->n++] = m;
    return m;
}

static void pool_free(pool *pl) {
    for (size_t i = 0; i < pl->n; i++) free(pl->p[i]);
    free(pl->p);
    memset(pl, 0, sizeof *pl);
}

static char *pool_strdup(pool *pl, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = pool_alloc(pl, n);
    if (d) memcpy(d, s, n);
    return d;
}

/* A growing string (metadata lists). */
typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->s ? b->s + b->n : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + (size_t)k + 1) nc *= 2;
        char *q = realloc(b->s, nc);
        if (!q) {
            b->oom = true;
            return;
        }
        b->s = q;
        b->cap = nc;
    }
}

/* ======================================================================
 * A string -> int map over borrowed keys (open addressing, fixed size).
 * ====================================================================== */

typedef struct strmap {
    const char **key;
    int *val;
    size_t mask;
} strmap;

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool sm_init(strmap *m, size_t n) {
    size_t cap = 64;
    while (cap < 2 * n + 16) cap *= 2;
    m->key = calloc(cap, sizeof *m->key);
    m->val = calloc(cap, sizeof *m->val);
    m->mask = cap - 1;
    return m->key && m->val;
}

static void sm_free(strmap *m) {
    free(m->key);
    free(m->val);
}

/* The slot of key: m->key[slot] is NULL when absent. */
static size_t sm_slot(const strmap *m, const char *key) {
    size_t i = (size_t)str_hash(key) & m->mask;
    while (m->key[i] && strcmp(m->key[i], key) != 0) i = (i + 1) & m->mask;
    return i;
}

static int sm_get(const strmap *m, const char *key, int dflt) {
    size_t i = sm_slot(m, key);
    return m->key[i] ? m->val[i] : dflt;
}

/* Inserts key -> val and returns true; when key is present, leaves it,
 * stores its value in *had (if non-NULL) and returns false. */
static bool sm_put(strmap *m, const char *key, int val, int *had) {
    size_t i = sm_slot(m, key);
    if (m->key[i]) {
        if (had) *had = m->val[i];
        return false;
    }
    m->key[i] = key;
    m->val[i] = val;
    return true;
}

/* ======================================================================
 * Saving
 * ====================================================================== */

typedef struct saver {
    const at_graph *g;
    pool pl;
    at_err *err;
    at_status st;
} saver;

#define NEW(sv, T) new_msg_##T(sv)
#define DEFINE_NEW(T, INIT)                                                                        \
    static T *new_msg_##T(saver *sv) {                                                             \
        T *m = pool_alloc(&sv->pl, sizeof(T));                                                     \
        if (m) {                                                                                   \
            T init = INIT;                                                                         \
            *m = init;                                                                             \
        }                                                                                          \
        return m;                                                                                  \
    }
DEFINE_NEW(ModelProto, ONNX__MODEL_PROTO__INIT)
DEFINE_NEW(GraphProto, ONNX__GRAPH_PROTO__INIT)
DEFINE_NEW(NodeProto, ONNX__NODE_PROTO__INIT)
DEFINE_NEW(AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT)
DEFINE_NEW(TensorProto, ONNX__TENSOR_PROTO__INIT)
DEFINE_NEW(ValueInfoProto, ONNX__VALUE_INFO_PROTO__INIT)
DEFINE_NEW(TypeProto, ONNX__TYPE_PROTO__INIT)
DEFINE_NEW(TensorShapeProto, ONNX__TENSOR_SHAPE_PROTO__INIT)
DEFINE_NEW(Dimension, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT)
DEFINE_NEW(Entry, ONNX__STRING_STRING_ENTRY_PROTO__INIT)
DEFINE_NEW(OpsetId, ONNX__OPERATOR_SET_ID_PROTO__INIT)

typedef Onnx__TypeProto__Tensor TypeTensor;
DEFINE_NEW(TypeTensor, ONNX__TYPE_PROTO__TENSOR__INIT)

static void *sv_array(saver *sv, size_t n, size_t elem) {
    return pool_alloc(&sv->pl, n * elem);
}

/* Shape inference names the symbols it invents "_d<k>" (at_sym_fresh). */
static bool is_anonymous_sym(const char *name) {
    if (!name) return true;
    if (name[0] != '_' || name[1] != 'd' || !name[2]) return false;
    for (const char *p = name + 2; *p; p++)
        if (*p < '0' || *p > '9') return false;
    return true;
}

static TensorProto *save_tensor(saver *sv, const char *name, at_dtype dt, const at_shape *shape,
                                const void *data) {
    TensorProto *t = NEW(sv, TensorProto);
    if (!t) return NULL;
    t->name = (char *)name;
    t->has_data_type = 1;
    t->data_type = (int32_t)dt;
    t->n_dims = (size_t)shape->rank;
    t->dims = sv_array(sv, (size_t)shape->rank, sizeof(int64_t));
    if (!t->dims) return NULL;
    for (int i = 0; i < shape->rank; i++) t->dims[i] = shape->dim[i];
    int64_t numel = at_shape_numel(shape);
    size_t bytes = (size_t)numel * at_dtype_size(dt);
    /* ONNX: a tensor with no elements has no data field at all. */
    if (bytes > 0) {
        t->has_raw_data = 1;
        t->raw_data.len = bytes;
        if (host_is_le()) {
            t->raw_data.data = (uint8_t *)data;
        } else {
            uint8_t *cp = pool_alloc(&sv->pl, bytes);
            if (!cp) return NULL;
            memcpy(cp, data, bytes);
            swap_bytes(cp, (size_t)numel, at_dtype_size(dt));
            t->raw_data.data = cp;
        }
    }
    return t;
}

static ValueInfoProto *save_value_info(saver *sv, at_val v) {
    const at_graph *g = sv->g;
    const at_value_rec *r = &g->vals[v];
    ValueInfoProto *vi = NEW(sv, ValueInfoProto);
    TypeProto *tp = NEW(sv, TypeProto);
    TypeTensor *tt = NEW(sv, TypeTensor);
    TensorShapeProto *sh = NEW(sv, TensorShapeProto);
    if (!vi || !tp || !tt || !sh) return NULL;
    vi->name = r->name;
    vi->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = (int32_t)r->dtype;
    tt->shape = sh; /* present even for scalars: an absent shape means unknown rank */
    sh->n_dim = (size_t)r->shape.rank;
    sh->dim = sv_array(sv, (size_t)r->shape.rank, sizeof(Dimension *));
    if (!sh->dim) return NULL;
    for (int i = 0; i < r->shape.rank; i++) {
        Dimension *d = NEW(sv, Dimension);
        if (!d) return NULL;
        int64_t x = r->shape.dim[i];
        if (x >= 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = x;
        } else {
            const char *nm = at_sym_name(g, x);
            if (nm && !is_anonymous_sym(nm)) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                d->dim_param = (char *)nm;
            }
        }
        sh->dim[i] = d;
    }
    return vi;
}

static AttributeProto *save_attr(saver *sv, const at_attr_rec *a) {
    AttributeProto *p = NEW(sv, AttributeProto);
    if (!p) return NULL;
    p->name = a->name;
    p->has_type = 1;
    p->type = (Onnx__AttributeProto__AttributeType)a->kind;
    switch (a->kind) {
    case AT_ATTR_FLOAT:
        p->has_f = 1;
        p->f = a->f;
        break;
    case AT_ATTR_INT:
        p->has_i = 1;
        p->i = a->i;
        break;
    case AT_ATTR_STRING:
        p->has_s = 1;
        p->s.data = (uint8_t *)(a->s ? a->s : "");
        p->s.len = strlen((const char *)p->s.data);
        break;
    case AT_ATTR_FLOATS:
        p->n_floats = (size_t)a->n;
        p->floats = a->floats;
        break;
    case AT_ATTR_INTS:
        p->n_ints = (size_t)a->n;
        p->ints = a->ints;
        break;
    case AT_ATTR_STRINGS:
        p->n_strings = (size_t)a->n;
        p->strings = sv_array(sv, (size_t)a->n, sizeof(ProtobufCBinaryData));
        if (!p->strings) return NULL;
        for (int i = 0; i < a->n; i++) {
            const char *x = a->strs && a->strs[i] ? a->strs[i] : "";
            p->strings[i].data = (uint8_t *)x;
            p->strings[i].len = strlen(x);
        }
        break;
    case AT_ATTR_TENSOR:
        if (!a->t) break;
        p->t = save_tensor(sv, NULL, a->t->dtype, &a->t->shape, a->t->data);
        if (!p->t) return NULL;
        break;
    default:
        break;
    }
    return p;
}

/* Ops of ai.attune that are the identity in the forward pass and differ
 * only in their gradient. An inference file writes them as ONNX Identity,
 * so ONNX Runtime runs the model. */
static bool is_identity_forward(const at_node_rec *n) {
    return n->domain && strcmp(n->domain, AT_DOMAIN_ATTUNE) == 0 &&
           (strcmp(n->op_type, "StopGradient") == 0 || strcmp(n->op_type, "GradientReversal") == 0);
}

static NodeProto *save_node(saver *sv, int idx, bool dup_name, bool inference) {
    const at_graph *g = sv->g;
    const at_node_rec *n = &g->nodes[idx];
    NodeProto *p = NEW(sv, NodeProto);
    if (!p) return NULL;
    p->op_type = n->op_type;
    p->domain = n->domain ? n->domain : (char *)"";
    /* ONNX Runtime rejects two nodes with the same non-empty name. */
    p->name = dup_name ? NULL : n->name;
    if (inference && is_identity_forward(n)) {
        p->op_type = (char *)"Identity";
        p->domain = (char *)"";
        p->n_input = 1;
        p->input = sv_array(sv, 1, sizeof(char *));
        p->n_output = 1;
        p->output = sv_array(sv, 1, sizeof(char *));
        if (!p->input || !p->output) return NULL;
        p->input[0] = g->vals[n->in[0]].name;
        p->output[0] = g->vals[n->out[0]].name;
        return p;
    }
    p->n_input = (size_t)n->n_in;
    p->input = sv_array(sv, (size_t)n->n_in, sizeof(char *));
    p->n_output = (size_t)n->n_out;
    p->output = sv_array(sv, (size_t)n->n_out, sizeof(char *));
    p->n_attribute = (size_t)n->n_attrs;
    p->attribute = sv_array(sv, (size_t)n->n_attrs, sizeof(AttributeProto *));
    if (!p->input || !p->output || !p->attribute) return NULL;
    for (int i = 0; i < n->n_in; i++)
        p->input[i] = n->in[i] == AT_NONE ? (char *)"" : g->vals[n->in[i]].name;
    for (int j = 0; j < n->n_out; j++)
        p->output[j] = n->out[j] == AT_NONE ? (char *)"" : g->vals[n->out[j]].name;
    for (int k = 0; k < n->n_attrs; k++)
        if (!(p->attribute[k] = save_attr(sv, &n->attrs[k]))) return NULL;
    return p;
}

static Entry *save_entry(saver *sv, const char *k, const char *v) {
    Entry *e = NEW(sv, Entry);
    if (e) {
        e->key = (char *)k;
        e->value = (char *)v;
    }
    return e;
}

/* Node order: creation order when it is topological (it always is for
 * graphs built through the builder), else a topological order. */
static at_status node_order(saver *sv, int *order) {
    const at_graph *g = sv->g;
    bool sorted = true;
    for (int i = 0; i < g->n_nodes && sorted; i++) {
        const at_node_rec *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] != AT_NONE && g->vals[n->in[k]].producer >= i) sorted = false;
    }
    if (sorted) {
        for (int i = 0; i < g->n_nodes; i++) order[i] = i;
        return AT_OK;
    }
    return at_graph_topo_order(g, order, sv->err);
}

typedef struct extra_meta {
    const char *key, *value;
} extra_meta;

static bool is_reserved_key(const char *k) {
    return strcmp(k, KEY_PARAMS) == 0 || strcmp(k, KEY_STATE) == 0;
}

static at_status build_model(saver *sv, const at_save_opts *o, const extra_meta *extra, int n_extra,
                             ModelProto **out) {
    const at_graph *g = sv->g;
    at_err *err = sv->err;
    if (g->status != AT_OK)
        return at_err_set(err, g->status, "cannot save a graph with a build error: %s", g->err);
    int nn = g->n_nodes, nv = g->n_vals;
    int *order = pool_alloc(&sv->pl, sizeof(int) * ((size_t)nn + 1));
    bool *need_node = pool_alloc(&sv->pl, (size_t)nn + 1);
    bool *need_val = pool_alloc(&sv->pl, (size_t)nv + 1);
    if (!order || !need_node || !need_val) return at_err_set(err, AT_E_NOMEM, "out of memory");
    at_status st = node_order(sv, order);
    if (st != AT_OK) return st;

    for (int v = 0; v < nv; v++) {
        const at_value_rec *r = &g->vals[v];
        if (strchr(r->name, '\n'))
            return at_err_set(err, AT_E_INVALID, "value name '%s' contains a newline", r->name);
        if ((r->kind == AT_VALUE_PARAM || r->kind == AT_VALUE_CONST || r->kind == AT_VALUE_STATE) &&
            (!r->data || !at_shape_is_concrete(&r->shape)))
            return at_err_set(err, AT_E_INVALID, "initializer '%s' has no data or a symbolic shape",
                              r->name);
    }
    if (o && o->inference) {
        for (int i = 0; i < g->n_outputs; i++) need_val[g->outputs[i]] = true;
        for (int k = nn - 1; k >= 0; k--) {
            const at_node_rec *n = &g->nodes[order[k]];
            for (int j = 0; j < n->n_out && !need_node[order[k]]; j++)
                if (n->out[j] != AT_NONE && need_val[n->out[j]]) need_node[order[k]] = true;
            if (!need_node[order[k]]) continue;
            int n_in = is_identity_forward(n) ? 1 : n->n_in;
            for (int i = 0; i < n_in; i++)
                if (n->in[i] != AT_NONE) need_val[n->in[i]] = true;
        }
    } else {
        for (int i = 0; i < nn; i++) need_node[i] = true;
        for (int v = 0; v < nv; v++) need_val[v] = true;
    }

    ModelProto *m = NEW(sv, ModelProto);
    GraphProto *gp = NEW(sv, GraphProto);
    if (!m || !gp) return at_err_set(err, AT_E_NOMEM, "out of memory");
    m->has_ir_version = 1;
    m->ir_version = AT_ONNX_IR_VERSION;
    m->producer_name = (char *)"attune";
    m->producer_version = (char *)AT_VERSION_STRING;
    m->graph = gp;
    m->n_opset_import = 2;
    m->opset_import = sv_array(sv, 2, sizeof(OpsetId *));
    OpsetId *o0 = NEW(sv, OpsetId), *o1 = NEW(sv, OpsetId);
    if (!m->opset_import || !o0 || !o1) return at_err_set(err, AT_E_NOMEM, "out of memory");
    o0->domain = (char *)"";
    o0->has_version = 1;
    o0->version = AT_ONNX_OPSET;
    o1->domain = (char *)AT_DOMAIN_ATTUNE;
    o1->has_version = 1;
    o1->version = AT_ATTUNE_OPSET;
    m->opset_import[0] = o0;
    m->opset_import[1] = o1;

    gp->name = (char *)(o && o->graph_name && *o->graph_name ? o->graph_name : "attune");

    /* inputs */
    gp->input = sv_array(sv, (size_t)g->n_inputs, sizeof(ValueInfoProto *));
    if (!gp->input) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < g->n_inputs; i++) {
        at_val v = g->inputs[i];
        if (!need_val[v]) continue;
        if (!(gp->input[gp->n_input++] = save_value_info(sv, v)))
            return at_err_set(err, AT_E_NOMEM, "out of memory");
    }

    /* initializers, and the kind lists */
    sbuf params = {0}, state = {0};
    gp->initializer = sv_array(sv, (size_t)nv, sizeof(TensorProto *));
    if (!gp->initializer) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int v = 0; v < nv; v++) {
        const at_value_rec *r = &g->vals[v];
        if (!need_val[v] || !r->data) continue;
        if (r->kind != AT_VALUE_PARAM && r->kind != AT_VALUE_CONST && r->kind != AT_VALUE_STATE)
            continue;
        TensorProto *t = save_tensor(sv, r->name, r->dtype, &r->shape, r->data);
        if (!t) break;
        gp->initializer[gp->n_initializer++] = t;
        if (r->kind == AT_VALUE_PARAM)
            sb_add(&params, "%s%d %s", params.n ? "\n" : "", r->group, r->name);
        else if (r->kind == AT_VALUE_STATE)
            sb_add(&state, "%s%s", state.n ? "\n" : "", r->name);
    }
    char *params_s = params.s ? pool_strdup(&sv->pl, params.s) : NULL;
    char *state_s = state.s ? pool_strdup(&sv->pl, state.s) : NULL;
    bool lists_oom = params.oom || state.oom || (params.s && !params_s) || (state.s && !state_s);
    free(params.s);
    free(state.s);
    if (sv->pl.oom || lists_oom) return at_err_set(err, AT_E_NOMEM, "out of memory");

    /* nodes */
    gp->node = sv_array(sv, (size_t)nn, sizeof(NodeProto *));
    strmap names = {0};
    if (!gp->node || !sm_init(&names, (size_t)nn)) {
        sm_free(&names);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    for (int k = 0; k < nn; k++) {
        int i = order[k];
        if (!need_node[i]) continue;
        const char *nm = g->nodes[i].name;
        bool dup = !nm || !*nm || !sm_put(&names, nm, i, NULL);
        NodeProto *p = save_node(sv, i, dup, o && o->inference);
        if (!p) break;
        gp->node[gp->n_node++] = p;
    }
    sm_free(&names);
    if (sv->pl.oom) return at_err_set(err, AT_E_NOMEM, "out of memory");

    /* outputs */
    gp->output = sv_array(sv, (size_t)g->n_outputs, sizeof(ValueInfoProto *));
    if (!gp->output) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < g->n_outputs; i++)
        if (!(gp->output[gp->n_output++] = save_value_info(sv, g->outputs[i])))
            return at_err_set(err, AT_E_NOMEM, "out of memory");

    /* metadata: the graph's own keys (minus those regenerated here or given
     * by the caller), then the kind lists, then the caller's keys */
    size_t cap = (size_t)g->n_meta + (size_t)n_extra + 2;
    m->metadata_props = sv_array(sv, cap, sizeof(Entry *));
    if (!m->metadata_props) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < g->n_meta; i++) {
        const char *k = g->meta_keys[i];
        bool skip = is_reserved_key(k);
        for (int e = 0; e < n_extra && !skip; e++) skip = strcmp(extra[e].key, k) == 0;
        if (skip) continue;
        m->metadata_props[m->n_metadata_props++] = save_entry(sv, k, g->meta_vals[i]);
    }
    if (params_s) m->metadata_props[m->n_metadata_props++] = save_entry(sv, KEY_PARAMS, params_s);
    if (state_s) m->metadata_props[m->n_metadata_props++] = save_entry(sv, KEY_STATE, state_s);
    for (int e = 0; e < n_extra; e++)
        m->metadata_props[m->n_metadata_props++] = save_entry(sv, extra[e].key, extra[e].value);
    if (sv->pl.oom) return at_err_set(err, AT_E_NOMEM, "out of memory");
    *out = m;
    return AT_OK;
}

static at_status save_bytes_ex(const at_graph *g, const at_save_opts *o, const extra_meta *extra,
                               int n_extra, void **buf, size_t *len, at_err *err) {
    if (!g || !buf || !len) return at_err_set(err, AT_E_INVALID, "at_graph_save: NULL argument");
    *buf = NULL;
    *len = 0;
    saver sv = {.g = g, .err = err};
    ModelProto *m = NULL;
    at_status st = build_model(&sv, o, extra, n_extra, &m);
    if (st == AT_OK) {
        size_t n = onnx__model_proto__get_packed_size(m);
        if (n > MAX_FILE_BYTES) {
            st = at_err_set(err, AT_E_UNSUPPORTED,
                            "the model needs %zu bytes; one protobuf message holds at most 2 GiB",
                            n);
        } else {
            uint8_t *b = malloc(n ? n : 1);
            if (!b) {
                st = at_err_set(err, AT_E_NOMEM, "out of memory for %zu bytes", n);
            } else {
                size_t w = onnx__model_proto__pack(m, b);
                if (w != n) {
                    free(b);
                    st = at_err_set(err, AT_E_INTERNAL, "packed %zu bytes, expected %zu", w, n);
                } else {
                    *buf = b;
                    *len = n;
                }
            }
        }
    }
    pool_free(&sv.pl);
    return st;
}

at_status at_graph_save_bytes(const at_graph *g, const at_save_opts *opts, void **buf, size_t *len,
                              at_err *err) {
    return save_bytes_ex(g, opts, NULL, 0, buf, len, err);
}

static at_status write_fd(int fd, const char *name, const void *buf, size_t len, at_err *err) {
    const unsigned char *p = buf;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left > (1u << 30) ? (1u << 30) : left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return at_err_set(err, AT_E_IO, "%s: write failed: %s", name,
                              w < 0 ? strerror(errno) : "no progress");
        p += w;
        left -= (size_t)w;
    }
    return AT_OK;
}

/* A target that exists but is not a regular file (/dev/null, /dev/full, a FIFO) is written
 * in place: renaming over it would replace the device node itself, which root may do. */
static at_status write_in_place(const char *path, const void *buf, size_t len, at_err *err) {
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) return at_err_set(err, AT_E_IO, "%s: cannot open: %s", path, strerror(errno));
    at_status st = write_fd(fd, path, buf, len, err);
    if (close(fd) != 0 && st == AT_OK)
        st = at_err_set(err, AT_E_IO, "%s: close failed: %s", path, strerror(errno));
    return st;
}

/* Gives the anonymous file fd (O_TMPFILE) the name `name`; fails with EEXIST where it is
 * taken. */
static int link_fd(int fd, const char *name) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0) return 0;
#ifdef AT_EMPTY_PATH
    /* Without /proc: needs CAP_DAC_READ_SEARCH. */
    if (errno == ENOENT && linkat(fd, "", AT_FDCWD, name, AT_EMPTY_PATH) == 0) return 0;
#endif
    return -1;
}

/* Names the complete anonymous file fd: path itself when it is free (a new checkpoint: no
 * moment at all where a kill leaves a stray file), else a temporary name beside it (*renamed
 * set) that the caller renames over path. Only a kill between that link and the rename leaves
 * a stray file, and a complete one; a named temporary file would be left half written by a
 * kill at any point of the write. */
static bool link_tmpfile(int fd, const char *path, char *tmp, size_t cap, bool *renamed) {
    static unsigned counter;
    *renamed = false;
    if (link_fd(fd, path) == 0) return true;
    if (errno != EEXIST) return false;
    for (int tries = 0; tries < 100; tries++) {
        snprintf(tmp, cap, "%s.tmp%ld.%u", path, (long)getpid(), counter++);
        if (link_fd(fd, tmp) == 0) return *renamed = true;
        if (errno != EEXIST) return false;
    }
    return false;
}

/* Writes buf to path through a temporary file in the same directory, so the rename is atomic,
 * with both the file and the directory synced. The temporary file is anonymous (O_TMPFILE)
 * where the file system allows, so a killed writer leaves nothing behind. */
static at_status write_atomic(const char *path, const void *buf, size_t len, at_err *err) {
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return at_err_set(err, AT_E_IO, "%s: is a folder", path);
        if (!S_ISREG(sb.st_mode)) return write_in_place(path, buf, len, err);
    }
    size_t pl = strlen(path);
    size_t cap = pl + 48;
    char *tmp = malloc(cap);
    char *dir = malloc(pl + 2);
    if (!tmp || !dir) {
        free(tmp);
        free(dir);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    memcpy(dir, path, pl + 1);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    at_status st = AT_OK;
    bool anon = false;
    int fd = -1;
#ifdef O_TMPFILE
    fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    anon = fd >= 0;
#endif
    if (fd < 0) {
        snprintf(tmp, cap, "%s.tmpXXXXXX", path);
        fd = mkstemp(tmp);
    }
    if (fd < 0) {
        st = at_err_set(err, AT_E_IO, "%s: cannot create a temporary file: %s", path,
                        strerror(errno));
        goto out;
    }
    const char *name = anon ? path : tmp;
    st = write_fd(fd, name, buf, len, err);
    /* A model file is an ordinary document, whatever the temporary file was created with. */
    if (st == AT_OK && fchmod(fd, 0644) != 0)
        st = at_err_set(err, AT_E_IO, "%s: chmod failed: %s", name, strerror(errno));
    if (st == AT_OK && fsync(fd) != 0)
        st = at_err_set(err, AT_E_IO, "%s: fsync failed: %s", name, strerror(errno));
    /* Whether tmp names our file: renamed over path at the end, removed on failure. */
    bool named = !anon;
    if (st == AT_OK && anon && !link_tmpfile(fd, path, tmp, cap, &named))
        st = at_err_set(err, AT_E_IO, "%s: cannot name the temporary file: %s", path,
                        strerror(errno));
    /* An anonymous file is renamed before it is closed: the moment where a kill leaves it
     * under the temporary name is two system calls long. */
    if (st == AT_OK && anon && named) {
        if (rename(tmp, path) != 0)
            st = at_err_set(err, AT_E_IO, "%s: rename from %s failed: %s", path, tmp,
                            strerror(errno));
        else
            named = false;
    }
    if (close(fd) != 0 && st == AT_OK)
        st = at_err_set(err, AT_E_IO, "%s: close failed: %s", name, strerror(errno));
    if (st == AT_OK && named) {
        if (rename(tmp, path) != 0)
            st = at_err_set(err, AT_E_IO, "%s: rename from %s failed: %s", path, tmp,
                            strerror(errno));
        else
            named = false;
    }
    if (st != AT_OK) {
        if (named) unlink(tmp);
        goto out;
    }
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd); /* best effort: some file systems refuse fsync on a directory */
        close(dfd);
    }
out:
    free(tmp);
    free(dir);
    return st;
}

static at_status save_ex(const at_graph *g, const char *path, const at_save_opts *o,
                         const extra_meta *extra, int n_extra, at_err *err) {
    if (!path) return at_err_set(err, AT_E_INVALID, "at_graph_save: NULL path");
    void *buf = NULL;
    size_t len = 0;
    at_status st = save_bytes_ex(g, o, extra, n_extra, &buf, &len, err);
    if (st != AT_OK) return st;
    st = write_atomic(path, buf, len, err);
    free(buf);
    return st;
}

at_status at_graph_save(const at_graph *g, const char *path, const at_save_opts *opts,
                        at_err *err) {
    return save_ex(g, path, opts, NULL, 0, err);
}

at_status at_model_save(const at_graph *g, const char *path, at_err *err) {
    at_save_opts o = {.inference = true};
    return save_ex(g, path, &o, NULL, 0, err);
}

at_status at_checkpoint_save(const at_graph *g, const at_checkpoint_info *info, const char *path,
                             at_err *err) {
    if (!info) return at_err_set(err, AT_E_INVALID, "at_checkpoint_save: NULL info");
    char step[32], epoch[32], phase[32], seed[32];
    snprintf(step, sizeof step, "%llu", (unsigned long long)info->step);
    snprintf(epoch, sizeof epoch, "%lld", (long long)info->epoch);
    snprintf(phase, sizeof phase, "%d", (int)info->phase);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)info->rng_seed);
    extra_meta ex[] = {{KEY_STEP, step}, {KEY_EPOCH, epoch}, {KEY_PHASE, phase}, {KEY_SEED, seed}};
    return save_ex(g, path, NULL, ex, 4, err);
}

/* ======================================================================
 * Loading
 * ====================================================================== */

/* protobuf-c allocates while it parses; the budget bounds what a hostile
 * file can make it ask for. A real model needs about its own size (the
 * weights) plus a few times the size of its graph structure; the worst
 * legitimate case, a shape dim of 4 bytes, becomes a 56-byte struct. A
 * 2-byte empty submessage repeated is what the cap is for. */
#define PARSE_BUDGET(len) ((len)*32 + ((size_t)16 << 20))
typedef struct budget {
    size_t left;
    bool exceeded;
} budget;

static void *budget_alloc(void *data, size_t size) {
    budget *b = data;
    if (size > b->left) {
        b->exceeded = true;
        return NULL;
    }
    b->left -= size;
    return malloc(size ? size : 1);
}

static void budget_free(void *data, void *p) {
    (void)data;
    free(p);
}

enum { DEF_NONE = -3, DEF_INPUT = -2, DEF_INIT = -1 };

typedef struct loader {
    at_graph *g;
    const ModelProto *m;
    const GraphProto *gp;
    at_err *err;
    pool scratch;         /* per-node attribute conversions */
    strmap opsets;        /* domain -> index into m->opset_import */
    strmap defs;          /* value name -> DEF_INIT, DEF_INPUT, or k: output of node k */
    bool want_checkpoint; /* consume the checkpoint keys into info */
    at_checkpoint_info *info;
    int64_t onnx_opset;           /* the file's default-domain opset (0 when it declares none) */
    bool fold_constants;          /* Constant nodes become initializers (files of other tools) */
    char quoted[4][AT_QUOTE_CAP]; /* q(): names from the file, quoted for one message */
    unsigned n_quoted;
} loader;

static at_status fmt_err(loader *L, at_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Every message passes through at_msg_escape: the builder's messages, and any this file puts
 * together, may carry bytes of a corrupt file that q() did not see. */
static at_status fmt_err(loader *L, at_status code, const char *fmt, ...) {
    if (L->err) {
        va_list ap;
        va_start(ap, fmt);
        L->err->code = code;
        vsnprintf(L->err->msg, sizeof L->err->msg, fmt, ap);
        va_end(ap);
        at_msg_escape(L->err->msg, sizeof L->err->msg);
    }
    return code;
}

static const char *nz(const char *s) {
    return s ? s : "";
}

/* A name or string from the file, for a message: escaped and cut (graph/quote.h). Up to four
 * are in use at once, within one message. */
static const char *q(loader *L, const char *s) {
    return at_quote(L->quoted[L->n_quoted++ % 4], s);
}

/* Checks dims read from a file: rank, each dim, and the byte size, before
 * any of it is used for an allocation. */
static at_status check_dims(loader *L, const char *what, size_t n_dims, const int64_t *dims,
                            at_dtype dt, at_shape *shape, size_t *bytes) {
    if (n_dims > AT_MAX_RANK)
        return fmt_err(L, AT_E_FORMAT, "%s: rank %zu exceeds the maximum %d", what, n_dims,
                       AT_MAX_RANK);
    int64_t numel = 1;
    bool zero = false;
    for (size_t i = 0; i < n_dims; i++) {
        if (dims[i] < 0)
            return fmt_err(L, AT_E_FORMAT, "%s: dim %zu is negative (%lld)", what, i,
                           (long long)dims[i]);
        if (dims[i] > MAX_DIM)
            return fmt_err(L, AT_E_FORMAT, "%s: dimension too large (dim %zu is %lld, limit 2^31)",
                           what, i, (long long)dims[i]);
        if (dims[i] == 0)
            zero = true;
        else if (!zero && numel > MAX_TENSOR_BYTES / dims[i])
            return fmt_err(L, AT_E_FORMAT, "%s: dimension too large (more than 2^34 elements)",
                           what);
        else if (!zero)
            numel *= dims[i];
    }
    if (zero) numel = 0;
    if (numel * (int64_t)at_dtype_size(dt) > MAX_TENSOR_BYTES)
        return fmt_err(L, AT_E_FORMAT, "%s: dimension too large (%lld elements of %zu bytes)", what,
                       (long long)numel, at_dtype_size(dt));
    shape->rank = (int32_t)n_dims;
    for (size_t i = 0; i < n_dims; i++) shape->dim[i] = dims[i];
    *bytes = (size_t)numel * at_dtype_size(dt);
    return AT_OK;
}

static at_status check_dtype(loader *L, const char *what, bool has, int32_t t, at_dtype *dt) {
    if (!has || t == 0) return fmt_err(L, AT_E_FORMAT, "%s: missing data type", what);
    if (!at_dtype_valid(t))
        return fmt_err(L, AT_E_UNSUPPORTED, "%s: data type %s (%d) is not supported by attune",
                       what, onnx_type_name(t), (int)t);
    *dt = (at_dtype)t;
    return AT_OK;
}

/* A TensorProto as a host tensor: data points into the message (raw_data
 * on a little-endian host) or into scratch (typed fields, byte swaps). */
static at_status read_tensor(loader *L, const TensorProto *t, const char *what, at_tensor *out) {
    at_dtype dt = AT_UNDEFINED;
    at_status st = check_dtype(L, what, t->has_data_type, t->data_type, &dt);
    if (st != AT_OK) return st;
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return fmt_err(L, AT_E_UNSUPPORTED, "%s: external data is not supported", what);
    size_t bytes = 0;
    at_shape shape;
    st = check_dims(L, what, t->n_dims, t->dims, dt, &shape, &bytes);
    if (st != AT_OK) return st;
    size_t numel = bytes / at_dtype_size(dt);
    int fields = (t->has_raw_data && t->raw_data.len > 0) + (t->n_float_data > 0) +
                 (t->n_int32_data > 0) + (t->n_int64_data > 0) + (t->n_string_data > 0) +
                 (t->n_double_data > 0) + (t->n_uint64_data > 0);
    if (fields > 1)
        return fmt_err(L, AT_E_FORMAT, "%s: data is stored in %d fields; exactly one is allowed",
                       what, fields);
    out->dtype = dt;
    out->shape = shape;
    out->data = NULL;
    if (numel == 0) {
        if (fields)
            return fmt_err(L, AT_E_FORMAT, "%s: a tensor with no elements carries data", what);
        return AT_OK;
    }
    if (!fields) return fmt_err(L, AT_E_FORMAT, "%s: no data (%zu bytes expected)", what, bytes);
    char sb[128];
    if (t->has_raw_data && t->raw_data.len > 0) {
        if (t->raw_data.len != bytes)
            return fmt_err(L, AT_E_FORMAT, "%s: raw_data has %zu bytes, but %s%s needs %zu", what,
                           t->raw_data.len, at_dtype_name(dt), at_shape_str(&shape, sb, sizeof sb),
                           bytes);
        if (host_is_le()) {
            out->data = t->raw_data.data;
        } else {
            void *cp = pool_alloc(&L->scratch, bytes);
            if (!cp) return fmt_err(L, AT_E_NOMEM, "%s: out of memory", what);
            memcpy(cp, t->raw_data.data, bytes);
            swap_bytes(cp, numel, at_dtype_size(dt));
            out->data = cp;
        }
        return AT_OK;
    }
    /* Typed fields, as onnx.helper.make_tensor writes them. */
    size_t have = 0;
    const char *field = NULL;
    bool ok = false;
    if (t->n_float_data) have = t->n_float_data, field = "float_data", ok = dt == AT_F32;
    if (t->n_int64_data) have = t->n_int64_data, field = "int64_data", ok = dt == AT_I64;
    if (t->n_int32_data)
        have = t->n_int32_data, field = "int32_data",
        ok = dt == AT_I32 || dt == AT_I8 || dt == AT_U8 || dt == AT_BOOL || dt == AT_F16 ||
             dt == AT_BF16;
    if (t->n_string_data) have = t->n_string_data, field = "string_data";
    if (t->n_double_data) have = t->n_double_data, field = "double_data";
    if (t->n_uint64_data) have = t->n_uint64_data, field = "uint64_data";
    if (!ok)
        return fmt_err(L, AT_E_FORMAT, "%s: values of data type %s cannot be stored in %s", what,
                       onnx_type_name((int)dt), field);
    if (have != numel)
        return fmt_err(L, AT_E_FORMAT, "%s: %s has %zu values, but %s%s needs %zu", what, field,
                       have, at_dtype_name(dt), at_shape_str(&shape, sb, sizeof sb), numel);
    unsigned char *cp = pool_alloc(&L->scratch, bytes);
    if (!cp) return fmt_err(L, AT_E_NOMEM, "%s: out of memory", what);
    if (t->n_float_data)
        memcpy(cp, t->float_data, bytes);
    else if (t->n_int64_data)
        memcpy(cp, t->int64_data, bytes);
    else
        for (size_t i = 0; i < numel; i++) {
            int32_t x = t->int32_data[i];
            switch (dt) {
            case AT_I32:
                ((int32_t *)cp)[i] = x;
                break;
            case AT_F16:
            case AT_BF16:
                ((uint16_t *)cp)[i] = (uint16_t)x;
                break;
            default:
                cp[i] = (unsigned char)x;
                break;
            }
        }
    out->data = cp;
    return AT_OK;
}

/* A ValueInfoProto's tensor type. Unknown dims become fresh symbols. */
static at_status read_value_type(loader *L, const ValueInfoProto *vi, const char *what,
                                 bool need_shape, at_dtype *dt, at_shape *shape, bool *has_shape) {
    const TypeProto *tp = vi->type;
    if (!tp) return fmt_err(L, AT_E_FORMAT, "%s: missing type", what);
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return fmt_err(L, AT_E_UNSUPPORTED, "%s: not a tensor type (attune has only tensors)",
                       what);
    const TypeTensor *tt = tp->tensor_type;
    at_status st = check_dtype(L, what, tt->has_elem_type, tt->elem_type, dt);
    if (st != AT_OK) return st;
    *has_shape = tt->shape != NULL;
    if (!tt->shape) {
        if (need_shape)
            return fmt_err(L, AT_E_FORMAT, "%s: missing shape (attune needs a static rank)", what);
        return AT_OK;
    }
    const TensorShapeProto *sp = tt->shape;
    if (sp->n_dim > AT_MAX_RANK)
        return fmt_err(L, AT_E_FORMAT, "%s: rank %zu exceeds the maximum %d", what, sp->n_dim,
                       AT_MAX_RANK);
    shape->rank = (int32_t)sp->n_dim;
    for (size_t i = 0; i < sp->n_dim; i++) {
        const Dimension *d = sp->dim[i];
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (d->dim_value < 0)
                return fmt_err(L, AT_E_FORMAT, "%s: dim %zu is negative (%lld)", what, i,
                               (long long)d->dim_value);
            if (d->dim_value > MAX_DIM)
                return fmt_err(L, AT_E_FORMAT,
                               "%s: dimension too large (dim %zu is %lld, limit 2^31)", what, i,
                               (long long)d->dim_value);
            shape->dim[i] = d->dim_value;
        } else if (!need_shape) {
            shape->dim[i] = -1; /* only compared, never stored */
        } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                   d->dim_param && *d->dim_param) {
            shape->dim[i] = at_sym(L->g, d->dim_param);
        } else {
            shape->dim[i] = at_sym_fresh(L->g);
        }
    }
    if (L->g->status != AT_OK) return fmt_err(L, L->g->status, "%s: %s", what, L->g->err);
    return AT_OK;
}

/* The generated names of the builder ("Add_12", "Add_12:0", "v7") count up
 * from g->next_id; starting above every number in the file's names keeps
 * them from colliding with names the file already uses. */
static void bump_next_id(at_graph *g, const char *s) {
    if (!s) return;
    while (*s) {
        if (*s < '0' || *s > '9') {
            s++;
            continue;
        }
        long long v = 0;
        int digits = 0;
        for (; *s >= '0' && *s <= '9'; s++, digits++)
            if (digits < 10) v = v * 10 + (*s - '0');
        if (digits < 10 && v < INT_MAX / 2 && v >= g->next_id) g->next_id = (int)v + 1;
    }
}

/* Room for "node producing '<name>' (<op>)", both quoted. */
#define LABEL_CAP (2 * AT_QUOTE_CAP + 32)

static const char *node_label(const NodeProto *n, char *buf, size_t cap) {
    char name[AT_QUOTE_CAP], op[AT_QUOTE_CAP];
    at_quote(op, n->op_type);
    if (n->name && *n->name)
        snprintf(buf, cap, "node '%s' (%s)", at_quote(name, n->name), op);
    else if (n->n_output && n->output[0] && *n->output[0])
        snprintf(buf, cap, "node producing '%s' (%s)", at_quote(name, n->output[0]), op);
    else
        snprintf(buf, cap, "unnamed node (%s)", op);
    return buf;
}

static at_status load_opsets(loader *L) {
    const ModelProto *m = L->m;
    if (m->n_opset_import == 0)
        return fmt_err(L, AT_E_FORMAT, "missing opset_import (every ONNX model declares one)");
    if (!sm_init(&L->opsets, m->n_opset_import)) return fmt_err(L, AT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const OpsetId *o = m->opset_import[i];
        const char *d = nz(o->domain);
        if (strcmp(d, "ai.onnx") == 0) d = "";
        if (!o->has_version)
            return fmt_err(L, AT_E_FORMAT, "opset_import for domain '%s' has no version", q(L, d));
        if (!sm_put(&L->opsets, d, (int)i, NULL))
            return fmt_err(L, AT_E_FORMAT, "opset_import lists domain '%s' twice", q(L, d));
        if (!*d) {
            /* Before 7 the arithmetic ops broadcast through attributes and many ops carried
             * consumed_inputs; from 7 on, what changed is converted node by node
             * (upgrade_node). */
            if (o->version < MIN_ONNX_OPSET)
                return fmt_err(L, AT_E_UNSUPPORTED,
                               "default-domain opset %lld is too old: attune reads opsets "
                               "%d..%d",
                               (long long)o->version, MIN_ONNX_OPSET, AT_ONNX_OPSET);
            L->onnx_opset = o->version;
        } else if (strcmp(d, AT_DOMAIN_ATTUNE) == 0 && o->version > AT_ATTUNE_OPSET) {
            return fmt_err(L, AT_E_UNSUPPORTED,
                           "the file uses ai.attune opset %lld; this attune implements %d",
                           (long long)o->version, AT_ATTUNE_OPSET);
        }
    }
    return AT_OK;
}

static bool domain_declared(loader *L, const char *domain) {
    const char *d = nz(domain);
    if (strcmp(d, "ai.onnx") == 0) d = "";
    return sm_get(&L->opsets, d, -1) >= 0;
}

/* Metadata: checks keys, returns the kind lists and checkpoint keys, and
 * copies the rest into the graph. */
static at_status load_meta(loader *L, const char **params, const char **state) {
    const ModelProto *m = L->m;
    strmap keys;
    if (!sm_init(&keys, m->n_metadata_props)) return fmt_err(L, AT_E_NOMEM, "out of memory");
    at_status st = AT_OK;
    bool have_step = false;
    for (size_t i = 0; i < m->n_metadata_props && st == AT_OK; i++) {
        const Entry *e = m->metadata_props[i];
        const char *k = nz(e->key), *v = nz(e->value);
        if (!*k) {
            st = fmt_err(L, AT_E_FORMAT, "metadata entry %zu has an empty key", i);
            break;
        }
        if (!sm_put(&keys, k, (int)i, NULL)) {
            st = fmt_err(L, AT_E_FORMAT, "metadata key '%s' appears twice", q(L, k));
            break;
        }
        if (strcmp(k, KEY_PARAMS) == 0) {
            *params = v;
            continue;
        }
        if (strcmp(k, KEY_STATE) == 0) {
            *state = v;
            continue;
        }
        if (L->want_checkpoint) {
            const char *ck[] = {KEY_STEP, KEY_EPOCH, KEY_PHASE, KEY_SEED};
            int which = -1;
            for (int c = 0; c < 4; c++)
                if (strcmp(k, ck[c]) == 0) which = c;
            if (which >= 0) {
                char *end;
                errno = 0;
                unsigned long long u = 0;
                long long s = 0;
                if (which == 0 || which == 3)
                    u = strtoull(v, &end, 10);
                else
                    s = strtoll(v, &end, 10);
                if (!*v || *end || errno || (which == 2 && (s < INT32_MIN || s > INT32_MAX)) ||
                    ((which == 0 || which == 3) && *v == '-')) {
                    st = fmt_err(L, AT_E_FORMAT, "metadata %s: '%s' is not a valid number", k,
                                 q(L, v));
                    break;
                }
                if (L->info) {
                    if (which == 0) L->info->step = u;
                    if (which == 1) L->info->epoch = s;
                    if (which == 2) L->info->phase = (int32_t)s;
                    if (which == 3) L->info->rng_seed = u;
                }
                if (which == 0) have_step = true;
                continue;
            }
        }
        if (at_graph_set_meta(L->g, k, v) != AT_OK)
            st = fmt_err(L, L->g->status, "metadata '%s': %s", q(L, k), L->g->err);
    }
    sm_free(&keys);
    if (st == AT_OK && L->want_checkpoint && !have_step)
        st = fmt_err(L, AT_E_FORMAT, "not a checkpoint: metadata key '%s' is missing", KEY_STEP);
    return st;
}

/* Marks the initializers named by "attune.params" / "attune.state". */
static at_status apply_kinds(loader *L, const char *list, bool params) {
    const char *key = params ? KEY_PARAMS : KEY_STATE;
    at_graph *g = L->g;
    int line = 0;
    const char *p = list;
    while (p && *p) {
        line++;
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char buf[1024];
        if (len >= sizeof buf)
            return fmt_err(L, AT_E_FORMAT, "metadata %s, line %d: too long", key, line);
        memcpy(buf, p, len);
        buf[len] = 0;
        p = eol ? eol + 1 : p + len;
        const char *name = buf;
        long group = 0;
        if (params) {
            char *end;
            errno = 0;
            group = strtol(buf, &end, 10);
            if (end == buf || *end != ' ' || errno || group < 0 || group > 31)
                return fmt_err(L, AT_E_FORMAT,
                               "metadata %s, line %d: expected '<group 0..31> <name>', got '%s'",
                               key, line, q(L, buf));
            name = end + 1;
        }
        at_val v = at_graph_find(g, name);
        if (v == AT_NONE || !g->vals[v].data)
            return fmt_err(L, AT_E_FORMAT, "metadata %s, line %d: '%s' is not an initializer", key,
                           line, q(L, name));
        if (g->vals[v].kind != AT_VALUE_CONST)
            return fmt_err(L, AT_E_FORMAT, "metadata %s, line %d: '%s' is listed twice", key, line,
                           q(L, name));
        g->vals[v].kind = params ? AT_VALUE_PARAM : AT_VALUE_STATE;
        g->vals[v].group = (int)group;
    }
    return AT_OK;
}

static at_status load_initializers(loader *L) {
    const GraphProto *gp = L->gp;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const TensorProto *t = gp->initializer[i];
        char what[256];
        if (!t->name || !*t->name) return fmt_err(L, AT_E_FORMAT, "initializer %zu has no name", i);
        snprintf(what, sizeof what, "initializer '%s'", q(L, t->name));
        if (!sm_put(&L->defs, t->name, DEF_INIT, NULL))
            return fmt_err(L, AT_E_FORMAT, "%s is defined twice", what);
        at_tensor tv;
        at_status st = read_tensor(L, t, what, &tv);
        if (st != AT_OK) return st;
        if (at_const(L->g, t->name, tv.dtype, tv.shape, tv.data) == AT_NONE)
            return fmt_err(L, L->g->status, "%s: %s", what, L->g->err);
        pool_free(&L->scratch);
    }
    return AT_OK;
}

static at_status load_inputs(loader *L) {
    const GraphProto *gp = L->gp;
    for (size_t i = 0; i < gp->n_input; i++) {
        const ValueInfoProto *vi = gp->input[i];
        char what[256];
        if (!vi->name || !*vi->name)
            return fmt_err(L, AT_E_FORMAT, "graph input %zu has no name", i);
        snprintf(what, sizeof what, "graph input '%s'", q(L, vi->name));
        int had;
        if (!sm_put(&L->defs, vi->name, DEF_INPUT, &had)) {
            /* IR < 4 style: an initializer listed as an input is an
             * overridable default; attune keeps it an initializer. */
            if (had == DEF_INIT) continue;
            return fmt_err(L, AT_E_FORMAT, "%s is listed twice", what);
        }
        at_dtype dt;
        at_shape shape;
        bool has_shape;
        at_status st = read_value_type(L, vi, what, true, &dt, &shape, &has_shape);
        if (st != AT_OK) return st;
        if (at_input(L->g, vi->name, dt, shape) == AT_NONE)
            return fmt_err(L, L->g->status, "%s: %s", what, L->g->err);
    }
    return AT_OK;
}

/* Node order: the file's when it is topological (ONNX requires it), else
 * a topological order that stays as close to it as possible. Reports
 * undefined inputs and cycles. */
static at_status order_nodes(loader *L, int *order) {
    const GraphProto *gp = L->gp;
    size_t nn = gp->n_node;
    char lb[LABEL_CAP];
    /* outputs: defined once across the whole graph */
    for (size_t i = 0; i < nn; i++) {
        const NodeProto *n = gp->node[i];
        for (size_t j = 0; j < n->n_output; j++) {
            const char *o = n->output[j];
            if (!*o) continue;
            int had;
            if (!sm_put(&L->defs, o, (int)i, &had))
                return fmt_err(L, AT_E_FORMAT, "%s: output '%s' is already defined %s",
                               node_label(n, lb, sizeof lb), q(L, o),
                               had >= 0 ? "by a node" : "as an input or initializer");
        }
    }
    int *indeg = calloc(nn + 1, sizeof(int));
    int *heap = malloc((nn + 1) * sizeof(int));
    /* consumers of each node's outputs, as edge lists */
    size_t n_edges = 0;
    for (size_t i = 0; i < nn; i++) n_edges += gp->node[i]->n_input;
    int *head = malloc((nn + 1) * sizeof(int));
    int *next = malloc((n_edges + 1) * sizeof(int));
    int *who = malloc((n_edges + 1) * sizeof(int));
    at_status st = AT_OK;
    if (!indeg || !heap || !head || !next || !who) {
        st = fmt_err(L, AT_E_NOMEM, "out of memory ordering %zu nodes", nn);
        goto done;
    }
    for (size_t i = 0; i < nn; i++) head[i] = -1;
    bool sorted = true;
    size_t e = 0;
    for (size_t i = 0; i < nn; i++) {
        const NodeProto *n = gp->node[i];
        for (size_t k = 0; k < n->n_input; k++) {
            const char *in = n->input[k];
            if (!*in) continue;
            int d = sm_get(&L->defs, in, DEF_NONE);
            if (d == DEF_NONE) {
                st = fmt_err(L, AT_E_FORMAT, "%s: input '%s' is not defined",
                             node_label(n, lb, sizeof lb), q(L, in));
                goto done;
            }
            if (d < 0) continue;
            if ((size_t)d >= i) sorted = false;
            indeg[i]++;
            who[e] = (int)i;
            next[e] = head[d];
            head[d] = (int)e++;
        }
    }
    if (sorted) {
        for (size_t i = 0; i < nn; i++) order[i] = (int)i;
        goto done;
    }
    /* Kahn's algorithm; a min-heap on the file position keeps the order
     * stable. */
    size_t hn = 0, out = 0;
#define HEAP_PUSH(x)                                                                               \
    do {                                                                                           \
        size_t c_ = hn++;                                                                          \
        heap[c_] = (x);                                                                            \
        while (c_ && heap[(c_ - 1) / 2] > heap[c_]) {                                              \
            int t_ = heap[c_];                                                                     \
            heap[c_] = heap[(c_ - 1) / 2];                                                         \
            heap[(c_ - 1) / 2] = t_;                                                               \
            c_ = (c_ - 1) / 2;                                                                     \
        }                                                                                          \
    } while (0)
    for (size_t i = 0; i < nn; i++)
        if (!indeg[i]) HEAP_PUSH((int)i);
    while (hn) {
        int top = heap[0];
        heap[0] = heap[--hn];
        for (size_t c = 0;;) {
            size_t l = 2 * c + 1, r = l + 1, s = c;
            if (l < hn && heap[l] < heap[s]) s = l;
            if (r < hn && heap[r] < heap[s]) s = r;
            if (s == c) break;
            int t = heap[c];
            heap[c] = heap[s];
            heap[s] = t;
            c = s;
        }
        order[out++] = top;
        for (int x = head[top]; x >= 0; x = next[x])
            if (--indeg[who[x]] == 0) HEAP_PUSH(who[x]);
    }
#undef HEAP_PUSH
    if (out != nn) {
        char list[512];
        size_t k = 0;
        int shown = 0;
        list[0] = 0;
        for (size_t i = 0; i < nn && k < sizeof list - 1; i++) {
            if (!indeg[i]) continue;
            if (shown == 6) {
                snprintf(list + k, sizeof list - k, ", ...");
                break;
            }
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", shown ? ", " : "",
                                  node_label(gp->node[i], lb, sizeof lb));
            shown++;
        }
        st = fmt_err(L, AT_E_FORMAT, "the graph has a cycle through %s", list);
    }
done:
    free(indeg);
    free(heap);
    free(head);
    free(next);
    free(who);
    return st;
}

/* Converts a node's attributes into the builder's form (scratch memory). */
static at_status read_attrs(loader *L, const NodeProto *n, const char *label, at_attr *out) {
    for (size_t k = 0; k < n->n_attribute; k++) {
        const AttributeProto *a = n->attribute[k];
        at_attr *d = &out[k];
        memset(d, 0, sizeof *d);
        if (!a->name || !*a->name)
            return fmt_err(L, AT_E_FORMAT, "%s: attribute %zu has no name", label, k);
        const char *an = q(L, a->name);
        for (size_t j = 0; j < k; j++)
            if (strcmp(n->attribute[j]->name, a->name) == 0)
                return fmt_err(L, AT_E_FORMAT, "%s: attribute '%s' appears twice", label, an);
        d->name = a->name;
        if (a->ref_attr_name)
            return fmt_err(L, AT_E_UNSUPPORTED, "%s: attribute '%s' refers to a function attribute",
                           label, an);
        if (!a->has_type || a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED)
            return fmt_err(L, AT_E_FORMAT, "%s: attribute '%s' has no type", label, an);
        char what[LABEL_CAP + AT_QUOTE_CAP + 32];
        switch (a->type) {
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
            d->kind = AT_ATTR_FLOAT;
            d->f = a->f;
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
            d->kind = AT_ATTR_INT;
            d->i = a->i;
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: {
            d->kind = AT_ATTR_STRING;
            char *s = pool_alloc(&L->scratch, a->s.len + 1);
            if (!s) return fmt_err(L, AT_E_NOMEM, "out of memory");
            if (a->s.len) memcpy(s, a->s.data, a->s.len);
            if (memchr(s, 0, a->s.len))
                return fmt_err(L, AT_E_FORMAT, "%s: string attribute '%s' contains a NUL byte",
                               label, an);
            d->s = s;
            break;
        }
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
            if (a->n_floats > INT_MAX)
                return fmt_err(L, AT_E_FORMAT, "%s: attribute '%s' is too long", label, an);
            d->kind = AT_ATTR_FLOATS;
            d->n = (int)a->n_floats;
            d->floats = a->floats;
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
            if (a->n_ints > INT_MAX)
                return fmt_err(L, AT_E_FORMAT, "%s: attribute '%s' is too long", label, an);
            d->kind = AT_ATTR_INTS;
            d->n = (int)a->n_ints;
            d->ints = a->ints;
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS: {
            if (a->n_strings > INT_MAX)
                return fmt_err(L, AT_E_FORMAT, "%s: attribute '%s' is too long", label, an);
            char **v = pool_alloc(&L->scratch, sizeof(char *) * (a->n_strings + 1));
            if (!v) return fmt_err(L, AT_E_NOMEM, "out of memory");
            for (size_t i = 0; i < a->n_strings; i++) {
                const ProtobufCBinaryData *b = &a->strings[i];
                if (b->len && memchr(b->data, 0, b->len))
                    return fmt_err(L, AT_E_FORMAT,
                                   "%s: string %zu of attribute '%s' contains a "
                                   "NUL byte",
                                   label, i, an);
                if (!(v[i] = pool_alloc(&L->scratch, b->len + 1)))
                    return fmt_err(L, AT_E_NOMEM, "out of memory");
                if (b->len) memcpy(v[i], b->data, b->len);
            }
            d->kind = AT_ATTR_STRINGS;
            d->n = (int)a->n_strings;
            d->strs = (const char *const *)v;
            break;
        }
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
            if (!a->t)
                return fmt_err(L, AT_E_FORMAT, "%s: tensor attribute '%s' has no tensor", label,
                               an);
            at_tensor *t = pool_alloc(&L->scratch, sizeof *t);
            if (!t) return fmt_err(L, AT_E_NOMEM, "out of memory");
            snprintf(what, sizeof what, "%s: attribute '%s'", label, an);
            at_status st = read_tensor(L, a->t, what, t);
            if (st != AT_OK) return st;
            d->kind = AT_ATTR_TENSOR;
            d->t = t;
            break;
        }
        default:
            return fmt_err(L, AT_E_UNSUPPORTED,
                           "%s: attribute '%s' has type %s (%d), which attune "
                           "does not support",
                           label, an, attr_type_name((int)a->type), (int)a->type);
        }
    }
    return AT_OK;
}

/* ---- Older opsets ----
 * attune's ops follow opset 21. A node of an older default-domain opset whose signature
 * differs is rewritten into the current form before it is added, so the graph (and any file
 * saved from it) holds only current-opset nodes:
 *   ReduceSum < 13, ReduceMean / ReduceMax < 18, Squeeze / Unsqueeze < 13: the `axes`
 *     attribute becomes the int64 input `axes`;
 *   Split < 13: the `split` attribute becomes the int64 input `split`;
 *   Slice < 10: the `starts`, `ends`, `axes` attributes become inputs;
 *   Clip < 11: the `min`, `max` attributes become scalar inputs;
 *   Dropout < 12: the `ratio` attribute is dropped (those opsets have no training mode:
 *     the op is the identity at inference);
 *   Softmax / LogSoftmax < 13: the input was coerced to 2-D at `axis` (default 1); when the
 *     axis is the last one that is the same as now, otherwise the node runs on a 2-D view
 *     and its output is reshaped back. */

/* What upgrade_node changed beyond the node's inputs and attributes. */
typedef struct upgrade {
    at_val restore_shape; /* reshape output 0 back to this value's shape; AT_NONE: no */
} upgrade;

static int attr_index(const at_attr *a, int n, const char *name) {
    for (int k = 0; k < n; k++)
        if (strcmp(a[k].name, name) == 0) return k;
    return -1;
}

static void attr_remove(at_attr *a, int *n, int k) {
    for (int j = k + 1; j < *n; j++) a[j - 1] = a[j];
    (*n)--;
}

static at_status builder_fail(loader *L, const char *label) {
    return fmt_err(L, L->g->status, "%s: %s", label, L->g->err);
}

/* Moves the ints attribute `name` to input `pos` as an int64 vector. */
static at_status attr_to_input(loader *L, const char *label, at_val *in, int *n_in, at_attr *attrs,
                               int *n_attrs, const char *name, int pos) {
    int k = attr_index(attrs, *n_attrs, name);
    if (k < 0) return AT_OK;
    if (attrs[k].kind != AT_ATTR_INTS)
        return fmt_err(L, AT_E_FORMAT, "%s: attribute '%s' must be ints in opset %lld", label, name,
                       (long long)L->onnx_opset);
    if (*n_in > pos && in[pos] != AT_NONE)
        return fmt_err(L, AT_E_FORMAT, "%s: '%s' is given both as an attribute and as input %d",
                       label, name, pos);
    for (int i = *n_in; i < pos; i++) in[i] = AT_NONE;
    in[pos] = at_const_i64s(L->g, attrs[k].n, attrs[k].ints);
    if (in[pos] == AT_NONE) return builder_fail(L, label);
    if (*n_in < pos + 1) *n_in = pos + 1;
    attr_remove(attrs, n_attrs, k);
    return AT_OK;
}

/* Softmax and LogSoftmax before 13: softmax over the 2-D coercion [d0*..*d(a-1), da*..]. */
static at_status upgrade_softmax(loader *L, const char *label, at_val *in, int n_in, at_attr *attrs,
                                 int *n_attrs, upgrade *u) {
    int k = attr_index(attrs, *n_attrs, "axis");
    if (k >= 0 && attrs[k].kind != AT_ATTR_INT) return AT_OK; /* the builder names the error */
    if (k < 0) {
        k = (*n_attrs)++;
        attrs[k] = AT_ATTR_I("axis", 1); /* the old default; 13 made it -1 */
    }
    if (n_in < 1 || in[0] == AT_NONE) return AT_OK;
    at_graph *g = L->g;
    at_shape xs = at_value_shape(g, in[0]);
    int a = at_norm_axis(attrs[k].i, xs.rank);
    if (a < 0 || a == xs.rank - 1) return AT_OK;
    int64_t q = 1, p = 1;
    bool q_known = true, p_known = true;
    for (int i = 0; i < xs.rank; i++) {
        bool *known = i < a ? &q_known : &p_known;
        int64_t *prod = i < a ? &q : &p;
        if (xs.dim[i] < 0)
            *known = false;
        else if (xs.dim[i] > 0 && *prod > INT64_MAX / xs.dim[i])
            return fmt_err(L, AT_E_SHAPE, "%s: the input has too many elements", label);
        else
            *prod *= xs.dim[i];
    }
    int64_t two[2];
    if (p_known && q_known && (p == 0 || q == 0)) {
        return AT_OK; /* no elements: nothing to normalize, the shape is what it is */
    } else if (p_known) {
        two[0] = -1, two[1] = p;
    } else if (q_known) {
        two[0] = q, two[1] = -1;
    } else {
        char sb[160];
        return fmt_err(L, AT_E_UNSUPPORTED,
                       "%s: opset %lld coerces the input %s to 2-D at axis %d, which needs "
                       "the dims on one side of the axis to be numbers",
                       label, (long long)L->onnx_opset, at_graph_shape_str(g, &xs, sb, sizeof sb),
                       a);
    }
    at_val flat = at_reshape(g, in[0], 2, two);
    if (flat == AT_NONE) return builder_fail(L, label);
    u->restore_shape = in[0];
    in[0] = flat;
    attrs[k].i = 1;
    return AT_OK;
}

/* Rewrites a node of an older default-domain opset into its current form (see above).
 * in has room for n->n_input + 4 entries, attrs for n->n_attribute + 1. */
static at_status upgrade_node(loader *L, const NodeProto *n, const char *label, at_val *in,
                              int *n_in, at_attr *attrs, int *n_attrs, upgrade *u) {
    u->restore_shape = AT_NONE;
    int64_t v = L->onnx_opset;
    const char *d = nz(n->domain);
    if (v == 0 || v >= 18 || (*d && strcmp(d, "ai.onnx") != 0)) return AT_OK;
    const char *op = n->op_type;
#define IS(name) (strcmp(op, name) == 0)
    if ((IS("ReduceSum") && v < 13) || ((IS("ReduceMean") || IS("ReduceMax")) && v < 18) ||
        ((IS("Squeeze") || IS("Unsqueeze")) && v < 13))
        return attr_to_input(L, label, in, n_in, attrs, n_attrs, "axes", 1);
    if (IS("Split") && v < 13) return attr_to_input(L, label, in, n_in, attrs, n_attrs, "split", 1);
    if (IS("Slice") && v < 10) {
        static const char *const names[3] = {"starts", "ends", "axes"};
        for (int i = 0; i < 3; i++) {
            at_status st = attr_to_input(L, label, in, n_in, attrs, n_attrs, names[i], i + 1);
            if (st != AT_OK) return st;
        }
        return AT_OK;
    }
    if (IS("Clip") && v < 11) {
        static const char *const names[2] = {"min", "max"};
        for (int i = 0; i < 2; i++) {
            int k = attr_index(attrs, *n_attrs, names[i]);
            if (k < 0) continue;
            if (attrs[k].kind != AT_ATTR_FLOAT)
                return fmt_err(L, AT_E_FORMAT, "%s: attribute '%s' must be a float in opset %lld",
                               label, names[i], (long long)v);
            if (*n_in > i + 1)
                return fmt_err(L, AT_E_FORMAT, "%s: opset %lld Clip has one input, not %d", label,
                               (long long)v, *n_in);
            for (int j = *n_in; j <= i; j++) in[j] = AT_NONE;
            in[i + 1] = at_const_f32(L->g, attrs[k].f);
            if (in[i + 1] == AT_NONE) return builder_fail(L, label);
            *n_in = i + 2;
            attr_remove(attrs, n_attrs, k);
        }
        return AT_OK;
    }
    if (IS("Dropout") && v < 12) {
        int k = attr_index(attrs, *n_attrs, "ratio");
        if (k >= 0) attr_remove(attrs, n_attrs, k);
        return AT_OK;
    }
    if ((IS("Softmax") || IS("LogSoftmax")) && v < 13)
        return upgrade_softmax(L, label, in, *n_in, attrs, n_attrs, u);
#undef IS
    return AT_OK;
}

/* Exporters (torch.onnx.export) compute shapes through chains like
 * Reshape(x, Concat(Unsqueeze(Gather(Shape(y), Constant), Constant), ...)). Shape inference
 * while building reads only initializers, so the Constant nodes of such a file become
 * constant initializers named as their outputs; the chain then has a known length and folds
 * when a session plans. Returns true when it did so. attune's own files keep their Constant
 * nodes, so that save -> load -> save gives the same bytes. */
static bool constant_to_initializer(loader *L, const NodeProto *n, const at_attr *attrs,
                                    int n_attrs, size_t n_out, at_status *st) {
    *st = AT_OK;
    const char *d = nz(n->domain);
    if (!L->fold_constants || strcmp(n->op_type, "Constant") != 0 ||
        (*d && strcmp(d, "ai.onnx") != 0) || n->n_input != 0 || n_out != 1 || !*n->output[0] ||
        n_attrs != 1)
        return false;
    const at_attr *a = &attrs[0];
    at_tensor t;
    int64_t len = a->n;
    if (strcmp(a->name, "value") == 0 && a->kind == AT_ATTR_TENSOR && a->t)
        t = *a->t;
    else if (strcmp(a->name, "value_float") == 0 && a->kind == AT_ATTR_FLOAT)
        t = (at_tensor){AT_F32, AT_SCALAR, (void *)&a->f};
    else if (strcmp(a->name, "value_floats") == 0 && a->kind == AT_ATTR_FLOATS)
        t = (at_tensor){AT_F32, at_shape_make(1, &len), (void *)a->floats};
    else if (strcmp(a->name, "value_int") == 0 && a->kind == AT_ATTR_INT)
        t = (at_tensor){AT_I64, AT_SCALAR, (void *)&a->i};
    else if (strcmp(a->name, "value_ints") == 0 && a->kind == AT_ATTR_INTS)
        t = (at_tensor){AT_I64, at_shape_make(1, &len), (void *)a->ints};
    else
        return false; /* the builder names what is wrong */
    if (at_const(L->g, n->output[0], t.dtype, t.shape, t.data) == AT_NONE) {
        char lb[LABEL_CAP];
        *st = builder_fail(L, node_label(n, lb, sizeof lb));
    }
    return true;
}

/* The builder's message names the node by its generated name ("node
 * 'Add_12' (Add)..."); name it as the file does. */
static at_status node_fail(loader *L, const char *label, const char *gen) {
    const char *msg = L->g->err;
    char pat[200];
    snprintf(pat, sizeof pat, "node '%s' (", gen);
    const char *hit = strstr(msg, pat);
    const char *close = hit ? strchr(hit + strlen(pat), ')') : NULL;
    if (!close) return fmt_err(L, L->g->status, "%s: %s", label, msg);
    return fmt_err(L, L->g->status, "%.*s%s%s", (int)(hit - msg), msg, label, close + 1);
}

static at_status load_nodes(loader *L) {
    const GraphProto *gp = L->gp;
    at_graph *g = L->g;
    size_t nn = gp->n_node;
    char lb[LABEL_CAP];
    /* Every unknown op at once, so one run shows what a file needs. */
    {
        enum { MAX_SHOWN = 24 };
        const NodeProto *shown[MAX_SHOWN];
        int n_shown = 0;
        char list[700];
        size_t k = 0;
        int bad = 0;
        list[0] = 0;
        for (size_t i = 0; i < nn; i++) {
            const NodeProto *n = gp->node[i];
            if (!n->op_type || !*n->op_type)
                return fmt_err(L, AT_E_FORMAT, "%s: empty op_type", node_label(n, lb, sizeof lb));
            if (!domain_declared(L, n->domain))
                return fmt_err(L, AT_E_FORMAT, "%s: domain '%s' is not declared in opset_import",
                               node_label(n, lb, sizeof lb), q(L, n->domain));
            if (n->n_input == 0 && n->n_output == 0)
                return fmt_err(L, AT_E_FORMAT, "%s: no inputs and no outputs",
                               node_label(n, lb, sizeof lb));
            if (at_op_lookup(n->op_type, nz(n->domain)) >= 0) continue;
            /* distinct (op, domain) pairs; only the listed ones are compared,
             * so a file of a million unknown nodes stays linear */
            bool seen = false;
            for (int j = 0; j < n_shown && !seen; j++)
                seen = strcmp(shown[j]->op_type, n->op_type) == 0 &&
                       strcmp(nz(shown[j]->domain), nz(n->domain)) == 0;
            if (seen) continue;
            if (n_shown == MAX_SHOWN) {
                bad++;
                continue;
            }
            shown[n_shown++] = n;
            if (k < sizeof list - 1) {
                if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx") != 0)
                    k += (size_t)snprintf(list + k, sizeof list - k, "%s%s (domain %s)",
                                          bad ? ", " : "", q(L, n->op_type), q(L, n->domain));
                else
                    k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", bad ? ", " : "",
                                          q(L, n->op_type));
            }
            bad++;
        }
        if (bad)
            return fmt_err(L, AT_E_UNSUPPORTED, "unknown op%s: %s%s", bad > 1 ? "s" : "", list,
                           bad > n_shown ? ", ..." : "");
    }
    int *order = malloc((nn + 1) * sizeof(int));
    if (!order) return fmt_err(L, AT_E_NOMEM, "out of memory");
    at_status st = order_nodes(L, order);
    for (size_t k = 0; k < nn && st == AT_OK; k++) {
        const NodeProto *n = gp->node[order[k]];
        node_label(n, lb, sizeof lb);
        if (n->n_input > 4096 || n->n_output > 4096 || n->n_attribute > 1024) {
            st = fmt_err(L, AT_E_FORMAT, "%s: too many inputs, outputs or attributes", lb);
            break;
        }
        /* room for what upgrade_node adds */
        at_val *in = pool_alloc(&L->scratch, sizeof(at_val) * (n->n_input + 4));
        at_val *out = pool_alloc(&L->scratch, sizeof(at_val) * (n->n_output + 1));
        at_attr *attrs = pool_alloc(&L->scratch, sizeof(at_attr) * (n->n_attribute + 1));
        if (!in || !out || !attrs) {
            st = fmt_err(L, AT_E_NOMEM, "out of memory");
            break;
        }
        for (size_t i = 0; i < n->n_input; i++) {
            in[i] = AT_NONE;
            if (*n->input[i]) in[i] = at_graph_find(g, n->input[i]);
            if (*n->input[i] && in[i] == AT_NONE) {
                st = fmt_err(L, AT_E_INTERNAL, "%s: input '%s' not found", lb, q(L, n->input[i]));
                break;
            }
        }
        if (st != AT_OK) break;
        st = read_attrs(L, n, lb, attrs);
        if (st != AT_OK) break;
        int n_in = (int)n->n_input, n_attrs = (int)n->n_attribute;
        /* Trailing omitted outputs are as good as absent. */
        size_t n_out = n->n_output;
        while (n_out > 1 && !*n->output[n_out - 1]) n_out--;
        if (constant_to_initializer(L, n, attrs, n_attrs, n_out, &st)) {
            pool_free(&L->scratch);
            if (st != AT_OK) break;
            continue;
        }
        upgrade up;
        st = upgrade_node(L, n, lb, in, &n_in, attrs, &n_attrs, &up);
        if (st != AT_OK) break;
        int gen_id = g->next_id;
        int idx =
            at_node_add(g, n->op_type, nz(n->domain), in, n_in, out, (int)n_out, attrs, n_attrs);
        if (idx < 0) {
            char gen[160];
            snprintf(gen, sizeof gen, "%s_%d", n->op_type, gen_id);
            int op = at_op_lookup(n->op_type, nz(n->domain));
            if (op >= 0) snprintf(gen, sizeof gen, "%s_%d", at_op_table[op]->name, gen_id);
            st = node_fail(L, lb, gen);
            break;
        }
        if (n->name && *n->name && at_node_rename(g, idx, n->name) != AT_OK) {
            st = fmt_err(L, g->status, "%s: %s", lb, g->err);
            break;
        }
        if (up.restore_shape != AT_NONE) {
            out[0] = at_reshape_to(g, out[0], at_shape_of(g, up.restore_shape));
            if (out[0] == AT_NONE) {
                st = builder_fail(L, lb);
                break;
            }
        }
        for (size_t j = 0; j < n_out; j++) {
            if (!*n->output[j]) continue;
            if (at_value_rename(g, out[j], n->output[j]) != AT_OK) {
                st = fmt_err(L, g->status, "%s: output '%s': %s", lb, q(L, n->output[j]), g->err);
                break;
            }
        }
        pool_free(&L->scratch);
    }
    free(order);
    return st;
}

static at_status load_outputs(loader *L) {
    const GraphProto *gp = L->gp;
    at_graph *g = L->g;
    for (size_t i = 0; i < gp->n_output; i++) {
        const ValueInfoProto *vi = gp->output[i];
        char what[256];
        if (!vi->name || !*vi->name)
            return fmt_err(L, AT_E_FORMAT, "graph output %zu has no name", i);
        snprintf(what, sizeof what, "graph output '%s'", q(L, vi->name));
        at_val v = at_graph_find(g, vi->name);
        if (v == AT_NONE) return fmt_err(L, AT_E_FORMAT, "%s is not defined", what);
        if (vi->type) {
            at_dtype dt;
            at_shape sh;
            bool has_shape;
            at_status st = read_value_type(L, vi, what, false, &dt, &sh, &has_shape);
            if (st != AT_OK) return st;
            const at_value_rec *r = &g->vals[v];
            bool bad = dt != r->dtype || (has_shape && sh.rank != r->shape.rank);
            for (int k = 0; has_shape && !bad && k < sh.rank; k++)
                bad = sh.dim[k] >= 0 && r->shape.dim[k] >= 0 && sh.dim[k] != r->shape.dim[k];
            if (bad) {
                char a[160], b[160];
                if (has_shape) {
                    size_t q = (size_t)snprintf(a, sizeof a, "[");
                    for (int k = 0; k < sh.rank && q < sizeof a; k++) {
                        if (sh.dim[k] >= 0)
                            q += (size_t)snprintf(a + q, sizeof a - q, "%s%lld", k ? "," : "",
                                                  (long long)sh.dim[k]);
                        else
                            q += (size_t)snprintf(a + q, sizeof a - q, "%s?", k ? "," : "");
                    }
                    if (q < sizeof a) snprintf(a + q, sizeof a - q, "]");
                } else {
                    snprintf(a, sizeof a, "[...]");
                }
                return fmt_err(L, AT_E_SHAPE,
                               "%s: the file declares %s%s, but the graph computes %s%s", what,
                               at_dtype_name(dt), a, at_dtype_name(r->dtype),
                               at_graph_shape_str(g, &r->shape, b, sizeof b));
            }
        }
        if (at_output(g, v) != AT_OK) return fmt_err(L, g->status, "%s: %s", what, g->err);
    }
    return AT_OK;
}

static at_status load_graph(loader *L) {
    const ModelProto *m = L->m;
    if (!m->has_ir_version || m->ir_version <= 0)
        return fmt_err(L, AT_E_FORMAT, "missing ir_version (not an ONNX model?)");
    if (!m->graph) return fmt_err(L, AT_E_FORMAT, "missing graph (not an ONNX model?)");
    L->gp = m->graph;
    L->fold_constants = !m->producer_name || strcmp(m->producer_name, "attune") != 0;
    const GraphProto *gp = L->gp;
    at_status st = load_opsets(L);
    if (st != AT_OK) return st;

    size_t n_defs = gp->n_initializer + gp->n_input;
    for (size_t i = 0; i < gp->n_node; i++) n_defs += gp->node[i]->n_output;
    if (!sm_init(&L->defs, n_defs)) return fmt_err(L, AT_E_NOMEM, "out of memory");

    /* Generated names must not collide with the file's. */
    for (size_t i = 0; i < gp->n_initializer; i++) bump_next_id(L->g, gp->initializer[i]->name);
    for (size_t i = 0; i < gp->n_input; i++) bump_next_id(L->g, gp->input[i]->name);
    for (size_t i = 0; i < gp->n_node; i++) {
        const NodeProto *n = gp->node[i];
        bump_next_id(L->g, n->name);
        for (size_t j = 0; j < n->n_output; j++) bump_next_id(L->g, n->output[j]);
    }

    const char *params = NULL, *state = NULL;
    if ((st = load_meta(L, &params, &state)) != AT_OK) return st;
    if ((st = load_initializers(L)) != AT_OK) return st;
    if ((st = apply_kinds(L, params, true)) != AT_OK) return st;
    if ((st = apply_kinds(L, state, false)) != AT_OK) return st;
    if ((st = load_inputs(L)) != AT_OK) return st;
    if ((st = load_nodes(L)) != AT_OK) return st;
    if ((st = load_outputs(L)) != AT_OK) return st;
    if (L->g->status != AT_OK) return fmt_err(L, L->g->status, "%s", L->g->err);
    return AT_OK;
}

static at_graph *load_ex(const void *buf, size_t len, bool ckpt, at_checkpoint_info *info,
                         at_err *err) {
    if (!buf && len) {
        at_err_set(err, AT_E_INVALID, "at_graph_load_bytes: NULL buffer");
        return NULL;
    }
    if (len == 0) {
        at_err_set(err, AT_E_FORMAT, "empty file (not an ONNX model)");
        return NULL;
    }
    if (len > MAX_FILE_BYTES) {
        at_err_set(err, AT_E_FORMAT, "%zu bytes: larger than one protobuf message can be (2 GiB)",
                   len);
        return NULL;
    }
    budget bud = {.left = PARSE_BUDGET(len)};
    ProtobufCAllocator alloc = {.alloc = budget_alloc, .free = budget_free, .allocator_data = &bud};
    ModelProto *m = onnx__model_proto__unpack(&alloc, len, buf);
    if (!m) {
        if (bud.exceeded)
            at_err_set(err, AT_E_FORMAT,
                       "parsing needs more memory than a %zu-byte model can (corrupt file?)", len);
        else
            at_err_set(err, AT_E_FORMAT,
                       "not an ONNX model: the protobuf parse failed (truncated or corrupt file, "
                       "or not protobuf)");
        return NULL;
    }
    loader L = {.m = m, .err = err, .want_checkpoint = ckpt, .info = info};
    if (info) memset(info, 0, sizeof *info);
    L.g = at_graph_new();
    at_status st = L.g ? load_graph(&L) : at_err_set(err, AT_E_NOMEM, "out of memory");
    pool_free(&L.scratch);
    sm_free(&L.opsets);
    sm_free(&L.defs);
    onnx__model_proto__free_unpacked(m, &alloc);
    if (st != AT_OK) {
        at_graph_free(L.g);
        return NULL;
    }
    L.g->version++;
    return L.g;
}

at_graph *at_graph_load_bytes(const void *buf, size_t len, at_err *err) {
    return load_ex(buf, len, false, NULL, err);
}

static at_graph *load_file(const char *path, bool ckpt, at_checkpoint_info *info, at_err *err) {
    if (!path) {
        at_err_set(err, AT_E_INVALID, "NULL path");
        return NULL;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        at_err_set(err, AT_E_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        at_err_set(err, AT_E_IO, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        at_err_set(err, AT_E_IO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (sb.st_size == 0 || (uint64_t)sb.st_size > MAX_FILE_BYTES) {
        at_err_set(err, AT_E_FORMAT, "%s: %s", path,
                   sb.st_size == 0 ? "empty file (not an ONNX model)"
                                   : "larger than one protobuf message can be (2 GiB)");
        close(fd);
        return NULL;
    }
    size_t len = (size_t)sb.st_size;
    unsigned char *buf = malloc(len);
    if (!buf) {
        at_err_set(err, AT_E_NOMEM, "%s: out of memory for %zu bytes", path, len);
        close(fd);
        return NULL;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != len) {
        at_err_set(err, AT_E_IO, "%s: short read (%zu of %zu bytes)", path, got, len);
        free(buf);
        return NULL;
    }
    at_err local;
    at_graph *g = load_ex(buf, len, ckpt, info, &local);
    free(buf);
    if (!g) {
        /* Prefix the path so the message says which file. */
        char msg[sizeof local.msg];
        snprintf(msg, sizeof msg, "%s", local.msg);
        at_err_set(err, local.code, "%s: %s", path, msg);
    }
    return g;
}

at_graph *at_graph_load(const char *path, at_err *err) {
    return load_file(path, false, NULL, err);
}

at_graph *at_checkpoint_load(const char *path, at_checkpoint_info *info, at_err *err) {
    return load_file(path, true, info, err);
}
