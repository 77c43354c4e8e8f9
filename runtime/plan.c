/* Planning: which nodes a run needs, in what order, the concrete type of
 * every value, values folded while planning (shapes and small constant
 * arithmetic), and arena offsets by value lifetime (greedy by size). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"

#define ALIGN        64
#define FOLD_MAX_OUT 4096  /* elements: fold only small results ... */
#define FOLD_MAX_IN  65536 /* ... of small inputs */

static size_t align_up(size_t n) {
    return (n + ALIGN - 1) / ALIGN * ALIGN;
}

void at_plan_free(at_plan *p) {
    if (!p) return;
    if (p->folded)
        for (int v = 0; v < p->n_vals; v++) free(p->folded[v]);
    for (int s = 0; p->steps && s < p->n_steps; s++) {
        free(p->steps[s].packed);
        free(p->steps[s].bias);
    }
    free(p->writes);
    free(p->key);
    free(p->sym_val);
    free(p->steps);
    free(p->io);
    free(p->loc);
    free(p->offset);
    free(p->dtype);
    free(p->shape);
    free(p->folded);
    free(p);
}

typedef struct builder {
    const at_graph *g;
    at_plan *p;
    at_err *err;
    bool no_reuse;
    bool *need; /* per node */
    int *order; /* needed nodes in run order */
    int n_order;
    int max_io;
    int *fuse_in;   /* per node: the input whose buffer its output shares (bias fusion), or -1 */
    int *score_add; /* per node: a MatMul's additive-score Add node (plan.h), or -1 */
    bool trained;   /* pack weights other plans update (opts.pack_trained) */
    bool *own, *w;  /* written_sets: values the plan / the packing rule hold as written */
} builder;

static at_status fail(builder *b, at_status code, const char *fmt, const char *a, const char *c) {
    char m[900];
    snprintf(m, sizeof m, fmt, a, c);
    return at_err_set(b->err, code, "%s", m);
}

/* Marks the nodes the wanted values depend on; checks inputs are fed. */
static at_status mark_needed(builder *b, const at_val *want, int n_want) {
    const at_graph *g = b->g;
    int *stack = malloc(sizeof(int) * ((size_t)g->n_vals + 1));
    bool *seen = calloc((size_t)g->n_vals + 1, 1);
    at_status st = AT_OK;
    if (!stack || !seen) {
        st = at_err_set(b->err, AT_E_NOMEM, "out of memory planning");
        goto done;
    }
    int sp = 0;
    for (int i = 0; i < n_want; i++) {
        if (want[i] < 0 || want[i] >= g->n_vals) {
            st = at_err_set(b->err, AT_E_INVALID, "fetch/target %d is not a value of the graph",
                            want[i]);
            goto done;
        }
        if (!seen[want[i]]) seen[want[i]] = true, stack[sp++] = want[i];
    }
    while (sp) {
        at_val v = stack[--sp];
        const at_value_rec *r = &g->vals[v];
        if (r->producer < 0) {
            if (r->kind == AT_VALUE_INPUT && b->p->loc[v] != AT_LOC_FEED) {
                st = at_err_set(b->err, AT_E_INVALID, "input '%s' is needed but was not fed",
                                r->name);
                goto done;
            }
            if (r->kind != AT_VALUE_INPUT) {
                b->p->loc[v] = AT_LOC_GRAPH;
                b->p->dtype[v] = r->dtype;
                b->p->shape[v] = r->shape;
            }
            continue;
        }
        if (b->need[r->producer]) continue;
        b->need[r->producer] = true;
        const at_node_rec *n = &g->nodes[r->producer];
        if (n->n_in > b->max_io) b->max_io = n->n_in;
        if (n->n_out > b->max_io) b->max_io = n->n_out;
        for (int k = 0; k < n->n_in; k++) {
            at_val u = n->in[k];
            if (u != AT_NONE && !seen[u]) seen[u] = true, stack[sp++] = u;
        }
        /* Outputs of a needed node are all computed (multi-output ops). */
        for (int k = 0; k < n->n_out; k++) seen[n->out[k]] = true;
    }
    /* Feeds this plan does not read must not be required by later runs. */
    for (int v = 0; st == AT_OK && v < g->n_vals; v++)
        if (b->p->loc[v] == AT_LOC_FEED && !seen[v]) b->p->loc[v] = AT_LOC_NONE;
done:
    free(stack);
    free(seen);
    return st;
}

/* Orders the needed nodes: data dependencies, plus "every other reader of a
 * buffer runs before the node that updates it in place". */
