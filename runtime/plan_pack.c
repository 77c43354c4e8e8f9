/* Packed weights for a plan (plan.h, at_plan_pack): which MatMul and Gemm steps get one, and
 * making it, with the padded biases of the fused bias Adds. A weight qualifies when no node of
 * the graph writes it in place, or, with `trained` (opts.pack_trained), no step of the plan, so
 * the copy stays equal to it during a run; the session makes it again when another plan of it
 * updated the weight (at_plan_repack); writes from outside (through at_value_data) are the
 * caller's to announce (at_session_invalidate). */
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/gemm_packed.h"
#include "runtime/plan.h"

/* Values some node's output aliases (optimizer updates): their buffers change between runs. */
bool *at_plan_written_in_place(const at_graph *g, const int *nodes, int count) {
    bool *w = calloc((size_t)g->n_vals + 1, 1);
    if (!w) return NULL;
    for (int i = 0; i < count; i++) {
        const at_node_rec *n = &g->nodes[nodes[i]];
        const at_op_def *def = at_op_table[n->op];
        for (int j = 0; def->alias && j < n->n_out; j++) {
            int k = def->alias(n, j);
            if (k >= 0 && k < n->n_in && n->in[k] != AT_NONE) w[n->in[k]] = true;
        }
    }
    return w;
}

/* The graph value whose buffer a plan value of loc AT_LOC_GRAPH reads (a view's root). */
static at_val graph_root(const at_plan *p, at_val v) {
    return p->offset[v] <= -2 ? (at_val)(-p->offset[v] - 2) : v;
}

bool at_plan_packable(const at_graph *g, const at_plan *p, const at_node_rec *n, const bool *w,
                      int64_t *K, int64_t *N, bool *trans) {
    if (n->op != AT_OP_MatMul && n->op != AT_OP_Gemm) return false;
    at_val a = n->in[0], b = n->in[1];
    if (a == AT_NONE || b == AT_NONE || p->loc[b] != AT_LOC_GRAPH) return false;
    if (w[b] || w[graph_root(p, b)] || !g->vals[graph_root(p, b)].data) return false;
    const at_shape *sa = &p->shape[a], *sb = &p->shape[b];
    if (p->dtype[a] != AT_F32 || p->dtype[b] != AT_F32 || sb->rank != 2 || sa->rank < 1)
        return false;
    *trans = false;
    if (n->op == AT_OP_Gemm) {
        if (at_attr_int(n, "transA", 0)) return false;
        *trans = at_attr_int(n, "transB", 0) != 0;
    }
    *K = sb->dim[*trans ? 1 : 0];
    *N = sb->dim[*trans ? 0 : 1];
    /* N = 1 is a matrix-vector product: nothing to gain from panels (ops/matmul.c's own) */
    if (sa->dim[sa->rank - 1] != *K || *K < 1 || *N < 2) return false;
    int64_t rows = at_shape_numel(sa) / *K;
    return rows >= 1 && rows <= AT_PACK_MAX_ROWS;
}

/* Step s's fused bias (at_plan_build chose it) as a plan-owned copy padded to whole panels. */
static at_status pad_bias(at_plan *p, int s, int64_t N, at_err *err) {
    int nr = at_gemm_pack_nr();
    size_t n = (size_t)((N + nr - 1) / nr * nr);
    float *d = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!d) return at_err_set(err, AT_E_NOMEM, "out of memory packing a bias");
    memset(d, 0, n * sizeof(float));
    p->steps[s].bias = d;
    return AT_OK;
}

void at_plan_repack(const at_graph *g, at_plan *p, int s) {
    at_plan_step *ps = &p->steps[s];
    at_gemm_pack(g->vals[ps->pack_src].data, ps->pack_k, ps->pack_n, ps->pack_trans, ps->packed);
    if (ps->bias) memcpy(ps->bias, g->vals[ps->bias_val].data, (size_t)ps->pack_n * sizeof(float));
}

/* The values the plan's steps update (w) as a list. */
static at_status list_writes(const at_graph *g, at_plan *p, const bool *w, at_err *err) {
    int n = 0;
    for (at_val v = 0; v < g->n_vals; v++) n += w[v];
    p->writes = malloc(sizeof(at_val) * (size_t)(n + 1));
    if (!p->writes) return at_err_set(err, AT_E_NOMEM, "out of memory planning");
    for (at_val v = 0; v < g->n_vals; v++)
        if (w[v]) p->writes[p->n_writes++] = v;
    return AT_OK;
}

at_status at_plan_pack(const at_graph *g, at_plan *p, const bool *own, const bool *w, at_err *err) {
    if (!at_gemm_pack_nr()) return AT_OK;
    at_status st = list_writes(g, p, own, err);
    for (int s = 0; s < p->n_steps && st == AT_OK; s++) {
        at_plan_step *ps = &p->steps[s];
        const at_node_rec *n = &g->nodes[ps->node];
        int64_t K, N;
        bool trans;
        if (!at_plan_packable(g, p, n, w, &K, &N, &trans)) continue;
        size_t bytes = at_gemm_pack_floats(K, N) * sizeof(float);
        float *d = aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!d) {
            st = at_err_set(err, AT_E_NOMEM, "out of memory packing the weight of '%s'", n->name);
            break;
        }
        ps->packed = d;
        ps->pack_src = graph_root(p, n->in[1]);
        ps->pack_k = K, ps->pack_n = N, ps->pack_trans = trans;
        p->n_packed++;
        p->packed_bytes += bytes;
        if (ps->bias_val != AT_NONE) st = pad_bias(p, s, N, err);
        if (st == AT_OK) at_plan_repack(g, p, s);
    }
    return st;
}
