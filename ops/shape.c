/* Shape and layout ops: Shape, Transpose, Reshape, Concat, Split, Slice (and its backward
 * op SliceGrad), Unsqueeze, Squeeze, Expand, Constant, ConstantOfShape.
 *
 * These ops move bytes without looking at them, so every kernel works for any dtype through
 * the element size. Shape publishes its output from its shape rule whenever the dims are
 * known, so the planner folds shape arithmetic (Shape -> Concat -> Reshape/Split/...) and
 * gradient rules can use at_shape_of on symbolic shapes. */
#include <limits.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"
#include "ops/parallel.h"

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 32768
/* Elements a strided-copy work unit moves at most, so a few long rows still spread. */
#define COPY_CHUNK 16384
#define PAR_GRAIN  8192 /* elements per block of a split copy */

/* Shared with ops/gather.c (declared there). */

/* ------------------------------------------------------------------------------------------ */
/* small helpers */

static int nthreads(const at_kernel_ctx *k) {
    return k->threads > 0 ? k->threads : omp_get_max_threads();
}

/* Saturates at INT64_MAX: absurd dims from a file must fail a size check,
 * not overflow. */
static int64_t prod_range(const int64_t *d, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++)
        if (__builtin_mul_overflow(p, d[i], &p)) return INT64_MAX;
    return p;
}

static int64_t shape_numel(const at_shape *s) {
    return prod_range(s->dim, 0, s->rank);
}

static void contiguous_strides(int rank, const int64_t *dims, int64_t *st) {
    int64_t s = 1;
    for (int d = rank - 1; d >= 0; d--) {
        st[d] = s;
        s *= dims[d];
    }
}

static bool shape_concrete(const at_shape *s) {
    for (int d = 0; d < s->rank; d++)
        if (s->dim[d] < 0) return false;
    return true;
}

static int64_t load_int(const void *p, at_dtype dt, int64_t i) {
    if (dt == AT_I32) {
        int32_t v;
        memcpy(&v, (const char *)p + i * 4, 4);
        return v;
    }
    int64_t v;
    memcpy(&v, (const char *)p + i * 8, 8);
    return v;
}

/* Reads a 1-D (or scalar) int32/int64 tensor of at most cap entries into v.
 * Returns the count, -1 when data is NULL, -2 when malformed. */
static int read_ivec(const void *data, at_dtype dt, const at_shape *sh, int64_t *v, int cap) {
    if (!data) return -1;
    if (dt != AT_I64 && dt != AT_I32) return -2;
    int64_t n;
    if (sh->rank == 0)
        n = 1;
    else if (sh->rank == 1)
        n = sh->dim[0];
    else
        return -2;
    if (n < 0 || n > cap) return -2;
    for (int64_t i = 0; i < n; i++) v[i] = load_int(data, dt, i);
    return (int)n;
}

static int infer_ivec(const at_infer_ctx *c, int i, int64_t *v, int cap) {
    if (i >= c->n_in || c->in_dtype[i] == AT_UNDEFINED) return -1;
    return read_ivec(c->in_data[i], c->in_dtype[i], &c->in_shape[i], v, cap);
}

static int kernel_ivec(const at_kernel_ctx *k, int i, int64_t *v, int cap) {
    if (i >= k->n_in || !k->in[i].data) return -1;
    return read_ivec(k->in[i].data, k->in[i].dtype, &k->in[i].shape, v, cap);
}

/* Length of a 1-D shape-like input, known while building (ranks are static). */
static at_status vec_len(at_infer_ctx *c, int i, int cap, int *n) {
    const at_shape *s = &c->in_shape[i];
    if (s->rank != 1) return at_infer_fail(c, AT_E_SHAPE, "input %d must be 1-D", i);
    if (s->dim[0] < 0) return at_infer_fail(c, AT_E_SHAPE, "input %d must have a known length", i);
    if (s->dim[0] > cap)
        return at_infer_fail(c, AT_E_SHAPE, "input %d has %lld entries (at most %d)", i,
                             (long long)s->dim[0], cap);
    *n = (int)s->dim[0];
    return AT_OK;
}

static at_status need_int64(at_infer_ctx *c, int i) {
    if (c->in_dtype[i] != AT_I64)
        return at_infer_fail(c, AT_E_SHAPE, "input %d must be int64, got %s", i,
                             at_dtype_name(c->in_dtype[i]));
    return AT_OK;
}

static int64_t fresh(at_infer_ctx *c) {
    return at_sym_fresh(c->g);
}

static at_status unknown_input(at_infer_ctx *c, int i) {
    return at_infer_fail(c, AT_E_UNSUPPORTED, "shape input %d must be constant", i);
}

/* ------------------------------------------------------------------------------------------ */
/* Shape values (shared with ops/gather.c) */

/* Reads input i, an int64 vector of n entries holding dims, into v: numbers when its data is
 * known, or, while building, the (possibly symbolic) dims of x when the value is Shape(x).
 * sym[k] tells a symbol code from a number (a -1 in v may be either). False when unknown. */
