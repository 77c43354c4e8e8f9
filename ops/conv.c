/* The conv family: ONNX Conv restricted to 1-D (X [N, C, L]), and its two backward ops.
 *
 * All three run as im2col + one CBLAS GEMM per group over a chunk of batch items: the model's
 * sequences are short (L ~ 10..50), so a GEMM per item would be too thin to run fast. The
 * chunk size is a function of the shapes alone, so the workspace hook and the kernel agree. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "ops/conv_index.h"
#include "ops/op.h"
#include "ops/parallel.h"

/* Floats of scratch a chunk may use (im2col columns + the GEMM's staging block). */
#define CONV_WS_BUDGET ((int64_t)2 << 20)
#define CONV_GRAIN     8192 /* floats a block of a split loop moves at least */

typedef struct conv_attrs {
    int64_t pb, pe, s, d, group;
    int64_t ks; /* kernel_shape[0], or -1 when absent */
} conv_attrs;

/* Reads and checks the attributes; on error writes msg and returns the status. */
static at_status conv_read_attrs(const at_node_rec *n, conv_attrs *p, char *msg, size_t cap) {
    p->pb = p->pe = 0;
    p->s = p->d = p->group = 1;
    p->ks = -1;
    const char *ap = at_attr_str(n, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") != 0) {
        snprintf(msg, cap, "auto_pad '%s' is not supported; give explicit pads (auto_pad NOTSET)",
                 ap);
        return AT_E_UNSUPPORTED;
    }
    const at_attr_rec *a;
    if ((a = at_attr_find(n, "pads"))) {
        if (a->n != 2) {
            snprintf(msg, cap, "pads must have 2 entries [begin, end] for 1-D conv (got %d)", a->n);
            return a->n > 2 && a->n % 2 == 0 ? AT_E_UNSUPPORTED : AT_E_INVALID;
        }
        p->pb = a->ints[0];
        p->pe = a->ints[1];
    }
    if ((a = at_attr_find(n, "strides"))) {
        if (a->n != 1) {
            snprintf(msg, cap, "strides must have 1 entry for 1-D conv (got %d)", a->n);
            return a->n > 1 ? AT_E_UNSUPPORTED : AT_E_INVALID;
        }
        p->s = a->ints[0];
    }
    if ((a = at_attr_find(n, "dilations"))) {
        if (a->n != 1) {
            snprintf(msg, cap, "dilations must have 1 entry for 1-D conv (got %d)", a->n);
            return a->n > 1 ? AT_E_UNSUPPORTED : AT_E_INVALID;
        }
        p->d = a->ints[0];
    }
    if ((a = at_attr_find(n, "kernel_shape"))) {
        if (a->n != 1) {
            snprintf(msg, cap, "kernel_shape must have 1 entry for 1-D conv (got %d)", a->n);
            return a->n > 1 ? AT_E_UNSUPPORTED : AT_E_INVALID;
        }
        p->ks = a->ints[0];
    }
    p->group = at_attr_int(n, "group", 1);
    if (p->pb < 0 || p->pe < 0 || p->s < 1 || p->d < 1 || p->group < 1 ||
        (p->ks != -1 && p->ks < 1)) {
        snprintf(msg, cap,
                 "bad attributes: pads [%lld,%lld] must be >= 0, strides %lld, dilations %lld, "
                 "group %lld and kernel_shape %lld must be >= 1",
                 (long long)p->pb, (long long)p->pe, (long long)p->s, (long long)p->d,
                 (long long)p->group, (long long)p->ks);
        return AT_E_INVALID;
    }
    return AT_OK;
}

/* Output length for a concrete input length L and kernel K; -1 when the input is too short. */
static int64_t conv_out_len(int64_t L, int64_t K, const conv_attrs *p) {
    int64_t span = L + p->pb + p->pe - p->d * (K - 1) - 1;
    return span < 0 ? -1 : span / p->s + 1;
}

