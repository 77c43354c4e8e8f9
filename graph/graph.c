/* Graph construction: values, nodes, attributes, symbols, metadata. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/ir.h"
#include "ops/op.h"

/* Caps that keep a corrupt file or a bad call from asking for absurd memory. */
#define AT_MAX_NUMEL ((int64_t)1 << 34)

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static char *dupstr(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

at_graph *at_graph_new(void) {
    return calloc(1, sizeof(at_graph));
}

static void free_attr(at_attr_rec *a) {
    free(a->name);
    free(a->s);
    free(a->ints);
    free(a->floats);
    if (a->t) free(a->t->data);
    free(a->t);
    if (a->strs)
        for (int i = 0; i < a->n; i++) free(a->strs[i]);
    free(a->strs);
}

static void free_node(at_node_rec *n) {
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->in);
    free(n->out);
    for (int i = 0; i < n->n_attrs; i++) free_attr(&n->attrs[i]);
    free(n->attrs);
}

void at_graph_free(at_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_vals; i++) {
        free(g->vals[i].name);
        free(g->vals[i].data);
    }
    for (int i = 0; i < g->n_nodes; i++) free_node(&g->nodes[i]);
    for (int i = 0; i < g->n_syms; i++) free(g->syms[i]);
    for (int i = 0; i < g->n_meta; i++) {
        free(g->meta_keys[i]);
        free(g->meta_vals[i]);
    }
    free(g->vals);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g->syms);
    free(g->meta_keys);
    free(g->meta_vals);
    free(g->hash);
    free(g);
}

/* ---- errors ---- */

at_status at_graph_status(const at_graph *g) {
    return g ? g->status : AT_E_INVALID;
}
const char *at_graph_error(const at_graph *g) {
    return g ? g->err : "no graph";
}
void at_graph_clear_error(at_graph *g) {
    g->status = AT_OK;
    g->err[0] = 0;
}

at_status at_graph_fail(at_graph *g, at_status code, const char *fmt, ...) {
    if (g->status != AT_OK) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    g->status = code;
    return code;
}

/* ---- name hash ---- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void hash_insert(at_graph *g, at_val v) {
    int mask = g->hash_cap - 1;
    int i = (int)(hash_str(g->vals[v].name) & (uint64_t)mask);
    while (g->hash[i]) i = (i + 1) & mask;
    g->hash[i] = v + 1;
}

/* Linear-probing delete: shift later members of the cluster back. */
static void hash_remove(at_graph *g, at_val v) {
    int mask = g->hash_cap - 1;
    int i = (int)(hash_str(g->vals[v].name) & (uint64_t)mask);
    while (g->hash[i] && g->hash[i] != v + 1) i = (i + 1) & mask;
    if (!g->hash[i]) return;
    g->hash[i] = 0;
    for (int j = (i + 1) & mask; g->hash[j]; j = (j + 1) & mask) {
        int e = g->hash[j];
        g->hash[j] = 0;
        hash_insert(g, e - 1);
    }
}

static int hash_rebuild(at_graph *g, int cap) {
    int *h = calloc((size_t)cap, sizeof(int));
    if (!h) return -1;
    free(g->hash);
    g->hash = h;
    g->hash_cap = cap;
    for (int v = 0; v < g->n_vals; v++)
        if (g->vals[v].name) hash_insert(g, v);
    return 0;
}

at_val at_graph_find(const at_graph *g, const char *name) {
    if (!g || !name || !g->hash_cap) return AT_NONE;
    int mask = g->hash_cap - 1;
    int i = (int)(hash_str(name) & (uint64_t)mask);
    while (g->hash[i]) {
        at_val v = g->hash[i] - 1;
        if (strcmp(g->vals[v].name, name) == 0) return v;
        i = (i + 1) & mask;
    }
    return AT_NONE;
}

/* ---- symbols ---- */

int64_t at_sym(at_graph *g, const char *name) {
    if (!name || !*name) {
        at_graph_fail(g, AT_E_INVALID, "at_sym: empty symbol name");
        return 0;
    }
    for (int i = 0; i < g->n_syms; i++)
        if (strcmp(g->syms[i], name) == 0) return -(int64_t)i - 1;
    if (grow((void **)&g->syms, &g->cap_syms, g->n_syms + 1, sizeof(char *)) ||
        !(g->syms[g->n_syms] = dupstr(name))) {
        at_graph_fail(g, AT_E_NOMEM, "out of memory adding symbol '%s'", name);
        return 0;
    }
    g->n_syms++;
    return -(int64_t)g->n_syms;
}