static at_status order_nodes(builder *b) {
    const at_graph *g = b->g;
    int nn = g->n_nodes;
    int n_edges = 0;
    for (int i = 0; i < nn; i++)
        if (b->need[i]) n_edges += g->nodes[i].n_in * 2;
    int *indeg = calloc((size_t)nn + 1, sizeof(int));
    int *ehead = malloc(sizeof(int) * ((size_t)nn + 1));
    int *enext = malloc(sizeof(int) * ((size_t)n_edges + 1));
    int *eto = malloc(sizeof(int) * ((size_t)n_edges + 1));
    int *vhead = malloc(sizeof(int) * ((size_t)g->n_vals + 1)); /* readers of a value */
    int *vnext = malloc(sizeof(int) * ((size_t)n_edges + 1));
    int *vwho = malloc(sizeof(int) * ((size_t)n_edges + 1));
    at_status st = AT_OK;
    if (!indeg || !ehead || !enext || !eto || !vhead || !vnext || !vwho) {
        st = at_err_set(b->err, AT_E_NOMEM, "out of memory planning");
        goto done;
    }
    for (int i = 0; i < nn; i++) ehead[i] = -1;
    for (int v = 0; v < g->n_vals; v++) vhead[v] = -1;
    int ne = 0, nr = 0;
#define EDGE(from, to)                                                                             \
    do {                                                                                           \
        eto[ne] = (to);                                                                            \
        enext[ne] = ehead[from];                                                                   \
        ehead[from] = ne++;                                                                        \
        indeg[to]++;                                                                               \
    } while (0)
    for (int i = 0; i < nn; i++) {
        if (!b->need[i]) continue;
        const at_node_rec *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            at_val v = n->in[k];
            if (v == AT_NONE) continue;
            vwho[nr] = i;
            vnext[nr] = vhead[v];
            vhead[v] = nr++;
            int prod = g->vals[v].producer;
            if (prod >= 0) EDGE(prod, i);
        }
    }
    for (int i = 0; i < nn; i++) {
        if (!b->need[i]) continue;
        const at_node_rec *n = &g->nodes[i];
        const at_op_def *def = at_op_table[n->op];
        if (!def->alias) continue;
        for (int j = 0; j < n->n_out; j++) {
            int k = def->alias(n, j);
            if (k < 0 || k >= n->n_in || n->in[k] == AT_NONE) continue;
            for (int x = vhead[n->in[k]]; x >= 0; x = vnext[x])
                if (vwho[x] != i) EDGE(vwho[x], i);
        }
    }
#undef EDGE
    /* Kahn with a min-heap-free stable scan: a FIFO seeded in node order. */
    int qh = 0, qt = 0;
    for (int i = 0; i < nn; i++)
        if (b->need[i] && !indeg[i]) b->order[qt++] = i;
    while (qh < qt) {
        int i = b->order[qh++];
        for (int e = ehead[i]; e >= 0; e = enext[e])
            if (--indeg[eto[e]] == 0) b->order[qt++] = eto[e];
    }
    int want_n = 0;
    for (int i = 0; i < nn; i++) want_n += b->need[i];
    if (qt != want_n) {
        for (int i = 0; i < nn; i++)
            if (b->need[i] && indeg[i]) {
                st = fail(b, AT_E_INVALID,
                          "cannot order node '%s' (%s): an in-place update conflicts with a "
                          "reader of the same buffer, or the graph has a cycle",
                          g->nodes[i].name, g->nodes[i].op_type);
                break;
            }
    }
    b->n_order = qt;
done:
    free(indeg);
    free(ehead);
    free(enext);
    free(eto);
    free(vhead);
    free(vnext);
    free(vwho);
    return st;
}

static const void *known_data(const builder *b, at_val v) {
    const at_plan *p = b->p;
    if (p->loc[v] == AT_LOC_FOLDED) return p->folded[v];
    if (p->loc[v] == AT_LOC_GRAPH && b->g->vals[v].kind == AT_VALUE_CONST)
        return b->g->vals[v].data;
    return NULL;
}

static bool foldable(const builder *b, const at_node_rec *n, const void *const *idata) {
    const at_op_def *def = at_op_table[n->op];
    if (!def->cpu || def->alias || n->op == AT_OP_Dropout || n->op == AT_OP_Constant) return false;
    int64_t in_total = 0, out_total = 0;
    for (int k = 0; k < n->n_in; k++) {
        if (n->in[k] == AT_NONE) continue;
        if (!idata[k]) return false;
        in_total += at_shape_numel(&b->p->shape[n->in[k]]);
    }
    for (int j = 0; j < n->n_out; j++) out_total += at_shape_numel(&b->p->shape[n->out[j]]);
    return in_total <= FOLD_MAX_IN && out_total <= FOLD_MAX_OUT;
}