/* Rank first, so a 2-D conv is named as such rather than by its 4 pads. */
static at_status conv_ranks(at_infer_ctx *c, const at_shape *x, const at_shape *w) {
    if (x->rank > 3 || w->rank > 3)
        return at_infer_fail(c, AT_E_UNSUPPORTED,
                             "only 1-D convolution is supported (X [N, C, L], W [M, C/group, K]); "
                             "got X of rank %d and W of rank %d",
                             x->rank, w->rank);
    if (x->rank != 3 || w->rank != 3)
        return at_infer_fail(c, AT_E_SHAPE,
                             "X must be [N, C, L] and W [M, C/group, K] (got ranks %d and %d)",
                             x->rank, w->rank);
    return AT_OK;
}

/* Checks X [N, C, L] and W [M, C/group, K] against each other and the attributes, and gives
 * the output length (a symbol while building when it cannot be expressed). */
static at_status conv_check(at_infer_ctx *c, const at_shape *x, const at_shape *w,
                            const conv_attrs *p, int64_t *lo) {
    int64_t C = x->dim[1], L = x->dim[2], M = w->dim[0], Cg = w->dim[1], K = w->dim[2];
    if (p->ks >= 0 && K >= 0 && p->ks != K)
        return at_infer_fail(c, AT_E_SHAPE, "kernel_shape [%lld] differs from W's width %lld",
                             (long long)p->ks, (long long)K);
    if (K < 0 && p->ks >= 0) K = p->ks;
    if (C >= 0 && Cg >= 0 && C != Cg * p->group)
        return at_infer_fail(c, AT_E_SHAPE,
                             "X has %lld channels; W expects %lld per group x %lld groups",
                             (long long)C, (long long)Cg, (long long)p->group);
    if (M >= 0 && M % p->group != 0)
        return at_infer_fail(c, AT_E_SHAPE, "%lld output channels do not split into %lld groups",
                             (long long)M, (long long)p->group);
    if (L >= 0 && K >= 0) {
        *lo = conv_out_len(L, K, p);
        if (*lo < 1)
            return at_infer_fail(c, AT_E_SHAPE,
                                 "input length %lld is shorter than the dilated kernel %lld "
                                 "after padding [%lld,%lld]",
                                 (long long)L, (long long)(p->d * (K - 1) + 1), (long long)p->pb,
                                 (long long)p->pe);
    } else if (p->s == 1 && K >= 0 && p->pb + p->pe == p->d * (K - 1)) {
        *lo = L; /* "same" padding keeps the length symbol, so T stays T */
    } else if (c->concrete) {
        return at_infer_fail(c, AT_E_SHAPE, "input length or kernel width unknown");
    } else {
        *lo = at_sym_fresh(c->g);
    }
    return AT_OK;
}

static at_status need_f32(at_infer_ctx *c, const char *op) {
    for (int i = 0; i < c->n_in; i++)
        if (c->in_dtype[i] != AT_UNDEFINED && c->in_dtype[i] != AT_F32)
            return at_infer_fail(c, AT_E_UNSUPPORTED, "%s supports float32 only (input %d is %s)",
                                 op, i, at_dtype_name(c->in_dtype[i]));
    return AT_OK;
}

/* ---- kernel geometry ---- */

typedef struct conv_dims {
    int64_t N, C, L, M, K, Lo, Cg, Mg, G;
    int64_t nb; /* batch items per chunk */
    conv_attrs p;
} conv_dims;

static int64_t conv_chunk(const conv_dims *d) {
    int64_t per_item = (d->Cg * d->K + d->Mg) * d->Lo;
    if (per_item <= 0) return d->N > 0 ? d->N : 1;
    int64_t nb = CONV_WS_BUDGET / per_item;
    if (nb < 1) nb = 1;
    if (nb > d->N) nb = d->N > 0 ? d->N : 1;
    return nb;
}

