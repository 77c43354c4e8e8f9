/* The session: plan cache keyed by fetch set and symbol binding, the
 * shared arena, the CPU executor, and the device executor (CUDA): the same
 * plans run on device memory, with host copies only at feeds and fetches. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "attune/session.h"
#include "runtime/backend.h"
#include "runtime/cpu/gemm_packed.h"
#include "runtime/cpu/pool.h"
#include "runtime/plan.h"

extern void openblas_set_num_threads(int);

typedef struct dev_side dev_side;

struct at_session {
    at_graph *g;
    dev_side *dev; /* device state of a CUDA session; NULL on CPU */
    at_session_opts o;
    uint64_t step;
    at_plan **plans;
    int n_plans, cap_plans;
    uint64_t graph_version;
    void *arena;
    size_t arena_cap;
    void **ptr; /* data pointer per value for the current run */
    int ptr_cap;
    at_val *want; /* scratch: fetch + targets */
    int want_cap;
    int64_t *syms; /* scratch: symbol binding of the current feeds */
    int syms_cap;
    at_session_stats stats;
    at_pool *pool; /* helpers for the kernels of CPU runs (threads > 1; made with the first plan) */
    uint64_t *wver; /* CPU: per graph value, the runs of plans that update it in place */
    int wver_cap;
    at_profile_entry *prof; /* per node when opts.profile (node and op_type filled on read) */
    int prof_cap;
    char err[1024];
};

at_session_opts at_session_defaults(void) {
    at_session_opts o;
    memset(&o, 0, sizeof o);
    o.device = AT_DEVICE_CPU;
    o.seed = 0x5eed;
    return o;
}

static void dev_drop_plans(at_session *s);

static void drop_plans(at_session *s) {
    if (s->dev) dev_drop_plans(s);
    for (int i = 0; i < s->n_plans; i++) at_plan_free(s->plans[i]);
    s->n_plans = 0;
}

static at_status dev_open(at_session *s, at_err *err);
static void dev_close(at_session *s);
static at_status dev_sync(at_session *s);
static at_status dev_check_plan(at_session *s, const at_plan *p);
static at_status dev_run(at_session *s, at_plan *p, const at_feed *feeds, int n_feeds,
                         const at_val *fetch, int n_fetch, at_tensor *out);

at_session *at_session_new(at_graph *g, const at_session_opts *opts, at_err *err) {
    if (!g) {
        at_err_set(err, AT_E_INVALID, "at_session_new: no graph");
        return NULL;
    }
    at_session_opts o = opts ? *opts : at_session_defaults();
    if (o.device != AT_DEVICE_CPU && o.device != AT_DEVICE_CUDA) {
        at_err_set(err, AT_E_DEVICE, "device %d is unknown", (int)o.device);
        return NULL;
    }
    if (o.device == AT_DEVICE_CUDA && !at_cuda_backend()) {
        at_err_set(err, AT_E_DEVICE,
                   "CUDA is not available in this build (configured without nvcc or with "
                   "ATTUNE_CUDA=OFF)");
        return NULL;
    }
    if (at_graph_check(g, err) != AT_OK) return NULL;
    /* For benchmarks of programs that do not expose the option (see session.h). */
    const char *cg = getenv("ATTUNE_CUDA_GRAPH");
    if (cg && !strcmp(cg, "1")) o.cuda_graph = true;
    at_session *s = calloc(1, sizeof *s);
    if (!s) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    s->g = g;
    s->o = o;
    if (s->o.threads <= 0) s->o.threads = omp_get_max_threads();
    /* Kernels split their GEMMs themselves (the session's pool, ops/matmul.c's at_sgemm):
     * OpenBLAS's own workers would only spin beside the pool's helpers. */
    openblas_set_num_threads(1);
    s->graph_version = g->version;
    if (o.device == AT_DEVICE_CUDA && dev_open(s, err) != AT_OK) {
        free(s);
        return NULL;
    }
    return s;
}

void at_session_free(at_session *s) {
    if (!s) return;
    drop_plans(s);
    dev_close(s);
    free(s->plans);
    free(s->arena);
    free(s->ptr);
    free(s->wver);
    free(s->want);
    free(s->syms);
    free(s->prof);
    at_pool_free(s->pool);
    free(s);
}

void at_session_invalidate(at_session *s) {
    drop_plans(s);
}

const char *at_session_error(const at_session *s) {
    return s ? s->err : "no session";
}
uint64_t at_session_step(const at_session *s) {
    return s->step;
}
void at_session_set_step(at_session *s, uint64_t step) {
    s->step = step;
}
at_status at_session_sync(at_session *s) {
    if (!s) return AT_E_INVALID;
    return s->dev ? dev_sync(s) : AT_OK;
}
at_session_stats at_session_get_stats(const at_session *s) {
    return s->stats;
}

static int cmp_prof(const void *a, const void *b) {
    double x = ((const at_profile_entry *)a)->ms, y = ((const at_profile_entry *)b)->ms;
    return (x < y) - (x > y);
}

int at_session_profile(const at_session *s, at_profile_entry *out, int cap) {
    if (!s || cap < 0 || (cap > 0 && !out)) return -1;
    int n_nodes = s->g->n_nodes < s->prof_cap ? s->g->n_nodes : s->prof_cap, n = 0;
    at_profile_entry *all = malloc(sizeof *all * (size_t)(n_nodes + 1));
    if (!all) return -1;
    for (int i = 0; i < n_nodes; i++) {
        if (!s->prof[i].calls) continue;
        all[n] = s->prof[i];
        all[n].node = s->g->nodes[i].name;
        all[n].op_type = s->g->nodes[i].op_type;
        n++;
    }
    qsort(all, (size_t)n, sizeof *all, cmp_prof);
    if (out && n && cap) memcpy(out, all, sizeof *all * (size_t)(n < cap ? n : cap));
    free(all);
    return n;
}

