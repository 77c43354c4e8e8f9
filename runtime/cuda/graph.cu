/* CUDA graphs of whole runs (at_session_opts.cuda_graph): the second run of a kind (the first
 * warms up) captures the kernels the session launches into a graph, later equal runs replay it
 * with one cudaGraphLaunch instead of hundreds of launches.
 *
 * What a captured launch bakes in besides device memory: the addresses and sizes the session
 * laid out (the key of at_backend_graph_run), the session step (random streams read it from a
 * device word instead, refreshed before every launch), and host data the kernels read to shape
 * their work. That last is the feeds' data where a kernel asked for it (at_cu_host_in during
 * the capture; checks that the device repeats use at_cu_host_peek and do not count): those
 * feeds' bytes are kept with the graph and must match for a replay, so a flag like dropout's
 * training mode gives one graph per value while token ids, read on the device only, give one
 * graph for all batches. Runs that cannot be captured (a kernel downloads device data, or an
 * API call breaks the capture) are remembered and run uncaptured from then on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/cuda_common.cuh"

/* Entries kept per session (graphs and markers); the least recently used goes first. A training
 * loop uses one graph per (fetch set, shape binding) and value of the host-read feeds. */
#define AT_CU_GRAPH_CAP 64

/* What an entry says about runs with its layout. The first run of a layout runs uncaptured
 * (SEEN): it loads the kernels' modules and lets cuBLAS settle, which a capture must not be
 * the first to do; the next one is captured (GRAPH), or found uncapturable (NOCAP). */
enum entry_kind { E_SEEN, E_GRAPH, E_NOCAP };

struct graph_entry {
    int kind;
    const void *plan;
    const void *bufs[AT_GRAPH_BUFS];
    at_backend_feed *feeds; /* val, off, bytes (host unused) */
    int n_feeds;
    bool *pinned; /* GRAPH, per feed: a kernel read its host data during the capture */
    unsigned char *pinned_data;
    cudaGraphExec_t exec; /* GRAPH */
    uint64_t used;
};

struct at_cu_graphs {
    graph_entry e[AT_CU_GRAPH_CAP];
    int n;
    uint64_t clock;
    graph_entry pending; /* the capture in progress */
    const at_backend_feed *run_feeds;
};

static void entry_free(graph_entry *g) {
    if (g->exec) cudaGraphExecDestroy(g->exec);
    free(g->feeds);
    free(g->pinned);
    free(g->pinned_data);
    memset(g, 0, sizeof *g);
}

void at_cu_graph_reset(void *state) {
    at_cuda_ctx *c = (at_cuda_ctx *)state;
    if (!c || !c->graphs) return;
    for (int i = 0; i < c->graphs->n; i++) entry_free(&c->graphs->e[i]);
    c->graphs->n = 0;
    entry_free(&c->graphs->pending);
}

static bool same_layout(const graph_entry *g, const void *plan, const void *const *bufs,
                        const at_backend_feed *feeds, int n_feeds) {
    if (g->plan != plan || g->n_feeds != n_feeds) return false;
    for (int i = 0; i < AT_GRAPH_BUFS; i++)
        if (g->bufs[i] != bufs[i]) return false;
    for (int i = 0; i < n_feeds; i++) {
        const at_backend_feed *a = &g->feeds[i], *b = &feeds[i];
        if (a->val != b->val || a->off != b->off || a->bytes != b->bytes) return false;
    }
    return true;
}

static bool layout_of_run(const graph_entry *g, const at_backend_graph_run *r) {
    return same_layout(g, r->plan, r->bufs, r->feeds, r->n_feeds);
}

static bool same_pinned(const graph_entry *g, const at_backend_graph_run *r) {
    const unsigned char *p = g->pinned_data;
    for (int i = 0; i < g->n_feeds; i++) {
        if (!g->pinned[i]) continue;
        size_t n = g->feeds[i].bytes;
        if (n && memcmp(p, r->feeds[i].host, n)) return false;
        p += n;
    }
    return true;
}

/* The graph for run r, or else the marker (SEEN / NOCAP) of its layout, or NULL. */
static graph_entry *find(at_cu_graphs *gs, const at_backend_graph_run *r, bool graph) {
    for (int i = 0; i < gs->n; i++) {
        graph_entry *g = &gs->e[i];
        if ((g->kind == E_GRAPH) != graph || !layout_of_run(g, r)) continue;
        if (!graph || same_pinned(g, r)) return g;
    }
    return NULL;
}

/* A free slot, evicting the least recently used entry when full. */
static graph_entry *slot(at_cu_graphs *gs) {
    if (gs->n < AT_CU_GRAPH_CAP) return &gs->e[gs->n++];
    int old = 0;
    for (int i = 1; i < gs->n; i++)
        if (gs->e[i].used < gs->e[old].used) old = i;
    entry_free(&gs->e[old]);
    return &gs->e[old];
}

/* g's key from r (no pinned data). */
static at_status key_init(graph_entry *g, const at_backend_graph_run *r, at_err *err) {
    entry_free(g);
    g->plan = r->plan;
    memcpy(g->bufs, r->bufs, sizeof g->bufs);
    g->n_feeds = r->n_feeds;
    size_t n = (size_t)(r->n_feeds > 0 ? r->n_feeds : 1);
    g->feeds = (at_backend_feed *)malloc(n * sizeof *g->feeds);
    g->pinned = (bool *)calloc(n, sizeof *g->pinned);
    if (!g->feeds || !g->pinned) {
        entry_free(g);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < r->n_feeds; i++) {
        g->feeds[i] = r->feeds[i];
        g->feeds[i].host = NULL;
    }
    return AT_OK;
}