static at_status conv_dims_of(const at_node_rec *n, const at_shape *x, const at_shape *w,
                              const at_shape *y, conv_dims *d, char *msg, size_t cap) {
    at_status st = conv_read_attrs(n, &d->p, msg, cap);
    if (st != AT_OK) return st;
    if (x->rank != 3 || w->rank != 3 || y->rank != 3) {
        snprintf(msg, cap, "X, W and Y must be rank 3");
        return AT_E_SHAPE;
    }
    d->N = x->dim[0];
    d->C = x->dim[1];
    d->L = x->dim[2];
    d->M = w->dim[0];
    d->Cg = w->dim[1];
    d->K = w->dim[2];
    d->G = d->p.group;
    d->Mg = d->M / d->G;
    d->Lo = y->dim[2];
    if (d->C != d->Cg * d->G || d->M % d->G || y->dim[0] != d->N || y->dim[1] != d->M ||
        d->Lo != conv_out_len(d->L, d->K, &d->p)) {
        snprintf(msg, cap, "inconsistent shapes");
        return AT_E_SHAPE;
    }
    int64_t ck = d->Cg * d->K;
    d->nb = conv_chunk(d);
    if (d->Mg > INT_MAX || ck > INT_MAX || d->nb * d->Lo > INT_MAX) {
        snprintf(msg, cap, "dims exceed the BLAS int range");
        return AT_E_UNSUPPORTED;
    }
    return AT_OK;
}

static size_t conv_ws_bytes(const conv_dims *d) {
    if (d->N == 0) return 0;
    return (size_t)(d->nb * (d->Cg * d->K + d->Mg) * d->Lo) * sizeof(float);
}

/* One chunk's loops around the GEMMs, split by parallel.h: n0 .. n0 + cnt - 1 of group g. */
typedef struct {
    const conv_dims *d;
    int64_t g, n0, cnt, cols;
    const float *src, *bias;
    float *dst;
} conv_job;

/* col[(c, k), (i, o)] = X[n0 + i, g*Cg + c, o*s - pb + k*d], zero in the padding; rows [lo, hi)
 * of col. */
static void im2col_rows(void *arg, int64_t lo, int64_t hi) {
    const conv_job *j = arg;
    const conv_dims *d = j->d;
    for (int64_t r = lo; r < hi; r++) {
        int64_t ci = r / d->K, off = at_conv_tap_off(r % d->K, d->p.d, d->p.pb), s = d->p.s;
        int64_t o0, o1;
        at_conv_valid_range(off, s, d->L, d->Lo, &o0, &o1);
        float *dst = j->dst + r * j->cols;
        for (int64_t i = 0; i < j->cnt; i++) {
            const float *src = j->src + ((j->n0 + i) * d->C + j->g * d->Cg + ci) * d->L;
            float *row = dst + i * d->Lo;
            for (int64_t o = 0; o < o0; o++) row[o] = 0.0f;
            if (s == 1) {
                if (o1 > o0) memcpy(row + o0, src + o0 + off, sizeof(float) * (size_t)(o1 - o0));
            } else {
                for (int64_t o = o0; o < o1; o++) row[o] = src[o * s + off];
            }
            for (int64_t o = o1; o < d->Lo; o++) row[o] = 0.0f;
        }
    }
}

static void im2col(const at_kernel_ctx *k, const conv_dims *d, const float *x, int64_t g,
                   int64_t n0, int64_t cnt, float *col) {
    conv_job j = {d, g, n0, cnt, cnt * d->Lo, x, NULL, col};
    at_par_range(k, d->Cg * d->K, CONV_GRAIN / j.cols + 1, 1, im2col_rows, &j);
}

/* buf[m, (i, o)] = dY[n0 + i, g*Mg + m, o]: one group's rows of a chunk side by side; rows
 * [lo, hi) of buf. */
static void gather_rows(void *arg, int64_t lo, int64_t hi) {
    const conv_job *j = arg;
    const conv_dims *d = j->d;
    for (int64_t m = lo; m < hi; m++)
        for (int64_t i = 0; i < j->cnt; i++)
            memcpy(j->dst + m * j->cols + i * d->Lo,
                   j->src + ((j->n0 + i) * d->M + j->g * d->Mg + m) * d->Lo,
                   sizeof(float) * (size_t)d->Lo);
}