bool at_infer_shape_input(const at_infer_ctx *c, int i, int n, int64_t *v, bool *sym) {
    if (i >= c->n_in || c->in_dtype[i] == AT_UNDEFINED) return false;
    if (c->in_data[i]) {
        int64_t tmp[AT_MAX_RANK];
        if (read_ivec(c->in_data[i], c->in_dtype[i], &c->in_shape[i], tmp, AT_MAX_RANK) != n)
            return false;
        for (int k = 0; k < n; k++) v[k] = tmp[k], sym[k] = false;
        return true;
    }
    /* Symbolic dims never reach in_data, but a Shape producer still has them. */
    const at_graph *g = c->g;
    if (!g || !c->node || !c->node->in) return false;
    at_val val = c->node->in[i];
    if (val < 0 || val >= g->n_vals) return false;
    int p = g->vals[val].producer;
    if (p < 0 || p >= g->n_nodes) return false;
    const at_node_rec *sn = &g->nodes[p];
    if (strcmp(sn->op_type, "Shape") != 0 ||
        (sn->domain && sn->domain[0] && strcmp(sn->domain, "ai.onnx") != 0))
        return false;
    if (sn->n_in < 1 || sn->in[0] < 0 || sn->in[0] >= g->n_vals) return false;
    const at_shape *src = &g->vals[sn->in[0]].shape;
    int r = src->rank;
    int64_t s = at_attr_int(sn, "start", 0), e = at_attr_int(sn, "end", r);
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = s < 0 ? 0 : (s > r ? r : s);
    e = e < 0 ? 0 : (e > r ? r : e);
    if (e - s != n) return false;
    for (int k = 0; k < n; k++) {
        v[k] = src->dim[s + k];
        sym[k] = v[k] < 0;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Strided copies: the one loop behind Slice, SliceGrad, Expand and Transpose */

static void copy_run(char *d, const char *s, size_t es, int64_t n, int64_t ds, int64_t ss) {
    if (ds == 1 && ss == 1) {
        memcpy(d, s, (size_t)n * es);
        return;
    }
#define COPY_RUN_T(T)                                                                              \
    do {                                                                                           \
        T *dp = (T *)d;                                                                            \
        const T *sp = (const T *)s;                                                                \
        for (int64_t i = 0; i < n; i++) dp[i * ds] = sp[i * ss];                                   \
    } while (0)
    switch (es) {
    case 1:
        COPY_RUN_T(uint8_t);
        break;
    case 2:
        COPY_RUN_T(uint16_t);
        break;
    case 4:
        COPY_RUN_T(uint32_t);
        break;
    case 8:
        COPY_RUN_T(uint64_t);
        break;
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy(d + (ptrdiff_t)(i * ds) * (ptrdiff_t)es, s + (ptrdiff_t)(i * ss) * (ptrdiff_t)es,
                   es);
    }
#undef COPY_RUN_T
}

/* Drops size-1 dims and merges neighbours that are contiguous in both src and dst. */
static int coalesce(int rank, int64_t *dims, int64_t *ds, int64_t *ss) {
    int r = 0;
    for (int d = 0; d < rank; d++) {
        if (dims[d] == 1) continue;
        if (r > 0 && ds[r - 1] == ds[d] * dims[d] && ss[r - 1] == ss[d] * dims[d]) {
            dims[r - 1] *= dims[d];
            ds[r - 1] = ds[d];
            ss[r - 1] = ss[d];
        } else {
            dims[r] = dims[d], ds[r] = ds[d], ss[r] = ss[d];
            r++;
        }
    }
    return r;
}

/* dst[sum i_d * dst_st[d]] = src[sum i_d * src_st[d]] over the index box dims (strides in
 * elements, possibly negative or zero on the source side). */
static void zero_bytes(void *arg, int64_t lo, int64_t hi) {
    memset((char *)arg + lo, 0, (size_t)(hi - lo));
}

typedef struct {
    char *dst;
    const char *src;
    size_t es;
    int r;
    const int64_t *dims, *ds, *ss;
    int64_t nch, inner;
} copy_job;

static void copy_units(void *arg, int64_t lo, int64_t hi) {
    const copy_job *j = arg;
    const int r = j->r;
    for (int64_t u = lo; u < hi; u++) {
        int64_t row = u / j->nch, i0 = (u % j->nch) * COPY_CHUNK;
        int64_t n = j->inner - i0 < COPY_CHUNK ? j->inner - i0 : COPY_CHUNK;
        int64_t rem = row, doff = i0 * j->ds[r - 1], soff = i0 * j->ss[r - 1];
        for (int d = r - 2; d >= 0; d--) {
            int64_t i = rem % j->dims[d];
            rem /= j->dims[d];
            doff += i * j->ds[d];
            soff += i * j->ss[d];
        }
        copy_run(j->dst + (ptrdiff_t)doff * (ptrdiff_t)j->es,
                 j->src + (ptrdiff_t)soff * (ptrdiff_t)j->es, j->es, n, j->ds[r - 1], j->ss[r - 1]);
    }
}

static void strided_copy(void *dst, const void *src, size_t es, int rank, const int64_t *dims0,
                         const int64_t *dst_st0, const int64_t *src_st0, const at_kernel_ctx *k) {
    int64_t dims[AT_MAX_RANK], ds[AT_MAX_RANK], ss[AT_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        if (dims0[d] == 0) return;
        dims[d] = dims0[d], ds[d] = dst_st0[d], ss[d] = src_st0[d];
    }
    int r = coalesce(rank, dims, ds, ss);
    if (r == 0) {
        memcpy(dst, src, es);
        return;
    }
    int64_t inner = dims[r - 1];
    int64_t rows = prod_range(dims, 0, r - 1);
    int64_t nch = (inner + COPY_CHUNK - 1) / COPY_CHUNK, units = rows * nch;
    copy_job j = {dst, src, es, r, dims, ds, ss, nch, inner};
    /* a unit copies at most COPY_CHUNK elements */
    int64_t per_unit = inner < COPY_CHUNK ? inner : COPY_CHUNK;
    at_par_range(k, units, PAR_GRAIN / per_unit + 1, 1, copy_units, &j);
}

/* One tile of a transpose: o[i * ods + j] = x[i + j * xs] for i < ni, j < nj (writes
 * contiguous along j, reads contiguous along i). */
#define TILE_FN(T, name)                                                                           \
    static void name(void *out, const void *in, int64_t ods, int64_t xs, int64_t ni, int64_t nj) { \
        T *o = out;                                                                                \
        const T *x = in;                                                                           \
        for (int64_t i = 0; i < ni; i++)                                                           \
            for (int64_t j = 0; j < nj; j++) o[i * ods + j] = x[i + j * xs];                       \
    }
TILE_FN(uint8_t, tile_1)
TILE_FN(uint16_t, tile_2)
TILE_FN(uint32_t, tile_4)
TILE_FN(uint64_t, tile_8)
#undef TILE_FN

/* A permutation copy (coalesced: dims, dst strides ds, src strides ss) whose last output dim
 * is strided in the source: tiles of 32x32 between the output dim p that is contiguous in the
 * source and the last output dim, so both sides stream through cache; every other dim is an
 * outer loop. */
typedef struct {
    char *out;
    const char *in;
    size_t es;
    void (*tile)(void *, const void *, int64_t, int64_t, int64_t, int64_t);
    const int64_t *dims, *ds, *ss;
    const int *od;
    int m, p, r;
    int64_t I, J, ti, tj;
} tile_job;

enum { TB = 32 }; /* transpose tile edge */

static void tile_units(void *arg, int64_t lo, int64_t hi) {
    const tile_job *j = arg;
    const int p = j->p, r = j->r;
    for (int64_t u = lo; u < hi; u++) {
        int64_t rest = u / (j->ti * j->tj), i0 = (u / j->tj) % j->ti * TB, j0 = u % j->tj * TB;
        int64_t doff = i0 * j->ds[p] + j0, soff = i0 + j0 * j->ss[r - 1];
        for (int k = j->m - 1; k >= 0; k--) {
            int64_t i = rest % j->dims[j->od[k]];
            rest /= j->dims[j->od[k]];
            doff += i * j->ds[j->od[k]];
            soff += i * j->ss[j->od[k]];
        }
        j->tile(j->out + (ptrdiff_t)doff * (ptrdiff_t)j->es,
                j->in + (ptrdiff_t)soff * (ptrdiff_t)j->es, j->ds[p], j->ss[r - 1],
                j->I - i0 < TB ? j->I - i0 : TB, j->J - j0 < TB ? j->J - j0 : TB);
    }
}

static void transpose_tiled(void *out, const void *in, size_t es, int r, const int64_t *dims,
                            const int64_t *ds, const int64_t *ss, int p, const at_kernel_ctx *k) {
    int od[AT_MAX_RANK], m = 0;
    for (int d = 0; d < r - 1; d++)
        if (d != p) od[m++] = d;
    int64_t outer = 1;
    for (int i = 0; i < m; i++) outer *= dims[od[i]];
    int64_t I = dims[p], J = dims[r - 1];
    tile_job j = {out,
                  in,
                  es,
                  es == 1   ? tile_1
                  : es == 2 ? tile_2
                  : es == 4 ? tile_4
                            : tile_8,
                  dims,
                  ds,
                  ss,
                  od,
                  m,
                  p,
                  r,
                  I,
                  J,
                  (I + TB - 1) / TB,
                  (J + TB - 1) / TB};
    at_par_range(k, outer * j.ti * j.tj, PAR_GRAIN / (TB * TB) + 1, 1, tile_units, &j);
}

/* ------------------------------------------------------------------------------------------ */
/* Shape */

static const at_attr_schema shape_attrs[] = {
    {"start", AT_ATTR_INT, false}, {"end", AT_ATTR_INT, false}, {NULL, 0, false}};

static void shape_range(const at_node_rec *n, int rank, int *s0, int *s1) {
    int64_t s = at_attr_int(n, "start", 0), e = at_attr_int(n, "end", rank);
    if (s < 0) s += rank;
    if (e < 0) e += rank;
    s = s < 0 ? 0 : (s > rank ? rank : s);
    e = e < 0 ? 0 : (e > rank ? rank : e);
    *s0 = (int)s;
    *s1 = (int)(e < s ? s : e);
}

static at_status shape_infer(at_infer_ctx *c) {
    int s0, s1;
    shape_range(c->node, c->in_shape[0].rank, &s0, &s1);
    int64_t n = s1 - s0;
    c->out_dtype[0] = AT_I64;
    c->out_shape[0] = at_shape_make(1, &n);
    if (!c->out_data || !c->out_buf) return AT_OK;
    for (int d = s0; d < s1; d++)
        if (c->in_shape[0].dim[d] < 0) return AT_OK;
    memcpy(c->out_buf[0], &c->in_shape[0].dim[s0], (size_t)n * sizeof(int64_t));
    c->out_data[0] = c->out_buf[0];
    return AT_OK;
}

static at_status shape_cpu(at_kernel_ctx *k) {
    int s0, s1;
    shape_range(k->node, k->in[0].shape.rank, &s0, &s1);
    int64_t *o = AT_I64P(&k->out[0]);
    for (int d = s0; d < s1; d++) o[d - s0] = k->in[0].shape.dim[d];
    return AT_OK;
}

const at_op_def at_op_def_Shape = {
    .name = "Shape",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 1,
    .min_out = 1,
    .max_out = 1,
    .attrs = shape_attrs,
    .infer = shape_infer,
    .cpu = shape_cpu,
    .nondiff = 1,
};

at_val at_shape_of(at_graph *g, at_val x) {
    if (x == AT_NONE) return AT_NONE;
    return at_node1(g, "Shape", &x, 1, NULL, 0);
}

/* dims [start, end) of x's shape as an int64 [end - start] value */
static at_val shape_slice_of(at_graph *g, at_val x, int start, int end) {
    at_attr a[2] = {AT_ATTR_I("start", start), AT_ATTR_I("end", end)};
    return at_node1(g, "Shape", &x, 1, a, 2);
}

/* ------------------------------------------------------------------------------------------ */
/* gradient-rule helpers */

static at_status grad_done(at_grad_ctx *c, at_val v) {
    if (v != AT_NONE) return AT_OK;
    at_status st = at_graph_status(c->g);
    return st != AT_OK ? st : AT_E_INTERNAL;
}

/* x reshaped to like's shape exactly (allowzero: a 0 dim stays 0, never copies). */
static at_val reshape_like(at_graph *g, at_val x, at_val like) {
    at_val in[2] = {x, at_shape_of(g, like)};
    if (in[1] == AT_NONE) return AT_NONE;
    at_attr a = AT_ATTR_I("allowzero", 1);
    return at_node1(g, "Reshape", in, 2, &a, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Transpose */

static const at_attr_schema transpose_attrs[] = {{"perm", AT_ATTR_INTS, false}, {NULL, 0, false}};

/* perm from the attribute (default: reversed); false when it is not a permutation of rank */
static bool get_perm(const at_node_rec *n, int rank, int64_t *perm) {
    const at_attr_rec *a = at_attr_find(n, "perm");
    if (!a) {
        for (int i = 0; i < rank; i++) perm[i] = rank - 1 - i;
        return true;
    }
    if (a->n != rank) return false;
    bool seen[AT_MAX_RANK] = {false};
    for (int i = 0; i < rank; i++) {
        int64_t p = a->ints[i];
        if (p < 0 || p >= rank || seen[p]) return false;
        seen[p] = true;
        perm[i] = p;
    }
    return true;
}

static at_status transpose_infer(at_infer_ctx *c) {
    const at_shape *x = &c->in_shape[0];
    int64_t perm[AT_MAX_RANK];
    if (!get_perm(c->node, x->rank, perm))
        return at_infer_fail(c, AT_E_SHAPE, "perm is not a permutation of 0..%d", x->rank - 1);
    c->out_dtype[0] = c->in_dtype[0];
    c->out_shape[0].rank = x->rank;
    for (int i = 0; i < x->rank; i++) c->out_shape[0].dim[i] = x->dim[perm[i]];
    return AT_OK;
}

static at_status transpose_cpu(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[0];
    at_tensor *y = &k->out[0];
    int r = x->shape.rank;
    size_t es = at_dtype_size(x->dtype);
    int64_t perm[AT_MAX_RANK], ist[AT_MAX_RANK], dims[AT_MAX_RANK], ds[AT_MAX_RANK],
        ss[AT_MAX_RANK];
    if (!get_perm(k->node, r, perm)) return at_kernel_fail(k, AT_E_SHAPE, "bad perm");
    if (shape_numel(&y->shape) == 0) return AT_OK;
    contiguous_strides(r, x->shape.dim, ist);
    for (int i = 0; i < r; i++) dims[i] = y->shape.dim[i], ss[i] = ist[perm[i]];
    contiguous_strides(r, dims, ds);
    int n = coalesce(r, dims, ds, ss);
    /* Keeping the last dim makes row copies; moving it needs tiles to stay in cache. */
    int p = -1;
    for (int d = 0; n > 1 && ss[n - 1] != 1 && d < n - 1; d++)
        if (ss[d] == 1) p = d;
    bool es_ok = es == 1 || es == 2 || es == 4 || es == 8;
    if (p >= 0 && es_ok)
        transpose_tiled(y->data, x->data, es, n, dims, ds, ss, p, k);
    else
        strided_copy(y->data, x->data, es, n, dims, ds, ss, k);
    return AT_OK;
}

static at_status transpose_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    int r = at_value_shape(c->g, at_grad_in(c, 0)).rank;
    int64_t perm[AT_MAX_RANK], inv[AT_MAX_RANK];
    if (!get_perm(at_grad_node(c), r, perm)) return AT_E_SHAPE;
    for (int i = 0; i < r; i++) inv[perm[i]] = i;
    c->dx[0] = at_transpose(c->g, c->dy[0], r, inv);
    return grad_done(c, c->dx[0]);
}

const at_op_def at_op_def_Transpose = {
    .name = "Transpose",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 1,
    .min_out = 1,
    .max_out = 1,
    .attrs = transpose_attrs,
    .infer = transpose_infer,
    .cpu = transpose_cpu,
    .grad = transpose_grad,
};

at_val at_transpose(at_graph *g, at_val x, int n, const int64_t *perm) {
    if (x == AT_NONE) return AT_NONE;
    if (n <= 0 || !perm) return at_node1(g, "Transpose", &x, 1, NULL, 0);
    at_attr a = AT_ATTR_INTS("perm", n, perm);
    return at_node1(g, "Transpose", &x, 1, &a, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Reshape */

static const at_attr_schema reshape_attrs[] = {{"allowzero", AT_ATTR_INT, false}, {NULL, 0, false}};

/* The value of the -1 dim of a reshape from in to out (out[hole] unset), or 0 when it cannot
 * be expressed: symbols common to both sides cancel, then what is left must be numbers, or
 * one input symbol against an equal product of numbers. */
static int64_t reshape_hole(const at_shape *in, const int64_t *out, int n, int hole, bool *bad) {
    int64_t ins[AT_MAX_RANK];
    int nin = 0;
    int64_t pin = 1, pout = 1;
    for (int d = 0; d < in->rank; d++) {
        if (in->dim[d] < 0)
            ins[nin++] = in->dim[d];
        else if (__builtin_mul_overflow(pin, in->dim[d], &pin))
            pin = INT64_MAX;
    }
    int extra_out = 0;
    for (int k = 0; k < n; k++) {
        if (k == hole) continue;
        if (out[k] >= 0) {
            if (__builtin_mul_overflow(pout, out[k], &pout)) pout = INT64_MAX;
            continue;
        }
        int m = 0;
        while (m < nin && ins[m] != out[k]) m++;
        if (m < nin)
            ins[m] = ins[--nin];
        else
            extra_out++;
    }
    *bad = false;
    if (extra_out) return 0;
    if (nin == 0) {
        if (pout == 0 || pin % pout != 0) {
            *bad = true;
            return 0;
        }
        return pin / pout;
    }
    if (nin == 1 && pin == pout) return ins[0];
    return 0;
}

static at_status reshape_infer(at_infer_ctx *c) {
    at_status st = need_int64(c, 1);
    int n = 0; /* set by vec_len; initialized for -Wmaybe-uninitialized */
    if (st == AT_OK) st = vec_len(c, 1, AT_MAX_RANK, &n);
    if (st != AT_OK) return st;
    const at_shape *x = &c->in_shape[0];
    at_shape *y = &c->out_shape[0];
    c->out_dtype[0] = c->in_dtype[0];
    y->rank = n;
    int64_t v[AT_MAX_RANK];
    bool sym[AT_MAX_RANK];
    if (!at_infer_shape_input(c, 1, n, v, sym)) {
        if (c->concrete) return unknown_input(c, 1);
        for (int k = 0; k < n; k++) y->dim[k] = fresh(c);
        return AT_OK;
    }
    bool allowzero = at_attr_int(c->node, "allowzero", 0) != 0;
    int hole = -1;
    bool zero = false;
    for (int k = 0; k < n; k++) {
        if (sym[k]) {
            y->dim[k] = v[k];
        } else if (v[k] == -1) {
            if (hole >= 0) return at_infer_fail(c, AT_E_SHAPE, "more than one -1 in shape");
            hole = k;
        } else if (v[k] == 0 && !allowzero) {
            if (k >= x->rank)
                return at_infer_fail(c, AT_E_SHAPE, "shape[%d] = 0 copies a dim the input lacks",
                                     k);
            y->dim[k] = x->dim[k];
        } else if (v[k] < 0) {
            return at_infer_fail(c, AT_E_SHAPE, "shape[%d] = %lld", k, (long long)v[k]);
        } else {
            zero |= v[k] == 0;
            y->dim[k] = v[k];
        }
    }
    if (hole >= 0 && zero)
        return at_infer_fail(c, AT_E_SHAPE, "allowzero shape holds both 0 and -1");
    bool bad;
    if (hole >= 0) {
        int64_t h = reshape_hole(x, y->dim, n, hole, &bad);
        if (bad)
            return at_infer_fail(c, AT_E_SHAPE, "cannot infer the -1 dim: sizes do not divide");
        if (h == 0) {
            if (c->concrete) return at_infer_fail(c, AT_E_SHAPE, "cannot infer the -1 dim");
            h = fresh(c);
        }
        y->dim[hole] = h;
    }
    if (shape_concrete(x) && shape_concrete(y) && shape_numel(x) != shape_numel(y))
        return at_infer_fail(c, AT_E_SHAPE, "cannot reshape %lld elements to %lld",
                             (long long)shape_numel(x), (long long)shape_numel(y));
    return AT_OK;
}

static at_status copy_cpu(at_kernel_ctx *k) {
    size_t bytes = at_tensor_nbytes(&k->in[0]);
    if (k->out[0].data != k->in[0].data && bytes) memcpy(k->out[0].data, k->in[0].data, bytes);
    return AT_OK;
}

static at_status reshape_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    c->dx[0] = reshape_like(c->g, c->dy[0], at_grad_in(c, 0));
    return grad_done(c, c->dx[0]);
}

const at_op_def at_op_def_Reshape = {
    .name = "Reshape",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 2,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .attrs = reshape_attrs,
    .infer = reshape_infer,
    .cpu = copy_cpu,
    .view = at_view_of_in0,
    .grad = reshape_grad,
    .nondiff = 1u << 1,
};

at_val at_reshape(at_graph *g, at_val x, int n, const int64_t *shape) {
    if (x == AT_NONE) return AT_NONE;
    at_val s = at_const_i64s(g, n, shape);
    return at_reshape_to(g, x, s);
}

at_val at_reshape_to(at_graph *g, at_val x, at_val shape) {
    if (x == AT_NONE || shape == AT_NONE) return AT_NONE;
    at_val in[2] = {x, shape};
    return at_node1(g, "Reshape", in, 2, NULL, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Concat */

static const at_attr_schema concat_attrs[] = {{"axis", AT_ATTR_INT, true}, {NULL, 0, false}};

static at_status concat_infer(at_infer_ctx *c) {
    const at_shape *x0 = &c->in_shape[0];
    int r = x0->rank;
    int axis = at_norm_axis(at_attr_int(c->node, "axis", 0), r);
    if (axis < 0) return at_infer_fail(c, AT_E_SHAPE, "axis out of range for rank %d", r);
    at_shape y = *x0;
    bool all_known = true;
    int64_t sum = 0, only_sym = 0;
    int n_sym = 0;
    for (int i = 0; i < c->n_in; i++) {
        const at_shape *s = &c->in_shape[i];
        if (c->in_dtype[i] != c->in_dtype[0])
            return at_infer_fail(c, AT_E_SHAPE, "input %d is %s, input 0 is %s", i,
                                 at_dtype_name(c->in_dtype[i]), at_dtype_name(c->in_dtype[0]));
        if (s->rank != r)
            return at_infer_fail(c, AT_E_SHAPE, "input %d has rank %d, input 0 rank %d", i, s->rank,
                                 r);
        for (int d = 0; d < r; d++) {
            if (d == axis) continue;
            int64_t a = y.dim[d], b = s->dim[d];
            if (a >= 0 && b >= 0 && a != b)
                return at_infer_fail(c, AT_E_SHAPE, "input %d dim %d is %lld, expected %lld", i, d,
                                     (long long)b, (long long)a);
            if (a < 0 && b >= 0) y.dim[d] = b;
        }
        int64_t a = s->dim[axis];
        if (a < 0) {
            all_known = false;
            n_sym++;
            only_sym = a;
        } else {
            sum += a;
        }
    }
    if (all_known)
        y.dim[axis] = sum;
    else if (n_sym == 1 && sum == 0)
        y.dim[axis] = only_sym;
    else
        y.dim[axis] = fresh(c);
    c->out_dtype[0] = c->in_dtype[0];
    c->out_shape[0] = y;
    return AT_OK;
}

/* Concat and Split: unit u copies part u % n of outer row u / n between the joined tensor
 * (rows of `row` elements) and the parts. */
typedef struct {
    const at_kernel_ctx *k;
    int axis, n;
    bool split;
    int64_t inner, row;
    size_t es;
} join_job;

static void join_units(void *arg, int64_t lo, int64_t hi) {
    const join_job *j = arg;
    const at_tensor *parts = j->split ? j->k->out : j->k->in;
    char *whole = j->split ? j->k->in[0].data : j->k->out[0].data;
    for (int64_t u = lo; u < hi; u++) {
        int64_t o = u / j->n;
        int i = (int)(u % j->n);
        int64_t off = 0;
        for (int q = 0; q < i; q++) off += parts[q].shape.dim[j->axis] * j->inner;
        int64_t len = parts[i].shape.dim[j->axis] * j->inner;
        if (!len) continue;
        char *w = whole + (size_t)(o * j->row + off) * j->es;
        char *pt = (char *)parts[i].data + (size_t)(o * len) * j->es;
        if (j->split)
            memcpy(pt, w, (size_t)len * j->es);
        else
            memcpy(w, pt, (size_t)len * j->es);
    }
}

static at_status join_cpu(at_kernel_ctx *k, bool split) {
    const at_tensor *w = split ? &k->in[0] : &k->out[0];
    int r = w->shape.rank;
    int axis = at_norm_axis(at_attr_int(k->node, "axis", 0), r);
    if (axis < 0) return at_kernel_fail(k, AT_E_SHAPE, "axis out of range");
    join_job j = {k,
                  axis,
                  split ? k->n_out : k->n_in,
                  split,
                  prod_range(w->shape.dim, axis + 1, r),
                  0,
                  at_dtype_size(w->dtype)};
    j.row = w->shape.dim[axis] * j.inner;
    int64_t outer = prod_range(w->shape.dim, 0, axis), units = outer * j.n;
    int64_t per_unit = j.row / j.n + 1;
    at_par_range(k, units, PAR_GRAIN / per_unit + 1, 1, join_units, &j);
    return AT_OK;
}

static at_status concat_cpu(at_kernel_ctx *k) {
    return join_cpu(k, false);
}

static at_val split_node(at_graph *g, at_val x, at_val sizes, int axis, int n, at_val *outs) {
    at_val in[2] = {x, sizes};
    at_attr a = AT_ATTR_I("axis", axis);
    if (at_node_add(g, "Split", AT_DOMAIN_ONNX, in, 2, outs, n, &a, 1) < 0) return AT_NONE;
    return outs[0];
}

/* The pieces of dy along axis, sized like the inputs: one Split whose sizes are constants
 * when known now, else the inputs' dims (folded at plan time). */
static at_status concat_grad(at_grad_ctx *c) {
    if (c->dy[0] == AT_NONE) return AT_OK;
    at_graph *g = c->g;
    int n = c->n_in;
    int r = at_value_shape(g, at_grad_in(c, 0)).rank;
    int axis = at_norm_axis(at_attr_int(at_grad_node(c), "axis", 0), r);
    if (axis < 0) return AT_E_SHAPE;
    at_val *xs = malloc(sizeof(at_val) * 3 * (size_t)n);
    int64_t *sizes = malloc(sizeof(int64_t) * (size_t)n);
    if (!xs || !sizes) {
        free(xs);
        free(sizes);
        return at_graph_fail(g, AT_E_NOMEM, "Concat gradient: out of memory");
    }
    at_val *outs = xs + n, *parts = xs + 2 * n;
    bool known = true;
    for (int i = 0; i < n; i++) {
        xs[i] = at_grad_in(c, i);
        sizes[i] = at_value_shape(g, xs[i]).dim[axis];
        known &= sizes[i] >= 0;
    }
    at_val sz;
    if (known) {
        sz = at_const_i64s(g, n, sizes);
    } else {
        for (int i = 0; i < n; i++) parts[i] = shape_slice_of(g, xs[i], axis, axis + 1);
        sz = n == 1 ? parts[0] : at_concat(g, n, parts, 0);
    }
    at_val first = sz == AT_NONE ? AT_NONE : split_node(g, c->dy[0], sz, axis, n, outs);
    at_status st = grad_done(c, first);
    if (st == AT_OK)
        for (int i = 0; i < n; i++)
            if (c->need[i]) c->dx[i] = outs[i];
    free(xs);
    free(sizes);
    return st;
}

const at_op_def at_op_def_Concat = {
    .name = "Concat",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = AT_VARIADIC,
    .min_out = 1,
    .max_out = 1,
    .attrs = concat_attrs,
    .infer = concat_infer,
    .cpu = concat_cpu,
    .grad = concat_grad,
};

at_val at_concat(at_graph *g, int n, const at_val *xs, int axis) {
    for (int i = 0; i < n; i++)
        if (xs[i] == AT_NONE) return AT_NONE;
    at_attr a = AT_ATTR_I("axis", axis);
    return at_node1(g, "Concat", xs, n, &a, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Split */

static const at_attr_schema split_attrs[] = {
    {"axis", AT_ATTR_INT, false}, {"num_outputs", AT_ATTR_INT, false}, {NULL, 0, false}};

static at_status split_infer(at_infer_ctx *c) {
    const at_shape *x = &c->in_shape[0];
    int axis = at_norm_axis(at_attr_int(c->node, "axis", 0), x->rank);
    if (axis < 0) return at_infer_fail(c, AT_E_SHAPE, "axis out of range for rank %d", x->rank);
    int n = c->n_out;
    int64_t dim = x->dim[axis];
    int64_t *sz = malloc(sizeof(int64_t) * (size_t)n);
    if (!sz) return at_infer_fail(c, AT_E_NOMEM, "out of memory");
    at_status st = AT_OK;
    bool have_split = c->n_in > 1 && c->in_dtype[1] != AT_UNDEFINED;
    if (have_split) {
        int len = 0; /* set by vec_len; initialized for -Wmaybe-uninitialized */
        st = need_int64(c, 1);
        if (st == AT_OK) st = vec_len(c, 1, INT_MAX, &len);
        if (st == AT_OK && len != n)
            st = at_infer_fail(c, AT_E_SHAPE, "split has %d sizes for %d outputs", len, n);
        if (st == AT_OK && c->in_data[1]) {
            int64_t sum = 0;
            for (int j = 0; j < n && st == AT_OK; j++) {
                sz[j] = load_int(c->in_data[1], AT_I64, j);
                if (sz[j] < 0)
                    st = at_infer_fail(c, AT_E_SHAPE, "split[%d] = %lld", j, (long long)sz[j]);
                sum += sz[j];
            }
            if (st == AT_OK && dim >= 0 && sum != dim)
                st = at_infer_fail(c, AT_E_SHAPE, "split sizes sum to %lld, dim %d is %lld",
                                   (long long)sum, axis, (long long)dim);
        } else if (st == AT_OK) {
            if (c->concrete)
                st = unknown_input(c, 1);
            else
                for (int j = 0; j < n; j++) sz[j] = n == 1 ? dim : fresh(c);
        }
    } else {
        const at_attr_rec *no = at_attr_find(c->node, "num_outputs");
        if (no && no->i != n)
            st = at_infer_fail(c, AT_E_SHAPE, "num_outputs is %lld but the node has %d outputs",
                               (long long)no->i, n);
        else if (dim < 0)
            for (int j = 0; j < n; j++) sz[j] = n == 1 ? dim : fresh(c);
        else {
            /* ONNX 18: equal chunks of ceil(dim / n), the last one smaller */
            int64_t chunk = (dim + n - 1) / n, last = dim - chunk * (n - 1);
            if (last < 0)
                st = at_infer_fail(c, AT_E_SHAPE, "cannot split %lld into %d parts", (long long)dim,
                                   n);
            for (int j = 0; j < n; j++) sz[j] = j == n - 1 ? last : chunk;
        }
    }
    if (st == AT_OK)
        for (int j = 0; j < n; j++) {
            c->out_dtype[j] = c->in_dtype[0];
            c->out_shape[j] = *x;
            c->out_shape[j].dim[axis] = sz[j];
        }
    free(sz);
    return st;
}

static at_status split_cpu(at_kernel_ctx *k) {
    return join_cpu(k, true);
}

/* Concat of the outputs' gradients; an output without one contributes zeros. */
static at_status split_grad(at_grad_ctx *c) {
    if (!c->need[0]) return AT_OK;
    at_graph *g = c->g;
    int n = c->n_out;
    bool any = false;
    for (int j = 0; j < n; j++) any |= c->dy[j] != AT_NONE;
    if (!any) return AT_OK;
    int r = at_value_shape(g, at_grad_in(c, 0)).rank;
    int axis = at_norm_axis(at_attr_int(at_grad_node(c), "axis", 0), r);
    if (axis < 0) return AT_E_SHAPE;
    at_val *parts = malloc(sizeof(at_val) * (size_t)n);
    if (!parts) return at_graph_fail(g, AT_E_NOMEM, "Split gradient: out of memory");
    for (int j = 0; j < n; j++) {
        parts[j] = c->dy[j];
        if (parts[j] == AT_NONE) {
            at_val oj = at_grad_out(c, j);
            parts[j] = at_constant_of_shape(g, at_shape_of(g, oj), at_value_dtype(g, oj), 0.0);
        }
    }
    c->dx[0] = n == 1 ? parts[0] : at_concat(g, n, parts, axis);
    free(parts);
    return grad_done(c, c->dx[0]);
}

const at_op_def at_op_def_Split = {
    .name = "Split",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 2,
    .min_out = 1,
    .max_out = AT_VARIADIC,
    .attrs = split_attrs,
    .infer = split_infer,
    .cpu = split_cpu,
    .grad = split_grad,
    .nondiff = 1u << 1,
};

at_status at_split_into(at_graph *g, at_val x, int axis, int n, const int64_t *sizes,
                        at_val *outs) {
    for (int j = 0; j < n; j++) outs[j] = AT_NONE;
    if (x == AT_NONE) {
        at_status st = at_graph_status(g);
        return st != AT_OK ? st : AT_E_INVALID;
    }
    if (n < 1) return at_graph_fail(g, AT_E_INVALID, "at_split: %d parts", n);
    at_attr a[2] = {AT_ATTR_I("axis", axis), AT_ATTR_I("num_outputs", n)};
    at_val in[2] = {x, AT_NONE};
    int n_in = 1;
    if (sizes) {
        in[1] = at_const_i64s(g, n, sizes);
        n_in = 2;
    }
    /* opset 18 takes either the sizes or num_outputs, never both */
    if (at_node_add(g, "Split", AT_DOMAIN_ONNX, in, n_in, outs, n, a, sizes ? 1 : 2) < 0) {
        for (int j = 0; j < n; j++) outs[j] = AT_NONE;
        at_status st = at_graph_status(g);
        return st != AT_OK ? st : AT_E_INVALID;
    }
    return AT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Slice and SliceGrad */

/* One axis of a slice on a dim of known size, clamped as ONNX says; returns the length and
 * sets the first index. */
static int64_t slice_axis(int64_t dim, int64_t start, int64_t end, int64_t step, int64_t *first) {
    if (start < 0) start += dim;
    if (end < 0) end += dim;
    if (step > 0) {
        start = start < 0 ? 0 : (start > dim ? dim : start);
        end = end < 0 ? 0 : (end > dim ? dim : end);
        *first = start;
        return end > start ? (end - start - 1) / step + 1 : 0;
    }
    if (dim == 0) {
        *first = 0;
        return 0;
    }
    start = start < 0 ? 0 : (start > dim - 1 ? dim - 1 : start);
    end = end < -1 ? -1 : (end > dim - 1 ? dim - 1 : end);
    *first = start;
    int64_t neg = step == INT64_MIN ? INT64_MAX : -step;
    return start > end ? (start - end - 1) / neg + 1 : 0;
}

typedef struct slice_args {
    int n;
    int64_t starts[AT_MAX_RANK], ends[AT_MAX_RANK], axes[AT_MAX_RANK], steps[AT_MAX_RANK];
} slice_args;

/* Checks the parameter vectors against rank (axes normalized, no repeats, no zero step). */
static const char *slice_check(slice_args *a, int n_starts, int n_ends, int n_axes, int n_steps,
                               int rank) {
    static _Thread_local char msg[128];
    if (n_starts != n_ends) return "starts and ends differ in length";
    if (n_axes >= 0 && n_axes != n_starts) return "axes and starts differ in length";
    if (n_steps >= 0 && n_steps != n_starts) return "steps and starts differ in length";
    a->n = n_starts;
    bool seen[AT_MAX_RANK] = {false};
    for (int k = 0; k < a->n; k++) {
        int64_t ax = n_axes >= 0 ? a->axes[k] : k;
        int nx = at_norm_axis(ax, rank);
        if (nx < 0) {
            snprintf(msg, sizeof msg, "axis %lld out of range for rank %d", (long long)ax, rank);
            return msg;
        }
        if (seen[nx]) return "an axis appears twice";
        seen[nx] = true;
        a->axes[k] = nx;
        if (n_steps < 0) a->steps[k] = 1;
        if (a->steps[k] == 0) return "a step is 0";
    }
    return NULL;
}

/* Reads starts/ends/axes/steps from inputs first..first+3; -1 when one of the needed ones is
 * not known, -2 when malformed, else 0. */
static int slice_read_infer(const at_infer_ctx *c, int first, slice_args *a, int rank,
                            const char **err) {
    int ns = infer_ivec(c, first, a->starts, AT_MAX_RANK);
    int ne = infer_ivec(c, first + 1, a->ends, AT_MAX_RANK);
    int na = infer_ivec(c, first + 2, a->axes, AT_MAX_RANK);
    int nt = infer_ivec(c, first + 3, a->steps, AT_MAX_RANK);
    bool has_axes = first + 2 < c->n_in && c->in_dtype[first + 2] != AT_UNDEFINED;
    bool has_steps = first + 3 < c->n_in && c->in_dtype[first + 3] != AT_UNDEFINED;
    if (ns == -2 || ne == -2 || na == -2 || nt == -2) {
        *err = "starts, ends, axes and steps must be 1-D int32/int64 of at most rank entries";
        return -2;
    }
    if (ns < 0 || ne < 0 || (has_axes && na < 0) || (has_steps && nt < 0)) return -1;
    *err = slice_check(a, ns, ne, has_axes ? na : -1, has_steps ? nt : -1, rank);
    return *err ? -2 : 0;
}

static int slice_read_kernel(const at_kernel_ctx *k, int first, slice_args *a, int rank,
                             const char **err) {
    int ns = kernel_ivec(k, first, a->starts, AT_MAX_RANK);
    int ne = kernel_ivec(k, first + 1, a->ends, AT_MAX_RANK);
    int na = kernel_ivec(k, first + 2, a->axes, AT_MAX_RANK);
    int nt = kernel_ivec(k, first + 3, a->steps, AT_MAX_RANK);
    if (ns < 0 || ne < 0 || na == -2 || nt == -2) {
        *err = "starts, ends, axes and steps must be 1-D int32/int64 of at most rank entries";
        return -2;
    }
    *err = slice_check(a, ns, ne, na, nt, rank);
    return *err ? -2 : 0;
}

/* The full index map of a slice of a concrete shape: first index, step and length per dim. */
static void slice_map(const at_shape *x, const slice_args *a, int64_t *first, int64_t *step,
                      int64_t *len) {
    for (int d = 0; d < x->rank; d++) first[d] = 0, step[d] = 1, len[d] = x->dim[d];
    for (int k = 0; k < a->n; k++) {
        int d = (int)a->axes[k];
        step[d] = a->steps[k];
        len[d] = slice_axis(x->dim[d], a->starts[k], a->ends[k], a->steps[k], &first[d]);
    }
}

/* The length of a slice of a symbolic dim, when the bounds do not depend on the size. */
static int64_t slice_sym_len(int64_t dim, int64_t s, int64_t e, int64_t step) {
    const int64_t big = (int64_t)1 << 31;
    if (step == 1 && (s == 0 || s <= -big) && e >= big) return dim;
    if (step == -1 && (s == -1 || s >= big) && e <= -big) return dim;
    /* Both bounds on the same side (or an open end): assume the dim is long enough, as shape
     * inference elsewhere does; the concrete pass recomputes the exact length. */
    if (step > 0) {
        if (s >= 0 && e >= 0 && e < big) return e > s ? (e - s - 1) / step + 1 : 0;
        if (s < 0 && s > -big && e >= big) return (-s - 1) / step + 1;
        if (s < 0 && s > -big && e < 0 && e > -big) return e > s ? (e - s - 1) / step + 1 : 0;
    }
    return INT64_MIN;
}

static at_status slice_infer(at_infer_ctx *c) {
    const at_shape *x = &c->in_shape[0];
    c->out_dtype[0] = c->in_dtype[0];
    c->out_shape[0] = *x;
    slice_args a;
    const char *err = NULL;
    int rd = slice_read_infer(c, 1, &a, x->rank, &err);
    if (rd == -2) return at_infer_fail(c, AT_E_SHAPE, "%s", err);
    if (rd == -1) {
        if (c->concrete) return unknown_input(c, 1);
        int64_t ax[AT_MAX_RANK];
        int na = infer_ivec(c, 3, ax, AT_MAX_RANK);
        if (na > 0) {
            for (int k = 0; k < na; k++) {
                int d = at_norm_axis(ax[k], x->rank);
                if (d < 0) return at_infer_fail(c, AT_E_SHAPE, "axis out of range");
                c->out_shape[0].dim[d] = fresh(c);
            }
        } else {
            for (int d = 0; d < x->rank; d++) c->out_shape[0].dim[d] = fresh(c);
        }
        return AT_OK;
    }
    for (int k = 0; k < a.n; k++) {
        int d = (int)a.axes[k];
        int64_t dim = x->dim[d], first;
        if (dim >= 0) {
            c->out_shape[0].dim[d] = slice_axis(dim, a.starts[k], a.ends[k], a.steps[k], &first);
        } else {
            int64_t len = slice_sym_len(dim, a.starts[k], a.ends[k], a.steps[k]);
            c->out_shape[0].dim[d] = len != INT64_MIN ? len : fresh(c);
        }
    }
    return AT_OK;
}

static at_status slice_cpu(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[0];
    at_tensor *y = &k->out[0];
    int r = x->shape.rank;
    slice_args a;
    const char *err = NULL;
    if (slice_read_kernel(k, 1, &a, r, &err)) return at_kernel_fail(k, AT_E_SHAPE, "%s", err);
    int64_t first[AT_MAX_RANK], step[AT_MAX_RANK], len[AT_MAX_RANK], xst[AT_MAX_RANK],
        ss[AT_MAX_RANK], ds[AT_MAX_RANK];
    slice_map(&x->shape, &a, first, step, len);
    for (int d = 0; d < r; d++)
        if (len[d] != y->shape.dim[d])
            return at_kernel_fail(k, AT_E_SHAPE, "output dim %d is %lld, slice gives %lld", d,
                                  (long long)y->shape.dim[d], (long long)len[d]);
    if (shape_numel(&y->shape) == 0) return AT_OK;
    size_t es = at_dtype_size(x->dtype);
    contiguous_strides(r, x->shape.dim, xst);
    contiguous_strides(r, len, ds);
    int64_t base = 0;
    for (int d = 0; d < r; d++) base += first[d] * xst[d], ss[d] = step[d] * xst[d];
    strided_copy(y->data, (const char *)x->data + (size_t)base * es, es, r, len, ds, ss, k);
    return AT_OK;
}

/* SliceGrad(dy, shape(x), starts, ends, axes?, steps?): zeros of x's shape with dy written
 * where the slice read. */
static at_val slice_grad_node(at_graph *g, at_val dy, at_val shape, const at_val *params,
                              int n_params) {
    at_val in[6] = {dy, shape, AT_NONE, AT_NONE, AT_NONE, AT_NONE};
    for (int i = 0; i < n_params; i++) in[2 + i] = params[i];
    at_val out = AT_NONE;
    if (at_node_add(g, "SliceGrad", AT_DOMAIN_ATTUNE, in, 2 + n_params, &out, 1, NULL, 0) < 0)
        return AT_NONE;
    return out;
}

static at_status slice_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    at_val params[4];
    int np = c->n_in - 1;
    for (int i = 0; i < np; i++) params[i] = at_grad_in(c, 1 + i);
    at_val shape = at_shape_of(c->g, at_grad_in(c, 0));
    c->dx[0] = shape == AT_NONE ? AT_NONE : slice_grad_node(c->g, c->dy[0], shape, params, np);
    return grad_done(c, c->dx[0]);
}

const at_op_def at_op_def_Slice = {
    .name = "Slice",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 3,
    .max_in = 5,
    .min_out = 1,
    .max_out = 1,
    .infer = slice_infer,
    .cpu = slice_cpu,
    .grad = slice_grad,
    .nondiff = 0x1e,
};

static at_status slice_grad_infer(at_infer_ctx *c) {
    at_status st = need_int64(c, 1);
    int n;
    if (st == AT_OK) st = vec_len(c, 1, AT_MAX_RANK, &n);
    if (st != AT_OK) return st;
    at_shape *y = &c->out_shape[0];
    c->out_dtype[0] = c->in_dtype[0];
    y->rank = n;
    int64_t v[AT_MAX_RANK];
    bool sym[AT_MAX_RANK];
    if (!at_infer_shape_input(c, 1, n, v, sym)) {
        if (c->concrete) return unknown_input(c, 1);
        for (int k = 0; k < n; k++) y->dim[k] = fresh(c);
        return AT_OK;
    }
    for (int k = 0; k < n; k++) {
        if (!sym[k] && v[k] < 0)
            return at_infer_fail(c, AT_E_SHAPE, "shape[%d] = %lld", k, (long long)v[k]);
        y->dim[k] = v[k];
    }
    if (c->in_shape[0].rank != n)
        return at_infer_fail(c, AT_E_SHAPE, "dy has rank %d, the shape %d", c->in_shape[0].rank, n);
    slice_args a;
    const char *err = NULL;
    int rd = slice_read_infer(c, 2, &a, n, &err);
    if (rd == -2) return at_infer_fail(c, AT_E_SHAPE, "%s", err);
    if (rd == 0 && shape_concrete(y) && shape_concrete(&c->in_shape[0])) {
        int64_t first[AT_MAX_RANK], step[AT_MAX_RANK], len[AT_MAX_RANK];
        slice_map(y, &a, first, step, len);
        for (int d = 0; d < n; d++)
            if (len[d] != c->in_shape[0].dim[d])
                return at_infer_fail(c, AT_E_SHAPE, "dy dim %d is %lld, the slice gives %lld", d,
                                     (long long)c->in_shape[0].dim[d], (long long)len[d]);
    }
    return AT_OK;
}

static at_status slice_grad_cpu(at_kernel_ctx *k) {
    const at_tensor *dy = &k->in[0];
    at_tensor *dx = &k->out[0];
    int r = dx->shape.rank;
    slice_args a;
    const char *err = NULL;
    if (slice_read_kernel(k, 2, &a, r, &err)) return at_kernel_fail(k, AT_E_SHAPE, "%s", err);
    int64_t first[AT_MAX_RANK], step[AT_MAX_RANK], len[AT_MAX_RANK], xst[AT_MAX_RANK],
        ss[AT_MAX_RANK], ds[AT_MAX_RANK];
    slice_map(&dx->shape, &a, first, step, len);
    for (int d = 0; d < r; d++)
        if (len[d] != dy->shape.dim[d])
            return at_kernel_fail(k, AT_E_SHAPE, "dy dim %d is %lld, the slice gives %lld", d,
                                  (long long)dy->shape.dim[d], (long long)len[d]);
    size_t es = at_dtype_size(dx->dtype);
    size_t bytes = at_tensor_nbytes(dx);
    char *dp = dx->data;
    /* zero-fill in parallel: it is most of the traffic for small slices */
    at_par_range(k, (int64_t)bytes, 1 << 16, 64, zero_bytes, dp);
    if (shape_numel(&dy->shape) == 0) return AT_OK;
    contiguous_strides(r, dx->shape.dim, xst);
    contiguous_strides(r, len, ss);
    int64_t base = 0;
    for (int d = 0; d < r; d++) base += first[d] * xst[d], ds[d] = step[d] * xst[d];
    strided_copy(dp + (size_t)base * es, dy->data, es, r, len, ds, ss, k);
    return AT_OK;
}

/* SliceGrad is linear in dy: its own gradient is the slice again. */
static at_status slice_grad_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    at_val in[5] = {c->dy[0], AT_NONE, AT_NONE, AT_NONE, AT_NONE};
    int n = c->n_in - 1;
    for (int i = 1; i < n; i++) in[i] = at_grad_in(c, i + 1);
    at_val out = AT_NONE;
    if (at_node_add(c->g, "Slice", AT_DOMAIN_ONNX, in, n, &out, 1, NULL, 0) < 0) out = AT_NONE;
    c->dx[0] = out;
    return grad_done(c, out);
}

const at_op_def at_op_def_SliceGrad = {
    .name = "SliceGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 4,
    .max_in = 6,
    .min_out = 1,
    .max_out = 1,
    .infer = slice_grad_infer,
    .cpu = slice_grad_cpu,
    .grad = slice_grad_grad,
    .nondiff = 0x3e,
};

at_val at_slice(at_graph *g, at_val x, int n, const int64_t *starts, const int64_t *ends,
                const int64_t *axes, const int64_t *steps) {
    if (x == AT_NONE) return AT_NONE;
    at_val in[5] = {x, at_const_i64s(g, n, starts), at_const_i64s(g, n, ends), AT_NONE, AT_NONE};
    int n_in = 3;
    if (axes || steps) {
        int64_t def[AT_MAX_RANK];
        if (!axes) {
            if (n > AT_MAX_RANK)
                return at_graph_fail(g, AT_E_INVALID, "at_slice: %d axes", n), AT_NONE;
            for (int k = 0; k < n; k++) def[k] = k;
        }
        in[3] = at_const_i64s(g, n, axes ? axes : def);
        n_in = 4;
    }
    if (steps) in[4] = at_const_i64s(g, n, steps), n_in = 5;
    return at_node1(g, "Slice", in, n_in, NULL, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Unsqueeze and Squeeze */

static at_status unsqueeze_infer(at_infer_ctx *c) {
    at_status st = need_int64(c, 1);
    int n;
    if (st == AT_OK) st = vec_len(c, 1, AT_MAX_RANK, &n);
    if (st != AT_OK) return st;
    const at_shape *x = &c->in_shape[0];
    int r = x->rank + n;
    if (r > AT_MAX_RANK) return at_infer_fail(c, AT_E_SHAPE, "rank %d exceeds %d", r, AT_MAX_RANK);
    c->out_dtype[0] = c->in_dtype[0];
    at_shape *y = &c->out_shape[0];
    y->rank = r;
    int64_t ax[AT_MAX_RANK];
    if (infer_ivec(c, 1, ax, AT_MAX_RANK) != n) {
        if (c->concrete) return unknown_input(c, 1);
        for (int d = 0; d < r; d++) y->dim[d] = fresh(c);
        return AT_OK;
    }
    bool ins[AT_MAX_RANK] = {false};
    for (int k = 0; k < n; k++) {
        int d = at_norm_axis(ax[k], r);
        if (d < 0)
            return at_infer_fail(c, AT_E_SHAPE, "axis %lld out of range for output rank %d",
                                 (long long)ax[k], r);
        if (ins[d]) return at_infer_fail(c, AT_E_SHAPE, "axis %lld repeated", (long long)ax[k]);
        ins[d] = true;
    }
    for (int d = 0, i = 0; d < r; d++) y->dim[d] = ins[d] ? 1 : x->dim[i++];
    return AT_OK;
}

static at_status reshape_back_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    c->dx[0] = reshape_like(c->g, c->dy[0], at_grad_in(c, 0));
    return grad_done(c, c->dx[0]);
}

const at_op_def at_op_def_Unsqueeze = {
    .name = "Unsqueeze",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 2,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .infer = unsqueeze_infer,
    .cpu = copy_cpu,
    .view = at_view_of_in0,
    .grad = reshape_back_grad,
    .nondiff = 1u << 1,
};

static at_status squeeze_infer(at_infer_ctx *c) {
    const at_shape *x = &c->in_shape[0];
    at_shape *y = &c->out_shape[0];
    c->out_dtype[0] = c->in_dtype[0];
    bool drop[AT_MAX_RANK] = {false};
    if (c->n_in > 1 && c->in_dtype[1] != AT_UNDEFINED) {
        at_status st = need_int64(c, 1);
        int n;
        if (st == AT_OK) st = vec_len(c, 1, AT_MAX_RANK, &n);
        if (st != AT_OK) return st;
        if (n > x->rank) return at_infer_fail(c, AT_E_SHAPE, "%d axes for rank %d", n, x->rank);
        int64_t ax[AT_MAX_RANK];
        if (infer_ivec(c, 1, ax, AT_MAX_RANK) != n) {
            if (c->concrete) return unknown_input(c, 1);
            y->rank = x->rank - n;
            for (int d = 0; d < y->rank; d++) y->dim[d] = fresh(c);
            return AT_OK;
        }
        for (int k = 0; k < n; k++) {
            int d = at_norm_axis(ax[k], x->rank);
            if (d < 0)
                return at_infer_fail(c, AT_E_SHAPE, "axis %lld out of range", (long long)ax[k]);
            if (drop[d])
                return at_infer_fail(c, AT_E_SHAPE, "axis %lld repeated", (long long)ax[k]);
            if (x->dim[d] >= 0 && x->dim[d] != 1)
                return at_infer_fail(c, AT_E_SHAPE, "dim %d is %lld, not 1", d,
                                     (long long)x->dim[d]);
            drop[d] = true;
        }
    } else {
        /* Ranks are static: a symbol that turned out to be 1 would change the rank. */
        for (int d = 0; d < x->rank; d++) {
            if (x->dim[d] < 0)
                return at_infer_fail(c, AT_E_UNSUPPORTED,
                                     "Squeeze without axes needs concrete dims (dim %d is "
                                     "symbolic); give axes",
                                     d);
            drop[d] = x->dim[d] == 1;
        }
    }
    y->rank = 0;
    for (int d = 0; d < x->rank; d++)
        if (!drop[d]) y->dim[y->rank++] = x->dim[d];
    return AT_OK;
}

const at_op_def at_op_def_Squeeze = {
    .name = "Squeeze",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .infer = squeeze_infer,
    .cpu = copy_cpu,
    .view = at_view_of_in0,
    .grad = reshape_back_grad,
    .nondiff = 1u << 1,
};

at_val at_unsqueeze(at_graph *g, at_val x, int n, const int64_t *axes) {
    if (x == AT_NONE) return AT_NONE;
    at_val in[2] = {x, at_const_i64s(g, n, axes)};
    return at_node1(g, "Unsqueeze", in, 2, NULL, 0);
}

at_val at_squeeze(at_graph *g, at_val x, int n, const int64_t *axes) {
    if (x == AT_NONE) return AT_NONE;
    if (n <= 0 || !axes) return at_node1(g, "Squeeze", &x, 1, NULL, 0);
    at_val in[2] = {x, at_const_i64s(g, n, axes)};
    return at_node1(g, "Squeeze", in, 2, NULL, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Expand */

static at_status expand_infer(at_infer_ctx *c) {
    at_status st = need_int64(c, 1);
    int n = 0; /* set by vec_len; initialized for -Wmaybe-uninitialized */
    if (st == AT_OK) st = vec_len(c, 1, AT_MAX_RANK, &n);
    if (st != AT_OK) return st;
    const at_shape *x = &c->in_shape[0];
    int r = x->rank > n ? x->rank : n;
    at_shape *y = &c->out_shape[0];
    c->out_dtype[0] = c->in_dtype[0];
    y->rank = r;
    int64_t v[AT_MAX_RANK];
    bool sym[AT_MAX_RANK];
    bool known = at_infer_shape_input(c, 1, n, v, sym);
    if (!known && c->concrete) return unknown_input(c, 1);
    for (int d = 0; d < r; d++) {
        int ix = d - (r - x->rank), is = d - (r - n);
        int64_t a = ix >= 0 ? x->dim[ix] : 1;
        if (!known) {
            y->dim[d] = a >= 0 && a != 1 ? a : (is >= 0 ? fresh(c) : a);
            continue;
        }
        int64_t b = is >= 0 ? v[is] : 1;
        if (is >= 0 && !sym[is] && b < 0)
            return at_infer_fail(c, AT_E_SHAPE, "shape[%d] = %lld", is, (long long)b);
        if (a == b || b == 1)
            y->dim[d] = a;
        else if (a == 1)
            y->dim[d] = b;
        else if (a >= 0 && b >= 0)
            return at_infer_fail(c, AT_E_SHAPE, "dim %d: %lld cannot broadcast to %lld", d,
                                 (long long)a, (long long)b);
        else if (a >= 0 || b >= 0)
            y->dim[d] = a >= 0 ? a : b; /* the symbol must be 1 or equal */
        else
            y->dim[d] = fresh(c);
    }
    return AT_OK;
}

static at_status expand_cpu(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[0];
    at_tensor *y = &k->out[0];
    int r = y->shape.rank, xr = x->shape.rank;
    if (xr > r) return at_kernel_fail(k, AT_E_SHAPE, "input rank above output rank");
    int64_t xst[AT_MAX_RANK], ss[AT_MAX_RANK], ds[AT_MAX_RANK];
    contiguous_strides(xr, x->shape.dim, xst);
    for (int d = 0; d < r; d++) {
        int ix = d - (r - xr);
        int64_t a = ix >= 0 ? x->shape.dim[ix] : 1;
        if (a != y->shape.dim[d] && a != 1)
            return at_kernel_fail(k, AT_E_SHAPE, "dim %d: %lld cannot broadcast to %lld", d,
                                  (long long)a, (long long)y->shape.dim[d]);
        ss[d] = ix >= 0 && a != 1 ? xst[ix] : 0;
    }
    contiguous_strides(r, y->shape.dim, ds);
    if (shape_numel(&y->shape) == 0) return AT_OK;
    strided_copy(y->data, x->data, at_dtype_size(x->dtype), r, y->shape.dim, ds, ss, k);
    return AT_OK;
}

static at_status expand_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    c->dx[0] = at_sum_to_shape(c->g, c->dy[0], at_grad_in(c, 0));
    return grad_done(c, c->dx[0]);
}

const at_op_def at_op_def_Expand = {
    .name = "Expand",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 2,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .infer = expand_infer,
    .cpu = expand_cpu,
    .grad = expand_grad,
    .nondiff = 1u << 1,
};

at_val at_expand(at_graph *g, at_val x, at_val shape) {
    if (x == AT_NONE || shape == AT_NONE) return AT_NONE;
    at_val in[2] = {x, shape};
    return at_node1(g, "Expand", in, 2, NULL, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Constant */

static const at_attr_schema constant_attrs[] = {
    {"value", AT_ATTR_TENSOR, false},        {"value_float", AT_ATTR_FLOAT, false},
    {"value_floats", AT_ATTR_FLOATS, false}, {"value_int", AT_ATTR_INT, false},
    {"value_ints", AT_ATTR_INTS, false},     {NULL, 0, false}};

/* The constant's contents as a tensor view of the attribute (data owned by the node). */
static int constant_view(const at_node_rec *n, at_tensor *t) {
    int found = 0;
    const at_attr_rec *a;
    if ((a = at_attr_find(n, "value")) && a->t) {
        *t = *a->t;
        found++;
    }
    if ((a = at_attr_find(n, "value_float"))) {
        *t = (at_tensor){AT_F32, AT_SCALAR, (void *)&a->f};
        found++;
    }
    if ((a = at_attr_find(n, "value_floats"))) {
        int64_t len = a->n;
        *t = (at_tensor){AT_F32, at_shape_make(1, &len), a->floats};
        found++;
    }
    if ((a = at_attr_find(n, "value_int"))) {
        *t = (at_tensor){AT_I64, AT_SCALAR, (void *)&a->i};
        found++;
    }
    if ((a = at_attr_find(n, "value_ints"))) {
        int64_t len = a->n;
        *t = (at_tensor){AT_I64, at_shape_make(1, &len), a->ints};
        found++;
    }
    return found;
}

static at_status constant_cpu(at_kernel_ctx *k) {
    at_tensor t;
    if (constant_view(k->node, &t) != 1) return at_kernel_fail(k, AT_E_INVALID, "no value");
    size_t bytes = at_tensor_nbytes(&k->out[0]);
    if (bytes != at_tensor_nbytes(&t))
        return at_kernel_fail(k, AT_E_SHAPE, "output size differs from the value's");
    if (bytes) memcpy(k->out[0].data, t.data, bytes);
    return AT_OK;
}

static at_status constant_infer(at_infer_ctx *c) {
    at_tensor t;
    int found = constant_view(c->node, &t);
    if (found != 1)
        return at_infer_fail(c, AT_E_INVALID,
                             "Constant needs exactly one of value, value_float(s), value_int(s); "
                             "got %d",
                             found);
    if (!t.data && at_tensor_nbytes(&t))
        return at_infer_fail(c, AT_E_INVALID, "value tensor has no data");
    c->out_dtype[0] = t.dtype;
    c->out_shape[0] = t.shape;
    return AT_OK;
}

const at_op_def at_op_def_Constant = {
    .name = "Constant",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 0,
    .max_in = 0,
    .min_out = 1,
    .max_out = 1,
    .attrs = constant_attrs,
    .infer = constant_infer,
    .cpu = constant_cpu,
};

at_val at_constant(at_graph *g, const at_tensor *t) {
    if (!t) return at_graph_fail(g, AT_E_INVALID, "at_constant: no tensor"), AT_NONE;
    at_attr a = AT_ATTR_T("value", t);
    return at_node1(g, "Constant", NULL, 0, &a, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* ConstantOfShape */

static const at_attr_schema cos_attrs[] = {{"value", AT_ATTR_TENSOR, false}, {NULL, 0, false}};

static const at_tensor *cos_value(const at_node_rec *n) {
    const at_attr_rec *a = at_attr_find(n, "value");
    return a ? a->t : NULL;
}

static at_status cos_infer(at_infer_ctx *c) {
    at_status st = need_int64(c, 0);
    int n;
    if (st == AT_OK) st = vec_len(c, 0, AT_MAX_RANK, &n);
    if (st != AT_OK) return st;
    const at_tensor *v = cos_value(c->node);
    if (v && (shape_numel(&v->shape) != 1 || !v->data || !at_dtype_size(v->dtype)))
        return at_infer_fail(c, AT_E_INVALID, "value must be a tensor of one element");
    c->out_dtype[0] = v ? v->dtype : AT_F32;
    at_shape *y = &c->out_shape[0];
    y->rank = n;
    int64_t d[AT_MAX_RANK];
    bool sym[AT_MAX_RANK];
    if (!at_infer_shape_input(c, 0, n, d, sym)) {
        if (c->concrete) return unknown_input(c, 0);
        for (int k = 0; k < n; k++) y->dim[k] = fresh(c);
        return AT_OK;
    }
    for (int k = 0; k < n; k++) {
        if (!sym[k] && d[k] < 0)
            return at_infer_fail(c, AT_E_SHAPE, "shape[%d] = %lld", k, (long long)d[k]);
        y->dim[k] = d[k];
    }
    return AT_OK;
}

static at_status cos_cpu(at_kernel_ctx *k) {
    at_tensor *y = &k->out[0];
    const at_tensor *v = cos_value(k->node);
    size_t es = at_dtype_size(y->dtype);
    int64_t n = shape_numel(&y->shape);
    char *p = y->data;
    bool zero = true;
    if (v)
        for (size_t b = 0; b < es; b++) zero &= ((const unsigned char *)v->data)[b] == 0;
    if (zero) {
        if (n) memset(p, 0, (size_t)n * es);
        return AT_OK;
    }
#pragma omp parallel for num_threads(nthreads(k)) if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) memcpy(p + (size_t)i * es, v->data, es);
    return AT_OK;
}

const at_op_def at_op_def_ConstantOfShape = {
    .name = "ConstantOfShape",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 1,
    .min_out = 1,
    .max_out = 1,
    .attrs = cos_attrs,
    .infer = cos_infer,
    .cpu = cos_cpu,
    .nondiff = 1,
};

at_val at_constant_of_shape(at_graph *g, at_val shape, at_dtype dt, double value) {
    if (shape == AT_NONE) return AT_NONE;
    union {
        float f;
        int64_t i64;
        int32_t i32;
        int8_t i8;
        uint8_t u8;
    } buf;
    memset(&buf, 0, sizeof buf);
    switch (dt) {
    case AT_F32:
        buf.f = (float)value;
        break;
    case AT_I64:
        buf.i64 = (int64_t)value;
        break;
    case AT_I32:
        buf.i32 = (int32_t)value;
        break;
    case AT_I8:
        buf.i8 = (int8_t)value;
        break;
    case AT_U8:
        buf.u8 = (uint8_t)value;
        break;
    case AT_BOOL:
        buf.u8 = value != 0;
        break;
    default:
        at_graph_fail(g, AT_E_UNSUPPORTED, "at_constant_of_shape: dtype %s", at_dtype_name(dt));
        return AT_NONE;
    }
    int64_t one = 1;
    at_tensor t = {dt, at_shape_make(1, &one), &buf};
    at_attr a = AT_ATTR_T("value", &t);
    return at_node1(g, "ConstantOfShape", &shape, 1, &a, 1);
}