int64_t at_sym_fresh(at_graph *g) {
    char name[32];
    for (int k = g->n_syms;; k++) { /* a loaded file may already use "_d<k>" */
        snprintf(name, sizeof name, "_d%d", k);
        bool used = false;
        for (int i = 0; i < g->n_syms && !used; i++) used = strcmp(g->syms[i], name) == 0;
        if (!used) return at_sym(g, name);
    }
}

const char *at_sym_name(const at_graph *g, int64_t d) {
    if (d >= 0) return NULL;
    int64_t k = -d - 1;
    return k < g->n_syms ? g->syms[k] : NULL;
}

int at_graph_num_syms(const at_graph *g) {
    return g->n_syms;
}

const char *at_graph_shape_str(const at_graph *g, const at_shape *s, char *buf, size_t cap) {
    size_t k = 0;
    if (!cap) return buf;
    k += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < s->rank && k < cap; i++) {
        const char *nm = g ? at_sym_name(g, s->dim[i]) : NULL;
        if (s->dim[i] >= 0)
            k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? "," : "", (long long)s->dim[i]);
        else if (nm)
            k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? "," : "", nm);
        else
            k += (size_t)snprintf(buf + k, cap - k, "%s?", i ? "," : "");
    }
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* ---- values ---- */

static bool shape_ok(const at_graph *g, const at_shape *s) {
    if (s->rank < 0 || s->rank > AT_MAX_RANK) return false;
    for (int i = 0; i < s->rank; i++)
        if (s->dim[i] < 0 && -s->dim[i] - 1 >= g->n_syms) return false;
    return true;
}

at_val at_graph_add_value(at_graph *g, const char *name, at_dtype dt, at_shape shape,
                          at_value_kind kind) {
    if (g->status != AT_OK) return AT_NONE;
    if (!at_dtype_valid(dt)) {
        at_graph_fail(g, AT_E_INVALID, "value '%s': invalid dtype %d", name ? name : "?", (int)dt);
        return AT_NONE;
    }
    if (!shape_ok(g, &shape)) {
        at_graph_fail(g, AT_E_SHAPE, "value '%s': invalid shape (rank %d)", name ? name : "?",
                      (int)shape.rank);
        return AT_NONE;
    }
    char gen[48];
    if (!name || !*name) {
        do snprintf(gen, sizeof gen, "v%d", g->next_id++);
        while (at_graph_find(g, gen) != AT_NONE);
        name = gen;
    } else if (at_graph_find(g, name) != AT_NONE) {
        at_graph_fail(g, AT_E_INVALID, "value name '%s' is already used", name);
        return AT_NONE;
    }
    if (grow((void **)&g->vals, &g->cap_vals, g->n_vals + 1, sizeof(at_value_rec))) goto oom;
    at_value_rec *v = &g->vals[g->n_vals];
    memset(v, 0, sizeof *v);
    if (!(v->name = dupstr(name))) goto oom;
    v->dtype = dt;
    v->shape = shape;
    v->kind = kind;
    v->producer = -1;
    g->n_vals++;
    if (g->n_vals * 2 > g->hash_cap) {
        if (hash_rebuild(g, g->hash_cap ? g->hash_cap * 2 : 64)) goto oom;
    } else {
        hash_insert(g, g->n_vals - 1);
    }
    g->version++;
    return g->n_vals - 1;
oom:
    at_graph_fail(g, AT_E_NOMEM, "out of memory adding value '%s'", name);
    return AT_NONE;
}

static at_val add_list(at_graph *g, at_val v, at_val **list, int *n, int *cap) {
    if (v == AT_NONE) return AT_NONE;
    if (grow((void **)list, cap, *n + 1, sizeof(at_val))) {
        at_graph_fail(g, AT_E_NOMEM, "out of memory");
        return AT_NONE;
    }
    (*list)[(*n)++] = v;
    return v;
}