static void gather_dy(const at_kernel_ctx *k, const conv_dims *d, const float *dy, int64_t g,
                      int64_t n0, int64_t cnt, float *buf) {
    conv_job j = {d, g, n0, cnt, cnt * d->Lo, dy, NULL, buf};
    at_par_range(k, d->Mg, CONV_GRAIN / j.cols + 1, 1, gather_rows, &j);
}

/* Y[n0 + i, g*Mg + m, :] = blk[m, (i, :)] + B[g*Mg + m], for m in [lo, hi). */
static void scatter_rows(void *arg, int64_t lo, int64_t hi) {
    const conv_job *j = arg;
    const conv_dims *d = j->d;
    for (int64_t m = lo; m < hi; m++) {
        float b = j->bias ? j->bias[j->g * d->Mg + m] : 0.0f;
        for (int64_t i = 0; i < j->cnt; i++) {
            float *dst = j->dst + ((j->n0 + i) * d->M + j->g * d->Mg + m) * d->Lo;
            const float *src = j->src + m * j->cols + i * d->Lo;
            for (int64_t o = 0; o < d->Lo; o++) dst[o] = src[o] + b;
        }
    }
}

/* col2im for rows r = (i, ci) in [lo, hi): each dX row is owned by one r, so no two threads add
 * to it. */
static void col2im_rows(void *arg, int64_t lo, int64_t hi) {
    const conv_job *j = arg;
    const conv_dims *d = j->d;
    for (int64_t r = lo; r < hi; r++) {
        int64_t i = r / d->Cg, ci = r % d->Cg;
        float *row = j->dst + ((j->n0 + i) * d->C + j->g * d->Cg + ci) * d->L;
        memset(row, 0, sizeof(float) * (size_t)d->L);
        for (int64_t kk = 0; kk < d->K; kk++) {
            int64_t off = at_conv_tap_off(kk, d->p.d, d->p.pb), s = d->p.s, o0, o1;
            const float *src = j->src + (ci * d->K + kk) * j->cols + i * d->Lo;
            /* The outputs that read the input (as in im2col); the rest read padding. */
            at_conv_valid_range(off, s, d->L, d->Lo, &o0, &o1);
            for (int64_t o = o0; o < o1; o++) row[o * s + off] += src[o];
        }
    }
}

/* ---- Conv ---- */

static const at_attr_schema conv_attrs_schema[] = {{"auto_pad", AT_ATTR_STRING, false},
                                                   {"dilations", AT_ATTR_INTS, false},
                                                   {"group", AT_ATTR_INT, false},
                                                   {"kernel_shape", AT_ATTR_INTS, false},
                                                   {"pads", AT_ATTR_INTS, false},
                                                   {"strides", AT_ATTR_INTS, false},
                                                   {NULL}};

static at_status conv_infer(at_infer_ctx *c) {
    at_status st = need_f32(c, "Conv");
    if (st != AT_OK) return st;
    const at_shape *x = &c->in_shape[0], *w = &c->in_shape[1];
    if ((st = conv_ranks(c, x, w)) != AT_OK) return st;
    conv_attrs p;
    char msg[256];
    if ((st = conv_read_attrs(c->node, &p, msg, sizeof msg)) != AT_OK)
        return at_infer_fail(c, st, "%s", msg);
    int64_t lo = 0; /* set by conv_check on success */
    if ((st = conv_check(c, x, w, &p, &lo)) != AT_OK) return st;
    if (c->n_in > 2 && c->in_dtype[2] != AT_UNDEFINED) {
        const at_shape *b = &c->in_shape[2];
        if (b->rank != 1 || (b->dim[0] >= 0 && w->dim[0] >= 0 && b->dim[0] != w->dim[0]))
            return at_infer_fail(c, AT_E_SHAPE, "B must be [M] with M = %lld output channels",
                                 (long long)w->dim[0]);
    }
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = AT_SHAPE(x->dim[0], w->dim[0], lo);
    return AT_OK;
}

static size_t conv_workspace(const at_kernel_ctx *k) {
    conv_dims d;
    char msg[256];
    if (conv_dims_of(k->node, &k->in[0].shape, &k->in[1].shape, &k->out[0].shape, &d, msg,
                     sizeof msg) != AT_OK)
        return 0;
    return conv_ws_bytes(&d);
}