void at_cu_graph_consult(at_cuda_ctx *c, const void *host) {
    at_cu_graphs *gs = c->graphs;
    if (!gs) return;
    for (int i = 0; i < gs->pending.n_feeds; i++)
        if (gs->run_feeds[i].host == host) gs->pending.pinned[i] = true;
}

/* The capture is over: with exec, the pending entry becomes a graph (keeping the data of the
 * feeds the capture read); without, its layout's marker says NOCAP. */
static at_status keep_pending(at_cu_graphs *gs, cudaGraphExec_t exec, at_err *err) {
    graph_entry *p = &gs->pending;
    if (!exec) {
        for (int i = 0; i < gs->n; i++) {
            graph_entry *g = &gs->e[i];
            if (g->kind == E_SEEN && same_layout(g, p->plan, p->bufs, p->feeds, p->n_feeds))
                g->kind = E_NOCAP;
        }
        entry_free(p);
        return AT_OK;
    }
    size_t bytes = 0;
    for (int i = 0; i < p->n_feeds; i++)
        if (p->pinned[i]) bytes += p->feeds[i].bytes;
    if (bytes) {
        p->pinned_data = (unsigned char *)malloc(bytes);
        if (!p->pinned_data) {
            cudaGraphExecDestroy(exec);
            entry_free(p);
            return at_err_set(err, AT_E_NOMEM, "out of memory");
        }
        unsigned char *q = p->pinned_data;
        for (int i = 0; i < p->n_feeds; i++) {
            if (!p->pinned[i]) continue;
            memcpy(q, gs->run_feeds[i].host, p->feeds[i].bytes);
            q += p->feeds[i].bytes;
        }
    }
    p->kind = E_GRAPH;
    p->exec = exec;
    p->used = ++gs->clock;
    graph_entry *g = slot(gs);
    *g = *p;
    memset(p, 0, sizeof *p);
    return AT_OK;
}

#define G_CHECK(call)                                                                              \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return at_err_set(err, AT_E_DEVICE, "%s failed: %s", #call, cudaGetErrorString(e_));   \
    } while (0)

at_status at_cu_graph_begin(void *state, const at_backend_graph_run *r, int *mode, at_err *err) {
    at_cuda_ctx *c = (at_cuda_ctx *)state;
    *mode = AT_GRAPH_UNCAPTURED;
    if (!c->graphs) {
        c->graphs = (at_cu_graphs *)calloc(1, sizeof *c->graphs);
        if (!c->graphs) return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    at_cu_graphs *gs = c->graphs;
    /* The stream is idle (the session synced at the start of the run), so the pinned word is
     * free to rewrite. */
    *c->hstep = (unsigned long long)r->step;
    G_CHECK(
        cudaMemcpyAsync(c->dstep, c->hstep, sizeof *c->dstep, cudaMemcpyHostToDevice, c->stream));
    graph_entry *g = find(gs, r, true);
    if (g) {
        g->used = ++gs->clock;
        G_CHECK(cudaGraphLaunch(g->exec, c->stream));
        *mode = AT_GRAPH_REPLAYED;
        return AT_OK;
    }
    graph_entry *m = find(gs, r, false);
    if (!m) { /* the layout's first run: a warm-up, uncaptured */
        graph_entry *s = slot(gs);
        AT_CU_TRY(key_init(s, r, err));
        s->kind = E_SEEN;
        s->used = ++gs->clock;
        return AT_OK;
    }
    m->used = ++gs->clock;
    if (m->kind == E_NOCAP) return AT_OK;
    AT_CU_TRY(key_init(&gs->pending, r, err));
    gs->run_feeds = r->feeds;
    /* Thread-local mode: a call on this thread that a capture cannot hold (an allocation, a
     * synchronous copy) fails and invalidates the capture instead of passing unnoticed. */
    if (cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        (void)cudaGetLastError();
        return keep_pending(gs, NULL, err);
    }
    c->capturing = true;
    c->capture_refused = false;
    *mode = AT_GRAPH_CAPTURING;
    return AT_OK;
}
at_status at_cu_graph_end(void *state, bool ok, bool *captured, at_err *err) {
    at_cuda_ctx *c = (at_cuda_ctx *)state;
    at_cu_graphs *gs = c->graphs;
    *captured = false;
    c->capturing = false;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
    /* Errors of a broken capture are not sticky; they must not surface in a later check. */
    if (e != cudaSuccess) (void)cudaGetLastError();
    bool structural = c->capture_refused || e != cudaSuccess;
    if (structural && getenv("ATTUNE_CUDA_GRAPH_DEBUG"))
        fprintf(stderr, "attune: CUDA graph capture: %s%s\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "ended",
                c->capture_refused ? " (a kernel read device data on the host)" : "");
    if (!ok) {
        if (graph) cudaGraphDestroy(graph);
        /* A kernel that rejected its data is reported by the uncaptured rerun; only a run that
         * a graph cannot hold is remembered as such. */
        if (structural) return keep_pending(gs, NULL, err);
        entry_free(&gs->pending);
        return AT_OK;
    }
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess && graph) {
        cudaError_t ei = cudaGraphInstantiate(&exec, graph, 0);
        if (ei != cudaSuccess) {
            (void)cudaGetLastError();
            exec = NULL;
            if (getenv("ATTUNE_CUDA_GRAPH_DEBUG"))
                fprintf(stderr, "attune: CUDA graph instantiation: %s\n", cudaGetErrorString(ei));
        }
    }
    if (graph) cudaGraphDestroy(graph);
    AT_CU_TRY(keep_pending(gs, exec, err));
    if (!exec) return AT_OK;
    G_CHECK(cudaGraphLaunch(exec, c->stream));
    *captured = true;
    return AT_OK;
}