/* Runs a node's kernel while planning; its outputs become plan-owned. */
static at_status fold_node(builder *b, int node, const void *const *idata, int threads) {
    const at_node_rec *n = &b->g->nodes[node];
    const at_op_def *def = at_op_table[n->op];
    at_plan *p = b->p;
    at_tensor *io = calloc((size_t)(n->n_in + n->n_out), sizeof(at_tensor));
    if (!io) return at_err_set(b->err, AT_E_NOMEM, "out of memory folding");
    at_status st = AT_OK;
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] != AT_NONE)
            io[k] = (at_tensor){p->dtype[n->in[k]], p->shape[n->in[k]], (void *)idata[k]};
    for (int j = 0; j < n->n_out; j++) {
        at_val v = n->out[j];
        at_tensor *t = &io[n->n_in + j];
        *t = (at_tensor){p->dtype[v], p->shape[v], NULL};
        size_t bytes = at_tensor_nbytes(t);
        p->folded[v] = calloc(bytes ? bytes : 1, 1);
        if (!p->folded[v]) {
            free(io);
            return at_err_set(b->err, AT_E_NOMEM, "out of memory folding");
        }
        t->data = p->folded[v];
    }
    at_kernel_ctx k;
    memset(&k, 0, sizeof k);
    k.node = n;
    k.node_id = node;
    k.n_in = n->n_in;
    k.n_out = n->n_out;
    k.in = io;
    k.out = io + n->n_in;
    k.threads = threads > 0 ? threads : 1;
    void *ws = NULL;
    if (def->workspace) {
        k.ws_size = def->workspace(&k);
        if (k.ws_size && !(ws = calloc(k.ws_size, 1)))
            st = at_err_set(b->err, AT_E_NOMEM, "out of memory folding");
        k.ws = ws;
    }
    if (st == AT_OK && (st = def->cpu(&k)) != AT_OK)
        at_err_set(b->err, st, "node '%s' (%s): %s", n->name, n->op_type, k.msg);
    for (int j = 0; st == AT_OK && j < n->n_out; j++) p->loc[n->out[j]] = AT_LOC_FOLDED;
    free(ws);
    free(io);
    return st;
}

/* Concrete shapes for every needed node; folds what can be folded.
 * Returns the nodes left to run in b->order[0..n_order). */
static at_status infer_all(builder *b, int threads) {
    const at_graph *g = b->g;
    at_plan *p = b->p;
    int m = b->max_io + 1;
    at_shape *ish = calloc((size_t)m, sizeof(at_shape)), *osh = calloc((size_t)m, sizeof(at_shape));
    at_dtype *idt = calloc((size_t)m, sizeof(at_dtype)), *odt = calloc((size_t)m, sizeof(at_dtype));
    const void **idata = calloc((size_t)m, sizeof(void *)),
               **odata = calloc((size_t)m, sizeof(void *));
    unsigned char *obuf = calloc((size_t)m, AT_INFER_BUF);
    char *msg = malloc(1024);
    at_status st = AT_OK;
    if (!ish || !osh || !idt || !odt || !idata || !odata || !obuf || !msg) {
        st = at_err_set(b->err, AT_E_NOMEM, "out of memory planning");
        goto done;
    }
    int kept = 0;
    for (int s = 0; s < b->n_order; s++) {
        int node = b->order[s];
        const at_node_rec *n = &g->nodes[node];
        for (int k = 0; k < n->n_in; k++) {
            at_val v = n->in[k];
            idt[k] = v == AT_NONE ? AT_UNDEFINED : p->dtype[v];
            if (v != AT_NONE) ish[k] = p->shape[v];
            idata[k] = v == AT_NONE ? NULL : known_data(b, v);
        }
        st = at_infer_run(NULL, g, n, true, ish, idt, idata, osh, odt, odata, obuf, msg, 1024);
        if (st != AT_OK) {
            at_err_set(b->err, st, "%s", msg);
            goto done;
        }
        bool all_known = n->n_out > 0;
        for (int j = 0; j < n->n_out; j++) {
            p->dtype[n->out[j]] = odt[j];
            p->shape[n->out[j]] = osh[j];
            if (at_shape_numel(&osh[j]) > ((int64_t)1 << 36) / (int64_t)at_dtype_size(odt[j])) {
                char sb[128];
                st = fail(b, AT_E_NOMEM, "node '%s' (%s): output too large", n->name, n->op_type);
                (void)sb;
                goto done;
            }
            all_known &= odata[j] != NULL;
        }
        if (all_known) {
            for (int j = 0; j < n->n_out; j++) {
                at_val v = n->out[j];
                size_t bytes = (size_t)at_shape_numel(&osh[j]) * at_dtype_size(odt[j]);
                if (!(p->folded[v] = malloc(bytes ? bytes : 1))) {
                    st = at_err_set(b->err, AT_E_NOMEM, "out of memory planning");
                    goto done;
                }
                memcpy(p->folded[v], odata[j], bytes);
                p->loc[v] = AT_LOC_FOLDED;
            }
            continue;
        }
        if (foldable(b, n, idata)) {
            if ((st = fold_node(b, node, idata, threads)) != AT_OK) goto done;
            continue;
        }
        b->order[kept++] = node;
    }
    b->n_order = kept;
done:
    free(ish);
    free(osh);
    free(idt);
    free(odt);
    free(idata);
    free(odata);
    free(obuf);
    free(msg);
    return st;
}