static at_status conv_cpu(at_kernel_ctx *k) {
    conv_dims d;
    at_status st = conv_dims_of(k->node, &k->in[0].shape, &k->in[1].shape, &k->out[0].shape, &d,
                                k->msg, sizeof k->msg);
    if (st != AT_OK) return st;
    if (k->ws_size < conv_ws_bytes(&d))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace too small");
    const float *x = AT_F32P(&k->in[0]), *w = AT_F32P(&k->in[1]);
    const float *bias = k->n_in > 2 && k->in[2].data ? AT_F32P(&k->in[2]) : NULL;
    float *y = AT_F32P(&k->out[0]);
    int64_t ck = d.Cg * d.K;
    float *col = k->ws, *blk = col + d.nb * ck * d.Lo;
    for (int64_t n0 = 0; n0 < d.N; n0 += d.nb) {
        int64_t cnt = d.N - n0 < d.nb ? d.N - n0 : d.nb, cols = cnt * d.Lo;
        for (int64_t g = 0; g < d.G; g++) {
            im2col(k, &d, x, g, n0, cnt, col);
            at_sgemm(k, false, false, d.Mg, cols, ck, 1.0f, w + g * d.Mg * ck, ck, col, cols, 0.0f,
                     blk, cols);
            conv_job j = {&d, g, n0, cnt, cols, blk, bias, y};
            at_par_range(k, d.Mg, CONV_GRAIN / cols + 1, 1, scatter_rows, &j);
        }
    }
    return AT_OK;
}

/* Attributes for the backward ops, resolved from the forward node. */
typedef struct conv_grad_attrs {
    int64_t pads[2], strides[1], dilations[1];
    at_attr a[4];
} conv_grad_attrs;

static void conv_grad_attrs_of(const conv_attrs *p, conv_grad_attrs *o) {
    o->pads[0] = p->pb;
    o->pads[1] = p->pe;
    o->strides[0] = p->s;
    o->dilations[0] = p->d;
    o->a[0] = AT_ATTR_INTS("pads", 2, o->pads);
    o->a[1] = AT_ATTR_INTS("strides", 1, o->strides);
    o->a[2] = AT_ATTR_INTS("dilations", 1, o->dilations);
    o->a[3] = AT_ATTR_I("group", p->group);
}

static at_val conv_grad_node(at_graph *g, const char *op, at_val a, at_val b, at_val c,
                             const conv_grad_attrs *ga) {
    at_val in[3] = {a, b, c}, out = AT_NONE;
    if (at_node_add(g, op, AT_DOMAIN_ATTUNE, in, 3, &out, 1, ga->a, 4) < 0) return AT_NONE;
    return out;
}

static at_status conv_grad(at_grad_ctx *c) {
    at_graph *g = c->g;
    at_val dy = c->dy[0];
    if (dy == AT_NONE) return AT_OK;
    conv_attrs p;
    char msg[256];
    at_status st = conv_read_attrs(at_grad_node(c), &p, msg, sizeof msg);
    if (st != AT_OK) return at_graph_fail(g, st, "Conv gradient: %s", msg);
    conv_grad_attrs ga;
    conv_grad_attrs_of(&p, &ga);
    at_val x = at_grad_in(c, 0), w = at_grad_in(c, 1);
    at_val b = c->n_in > 2 ? at_grad_in(c, 2) : AT_NONE;
    if (c->need[0]) c->dx[0] = conv_grad_node(g, "ConvGradInput", dy, w, x, &ga);
    if (c->need[1]) c->dx[1] = conv_grad_node(g, "ConvGradWeight", dy, x, w, &ga);
    if (b != AT_NONE && c->need[2]) {
        static const int64_t axes[2] = {0, 2};
        c->dx[2] = at_reduce_sum(g, dy, 2, axes, 0);
    }
    return at_graph_status(g);
}

const at_op_def at_op_def_Conv = {
    .name = "Conv",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 2,
    .max_in = 3,
    .min_out = 1,
    .max_out = 1,
    .attrs = conv_attrs_schema,
    .infer = conv_infer,
    .cpu = conv_cpu,
    .workspace = conv_workspace,
    .grad = conv_grad,
};