at_val at_input(at_graph *g, const char *name, at_dtype dt, at_shape shape) {
    at_val v = at_graph_add_value(g, name, dt, shape, AT_VALUE_INPUT);
    return add_list(g, v, &g->inputs, &g->n_inputs, &g->cap_inputs);
}

static at_val add_data_value(at_graph *g, const char *name, at_dtype dt, at_shape shape,
                             at_value_kind kind, const void *data) {
    if (g->status != AT_OK) return AT_NONE;
    int64_t n = at_shape_numel(&shape);
    if (n < 0 || n > AT_MAX_NUMEL) {
        char b[96];
        at_graph_fail(g, AT_E_SHAPE, "initializer '%s' needs a concrete, sane shape, got %s",
                      name ? name : "?", at_graph_shape_str(g, &shape, b, sizeof b));
        return AT_NONE;
    }
    at_val v = at_graph_add_value(g, name, dt, shape, kind);
    if (v == AT_NONE) return v;
    size_t bytes = (size_t)n * at_dtype_size(dt);
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) {
        at_graph_fail(g, AT_E_NOMEM, "out of memory for initializer '%s' (%zu bytes)",
                      g->vals[v].name, bytes);
        return AT_NONE;
    }
    if (data) memcpy(p, data, bytes);
    g->vals[v].data = p;
    return v;
}

at_val at_param(at_graph *g, const char *name, at_dtype dt, at_shape shape, int group) {
    if (group < 0 || group > 31) {
        at_graph_fail(g, AT_E_INVALID, "param '%s': group %d outside 0..31", name ? name : "?",
                      group);
        return AT_NONE;
    }
    at_val v = add_data_value(g, name, dt, shape, AT_VALUE_PARAM, NULL);
    if (v != AT_NONE) g->vals[v].group = group;
    return v;
}

at_val at_const(at_graph *g, const char *name, at_dtype dt, at_shape shape, const void *data) {
    return add_data_value(g, name, dt, shape, AT_VALUE_CONST, data);
}

at_val at_const_f32(at_graph *g, float v) {
    return at_const(g, NULL, AT_F32, AT_SCALAR, &v);
}
at_val at_const_i64(at_graph *g, int64_t v) {
    return at_const(g, NULL, AT_I64, AT_SCALAR, &v);
}
at_val at_const_i64s(at_graph *g, int n, const int64_t *v) {
    return at_const(g, NULL, AT_I64, AT_SHAPE(n), v);
}

at_val at_state(at_graph *g, const char *name, at_dtype dt, at_shape shape) {
    return add_data_value(g, name, dt, shape, AT_VALUE_STATE, NULL);
}

static bool val_ok(const at_graph *g, at_val v) {
    return g && v >= 0 && v < g->n_vals;
}

at_status at_output(at_graph *g, at_val v) {
    if (!val_ok(g, v)) return at_graph_fail(g, AT_E_INVALID, "at_output: invalid value %d", v);
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) return AT_OK;
    return add_list(g, v, &g->outputs, &g->n_outputs, &g->cap_outputs) == AT_NONE ? g->status
                                                                                  : AT_OK;
}

int at_graph_num_values(const at_graph *g) {
    return g->n_vals;
}
int at_graph_num_nodes(const at_graph *g) {
    return g->n_nodes;
}
int at_graph_num_inputs(const at_graph *g) {
    return g->n_inputs;
}
int at_graph_num_outputs(const at_graph *g) {
    return g->n_outputs;
}
at_val at_graph_input(const at_graph *g, int i) {
    return i >= 0 && i < g->n_inputs ? g->inputs[i] : AT_NONE;
}
at_val at_graph_output(const at_graph *g, int i) {
    return i >= 0 && i < g->n_outputs ? g->outputs[i] : AT_NONE;
}

const char *at_value_name(const at_graph *g, at_val v) {
    return val_ok(g, v) ? g->vals[v].name : NULL;
}

