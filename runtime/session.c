/* The session: plan cache keyed by fetch set and symbol binding, the
 * shared arena, the CPU executor, and the device executor (CUDA): the same
 * plans run on device memory, with host copies only at feeds and fetches. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "attune/session.h"
#include "runtime/backend.h"
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
    at_session *s = calloc(1, sizeof *s);
    if (!s) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    s->g = g;
    s->o = o;
    if (s->o.threads <= 0) s->o.threads = omp_get_max_threads();
    openblas_set_num_threads(s->o.threads);
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
    free(s->want);
    free(s->syms);
    free(s);
}

const char *at_session_error(const at_session *s) { return s ? s->err : "no session"; }
uint64_t at_session_step(const at_session *s) { return s->step; }
void at_session_set_step(at_session *s, uint64_t step) { s->step = step; }
at_status at_session_sync(at_session *s) {
    if (!s) return AT_E_INVALID;
    return s->dev ? dev_sync(s) : AT_OK;
}
at_session_stats at_session_get_stats(const at_session *s) { return s->stats; }

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
        if (t->shape.rank != r->shape.rank || !at_shape_is_concrete(&t->shape))
            goto bad_shape;
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

static at_status check_finite(at_session *s, const at_node_rec *n, const at_tensor *out, int n_out) {
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

static at_status execute(at_session *s, at_plan *p) {
    const at_graph *g = s->g;
    for (int st = 0; st < p->n_steps; st++) {
        const at_plan_step *ps = &p->steps[st];
        const at_node_rec *n = &g->nodes[ps->node];
        const at_op_def *def = at_op_table[n->op];
        at_tensor *in = p->io + ps->first_in, *out = p->io + ps->first_out;
        for (int k = 0; k < n->n_in; k++) in[k].data = n->in[k] == AT_NONE ? NULL : s->ptr[n->in[k]];
        for (int j = 0; j < n->n_out; j++) out[j].data = s->ptr[n->out[j]];
        if (!def->cpu)
            return sfail(s, AT_E_UNSUPPORTED, "node '%s' (%s): no CPU kernel", n->name,
                         n->op_type);
        at_kernel_ctx k;
        k.node = n;
        k.node_id = ps->node;
        k.n_in = n->n_in;
        k.n_out = n->n_out;
        k.in = in;
        k.out = out;
        k.ws = ps->ws_off >= 0 ? (char *)s->arena + ps->ws_off : NULL;
        k.ws_size = ps->ws_size;
        k.threads = s->o.threads;
        k.seed = s->o.seed;
        k.step = s->step;
        k.backend = NULL;
        k.msg[0] = 0;
        at_status rc = def->cpu(&k);
        if (rc != AT_OK)
            return sfail(s, rc, "node '%s' (%s): %s", n->name, n->op_type, k.msg);
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
            return sfail(s, AT_E_INVALID, "fetch/target %d is not a value of the graph", s->want[i]);
    qsort(s->want, (size_t)n_want, sizeof(at_val), cmp_val);
    at_plan *p = find_plan(s, n_want);
    if (!p) {
        at_err e;
        p = at_plan_build(g, feeds, n_feeds, s->want, n_want, s->o.threads, s->o.no_reuse, &e);
        if (!p) return sfail(s, e.code, "%s", e.msg);
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
        case AT_LOC_ARENA: s->ptr[v] = (char *)s->arena + p->offset[v]; break;
        case AT_LOC_FOLDED: s->ptr[v] = p->folded[v]; break;
        default: s->ptr[v] = NULL; break;
        }
    }
    for (int i = 0; i < n_feeds; i++) s->ptr[feeds[i].val] = feeds[i].t.data;
    /* A plan built for other feeds may need an input this run lacks. */
    for (int v = 0; v < p->n_vals; v++)
        if (p->loc[v] == AT_LOC_FEED && !s->ptr[v] &&
            at_shape_numel(&p->shape[v]) > 0)
            return sfail(s, AT_E_INVALID, "input '%s' is needed but was not fed", g->vals[v].name);
    st = execute(s, p);
    s->stats.arena_bytes = p->arena_bytes;
    s->stats.values_bytes = p->values_bytes;
    s->stats.nodes_run = p->n_steps;
    if (st != AT_OK) return st;
    for (int i = 0; i < n_fetch; i++) {
        at_val v = fetch[i];
        out[i] = (at_tensor){p->dtype[v], p->shape[v], s->ptr[v]};
    }
    s->step++;
    return AT_OK;
}