typedef struct block {
    size_t size;
    int first, last; /* step range */
    int64_t off;
    int id; /* value index, or -(step + 1) for a workspace */
} block;

static int cmp_block(const void *a, const void *b) {
    const block *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    if (x->first != y->first) return x->first - y->first;
    return x->id - y->id;
}

static int cmp_off(const void *a, const void *b) {
    const block *x = *(const block *const *)a, *y = *(const block *const *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Greedy by size: the largest blocks first, each at the lowest offset that
 * does not overlap a placed block whose lifetime overlaps its own. */
static at_status place_blocks(builder *b, block *bl, int nb, size_t *arena) {
    qsort(bl, (size_t)nb, sizeof(block), cmp_block);
    block **live = malloc(sizeof(block *) * ((size_t)nb + 1));
    if (!live) return at_err_set(b->err, AT_E_NOMEM, "out of memory planning");
    size_t top = 0;
    for (int i = 0; i < nb; i++) {
        if (b->no_reuse) {
            bl[i].off = (int64_t)top;
            top += bl[i].size;
            continue;
        }
        int nl = 0;
        for (int j = 0; j < i; j++)
            if (bl[j].first <= bl[i].last && bl[i].first <= bl[j].last) live[nl++] = &bl[j];
        qsort(live, (size_t)nl, sizeof(block *), cmp_off);
        int64_t off = 0;
        for (int j = 0; j < nl; j++) {
            if (off + (int64_t)bl[i].size <= live[j]->off) break;
            int64_t end = live[j]->off + (int64_t)live[j]->size;
            if (end > off) off = end;
        }
        bl[i].off = off;
        if ((size_t)off + bl[i].size > top) top = (size_t)off + bl[i].size;
    }
    free(live);
    *arena = top;
    return AT_OK;
}

static size_t step_workspace(const at_plan *p, const at_graph *g, int node, int threads) {
    const at_node_rec *n = &g->nodes[node];
    const at_op_def *def = at_op_table[n->op];
    if (!def->workspace) return 0;
    at_tensor io[64], *t = io;
    at_tensor *heap = NULL;
    if (n->n_in + n->n_out > 64) {
        heap = calloc((size_t)(n->n_in + n->n_out), sizeof(at_tensor));
        if (!heap) return 0;
        t = heap;
    }
    for (int k = 0; k < n->n_in; k++)
        t[k] = n->in[k] == AT_NONE ? (at_tensor){0}
                                   : (at_tensor){p->dtype[n->in[k]], p->shape[n->in[k]], NULL};
    for (int j = 0; j < n->n_out; j++)
        t[n->n_in + j] = (at_tensor){p->dtype[n->out[j]], p->shape[n->out[j]], NULL};
    at_kernel_ctx k;
    memset(&k, 0, sizeof k);
    k.node = n;
    k.node_id = node;
    k.n_in = n->n_in;
    k.n_out = n->n_out;
    k.in = t;
    k.out = t + n->n_in;
    k.threads = threads;
    size_t ws = def->workspace(&k);
    free(heap);
    return ws;
}

/* Which buffer each output lives in: root[v] is the value whose memory v shares (v itself
 * when none), loc[v] where that memory is. An in-place update (op alias) shares its input's
 * buffer always; a view (op view) only an arena buffer outside `updated` (NULL: any). */
static at_status share_buffers(builder *b, int *root, const bool *updated) {
    const at_graph *g = b->g;
    at_plan *p = b->p;
    for (int s = 0; s < b->n_order; s++) {
        const at_node_rec *n = &g->nodes[b->order[s]];
        const at_op_def *def = at_op_table[n->op];
        for (int j = 0; j < n->n_out; j++) {
            at_val v = n->out[j];
            int k = def->alias ? def->alias(n, j) : -1;
            if (k >= 0 && k < n->n_in && n->in[k] != AT_NONE) {
                at_val src = n->in[k];
                if (p->loc[src] == AT_LOC_FEED)
                    return fail(b, AT_E_INVALID, "node '%s' (%s) would update a fed input in place",
                                n->name, n->op_type);
                root[v] = root[src];
                p->loc[v] = p->loc[root[v]] == AT_LOC_GRAPH ? AT_LOC_GRAPH : AT_LOC_ARENA;
                continue;
            }
            p->loc[v] = AT_LOC_ARENA;
            k = def->view ? def->view(n, j) : -1;
            if (b->fuse_in && j == 0 && b->fuse_in[b->order[s]] >= 0) k = b->fuse_in[b->order[s]];
            if (k < 0 || k >= n->n_in || n->in[k] == AT_NONE) continue;
            at_val src = n->in[k];
            if (p->loc[src] == AT_LOC_ARENA && (!updated || !updated[root[src]]) &&
                p->dtype[v] == p->dtype[src] &&
                at_shape_numel(&p->shape[v]) == at_shape_numel(&p->shape[src]))
                root[v] = root[src];
        }
    }
    return AT_OK;
}

/* Lifetimes, aliasing and arena offsets. */
static at_status assign_memory(builder *b, const at_val *want, int n_want, int threads) {
    const at_graph *g = b->g;
    at_plan *p = b->p;
    int nv = g->n_vals, ns = b->n_order;
    int *first = malloc(sizeof(int) * ((size_t)nv + 1)),
        *last = malloc(sizeof(int) * ((size_t)nv + 1));
    int *root = malloc(sizeof(int) * ((size_t)nv + 1));
    block *bl = malloc(sizeof(block) * ((size_t)nv + (size_t)ns + 1));
    bool *updated = NULL;
    at_status st = AT_OK;
    if (!first || !last || !root || !bl) {
        st = at_err_set(b->err, AT_E_NOMEM, "out of memory planning");
        goto done;
    }
    for (int v = 0; v < nv; v++) root[v] = v;
    /* Views first as if all were shared, to find the buffers something updates in place: a
     * view of one would be read after the update (the ordering edges cover the updated
     * value's own readers only), so its views get their own buffers. */
    if ((st = share_buffers(b, root, NULL)) != AT_OK) goto done;
    if (!(updated = calloc((size_t)nv + 1, 1))) {
        st = at_err_set(b->err, AT_E_NOMEM, "out of memory planning");
        goto done;
    }
    for (int s = 0; s < ns; s++) {
        const at_node_rec *n = &g->nodes[b->order[s]];
        const at_op_def *def = at_op_table[n->op];
        for (int j = 0; def->alias && j < n->n_out; j++) {
            int k = def->alias(n, j);
            if (k >= 0 && k < n->n_in && n->in[k] != AT_NONE) updated[root[n->in[k]]] = true;
        }
    }
    for (int v = 0; v < nv; v++) first[v] = last[v] = -1, root[v] = v;
    if ((st = share_buffers(b, root, updated)) != AT_OK) goto done;
    for (int s = 0; s < ns; s++) {
        const at_node_rec *n = &g->nodes[b->order[s]];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] != AT_NONE) last[n->in[k]] = s;
        for (int j = 0; j < n->n_out; j++) first[n->out[j]] = last[n->out[j]] = s;
    }
    for (int i = 0; i < n_want; i++) last[want[i]] = ns; /* fetched: live to the end */
    /* a fused additive score reads its Add's inputs at the MatMul's step */
    for (int s = 0; b->score_add && s < ns; s++) {
        int a = b->score_add[b->order[s]];
        for (int k = 0; a >= 0 && k < 2; k++)
            if (last[g->nodes[a].in[k]] < s) last[g->nodes[a].in[k]] = s;
    }
    for (int v = 0; v < nv; v++)
        if (root[v] != v && last[v] > last[root[v]]) last[root[v]] = last[v];
    int nb = 0;
    size_t total = 0;
    for (int v = 0; v < nv; v++) {
        if (p->loc[v] != AT_LOC_ARENA || root[v] != v) continue;
        size_t sz = align_up((size_t)at_shape_numel(&p->shape[v]) * at_dtype_size(p->dtype[v]));
        bl[nb++] = (block){sz ? sz : ALIGN, first[v], last[v], 0, v};
        total += sz;
    }
    for (int s = 0; s < ns; s++) {
        size_t ws = step_workspace(p, g, b->order[s], threads);
        p->steps[s].ws_size = ws;
        p->steps[s].ws_off = -1;
        if (ws) {
            bl[nb++] = (block){align_up(ws), s, s, 0, -(s + 1)};
            total += align_up(ws);
        }
    }
    size_t arena = 0;
    if ((st = place_blocks(b, bl, nb, &arena)) != AT_OK) goto done;
    for (int i = 0; i < nb; i++) {
        if (bl[i].id >= 0)
            p->offset[bl[i].id] = bl[i].off;
        else
            p->steps[-bl[i].id - 1].ws_off = bl[i].off;
    }
    for (int v = 0; v < nv; v++)
        if (root[v] != v && p->loc[v] == AT_LOC_ARENA)
            p->offset[v] = p->offset[root[v]];
        else if (root[v] != v && p->loc[v] == AT_LOC_GRAPH)
            p->offset[v] = -(int64_t)root[v] - 2;
    p->arena_bytes = arena;
    p->values_bytes = total;
done:
    free(first);
    free(last);
    free(root);
    free(bl);
    free(updated);
    return st;
}