at_val at_conv1d(at_graph *g, at_val x, at_val w, at_val b, int pad_begin, int pad_end, int stride,
                 int dilation, int group) {
    if (!g || x == AT_NONE || w == AT_NONE) return AT_NONE;
    at_val in[3] = {x, w, b};
    int64_t pads[2] = {pad_begin, pad_end}, strides[1] = {stride}, dil[1] = {dilation};
    at_attr attrs[5] = {AT_ATTR_INTS("pads", 2, pads), AT_ATTR_INTS("strides", 1, strides),
                        AT_ATTR_INTS("dilations", 1, dil), AT_ATTR_I("group", group)};
    int na = 4;
    /* ONNX Runtime wants kernel_shape when it can be known; W's width is it. */
    at_shape ws = at_value_shape(g, w);
    int64_t ks[1] = {ws.rank == 3 ? ws.dim[2] : -1};
    if (ks[0] > 0) attrs[na++] = AT_ATTR_INTS("kernel_shape", 1, ks);
    return at_node1(g, "Conv", in, b == AT_NONE ? 2 : 3, attrs, na);
}

/* ---- ConvGradInput (ai.attune): dY [N, M, Lo], W, X (for its shape) -> dX ---- */

static const at_attr_schema conv_grad_schema[] = {{"dilations", AT_ATTR_INTS, false},
                                                  {"group", AT_ATTR_INT, false},
                                                  {"pads", AT_ATTR_INTS, false},
                                                  {"strides", AT_ATTR_INTS, false},
                                                  {NULL}};

/* Shared by both backward ops: x and w are the forward operands, dy the output gradient. */
static at_status conv_grad_check(at_infer_ctx *c, const at_shape *dy, const at_shape *x,
                                 const at_shape *w) {
    at_status st = conv_ranks(c, x, w);
    if (st != AT_OK) return st;
    conv_attrs p;
    char msg[256];
    if ((st = conv_read_attrs(c->node, &p, msg, sizeof msg)) != AT_OK)
        return at_infer_fail(c, st, "%s", msg);
    int64_t lo = 0; /* set by conv_check on success */
    if ((st = conv_check(c, x, w, &p, &lo)) != AT_OK) return st;
    int64_t want[3] = {x->dim[0], w->dim[0], lo};
    if (dy->rank != 3)
        return at_infer_fail(c, AT_E_SHAPE, "dY must be [N, M, Lout] (got rank %d)", dy->rank);
    for (int i = 0; i < 3; i++)
        if (dy->dim[i] >= 0 && want[i] >= 0 && dy->dim[i] != want[i])
            return at_infer_fail(c, AT_E_SHAPE, "dY dim %d is %lld; the conv output has %lld", i,
                                 (long long)dy->dim[i], (long long)want[i]);
    return AT_OK;
}

static at_status conv_gi_infer(at_infer_ctx *c) {
    at_status st = need_f32(c, "ConvGradInput");
    if (st == AT_OK) st = conv_grad_check(c, &c->in_shape[0], &c->in_shape[2], &c->in_shape[1]);
    if (st != AT_OK) return st;
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = c->in_shape[2];
    return AT_OK;
}

static size_t conv_gi_workspace(const at_kernel_ctx *k) {
    conv_dims d;
    char msg[256];
    if (conv_dims_of(k->node, &k->in[2].shape, &k->in[1].shape, &k->in[0].shape, &d, msg,
                     sizeof msg) != AT_OK)
        return 0;
    return conv_ws_bytes(&d);
}