at_status at_value_rename(at_graph *g, at_val v, const char *name) {
    if (!val_ok(g, v) || !name || !*name)
        return at_graph_fail(g, AT_E_INVALID, "at_value_rename: invalid value or name");
    at_val other = at_graph_find(g, name);
    if (other == v) return AT_OK;
    if (other != AT_NONE)
        return at_graph_fail(g, AT_E_INVALID, "value name '%s' is already used", name);
    char *d = dupstr(name);
    if (!d) return at_graph_fail(g, AT_E_NOMEM, "out of memory");
    hash_remove(g, v);
    free(g->vals[v].name);
    g->vals[v].name = d;
    hash_insert(g, v);
    g->version++;
    return AT_OK;
}

at_dtype at_value_dtype(const at_graph *g, at_val v) {
    return val_ok(g, v) ? g->vals[v].dtype : AT_UNDEFINED;
}
at_shape at_value_shape(const at_graph *g, at_val v) {
    return val_ok(g, v) ? g->vals[v].shape : at_shape_make(-1, NULL);
}
at_value_kind at_value_kind_of(const at_graph *g, at_val v) {
    return val_ok(g, v) ? g->vals[v].kind : (at_value_kind)0;
}
void *at_value_data(const at_graph *g, at_val v) {
    return val_ok(g, v) ? g->vals[v].data : NULL;
}
int at_value_group(const at_graph *g, at_val v) {
    return val_ok(g, v) ? g->vals[v].group : -1;
}
int at_value_producer(const at_graph *g, at_val v) {
    return val_ok(g, v) ? g->vals[v].producer : -1;
}

int at_graph_params(const at_graph *g, uint32_t group_mask, at_val *out, int cap) {
    int n = 0;
    for (int v = 0; v < g->n_vals; v++) {
        const at_value_rec *r = &g->vals[v];
        if (r->kind != AT_VALUE_PARAM || !(group_mask & (1u << r->group))) continue;
        if (n < cap) out[n] = v;
        n++;
    }
    return n;
}

/* ---- attributes ---- */