static int cmp_val(const void *a, const void *b) {
    at_val x = *(const at_val *)a, y = *(const at_val *)b;
    return (x > y) - (x < y);
}

/* The values written in place by the plan's steps (own) and the set the packing rule reads (w:
 * own with `trained`, else every node's); w may be own. */
static at_status written_sets(builder *b) {
    const at_graph *g = b->g;
    b->own = at_plan_written_in_place(g, b->order, b->n_order);
    if (b->own && b->trained) {
        b->w = b->own;
        return AT_OK;
    }
    int *all = b->own ? malloc(sizeof(int) * ((size_t)g->n_nodes + 1)) : NULL;
    for (int i = 0; all && i < g->n_nodes; i++) all[i] = i;
    b->w = all ? at_plan_written_in_place(g, all, g->n_nodes) : NULL;
    free(all);
    return b->w ? AT_OK : at_err_set(b->err, AT_E_NOMEM, "out of memory planning");
}

static void free_written(builder *b) {
    if (b->w != b->own) free(b->w);
    free(b->own);
    b->w = b->own = NULL;
}

/* Bias fusion candidates (plan.h, at_plan_step): for each packable MatMul whose output y has
 * one reader, an Add of y and a [N] float constant nothing updates, with y's shape, and y is
 * not fetched, the Add's output is to share y's buffer (fuse_in). readers[v]: v's readers
 * (fetched values count 2 more), reader[v]: one of them. */