void at_session_profile_reset(at_session *s) {
    if (s->prof) memset(s->prof, 0, sizeof *s->prof * (size_t)s->prof_cap);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static at_status sfail(at_session *s, at_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static at_status sfail(at_session *s, at_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return code;
}

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

/* grow, with the new elements zeroed. */
static int grow_zeroed(void **p, int *cap, int need, size_t elem) {
    int old = *cap;
    if (grow(p, cap, need, elem)) return -1;
    if (*cap > old) memset((char *)*p + (size_t)old * elem, 0, (size_t)(*cap - old) * elem);
    return 0;
}

/* Checks feeds against the graph and binds symbols into s->syms. */
static at_status bind_feeds(at_session *s, const at_feed *feeds, int n_feeds) {
    const at_graph *g = s->g;
    if (grow((void **)&s->syms, &s->syms_cap, g->n_syms + 1, sizeof(int64_t)))
        return sfail(s, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < g->n_syms; i++) s->syms[i] = -1;
    for (int i = 0; i < n_feeds; i++) {
        at_val v = feeds[i].val;
        if (v < 0 || v >= g->n_vals) return sfail(s, AT_E_INVALID, "feed %d: invalid value", i);
        const at_value_rec *r = &g->vals[v];
        const at_tensor *t = &feeds[i].t;
        char a[128], b[128];
        if (r->kind != AT_VALUE_INPUT)
            return sfail(s, AT_E_INVALID, "feed '%s': not a graph input", r->name);
        if (t->dtype != r->dtype)
            return sfail(s, AT_E_SHAPE, "feed '%s': dtype %s, the graph wants %s", r->name,
                         at_dtype_name(t->dtype), at_dtype_name(r->dtype));
        if (t->shape.rank != r->shape.rank || !at_shape_is_concrete(&t->shape)) goto bad_shape;
        if (!t->data && at_shape_numel(&t->shape) > 0)
            return sfail(s, AT_E_INVALID, "feed '%s': no data", r->name);
        for (int d = 0; d < r->shape.rank; d++) {
            int64_t want = r->shape.dim[d], got = t->shape.dim[d];
            if (want >= 0) {
                if (want != got) goto bad_shape;
            } else {
                int64_t *bound = &s->syms[-want - 1];
                if (*bound >= 0 && *bound != got) {
                    return sfail(s, AT_E_SHAPE,
                                 "feed '%s': shape %s binds %s = %lld, but another feed bound "
                                 "it to %lld",
                                 r->name, at_shape_str(&t->shape, a, sizeof a),
                                 at_sym_name(g, want), (long long)got, (long long)*bound);
                }
                *bound = got;
            }
        }
        for (int j = 0; j < i; j++)
            if (feeds[j].val == v) return sfail(s, AT_E_INVALID, "'%s' fed twice", r->name);
        continue;
    bad_shape:
        return sfail(s, AT_E_SHAPE, "feed '%s': shape %s, the graph wants %s", r->name,
                     at_shape_str(&t->shape, a, sizeof a),
                     at_graph_shape_str(g, &r->shape, b, sizeof b));
    }
    return AT_OK;
}

static int cmp_val(const void *a, const void *b) {
    at_val x = *(const at_val *)a, y = *(const at_val *)b;
    return (x > y) - (x < y);
}

static at_plan *find_plan(at_session *s, int n_want) {
    for (int i = 0; i < s->n_plans; i++) {
        at_plan *p = s->plans[i];
        if (p->n_key != n_want || p->n_syms != s->g->n_syms) continue;
        if (memcmp(p->key, s->want, sizeof(at_val) * (size_t)n_want)) continue;
        if (memcmp(p->sym_val, s->syms, sizeof(int64_t) * (size_t)p->n_syms)) continue;
        return p;
    }
    return NULL;
}

static at_status check_finite(at_session *s, const at_node_rec *n, const at_tensor *out,
                              int n_out) {
    for (int j = 0; j < n_out; j++) {
        if (out[j].dtype != AT_F32) continue;
        const float *x = out[j].data;
        int64_t m = at_shape_numel(&out[j].shape);
        for (int64_t i = 0; i < m; i++)
            if (!isfinite(x[i]))
                return sfail(s, AT_E_NUMERIC,
                             "node '%s' (%s) produced a non-finite value (%g) in output %d at "
                             "element %lld",
                             n->name, n->op_type, (double)x[i], j, (long long)i);
    }
    return AT_OK;
}

static at_status execute(at_session *s, at_plan *p);

/* Packed weights (and fused biases) that another plan updated since they were made are made
 * again; the counts are the runs of plans that write each value (stamp: at plan time). */
static void refresh_packed(at_session *s, at_plan *p, bool stamp) {
    for (int i = 0; i < p->n_steps && p->n_packed; i++) {
        at_plan_step *ps = &p->steps[i];
        if (!ps->packed) continue;
        uint64_t wv = s->wver[ps->pack_src];
        uint64_t bv = ps->bias ? s->wver[ps->bias_val] : 0;
        if (!stamp && (wv != ps->pack_ver || bv != ps->bias_ver)) {
            at_plan_repack(s->g, p, i);
            s->stats.repacks++;
        }
        ps->pack_ver = wv, ps->bias_ver = bv;
    }
}

static at_status run_cpu(at_session *s, at_plan *p) {
    refresh_packed(s, p, false);
    at_status st = execute(s, p);
    /* counted even after a failed run: some updates may have been written */
    for (int i = 0; i < p->n_writes; i++) s->wver[p->writes[i]]++;
    return st;
}

static at_status execute(at_session *s, at_plan *p) {
    const at_graph *g = s->g;
    /* With the session's pool, kernels split their loops and GEMMs over it, not over OpenMP
     * teams: a kernel of 30 us gains from the pool's spinning helper, where waking sleeping
     * OpenMP workers costs 10-50 us (ops/parallel.h). Kernels without a pool path run on the
     * caller. */
    int kthreads = s->pool ? 1 : s->o.threads;
    for (int st = 0; st < p->n_steps; st++) {
        const at_plan_step *ps = &p->steps[st];
        if (ps->skip) continue; /* done inside a fused MatMul (runtime/plan.h) */
        const at_node_rec *n = &g->nodes[ps->node];
        const at_op_def *def = at_op_table[n->op];
        at_tensor *in = p->io + ps->first_in, *out = p->io + ps->first_out;
        for (int k = 0; k < n->n_in; k++)
            in[k].data = n->in[k] == AT_NONE ? NULL : s->ptr[n->in[k]];
        for (int j = 0; j < n->n_out; j++) out[j].data = s->ptr[n->out[j]];
        if (!def->cpu)
            return sfail(s, AT_E_UNSUPPORTED, "node '%s' (%s): no CPU kernel", n->name, n->op_type);
        at_kernel_ctx k;
        k.node = n;
        k.node_id = ps->node;
        k.n_in = n->n_in;
        k.n_out = n->n_out;
        k.in = in;
        k.out = out;
        k.ws = ps->ws_off >= 0 ? (char *)s->arena + ps->ws_off : NULL;
        k.ws_size = ps->ws_size;
        k.threads = kthreads;
        k.seed = s->o.seed;
        k.step = s->step;
        k.backend = NULL;
        k.packed = ps->packed;
        k.bias = ps->bias;
        k.pool = s->pool;
        at_tensor score_in[2];
        k.score_in = NULL;
        if (ps->score_a != AT_NONE) {
            at_val sv[2] = {ps->score_a, ps->score_b};
            for (int i = 0; i < 2; i++)
                score_in[i] = (at_tensor){p->dtype[sv[i]], p->shape[sv[i]], s->ptr[sv[i]]};
            k.score_in = score_in;
        }
        k.msg[0] = 0;
        double t0 = s->o.profile ? now_ms() : 0.0;
        at_status rc = def->cpu(&k);
        if (s->o.profile) {
            s->prof[ps->node].ms += now_ms() - t0;
            s->prof[ps->node].calls++;
        }
        if (rc != AT_OK) return sfail(s, rc, "node '%s' (%s): %s", n->name, n->op_type, k.msg);
        if (s->o.check_finite && check_finite(s, n, out, n->n_out) != AT_OK) return AT_E_NUMERIC;
    }
    return AT_OK;
}

at_status at_session_run(at_session *s, const at_feed *feeds, int n_feeds, const at_val *fetch,
                         int n_fetch, at_tensor *out, const at_val *targets, int n_targets) {
    if (!s) return AT_E_INVALID;
    s->err[0] = 0;
    at_graph *g = s->g;
    if (n_feeds < 0 || n_fetch < 0 || n_targets < 0 || (n_feeds && !feeds) ||
        (n_fetch && (!fetch || !out)) || (n_targets && !targets))
        return sfail(s, AT_E_INVALID, "at_session_run: bad arguments");
    if (g->version != s->graph_version) { /* the graph grew: plans are stale */
        drop_plans(s);
        at_err e;
        if (at_graph_check(g, &e) != AT_OK) return sfail(s, e.code, "%s", e.msg);
        s->graph_version = g->version;
    }
    at_status st = bind_feeds(s, feeds, n_feeds);
    if (st != AT_OK) return st;
    int n_want = n_fetch + n_targets;
    if (grow((void **)&s->want, &s->want_cap, n_want + 1, sizeof(at_val)))
        return sfail(s, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < n_fetch; i++) s->want[i] = fetch[i];
    for (int i = 0; i < n_targets; i++) s->want[n_fetch + i] = targets[i];
    for (int i = 0; i < n_want; i++)
        if (s->want[i] < 0 || s->want[i] >= g->n_vals)
            return sfail(s, AT_E_INVALID, "fetch/target %d is not a value of the graph",
                         s->want[i]);
    qsort(s->want, (size_t)n_want, sizeof(at_val), cmp_val);
    at_plan *p = find_plan(s, n_want);
    if (!p) {
        at_err e;
        p = at_plan_build(g, feeds, n_feeds, s->want, n_want, s->o.threads, s->o.no_reuse,
                          !s->dev && at_gemm_pack_nr() > 0, s->o.pack_trained, &e);
        if (!p) return sfail(s, e.code, "%s", e.msg);
        if (!s->dev &&
            grow_zeroed((void **)&s->wver, &s->wver_cap, g->n_vals + 1, sizeof(uint64_t))) {
            at_plan_free(p);
            return sfail(s, AT_E_NOMEM, "out of memory");
        }
        if (!s->dev) refresh_packed(s, p, true);
        /* NULL when threads cannot start: kernels then use OpenMP teams as without a pool */
        if (!s->dev && s->o.threads > 1 && !s->pool) s->pool = at_pool_new(s->o.threads - 1);
        if (s->dev && (st = dev_check_plan(s, p)) != AT_OK) {
            at_plan_free(p);
            return st;
        }
        if (grow((void **)&s->plans, &s->cap_plans, s->n_plans + 1, sizeof(at_plan *))) {
            at_plan_free(p);
            return sfail(s, AT_E_NOMEM, "out of memory");
        }
        s->plans[s->n_plans++] = p;
        s->stats.plans++;
    }
    if (s->dev) return dev_run(s, p, feeds, n_feeds, fetch, n_fetch, out);
    if (p->arena_bytes > s->arena_cap) {
        free(s->arena);
        s->arena = aligned_alloc(64, (p->arena_bytes + 63) / 64 * 64);
        s->arena_cap = s->arena ? p->arena_bytes : 0;
        if (!s->arena)
            return sfail(s, AT_E_NOMEM, "out of memory for a %zu-byte arena", p->arena_bytes);
    }
    if (grow((void **)&s->ptr, &s->ptr_cap, g->n_vals + 1, sizeof(void *)))
        return sfail(s, AT_E_NOMEM, "out of memory");
    for (int v = 0; v < p->n_vals; v++) {
        switch (p->loc[v]) {
        case AT_LOC_GRAPH:
            s->ptr[v] = g->vals[p->offset[v] <= -2 ? -p->offset[v] - 2 : v].data;
            break;
        case AT_LOC_ARENA:
            s->ptr[v] = (char *)s->arena + p->offset[v];
            break;
        case AT_LOC_FOLDED:
            s->ptr[v] = p->folded[v];
            break;
        default:
            s->ptr[v] = NULL;
            break;
        }
    }
    for (int i = 0; i < n_feeds; i++) s->ptr[feeds[i].val] = feeds[i].t.data;
    /* A plan built for other feeds may need an input this run lacks. */
    for (int v = 0; v < p->n_vals; v++)
        if (p->loc[v] == AT_LOC_FEED && !s->ptr[v] && at_shape_numel(&p->shape[v]) > 0)
            return sfail(s, AT_E_INVALID, "input '%s' is needed but was not fed", g->vals[v].name);
    if (s->o.profile && s->prof_cap < g->n_nodes) {
        int old = s->prof_cap;
        if (grow((void **)&s->prof, &s->prof_cap, g->n_nodes, sizeof *s->prof))
            return sfail(s, AT_E_NOMEM, "out of memory");
        memset(s->prof + old, 0, sizeof *s->prof * (size_t)(s->prof_cap - old));
    }
    st = run_cpu(s, p);
    s->stats.arena_bytes = p->arena_bytes;
    s->stats.values_bytes = p->values_bytes;
    /* fused bias Adds, and the Add and Tanh of fused scores, do not run */
    s->stats.nodes_run = p->n_steps - p->n_fused - 2 * p->n_scores;
    s->stats.packed_weights = p->n_packed;
    s->stats.packed_bytes = p->packed_bytes;
    s->stats.fused_bias = p->n_fused;
    s->stats.fused_scores = p->n_scores;
    if (st != AT_OK) return st;
    for (int i = 0; i < n_fetch; i++) {
        at_val v = fetch[i];
        out[i] = (at_tensor){p->dtype[v], p->shape[v], s->ptr[v]};
    }
    s->step++;
    return AT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The device executor. Persistent values (params, consts, state) have device mirrors made when
 * the session opens (and for values the graph gains later); a plan's folded values are uploaded
 * once per plan; the arena and the kernels' scratch live on the device; feeds go through a
 * page-locked staging buffer into device slots, fetches come back through it. The graph's
 * buffers see device updates only through at_session_sync. */

#define DEV_ALIGN 256

static size_t dev_align(size_t n) {
    return (n + DEV_ALIGN - 1) / DEV_ALIGN * DEV_ALIGN;
}

typedef struct dev_plan {
    const at_plan *plan;
    void *folded;      /* device copies of the plan's folded values, one block */
    int64_t *fold_off; /* per value: offset into folded, or -1 */
    size_t ws_bytes;   /* the largest kernel scratch of its steps */
} dev_plan;

struct dev_side {
    const at_backend_ops *be;
    void *st;
    void **mirror; /* per value: device copy of a persistent value, or NULL */
    int n_mirror;
    dev_plan *plans;
    int n_plans, cap_plans;
    void *arena, *scratch, *feeds;
    size_t arena_cap, scratch_cap, feeds_cap;
    void *stage; /* page-locked: feeds in, fetches out */
    size_t stage_cap;
    const void **host; /* per value: the host's copy of its data this run, or NULL */
    int host_cap;
    const void **host_in; /* per node input, for the kernels */
    int host_in_cap;
    int64_t *feed_off; /* per value: offset of a feed in feeds, or -1 */
    int feed_off_cap;
    at_backend_feed *gfeeds; /* scratch for dev_graph_steps */
    int gfeeds_cap;
    size_t persistent_bytes;
};

static bool dev_persistent(const at_value_rec *r) {
    return r->producer < 0 &&
           (r->kind == AT_VALUE_PARAM || r->kind == AT_VALUE_CONST || r->kind == AT_VALUE_STATE);
}

/* Mirrors every persistent value that has none yet. */
static at_status dev_mirror_new(at_session *s, at_err *err) {
    dev_side *d = s->dev;
    const at_graph *g = s->g;
    if (d->n_mirror < g->n_vals) {
        void **m = realloc(d->mirror, sizeof(void *) * (size_t)g->n_vals);
        if (!m) return at_err_set(err, AT_E_NOMEM, "out of memory");
        for (int v = d->n_mirror; v < g->n_vals; v++) m[v] = NULL;
        d->mirror = m;
        d->n_mirror = g->n_vals;
    }
    bool any = false;
    for (int v = 0; v < g->n_vals; v++) {
        const at_value_rec *r = &g->vals[v];
        if (d->mirror[v] || !dev_persistent(r)) continue;
        int64_t n = at_shape_numel(&r->shape);
        if (n < 0)
            return at_err_set(err, AT_E_SHAPE, "'%s': a persistent value needs a concrete shape",
                              r->name);
        size_t bytes = (size_t)n * at_dtype_size(r->dtype);
        at_status st = d->be->alloc(d->st, bytes, &d->mirror[v], err);
        if (st != AT_OK) return st;
        if (bytes) {
            /* A buffer the graph never filled reads as zeros, as on the CPU. */
            void *zeros = r->data ? NULL : calloc(bytes, 1);
            if (!r->data && !zeros) return at_err_set(err, AT_E_NOMEM, "out of memory");
            st = d->be->upload(d->st, d->mirror[v], r->data ? r->data : zeros, bytes, err);
            if (st == AT_OK && zeros) st = d->be->sync(d->st, err);
            free(zeros);
            if (st != AT_OK) return st;
        }
        d->persistent_bytes += bytes;
        any = true;
    }
    /* The sources are the graph's own buffers; waiting here surfaces copy errors now. */
    return any ? d->be->sync(d->st, err) : AT_OK;
}

static at_status dev_open(at_session *s, at_err *err) {
    dev_side *d = calloc(1, sizeof *d);
    if (!d) return at_err_set(err, AT_E_NOMEM, "out of memory");
    d->be = at_cuda_backend();
    s->dev = d;
    at_status st = d->be->init(&d->st, err);
    if (st == AT_OK) st = dev_mirror_new(s, err);
    if (st != AT_OK) dev_close(s);
    return st;
}

static void dev_free_plan(dev_side *d, dev_plan *dp) {
    d->be->free(d->st, dp->folded);
    free(dp->fold_off);
}

static void dev_drop_plans(at_session *s) {
    dev_side *d = s->dev;
    d->be->graph_reset(d->st); /* graphs name the plans' addresses */
    for (int i = 0; i < d->n_plans; i++) dev_free_plan(d, &d->plans[i]);
    d->n_plans = 0;
}

static void dev_close(at_session *s) {
    dev_side *d = s->dev;
    if (!d) return;
    if (d->st) {
        dev_drop_plans(s);
        for (int v = 0; v < d->n_mirror; v++) d->be->free(d->st, d->mirror[v]);
        d->be->free(d->st, d->arena);
        d->be->free(d->st, d->scratch);
        d->be->free(d->st, d->feeds);
        d->be->free_host(d->st, d->stage);
        d->be->shutdown(d->st);
    }
    free(d->plans);
    free(d->mirror);
    free(d->host);
    free(d->host_in);
    free(d->feed_off);
    free(d->gfeeds);
    free(d);
    s->dev = NULL;
}

static at_status dev_sync(at_session *s) {
    dev_side *d = s->dev;
    const at_graph *g = s->g;
    at_err e;
    if (d->be->sync(d->st, &e) != AT_OK) return sfail(s, e.code, "at_session_sync: %s", e.msg);
    for (int v = 0; v < d->n_mirror && v < g->n_vals; v++) {
        const at_value_rec *r = &g->vals[v];
        if (!d->mirror[v] || !r->data || (r->kind != AT_VALUE_PARAM && r->kind != AT_VALUE_STATE))
            continue;
        size_t bytes = (size_t)at_shape_numel(&r->shape) * at_dtype_size(r->dtype);
        if (d->be->download(d->st, r->data, d->mirror[v], bytes, &e) != AT_OK)
            return sfail(s, e.code, "at_session_sync: '%s': %s", r->name, e.msg);
    }
    if (d->be->sync(d->st, &e) != AT_OK) return sfail(s, e.code, "at_session_sync: %s", e.msg);
    return AT_OK;
}

/* Every node of a new plan must have a kernel on the device. */
static at_status dev_check_plan(at_session *s, const at_plan *p) {
    for (int i = 0; i < p->n_steps; i++) {
        const at_node_rec *n = &s->g->nodes[p->steps[i].node];
        if (!s->dev->be->kernel(n->op))
            return sfail(s, AT_E_UNSUPPORTED, "node '%s' (%s): no %s kernel for op %s", n->name,
                         n->op_type, s->dev->be->name, n->op_type);
    }
    return AT_OK;
}

static int dev_grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    void *q = realloc(*p, (size_t)need * elem);
    if (!q) return -1;
    *p = q;
    *cap = need;
    return 0;
}

/* Device buffer of at least `bytes` (contents not kept). */
static at_status dev_reserve(at_session *s, void **buf, size_t *cap, size_t bytes) {
    dev_side *d = s->dev;
    if (bytes <= *cap && *buf) return AT_OK;
    at_err e;
    d->be->free(d->st, *buf);
    *buf = NULL;
    *cap = 0;
    if (d->be->alloc(d->st, bytes, buf, &e) != AT_OK)
        return sfail(s, e.code, "device memory for a %zu-byte buffer: %s", bytes, e.msg);
    *cap = bytes;
    return AT_OK;
}

/* The host's copy of a value's data where it has one that the device cannot have changed. */
static const void *dev_host_view(const at_session *s, const at_plan *p, at_val v) {
    if (v == AT_NONE) return NULL;
    switch (p->loc[v]) {
    case AT_LOC_FOLDED:
        return p->folded[v];
    case AT_LOC_GRAPH:
        return s->g->vals[v].kind == AT_VALUE_CONST ? s->g->vals[v].data : NULL;
    case AT_LOC_FEED:
        return s->dev->host[v];
    default:
        return NULL;
    }
}

/* The device side of plan p, made on its first run. */
static at_status dev_plan_for(at_session *s, const at_plan *p, dev_plan **out) {
    dev_side *d = s->dev;
    *out = NULL;
    for (int i = 0; i < d->n_plans; i++)
        if (d->plans[i].plan == p) {
            *out = &d->plans[i];
            return AT_OK;
        }
    if (dev_grow((void **)&d->plans, &d->cap_plans, d->n_plans + 1, sizeof(dev_plan)))
        return sfail(s, AT_E_NOMEM, "out of memory");
    dev_plan *dp = &d->plans[d->n_plans];
    memset(dp, 0, sizeof *dp);
    dp->plan = p;
    dp->fold_off = malloc(sizeof(int64_t) * ((size_t)p->n_vals + 1));
    if (!dp->fold_off) return sfail(s, AT_E_NOMEM, "out of memory");
    size_t total = 0;
    for (int v = 0; v < p->n_vals; v++) {
        dp->fold_off[v] = -1;
        if (p->loc[v] != AT_LOC_FOLDED) continue;
        dp->fold_off[v] = (int64_t)total;
        total += dev_align((size_t)at_shape_numel(&p->shape[v]) * at_dtype_size(p->dtype[v]));
    }
    at_err e;
    if (d->be->alloc(d->st, total, &dp->folded, &e) != AT_OK) {
        free(dp->fold_off);
        return sfail(s, e.code, "device memory for folded values: %s", e.msg);
    }
    for (int v = 0; v < p->n_vals; v++) {
        if (dp->fold_off[v] < 0) continue;
        size_t bytes = (size_t)at_shape_numel(&p->shape[v]) * at_dtype_size(p->dtype[v]);
        if (d->be->upload(d->st, (char *)dp->folded + dp->fold_off[v], p->folded[v], bytes, &e)) {
            dev_free_plan(d, dp);
            return sfail(s, e.code, "uploading folded values: %s", e.msg);
        }
    }
    /* The kernels' scratch: the largest any step asks for, shared (the stream runs one node at a
     * time). Workspace functions see the host's copies of constant and folded inputs only. */
    const at_graph *g = s->g;
    for (int i = 0; i < p->n_steps; i++) {
        const at_plan_step *ps = &p->steps[i];
        const at_node_rec *n = &g->nodes[ps->node];
        at_workspace_fn wf = d->be->workspace(n->op);
        if (!wf) continue;
        if (dev_grow((void **)&d->host_in, &d->host_in_cap, n->n_in + 1, sizeof(void *))) {
            dev_free_plan(d, dp);
            return sfail(s, AT_E_NOMEM, "out of memory");
        }
        /* Feeds change from run to run: a plan's scratch must not depend on them. */
        for (int k = 0; k < n->n_in; k++) {
            at_val u = n->in[k];
            d->host_in[k] =
                u == AT_NONE || p->loc[u] == AT_LOC_FEED ? NULL : dev_host_view(s, p, u);
        }
        at_kernel_ctx k;
        memset(&k, 0, sizeof k);
        k.node = n;
        k.node_id = ps->node;
        k.n_in = n->n_in;
        k.n_out = n->n_out;
        k.in = p->io + ps->first_in;
        k.out = p->io + ps->first_out;
        k.threads = s->o.threads;
        k.backend = d->be->node_state(d->st, d->host_in, n->n_in);
        size_t ws = wf(&k);
        if (ws > dp->ws_bytes) dp->ws_bytes = ws;
    }
    /* Copies are complete before the plan's first run reads them (and the host buffers are
     * the plan's own, so nothing else must wait). */
    if (d->be->sync(d->st, &e) != AT_OK) {
        dev_free_plan(d, dp);
        return sfail(s, e.code, "%s", e.msg);
    }
    d->n_plans++;
    *out = dp;
    return AT_OK;
}

static at_status dev_check_finite(at_session *s, const at_node_rec *n, const at_tensor *out,
                                  int n_out) {
    dev_side *d = s->dev;
    for (int j = 0; j < n_out; j++) {
        if (out[j].dtype != AT_F32 || !out[j].data) continue;
        int64_t idx;
        float val;
        at_err e;
        if (d->be->first_nonfinite(d->st, out[j].data, at_shape_numel(&out[j].shape), &idx, &val,
                                   &e) != AT_OK)
            return sfail(s, e.code, "node '%s' (%s): %s", n->name, n->op_type, e.msg);
        if (idx >= 0)
            return sfail(s, AT_E_NUMERIC,
                         "node '%s' (%s) produced a non-finite value (%g) in output %d at "
                         "element %lld",
                         n->name, n->op_type, (double)val, j, (long long)idx);
    }
    return AT_OK;
}

/* Launches the plan's kernels on the device stream. */
static at_status dev_steps(at_session *s, const at_plan *p, const dev_plan *dp) {
    dev_side *d = s->dev;
    const at_graph *g = s->g;
    for (int i = 0; i < p->n_steps; i++) {
        const at_plan_step *ps = &p->steps[i];
        const at_node_rec *n = &g->nodes[ps->node];
        at_tensor *in = p->io + ps->first_in, *o = p->io + ps->first_out;
        if (dev_grow((void **)&d->host_in, &d->host_in_cap, n->n_in + 1, sizeof(void *)))
            return sfail(s, AT_E_NOMEM, "out of memory");
        for (int k = 0; k < n->n_in; k++) {
            in[k].data = n->in[k] == AT_NONE ? NULL : s->ptr[n->in[k]];
            d->host_in[k] = dev_host_view(s, p, n->in[k]);
        }
        for (int j = 0; j < n->n_out; j++) o[j].data = s->ptr[n->out[j]];
        at_kernel_fn fn = d->be->kernel(n->op);
        if (!fn)
            return sfail(s, AT_E_UNSUPPORTED, "node '%s' (%s): no %s kernel", n->name, n->op_type,
                         d->be->name);
        at_kernel_ctx k;
        k.node = n;
        k.node_id = ps->node;
        k.n_in = n->n_in;
        k.n_out = n->n_out;
        k.in = in;
        k.out = o;
        k.ws = dp->ws_bytes ? d->scratch : NULL;
        k.ws_size = dp->ws_bytes;
        k.threads = s->o.threads;
        k.seed = s->o.seed;
        k.step = s->step;
        k.backend = d->be->node_state(d->st, d->host_in, n->n_in);
        k.packed = NULL;
        k.bias = NULL;
        k.pool = NULL;
        k.score_in = NULL;
        k.msg[0] = 0;
        at_status rc = fn(&k);
        if (rc != AT_OK) return sfail(s, rc, "node '%s' (%s): %s", n->name, n->op_type, k.msg);
        if (s->o.check_finite && dev_check_finite(s, n, o, n->n_out) != AT_OK) return AT_E_NUMERIC;
    }
    return AT_OK;
}

/* CUDA graphs (opts.cuda_graph; runtime/cuda/graph.cu): what the launches depend on besides
 * device memory is the plan, the buffers' addresses and the feeds' places, so the backend
 * replays a graph captured for an equal run, or captures this one. */
static at_status dev_graph_steps(at_session *s, const at_plan *p, const dev_plan *dp) {
    dev_side *d = s->dev;
    int n = 0;
    if (dev_grow((void **)&d->gfeeds, &d->gfeeds_cap, s->g->n_vals + 1, sizeof(at_backend_feed)))
        return sfail(s, AT_E_NOMEM, "out of memory");
    for (int v = 0; v < p->n_vals; v++)
        if (d->feed_off[v] >= 0)
            d->gfeeds[n++] = (at_backend_feed){
                v, (size_t)d->feed_off[v],
                (size_t)at_shape_numel(&p->shape[v]) * at_dtype_size(p->dtype[v]), d->host[v]};
    at_backend_graph_run r = {
        p, {d->arena, d->scratch, d->feeds, dp->folded}, d->gfeeds, n, s->step};
    int mode;
    bool captured;
    at_err e;
    if (d->be->graph_begin(d->st, &r, &mode, &e) != AT_OK) return sfail(s, e.code, "%s", e.msg);
    if (mode == AT_GRAPH_REPLAYED) {
        s->stats.graph_runs++;
        return AT_OK;
    }
    if (mode == AT_GRAPH_UNCAPTURED) return dev_steps(s, p, dp);
    at_status st = dev_steps(s, p, dp);
    if (d->be->graph_end(d->st, st == AT_OK, &captured, &e) != AT_OK)
        return sfail(s, e.code, "%s", e.msg);
    if (captured) {
        s->stats.graph_runs++;
        return AT_OK;
    }
    if (getenv("ATTUNE_CUDA_GRAPH_DEBUG"))
        fprintf(stderr, "attune: run not captured as a CUDA graph: %s\n",
                st != AT_OK ? s->err : "the capture broke");
    return dev_steps(s, p, dp);
}

static at_status dev_run(at_session *s, at_plan *p, const at_feed *feeds, int n_feeds,
                         const at_val *fetch, int n_fetch, at_tensor *out) {
    dev_side *d = s->dev;
    const at_graph *g = s->g;
    at_err e;
    at_status st;
    /* Makes the device current on this thread; a failed run may also have left copies from the
     * staging buffer in flight. */
    if ((st = d->be->sync(d->st, &e)) != AT_OK) return sfail(s, st, "%s", e.msg);
    if ((st = dev_mirror_new(s, &e)) != AT_OK) return sfail(s, st, "%s", e.msg);
    if (grow((void **)&s->ptr, &s->ptr_cap, g->n_vals + 1, sizeof(void *)) ||
        dev_grow((void **)&d->host, &d->host_cap, g->n_vals + 1, sizeof(void *)) ||
        dev_grow((void **)&d->feed_off, &d->feed_off_cap, g->n_vals + 1, sizeof(int64_t)))
        return sfail(s, AT_E_NOMEM, "out of memory");
    for (int v = 0; v < g->n_vals; v++) d->host[v] = NULL, d->feed_off[v] = -1;

    /* Feeds and fetches share the staging buffer: feeds first. */
    size_t feed_bytes = 0, fetch_bytes = 0;
    for (int i = 0; i < n_feeds; i++) {
        at_val v = feeds[i].val;
        if (p->loc[v] != AT_LOC_FEED) continue;
        d->host[v] = feeds[i].t.data;
        d->feed_off[v] = (int64_t)feed_bytes;
        feed_bytes += dev_align(at_tensor_nbytes(&feeds[i].t));
    }
    for (int v = 0; v < p->n_vals; v++)
        if (p->loc[v] == AT_LOC_FEED && !d->host[v] && at_shape_numel(&p->shape[v]) > 0)
            return sfail(s, AT_E_INVALID, "input '%s' is needed but was not fed", g->vals[v].name);
    for (int i = 0; i < n_fetch; i++) {
        at_val v = fetch[i];
        if (p->loc[v] == AT_LOC_FEED || p->loc[v] == AT_LOC_FOLDED) continue;
        fetch_bytes += dev_align((size_t)at_shape_numel(&p->shape[v]) * at_dtype_size(p->dtype[v]));
    }
    if (feed_bytes + fetch_bytes > d->stage_cap || !d->stage) {
        d->be->free_host(d->st, d->stage);
        d->stage = NULL;
        d->stage_cap = 0;
        size_t want = feed_bytes + fetch_bytes;
        if (d->be->alloc_host(d->st, want, &d->stage, &e) != AT_OK)
            return sfail(s, e.code, "staging memory: %s", e.msg);
        d->stage_cap = want;
    }

    dev_plan *dp;
    if ((st = dev_plan_for(s, p, &dp)) != AT_OK) return st;
    if ((st = dev_reserve(s, &d->arena, &d->arena_cap, p->arena_bytes)) != AT_OK) return st;
    if ((st = dev_reserve(s, &d->scratch, &d->scratch_cap, dp->ws_bytes)) != AT_OK) return st;
    if ((st = dev_reserve(s, &d->feeds, &d->feeds_cap, feed_bytes)) != AT_OK) return st;

    for (int v = 0; v < g->n_vals; v++) {
        if (d->feed_off[v] < 0) continue;
        size_t bytes = (size_t)at_shape_numel(&p->shape[v]) * at_dtype_size(p->dtype[v]);
        char *stage = (char *)d->stage + d->feed_off[v];
        if (bytes) memcpy(stage, d->host[v], bytes);
        if (d->be->upload(d->st, (char *)d->feeds + d->feed_off[v], stage, bytes, &e) != AT_OK)
            return sfail(s, e.code, "feed '%s': %s", g->vals[v].name, e.msg);
    }
    for (int v = 0; v < p->n_vals; v++) {
        switch (p->loc[v]) {
        case AT_LOC_GRAPH: {
            at_val root = p->offset[v] <= -2 ? (at_val)(-p->offset[v] - 2) : v;
            s->ptr[v] = root < d->n_mirror ? d->mirror[root] : NULL;
            if (!s->ptr[v])
                return sfail(s, AT_E_INTERNAL, "'%s' has no device copy", g->vals[root].name);
            break;
        }
        case AT_LOC_ARENA:
            s->ptr[v] = (char *)d->arena + p->offset[v];
            break;
        case AT_LOC_FOLDED:
            s->ptr[v] = (char *)dp->folded + dp->fold_off[v];
            break;
        case AT_LOC_FEED:
            s->ptr[v] = d->feed_off[v] >= 0 ? (char *)d->feeds + d->feed_off[v] : NULL;
            break;
        default:
            s->ptr[v] = NULL;
            break;
        }
    }

    st = s->o.cuda_graph && !s->o.check_finite ? dev_graph_steps(s, p, dp) : dev_steps(s, p, dp);
    if (st != AT_OK) return st;
    s->stats.arena_bytes = p->arena_bytes;
    s->stats.values_bytes = p->values_bytes;
    s->stats.nodes_run = p->n_steps;
    s->stats.persistent_bytes = d->persistent_bytes;

    /* Fetches are queued behind the last kernel; the error poll then waits for both. */
    size_t off = feed_bytes;
    for (int i = 0; i < n_fetch; i++) {
        at_val v = fetch[i];
        void *host;
        if (p->loc[v] == AT_LOC_FEED) {
            host = (void *)d->host[v]; /* the caller's own feed, as on the CPU */
        } else if (p->loc[v] == AT_LOC_FOLDED) {
            host = p->folded[v];
        } else {
            size_t bytes = (size_t)at_shape_numel(&p->shape[v]) * at_dtype_size(p->dtype[v]);
            host = (char *)d->stage + off;
            if (bytes && d->be->download(d->st, host, s->ptr[v], bytes, &e) != AT_OK)
                return sfail(s, e.code, "fetching '%s': %s", g->vals[v].name, e.msg);
            off += dev_align(bytes);
        }
        out[i] = (at_tensor){p->dtype[v], p->shape[v], host};
    }
    int bad_node;
    char msg[512];
    if ((st = d->be->poll_error(d->st, &bad_node, msg, sizeof msg)) != AT_OK) {
        if (bad_node >= 0 && bad_node < g->n_nodes)
            return sfail(s, st, "node '%s' (%s): %s", g->nodes[bad_node].name,
                         g->nodes[bad_node].op_type, msg);
        return sfail(s, st, "%s", msg);
    }
    s->step++;
    return AT_OK;
}