const at_attr_rec *at_attr_find(const at_node_rec *n, const char *name) {
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

int64_t at_attr_int(const at_node_rec *n, const char *name, int64_t dflt) {
    const at_attr_rec *a = at_attr_find(n, name);
    return a && a->kind == AT_ATTR_INT ? a->i : dflt;
}

float at_attr_float(const at_node_rec *n, const char *name, float dflt) {
    const at_attr_rec *a = at_attr_find(n, name);
    return a && a->kind == AT_ATTR_FLOAT ? a->f : dflt;
}

const char *at_attr_str(const at_node_rec *n, const char *name, const char *dflt) {
    const at_attr_rec *a = at_attr_find(n, name);
    return a && a->kind == AT_ATTR_STRING && a->s ? a->s : dflt;
}

static int copy_attr(at_attr_rec *d, const at_attr *s) {
    memset(d, 0, sizeof *d);
    d->kind = s->kind;
    d->i = s->i;
    d->f = s->f;
    d->n = s->n;
    if (!(d->name = dupstr(s->name))) return -1;
    if (s->kind == AT_ATTR_STRING && !(d->s = dupstr(s->s ? s->s : ""))) return -1;
    if (s->kind == AT_ATTR_INTS && s->n > 0) {
        if (!(d->ints = malloc((size_t)s->n * sizeof(int64_t)))) return -1;
        memcpy(d->ints, s->ints, (size_t)s->n * sizeof(int64_t));
    }
    if (s->kind == AT_ATTR_FLOATS && s->n > 0) {
        if (!(d->floats = malloc((size_t)s->n * sizeof(float)))) return -1;
        memcpy(d->floats, s->floats, (size_t)s->n * sizeof(float));
    }
    if (s->kind == AT_ATTR_STRINGS && s->n > 0) {
        if (!(d->strs = calloc((size_t)s->n, sizeof(char *)))) return -1;
        for (int i = 0; i < s->n; i++)
            if (!(d->strs[i] = dupstr(s->strs[i] ? s->strs[i] : ""))) return -1;
    }
    if (s->kind == AT_ATTR_TENSOR && s->t) {
        if (!(d->t = calloc(1, sizeof(at_tensor)))) return -1;
        *d->t = *s->t;
        size_t bytes = at_tensor_nbytes(s->t);
        d->t->data = malloc(bytes ? bytes : 1);
        if (!d->t->data) return -1;
        if (bytes) memcpy(d->t->data, s->t->data, bytes);
    }
    return 0;
}

static const char *attr_kind_name(at_attr_kind k) {
    switch (k) {
    case AT_ATTR_FLOAT:
        return "FLOAT";
    case AT_ATTR_INT:
        return "INT";
    case AT_ATTR_STRING:
        return "STRING";
    case AT_ATTR_TENSOR:
        return "TENSOR";
    case AT_ATTR_FLOATS:
        return "FLOATS";
    case AT_ATTR_INTS:
        return "INTS";
    case AT_ATTR_STRINGS:
        return "STRINGS";
    default:
        return "UNDEFINED";
    }
}

static at_status check_attrs(at_graph *g, const at_op_def *def, const char *node_name,
                             const at_attr *attrs, int n_attrs) {
    for (int i = 0; i < n_attrs; i++) {
        const at_attr_schema *sc = def->attrs;
        while (sc && sc->name && strcmp(sc->name, attrs[i].name ? attrs[i].name : "") != 0) sc++;
        if (!sc || !sc->name)
            return at_graph_fail(g, AT_E_INVALID, "node '%s' (%s): unknown attribute '%s'",
                                 node_name, def->name, attrs[i].name ? attrs[i].name : "");
        if (sc->kind != attrs[i].kind)
            return at_graph_fail(
                g, AT_E_INVALID, "node '%s' (%s): attribute '%s' is %s, expected %s", node_name,
                def->name, sc->name, attr_kind_name(attrs[i].kind), attr_kind_name(sc->kind));
        if (attrs[i].kind == AT_ATTR_TENSOR && !attrs[i].t)
            return at_graph_fail(g, AT_E_INVALID, "node '%s' (%s): attribute '%s' has no tensor",
                                 node_name, def->name, sc->name);
    }
    for (const at_attr_schema *sc = def->attrs; sc && sc->name; sc++) {
        if (!sc->required) continue;
        int found = 0;
        for (int i = 0; i < n_attrs; i++) found |= strcmp(attrs[i].name, sc->name) == 0;
        if (!found)
            return at_graph_fail(g, AT_E_INVALID, "node '%s' (%s): required attribute '%s' missing",
                                 node_name, def->name, sc->name);
    }
    return AT_OK;
}

/* ---- nodes ---- */

/* Runs the node's shape rule symbolically, creating or updating outputs. */
static at_status infer_and_set(at_graph *g, int node, bool create) {
    at_node_rec *n = &g->nodes[node];
    int ni = n->n_in, no = n->n_out;
    at_shape *ish = calloc((size_t)ni + 1, sizeof(at_shape));
    at_dtype *idt = calloc((size_t)ni + 1, sizeof(at_dtype));
    const void **idata = calloc((size_t)ni + 1, sizeof(void *));
    at_shape *osh = calloc((size_t)no + 1, sizeof(at_shape));
    at_dtype *odt = calloc((size_t)no + 1, sizeof(at_dtype));
    const void **odata = calloc((size_t)no + 1, sizeof(void *));
    unsigned char *obuf = calloc((size_t)no + 1, AT_INFER_BUF);
    at_status st = AT_OK;
    if (!ish || !idt || !idata || !osh || !odt || !odata || !obuf) {
        st = at_graph_fail(g, AT_E_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < ni; i++) {
        at_val v = n->in[i];
        if (v == AT_NONE) continue;
        ish[i] = g->vals[v].shape;
        idt[i] = g->vals[v].dtype;
        if (g->vals[v].kind == AT_VALUE_CONST) idata[i] = g->vals[v].data;
    }
    char msg[768];
    st = at_infer_run(g, g, n, false, ish, idt, idata, osh, odt, odata, obuf, msg, sizeof msg);
    n = &g->nodes[node]; /* at_sym_fresh cannot move nodes, but stay safe */
    if (st != AT_OK) {
        at_graph_fail(g, st, "%s", msg);
        goto done;
    }
    for (int j = 0; j < no; j++) {
        if (create) {
            char name[160];
            snprintf(name, sizeof name, "%s:%d", n->name, j);
            at_val v = at_graph_add_value(g, name, odt[j], osh[j], AT_VALUE_INTERMEDIATE);
            n = &g->nodes[node];
            if (v == AT_NONE) {
                st = g->status;
                goto done;
            }
            g->vals[v].producer = node;
            n->out[j] = v;
        } else {
            g->vals[n->out[j]].dtype = odt[j];
            g->vals[n->out[j]].shape = osh[j];
        }
    }
done:
    free(ish);
    free(idt);
    free(idata);
    free(osh);
    free(odt);
    free(odata);
    free(obuf);
    return st;
}

int at_node_add(at_graph *g, const char *op_type, const char *domain, const at_val *in, int n_in,
                at_val *out, int n_out, const at_attr *attrs, int n_attrs) {
    if (!g || g->status != AT_OK) return -1;
    int op = at_op_lookup(op_type, domain);
    if (op < 0) {
        at_graph_fail(g, AT_E_UNSUPPORTED, "unknown op '%s' in domain '%s'",
                      op_type ? op_type : "(null)", domain ? domain : "");
        return -1;
    }
    const at_op_def *def = at_op_table[op];
    char node_name[128];
    snprintf(node_name, sizeof node_name, "%s_%d", def->name, g->next_id++);
    if (n_in < def->min_in || (def->max_in != AT_VARIADIC && n_in > def->max_in) ||
        n_out < def->min_out || (def->max_out != AT_VARIADIC && n_out > def->max_out) ||
        n_out < 1) {
        at_graph_fail(g, AT_E_INVALID,
                      "node '%s' (%s): %d inputs and %d outputs; the op takes "
                      "%d..%d inputs and %d..%d outputs (-1: any)",
                      node_name, def->name, n_in, n_out, def->min_in, def->max_in, def->min_out,
                      def->max_out);
        return -1;
    }
    for (int i = 0; i < n_in; i++) {
        if (in[i] == AT_NONE) {
            if (i < def->min_in) {
                at_graph_fail(g, AT_E_INVALID, "node '%s' (%s): required input %d is missing",
                              node_name, def->name, i);
                return -1;
            }
            continue;
        }
        if (!val_ok(g, in[i])) {
            at_graph_fail(g, AT_E_INVALID, "node '%s' (%s): input %d is not a value of this graph",
                          node_name, def->name, i);
            return -1;
        }
    }
    if (check_attrs(g, def, node_name, attrs, n_attrs) != AT_OK) return -1;
    if (grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof(at_node_rec))) goto oom;
    at_node_rec *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->n_in = n_in;
    n->n_out = n_out;
    n->name = dupstr(node_name);
    n->op_type = dupstr(def->name);
    n->domain = dupstr(def->domain);
    n->in = malloc(sizeof(at_val) * (size_t)(n_in ? n_in : 1));
    n->out = malloc(sizeof(at_val) * (size_t)n_out);
    n->attrs = calloc((size_t)(n_attrs ? n_attrs : 1), sizeof(at_attr_rec));
    if (!n->name || !n->op_type || !n->domain || !n->in || !n->out || !n->attrs) {
        free_node(n);
        goto oom;
    }
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    for (int j = 0; j < n_out; j++) n->out[j] = AT_NONE;
    for (int i = 0; i < n_attrs; i++) {
        n->n_attrs = i + 1;
        if (copy_attr(&n->attrs[i], &attrs[i])) {
            free_node(n);
            goto oom;
        }
    }
    int idx = g->n_nodes++;
    if (infer_and_set(g, idx, true) != AT_OK) {
        /* Roll back: outputs made before the failure are unreachable values
         * with no producer; drop the node itself. */
        free_node(&g->nodes[idx]);
        g->n_nodes--;
        return -1;
    }
    g->version++;
    if (out)
        for (int j = 0; j < n_out; j++) out[j] = g->nodes[idx].out[j];
    return idx;
oom:
    at_graph_fail(g, AT_E_NOMEM, "out of memory adding node '%s'", node_name);
    return -1;
}

at_val at_node1(at_graph *g, const char *op_type, const at_val *in, int n_in, const at_attr *attrs,
                int n_attrs) {
    at_val out = AT_NONE;
    int op = at_op_lookup(op_type, AT_DOMAIN_ONNX);
    if (op < 0) op = at_op_lookup(op_type, AT_DOMAIN_ATTUNE);
    const char *dom = op >= 0 ? at_op_table[op]->domain : AT_DOMAIN_ONNX;
    if (at_node_add(g, op_type, dom, in, n_in, &out, 1, attrs, n_attrs) < 0) return AT_NONE;
    return out;
}

at_status at_graph_infer_node(at_graph *g, int node) {
    return infer_and_set(g, node, false);
}

at_val at_node_append_output(at_graph *g, int node) {
    if (g->status != AT_OK || node < 0 || node >= g->n_nodes) return AT_NONE;
    at_node_rec *n = &g->nodes[node];
    const at_op_def *def = at_op_table[n->op];
    if (def->max_out != AT_VARIADIC && n->n_out >= def->max_out) {
        at_graph_fail(g, AT_E_INVALID, "node '%s' (%s) already has all its outputs", n->name,
                      n->op_type);
        return AT_NONE;
    }
    at_val *o = realloc(n->out, sizeof(at_val) * (size_t)(n->n_out + 1));
    if (!o) {
        at_graph_fail(g, AT_E_NOMEM, "out of memory");
        return AT_NONE;
    }
    n->out = o;
    char name[160];
    snprintf(name, sizeof name, "%s:%d", n->name, n->n_out);
    at_val v = at_graph_add_value(g, name, AT_F32, AT_SCALAR, AT_VALUE_INTERMEDIATE);
    if (v == AT_NONE) return AT_NONE;
    n = &g->nodes[node];
    g->vals[v].producer = node;
    n->out[n->n_out++] = v;
    if (infer_and_set(g, node, false) != AT_OK) return AT_NONE;
    g->version++;
    return v;
}

static bool node_ok(const at_graph *g, int node) {
    return g && node >= 0 && node < g->n_nodes;
}

const char *at_node_op(const at_graph *g, int node) {
    return node_ok(g, node) ? g->nodes[node].op_type : NULL;
}
const char *at_node_domain(const at_graph *g, int node) {
    return node_ok(g, node) ? g->nodes[node].domain : NULL;
}
const char *at_node_name(const at_graph *g, int node) {
    return node_ok(g, node) ? g->nodes[node].name : NULL;
}
at_status at_node_rename(at_graph *g, int node, const char *name) {
    if (!node_ok(g, node) || !name)
        return at_graph_fail(g, AT_E_INVALID, "at_node_rename: invalid node or name");
    char *d = dupstr(name);
    if (!d) return at_graph_fail(g, AT_E_NOMEM, "out of memory");
    free(g->nodes[node].name);
    g->nodes[node].name = d;
    return AT_OK;
}
int at_node_num_inputs(const at_graph *g, int node) {
    return node_ok(g, node) ? g->nodes[node].n_in : 0;
}
int at_node_num_outputs(const at_graph *g, int node) {
    return node_ok(g, node) ? g->nodes[node].n_out : 0;
}
at_val at_node_input(const at_graph *g, int node, int i) {
    return node_ok(g, node) && i >= 0 && i < g->nodes[node].n_in ? g->nodes[node].in[i] : AT_NONE;
}
at_val at_node_output(const at_graph *g, int node, int i) {
    return node_ok(g, node) && i >= 0 && i < g->nodes[node].n_out ? g->nodes[node].out[i] : AT_NONE;
}

/* ---- metadata ---- */

at_status at_graph_set_meta(at_graph *g, const char *key, const char *value) {
    if (!key || !value) return at_graph_fail(g, AT_E_INVALID, "metadata key and value needed");
    char *v = dupstr(value);
    if (!v) return at_graph_fail(g, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < g->n_meta; i++)
        if (strcmp(g->meta_keys[i], key) == 0) {
            free(g->meta_vals[i]);
            g->meta_vals[i] = v;
            return AT_OK;
        }
    char *k = dupstr(key);
    if (!k || grow((void **)&g->meta_keys, &g->cap_meta, g->n_meta + 1, sizeof(char *))) goto oom;
    int cap = g->cap_meta;
    char **mv = realloc(g->meta_vals, (size_t)cap * sizeof(char *));
    if (!mv) goto oom;
    g->meta_vals = mv;
    g->meta_keys[g->n_meta] = k;
    g->meta_vals[g->n_meta++] = v;
    return AT_OK;
oom:
    free(k);
    free(v);
    return at_graph_fail(g, AT_E_NOMEM, "out of memory");
}

const char *at_graph_meta(const at_graph *g, const char *key) {
    for (int i = 0; i < g->n_meta; i++)
        if (strcmp(g->meta_keys[i], key) == 0) return g->meta_vals[i];
    return NULL;
}
int at_graph_num_meta(const at_graph *g) {
    return g->n_meta;
}
const char *at_graph_meta_key(const at_graph *g, int i) {
    return i >= 0 && i < g->n_meta ? g->meta_keys[i] : NULL;
}

/* ---- deep copy ---- */

static int clone_attr(at_attr_rec *d, const at_attr_rec *s) {
    at_attr a = {.name = s->name,
                 .kind = s->kind,
                 .i = s->i,
                 .f = s->f,
                 .s = s->s,
                 .n = s->n,
                 .ints = s->ints,
                 .floats = s->floats,
                 .t = s->t,
                 .strs = (const char *const *)s->strs};
    return copy_attr(d, &a);
}

static int clone_node(at_node_rec *d, const at_node_rec *s) {
    memset(d, 0, sizeof *d);
    d->op = s->op;
    d->n_in = s->n_in;
    d->n_out = s->n_out;
    d->name = dupstr(s->name);
    d->op_type = dupstr(s->op_type);
    d->domain = dupstr(s->domain);
    d->in = malloc(sizeof(at_val) * (size_t)(s->n_in ? s->n_in : 1));
    d->out = malloc(sizeof(at_val) * (size_t)(s->n_out ? s->n_out : 1));
    d->attrs = calloc((size_t)(s->n_attrs ? s->n_attrs : 1), sizeof(at_attr_rec));
    if (!d->name || !d->op_type || !d->domain || !d->in || !d->out || !d->attrs) return -1;
    memcpy(d->in, s->in, sizeof(at_val) * (size_t)s->n_in);
    memcpy(d->out, s->out, sizeof(at_val) * (size_t)s->n_out);
    for (int i = 0; i < s->n_attrs; i++) {
        d->n_attrs = i + 1;
        if (clone_attr(&d->attrs[i], &s->attrs[i])) return -1;
    }
    return 0;
}

at_graph *at_graph_clone(const at_graph *g) {
    at_graph *c = at_graph_new();
    if (!c || !g) return c;
    for (int i = 0; i < g->n_syms; i++)
        if (at_sym(c, g->syms[i]) == 0) goto fail;
    for (int v = 0; v < g->n_vals; v++) {
        const at_value_rec *r = &g->vals[v];
        at_val nv = at_graph_add_value(c, r->name, r->dtype, r->shape, r->kind);
        if (nv != v) goto fail;
        c->vals[v].producer = r->producer;
        c->vals[v].group = r->group;
        if (r->data) {
            size_t bytes = (size_t)at_shape_numel(&r->shape) * at_dtype_size(r->dtype);
            if (!(c->vals[v].data = malloc(bytes ? bytes : 1))) goto fail;
            memcpy(c->vals[v].data, r->data, bytes);
        }
    }
    if (grow((void **)&c->nodes, &c->cap_nodes, g->n_nodes + 1, sizeof(at_node_rec))) goto fail;
    for (int i = 0; i < g->n_nodes; i++) {
        c->n_nodes = i + 1;
        if (clone_node(&c->nodes[i], &g->nodes[i])) goto fail;
    }
    for (int i = 0; i < g->n_inputs; i++)
        if (add_list(c, g->inputs[i], &c->inputs, &c->n_inputs, &c->cap_inputs) == AT_NONE)
            goto fail;
    for (int i = 0; i < g->n_outputs; i++)
        if (at_output(c, g->outputs[i]) != AT_OK) goto fail;
    for (int i = 0; i < g->n_meta; i++)
        if (at_graph_set_meta(c, g->meta_keys[i], g->meta_vals[i]) != AT_OK) goto fail;
    c->next_id = g->next_id;
    c->status = g->status;
    memcpy(c->err, g->err, sizeof c->err);
    return c;
fail:
    at_graph_free(c);
    return NULL;
}