static void pick_bias(builder *b, const int *readers, const int *reader) {
    const at_graph *g = b->g;
    at_plan *p = b->p;
    const bool *w = b->w;
    for (int s = 0; s < b->n_order; s++) {
        const at_node_rec *mm = &g->nodes[b->order[s]];
        int64_t K, N;
        bool trans;
        if (mm->op != AT_OP_MatMul || !at_plan_packable(g, p, mm, w, &K, &N, &trans)) continue;
        at_val y = mm->out[0];
        if (readers[y] != 1) continue;
        const at_node_rec *add = &g->nodes[reader[y]];
        if (add->op != AT_OP_Add || add->n_in != 2 || add->in[0] == add->in[1]) continue;
        at_val bv = add->in[0] == y ? add->in[1] : add->in[0], out = add->out[0];
        const at_value_rec *br = &g->vals[bv];
        if (p->loc[bv] != AT_LOC_GRAPH || br->producer >= 0 || w[bv] || !br->data ||
            p->dtype[bv] != AT_F32 || p->shape[bv].rank != 1 || p->shape[bv].dim[0] != N ||
            !at_shape_equal(&p->shape[out], &p->shape[y]) || p->dtype[out] != AT_F32)
            continue;
        b->fuse_in[reader[y]] = add->in[0] == y ? 0 : 1;
    }
}

/* Additive-score fusion candidates (plan.h, at_plan_step): MatMul(t, v) with v a [K, 1] float
 * value, t = Tanh(e) and e = Add(a, b) of float [..., K] operands broadcast against each other
 * along every dim but the last, where t and e have no other reader and are not fetched. */