static at_status conv_gi_cpu(at_kernel_ctx *k) {
    conv_dims d;
    at_status st = conv_dims_of(k->node, &k->in[2].shape, &k->in[1].shape, &k->in[0].shape, &d,
                                k->msg, sizeof k->msg);
    if (st != AT_OK) return st;
    if (k->ws_size < conv_ws_bytes(&d))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace too small");
    const float *dy = AT_F32P(&k->in[0]), *w = AT_F32P(&k->in[1]);
    float *dx = AT_F32P(&k->out[0]);
    int64_t ck = d.Cg * d.K;
    float *dcol = k->ws, *blk = dcol + d.nb * ck * d.Lo;
    for (int64_t n0 = 0; n0 < d.N; n0 += d.nb) {
        int64_t cnt = d.N - n0 < d.nb ? d.N - n0 : d.nb, cols = cnt * d.Lo;
        for (int64_t g = 0; g < d.G; g++) {
            gather_dy(k, &d, dy, g, n0, cnt, blk);
            at_sgemm(k, true, false, ck, cols, d.Mg, 1.0f, w + g * d.Mg * ck, ck, blk, cols, 0.0f,
                     dcol, cols);
            conv_job j = {&d, g, n0, cnt, cols, dcol, NULL, dx};
            at_par_range(k, cnt * d.Cg, CONV_GRAIN / (d.K * d.Lo) + 1, 1, col2im_rows, &j);
        }
    }
    return AT_OK;
}

const at_op_def at_op_def_ConvGradInput = {
    .name = "ConvGradInput",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 3,
    .max_in = 3,
    .min_out = 1,
    .max_out = 1,
    .attrs = conv_grad_schema,
    .infer = conv_gi_infer,
    .cpu = conv_gi_cpu,
    .workspace = conv_gi_workspace,
    .nondiff = 1u << 2,
};

/* ---- ConvGradWeight (ai.attune): dY [N, M, Lo], X, W (for its shape) -> dW ---- */

static at_status conv_gw_infer(at_infer_ctx *c) {
    at_status st = need_f32(c, "ConvGradWeight");
    if (st == AT_OK) st = conv_grad_check(c, &c->in_shape[0], &c->in_shape[1], &c->in_shape[2]);
    if (st != AT_OK) return st;
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = c->in_shape[2];
    return AT_OK;
}

static size_t conv_gw_workspace(const at_kernel_ctx *k) {
    conv_dims d;
    char msg[256];
    if (conv_dims_of(k->node, &k->in[1].shape, &k->in[2].shape, &k->in[0].shape, &d, msg,
                     sizeof msg) != AT_OK)
        return 0;
    return conv_ws_bytes(&d);
}

static at_status conv_gw_cpu(at_kernel_ctx *k) {
    conv_dims d;
    at_status st = conv_dims_of(k->node, &k->in[1].shape, &k->in[2].shape, &k->in[0].shape, &d,
                                k->msg, sizeof k->msg);
    if (st != AT_OK) return st;
    if (k->ws_size < conv_ws_bytes(&d))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace too small");
    const float *dy = AT_F32P(&k->in[0]), *x = AT_F32P(&k->in[1]);
    float *dw = AT_F32P(&k->out[0]);
    int64_t ck = d.Cg * d.K;
    float *col = k->ws, *blk = col + d.nb * ck * d.Lo;
    if (d.N == 0) memset(dw, 0, sizeof(float) * (size_t)(d.M * ck));
    /* Chunks accumulate in a fixed order, so the sum is the same on every run. */
    for (int64_t n0 = 0; n0 < d.N; n0 += d.nb) {
        int64_t cnt = d.N - n0 < d.nb ? d.N - n0 : d.nb, cols = cnt * d.Lo;
        for (int64_t g = 0; g < d.G; g++) {
            im2col(k, &d, x, g, n0, cnt, col);
            gather_dy(k, &d, dy, g, n0, cnt, blk);
            at_sgemm(k, false, true, d.Mg, ck, cols, 1.0f, blk, cols, col, cols,
                     n0 == 0 ? 0.0f : 1.0f, dw + g * d.Mg * ck, ck);
        }
    }
    return AT_OK;
}

const at_op_def at_op_def_ConvGradWeight = {
    .name = "ConvGradWeight",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 3,
    .max_in = 3,
    .min_out = 1,
    .max_out = 1,
    .attrs = conv_grad_schema,
    .infer = conv_gw_infer,
    .cpu = conv_gw_cpu,
    .workspace = conv_gw_workspace,
    .nondiff = 1u << 2,
};