static void pick_scores(builder *b, const int *readers) {
    const at_graph *g = b->g;
    const at_plan *p = b->p;
    for (int s = 0; s < b->n_order; s++) {
        const at_node_rec *mm = &g->nodes[b->order[s]];
        if (mm->op != AT_OP_MatMul || mm->in[0] == AT_NONE || mm->in[1] == AT_NONE) continue;
        at_val t = mm->in[0], v = mm->in[1];
        const at_shape *sv = &p->shape[v], *st = &p->shape[t];
        if (p->dtype[v] != AT_F32 || sv->rank != 2 || sv->dim[1] != 1 || st->rank < 2) continue;
        int64_t K = sv->dim[0];
        if (K < 1 || K > AT_SCORE_MAX_K || st->dim[st->rank - 1] != K || readers[t] != 1) continue;
        int tn = g->vals[t].producer;
        if (tn < 0 || g->nodes[tn].op != AT_OP_Tanh) continue;
        at_val e = g->nodes[tn].in[0];
        int an = g->vals[e].producer;
        if (readers[e] != 1 || an < 0 || g->nodes[an].op != AT_OP_Add) continue;
        const at_node_rec *add = &g->nodes[an];
        bool ok = add->n_in == 2 && at_shape_equal(&p->shape[e], st);
        for (int k = 0; ok && k < 2; k++) {
            const at_shape *sx = &p->shape[add->in[k]];
            ok = p->dtype[add->in[k]] == AT_F32 && sx->rank >= 1 && sx->dim[sx->rank - 1] == K;
        }
        if (ok) b->score_add[b->order[s]] = an;
    }
}

/* The fusion candidates of a CPU plan (fuse_in, score_add), from one count of every value's
 * readers. Returns AT_E_NOMEM or OK. */
static at_status pick_fusions(builder *b, const at_val *want, int n_want) {
    const at_graph *g = b->g;
    int *readers = calloc((size_t)g->n_vals + 1, sizeof(int));
    int *reader = malloc(sizeof(int) * ((size_t)g->n_vals + 1));
    b->fuse_in = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
    b->score_add = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
    if (!readers || !reader || !b->fuse_in || !b->score_add) {
        free(readers), free(reader);
        return at_err_set(b->err, AT_E_NOMEM, "out of memory planning");
    }
    for (int i = 0; i < g->n_nodes; i++) b->fuse_in[i] = b->score_add[i] = -1;
    for (int s = 0; s < b->n_order; s++) {
        const at_node_rec *n = &g->nodes[b->order[s]];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] != AT_NONE) readers[n->in[k]]++, reader[n->in[k]] = b->order[s];
    }
    for (int i = 0; i < n_want; i++) readers[want[i]] += 2; /* fetched: never fused */
    pick_bias(b, readers, reader);
    pick_scores(b, readers);
    free(readers), free(reader);
    return AT_OK;
}

/* After memory assignment: the candidates whose Add output did get y's buffer become fusions
 * (the MatMul step records the bias and the Add's step, which is skipped). */
static void apply_fusions(builder *b) {
    const at_graph *g = b->g;
    at_plan *p = b->p;
    int *step_of = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
    if (!step_of) return; /* nothing fused: still correct */
    for (int s = 0; s < p->n_steps; s++) step_of[p->steps[s].node] = s;
    for (int s = 0; s < p->n_steps; s++) {
        const at_node_rec *add = &g->nodes[p->steps[s].node];
        int k = b->fuse_in[p->steps[s].node];
        if (k < 0) continue;
        at_val y = add->in[k], out = add->out[0];
        if (p->loc[y] != AT_LOC_ARENA || p->loc[out] != AT_LOC_ARENA ||
            p->offset[y] != p->offset[out])
            continue;
        at_plan_step *ms = &p->steps[step_of[g->vals[y].producer]];
        ms->bias_val = add->in[1 - k];
        p->steps[s].skip = true;
        p->n_fused++;
    }
    for (int s = 0; b->score_add && s < p->n_steps; s++) {
        int an = b->score_add[p->steps[s].node];
        if (an < 0) continue;
        const at_node_rec *add = &g->nodes[an];
        p->steps[s].score_a = add->in[0];
        p->steps[s].score_b = add->in[1];
        p->steps[step_of[an]].skip = true; /* the Add */
        p->steps[step_of[g->vals[g->nodes[p->steps[s].node].in[0]].producer]].skip =
            true; /* Tanh */
        p->n_scores++;
    }
    free(step_of);
}

at_plan *at_plan_build(const at_graph *g, const at_feed *feeds, int n_feeds, const at_val *want,
                       int n_want, int threads, bool no_reuse, bool cpu_pack, bool trained,
                       at_err *err) {
    builder b;
    memset(&b, 0, sizeof b);
    b.g = g;
    b.err = err;
    b.no_reuse = no_reuse;
    b.trained = trained;
    at_plan *p = calloc(1, sizeof *p);
    if (!p) {
        at_err_set(err, AT_E_NOMEM, "out of memory planning");
        return NULL;
    }
    b.p = p;
    int nv = g->n_vals;
    p->n_vals = nv;
    p->graph_version = g->version;
    p->loc = calloc((size_t)nv + 1, sizeof(at_loc));
    p->offset = malloc(sizeof(int64_t) * ((size_t)nv + 1));
    p->dtype = calloc((size_t)nv + 1, sizeof(at_dtype));
    p->shape = calloc((size_t)nv + 1, sizeof(at_shape));
    p->folded = calloc((size_t)nv + 1, sizeof(void *));
    p->key = malloc(sizeof(at_val) * ((size_t)n_want + 1));
    p->n_syms = g->n_syms;
    p->sym_val = malloc(sizeof(int64_t) * ((size_t)g->n_syms + 1));
    b.need = calloc((size_t)g->n_nodes + 1, 1);
    b.order = malloc(sizeof(int) * ((size_t)g->n_nodes + 1));
    if (!p->loc || !p->offset || !p->dtype || !p->shape || !p->folded || !p->key || !p->sym_val ||
        !b.need || !b.order) {
        at_err_set(err, AT_E_NOMEM, "out of memory planning");
        goto fail;
    }
    for (int v = 0; v < nv; v++) p->offset[v] = -1;
    for (int i = 0; i < g->n_syms; i++) p->sym_val[i] = -1;
    for (int i = 0; i < n_want; i++) p->key[i] = want[i];
    qsort(p->key, (size_t)n_want, sizeof(at_val), cmp_val);
    p->n_key = n_want;
    for (int i = 0; i < n_feeds; i++) {
        at_val v = feeds[i].val;
        p->loc[v] = AT_LOC_FEED;
        p->dtype[v] = feeds[i].t.dtype;
        p->shape[v] = feeds[i].t.shape;
        const at_shape *gs = &g->vals[v].shape;
        for (int d = 0; d < gs->rank; d++)
            if (gs->dim[d] < 0) p->sym_val[-gs->dim[d] - 1] = feeds[i].t.shape.dim[d];
    }
    if (mark_needed(&b, want, n_want) != AT_OK) goto fail;
    if (order_nodes(&b) != AT_OK) goto fail;
    if (infer_all(&b, threads) != AT_OK) goto fail;
    p->n_steps = b.n_order;
    p->steps = calloc((size_t)b.n_order + 1, sizeof(at_plan_step));
    if (!p->steps) {
        at_err_set(err, AT_E_NOMEM, "out of memory planning");
        goto fail;
    }
    int n_io = 0;
    for (int s = 0; s < b.n_order; s++) {
        const at_node_rec *n = &g->nodes[b.order[s]];
        p->steps[s].node = b.order[s];
        p->steps[s].first_in = n_io;
        p->steps[s].first_out = n_io + n->n_in;
        n_io += n->n_in + n->n_out;
    }
    p->n_io = n_io;
    p->io = calloc((size_t)n_io + 1, sizeof(at_tensor));
    if (!p->io) {
        at_err_set(err, AT_E_NOMEM, "out of memory planning");
        goto fail;
    }
    for (int s = 0; s < b.n_order; s++) {
        const at_node_rec *n = &g->nodes[b.order[s]];
        for (int k = 0; k < n->n_in; k++) {
            at_val v = n->in[k];
            if (v != AT_NONE)
                p->io[p->steps[s].first_in + k] = (at_tensor){p->dtype[v], p->shape[v], NULL};
        }
        for (int j = 0; j < n->n_out; j++) {
            at_val v = n->out[j];
            p->io[p->steps[s].first_out + j] = (at_tensor){p->dtype[v], p->shape[v], NULL};
        }
    }
    for (int s = 0; s < p->n_steps; s++)
        p->steps[s].bias_val = p->steps[s].score_a = p->steps[s].score_b = AT_NONE;
    if (cpu_pack && written_sets(&b) != AT_OK) goto fail;
    if (cpu_pack && !no_reuse && pick_fusions(&b, want, n_want) != AT_OK) goto fail;
    if (assign_memory(&b, want, n_want, threads) != AT_OK) goto fail;
    if (b.fuse_in) apply_fusions(&b);
    if (cpu_pack && at_plan_pack(g, p, b.own, b.w, err) != AT_OK) goto fail;
    free(b.need);
    free(b.order);
    free(b.fuse_in);
    free(b.score_add);
    free_written(&b);
    return p;
fail:
    free(b.need);
    free(b.order);
    free(b.fuse_in);
    free(b.score_add);
    free_written(&b);
    at_plan_free(p);
    return NULL;
}
