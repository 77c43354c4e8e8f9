/* Reductions: ReduceSum, ReduceMean, ReduceMax (ONNX opset 18+: axes is an optional int64
 * input; keepdims defaults to 1; absent or empty axes reduce everything unless
 * noop_with_empty_axes = 1) and their backward ops in ai.attune:
 *   ReduceSumGrad(dY, shape, axes?)  -> dX = dY broadcast back to `shape`
 *   ReduceMeanGrad(dY, shape, axes?) -> the same divided by the reduced count
 *   ReduceMaxGrad(dY, X, axes?)      -> dY routed to the first maximum of each reduced set
 * `shape` is at_shape_of(X), so X's buffer need not live until the backward pass.
 *
 * Every output element is accumulated by one thread in row-major order over its reduced set,
 * so results do not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "ops/op.h"

#define RED_BLK 256 /* inner elements a task accumulates at once (stack accumulators) */

static int nthreads(const at_kernel_ctx *k) {
    return k->threads > 0 ? k->threads : omp_get_max_threads();
}

/* ------------------------------------------------------------------------------------------ */
/* Axes */

/* Fills *mask with the reduced dims of a rank-`rank` tensor given the axes list (present ==
 * false: no axes input). Returns 0, or -1 with msg set. */
static int axes_to_mask(const int64_t *axes, int64_t n, bool present, int rank, bool noop_empty,
                        uint32_t *mask, char *msg, size_t cap) {
    *mask = 0;
    if (!present || n == 0) {
        if (!noop_empty) *mask = rank ? (uint32_t)((1u << rank) - 1u) : 0u;
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        int a = at_norm_axis(axes[i], rank);
        if (a < 0) {
            snprintf(msg, cap, "axis %lld out of range for rank %d", (long long)axes[i], rank);
            return -1;
        }
        if (*mask & (1u << a)) {
            snprintf(msg, cap, "axis %lld repeated", (long long)axes[i]);
            return -1;
        }
        *mask |= 1u << a;
    }
    return 0;
}

static int popcount32(uint32_t m) {
    int n = 0;
    for (; m; m &= m - 1) n++;
    return n;
}

/* The mask for a node at inference time. *known is false when the axes are not available yet
 * (a non-constant axes input while building). */
static at_status infer_mask(at_infer_ctx *c, int axes_idx, int rank, uint32_t *mask, bool *known) {
    bool noop = at_attr_int(c->node, "noop_with_empty_axes", 0) != 0;
    bool present = c->n_in > axes_idx && c->in_dtype[axes_idx] != AT_UNDEFINED;
    *known = true;
    int64_t n = 0;
    const int64_t *data = NULL;
    if (present) {
        if (c->in_dtype[axes_idx] != AT_I64)
            return at_infer_fail(c, AT_E_SHAPE, "axes must be int64, got %s",
                                 at_dtype_name(c->in_dtype[axes_idx]));
        if (c->in_shape[axes_idx].rank != 1)
            return at_infer_fail(c, AT_E_SHAPE, "axes must be 1-D, got rank %d",
                                 (int)c->in_shape[axes_idx].rank);
        n = c->in_shape[axes_idx].dim[0];
        data = c->in_data ? (const int64_t *)c->in_data[axes_idx] : NULL;
        if (n != 0 && !data) {
            if (c->concrete)
                return at_infer_fail(c, AT_E_UNSUPPORTED, "axes input must be constant");
            *known = false;
            return AT_OK;
        }
    }
    char msg[160];
    if (axes_to_mask(data, n, present, rank, noop, mask, msg, sizeof msg))
        return at_infer_fail(c, AT_E_SHAPE, "%s", msg);
    return AT_OK;
}

static bool kernel_axes_present(const at_kernel_ctx *k, int idx) {
    if (k->n_in <= idx) return false;
    const at_tensor *t = &k->in[idx];
    return t->data != NULL || (t->dtype == AT_I64 && t->shape.rank == 1 && t->shape.dim[0] == 0);
}

static at_status kernel_mask(at_kernel_ctx *k, int axes_idx, int rank, uint32_t *mask) {
    bool noop = at_attr_int(k->node, "noop_with_empty_axes", 0) != 0;
    bool present = kernel_axes_present(k, axes_idx);
    int64_t n = present ? k->in[axes_idx].shape.dim[0] : 0;
    char msg[160];
    if (axes_to_mask(present ? AT_I64P(&k->in[axes_idx]) : NULL, n, present, rank, noop, mask, msg,
                     sizeof msg))
        return at_kernel_fail(k, AT_E_INVALID, "%s", msg);
    return AT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Traversal plan: the input's dims with size-1 dims dropped and neighbours of the same kind
 * (kept / reduced) merged. With at most one reduced group the reduction is the fast
 * [outer, red, inner] form; otherwise kept and reduced groups are walked with strides. */

typedef struct rplan {
    int nk, nr;
    int64_t ksz[AT_MAX_RANK], kst[AT_MAX_RANK]; /* kept groups, row-major */
    int64_t rsz[AT_MAX_RANK], rst[AT_MAX_RANK]; /* reduced groups, row-major */
    int64_t n_out, n_red;
    int64_t outer, red, inner; /* the fast form, valid when nr <= 1 */
} rplan;

static void rplan_make(const at_shape *s, uint32_t mask, rplan *p) {
    int64_t gsz[AT_MAX_RANK], gst[AT_MAX_RANK];
    int gred[AT_MAX_RANK], ng = 0;
    for (int d = 0; d < s->rank; d++) {
        if (s->dim[d] == 1) continue;
        int r = (mask >> d) & 1u;
        if (ng && gred[ng - 1] == r) {
            gsz[ng - 1] *= s->dim[d];
        } else {
            gsz[ng] = s->dim[d];
            gred[ng++] = r;
        }
    }
    int64_t st = 1;
    for (int i = ng - 1; i >= 0; i--) {
        gst[i] = st;
        st *= gsz[i];
    }
    memset(p, 0, sizeof *p);
    p->n_out = 1;
    p->n_red = 1;
    p->outer = 1;
    p->inner = 1;
    for (int i = 0; i < ng; i++) {
        if (gred[i]) {
            p->rsz[p->nr] = gsz[i];
            p->rst[p->nr++] = gst[i];
            p->n_red *= gsz[i];
        } else {
            p->ksz[p->nk] = gsz[i];
            p->kst[p->nk++] = gst[i];
            p->n_out *= gsz[i];
            if (p->nr == 0)
                p->outer *= gsz[i];
            else
                p->inner *= gsz[i];
        }
    }
    p->red = p->n_red;
    if (p->nr == 0) { /* nothing reduced: every element is its own output */
        p->outer = p->n_out;
        p->inner = 1;
    }
}

/* Offset in the input of the first element of output o (general path). */
static int64_t rplan_base(const rplan *p, int64_t o) {
    int64_t off = 0;
    for (int i = p->nk - 1; i >= 0; i--) {
        off += (o % p->ksz[i]) * p->kst[i];
        o /= p->ksz[i];
    }
    return off;
}

/* Steps a reduced-dims odometer; returns the offset change. */
static inline int64_t rplan_step(const rplan *p, int64_t *idx) {
    int64_t delta = 0;
    for (int i = p->nr - 1; i >= 0; i--) {
        delta += p->rst[i];
        if (++idx[i] < p->rsz[i]) return delta;
        delta -= p->rst[i] * p->rsz[i];
        idx[i] = 0;
    }
    return delta;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward kernels */

typedef enum red_kind { RED_SUM, RED_MEAN, RED_MAX } red_kind;

static void sum_f32(const rplan *p, const float *x, float *y, double scale, int nt) {
    if (p->nr <= 1 && p->inner == 1) {
        int64_t R = p->red;
#pragma omp parallel for num_threads(nt) schedule(static) if (p->n_out * R > 32768)
        for (int64_t o = 0; o < p->outer; o++) {
            const float *xr = x + o * R;
            double acc = 0;
            for (int64_t r = 0; r < R; r++) acc += xr[r];
            y[o] = (float)(acc * scale);
        }
    } else if (p->nr <= 1) {
        int64_t R = p->red, I = p->inner, nb = (I + RED_BLK - 1) / RED_BLK;
#pragma omp parallel for num_threads(nt) schedule(static) if (p->n_out * R > 32768)
        for (int64_t t = 0; t < p->outer * nb; t++) {
            int64_t o = t / nb, i0 = (t % nb) * RED_BLK, w = I - i0 < RED_BLK ? I - i0 : RED_BLK;
            double acc[RED_BLK];
            for (int64_t i = 0; i < w; i++) acc[i] = 0;
            for (int64_t r = 0; r < R; r++) {
                const float *xr = x + (o * R + r) * I + i0;
                for (int64_t i = 0; i < w; i++) acc[i] += xr[i];
            }
            for (int64_t i = 0; i < w; i++) y[o * I + i0 + i] = (float)(acc[i] * scale);
        }
    } else {
#pragma omp parallel for num_threads(nt) schedule(static) if (p->n_out * p->n_red > 32768)
        for (int64_t o = 0; o < p->n_out; o++) {
            int64_t idx[AT_MAX_RANK] = {0}, off = rplan_base(p, o);
            double acc = 0;
            for (int64_t r = 0; r < p->n_red; r++) {
                acc += x[off];
                off += rplan_step(p, idx);
            }
            y[o] = (float)(acc * scale);
        }
    }
}

static void sum_i64(const rplan *p, const int64_t *x, int64_t *y, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (p->n_out * p->n_red > 32768)
    for (int64_t o = 0; o < p->n_out; o++) {
        int64_t idx[AT_MAX_RANK] = {0}, off = rplan_base(p, o);
        uint64_t acc = 0; /* wraps on overflow instead of being undefined */
        for (int64_t r = 0; r < p->n_red; r++) {
            acc += (uint64_t)x[off];
            off += rplan_step(p, idx);
        }
        y[o] = (int64_t)acc;
    }
}

/* NaN wins a float max, as in numpy and PyTorch. */
#define MAX_BETTER_F(v, best) ((v) > (best) || ((v) != (v) && (best) == (best)))

static void max_f32(const rplan *p, const float *x, float *y, int nt) {
    if (p->nr <= 1 && p->inner == 1) {
        int64_t R = p->red;
#pragma omp parallel for num_threads(nt) schedule(static) if (p->n_out * R > 32768)
        for (int64_t o = 0; o < p->outer; o++) {
            const float *xr = x + o * R;
            float m = -INFINITY;
            for (int64_t r = 0; r < R; r++)
                if (MAX_BETTER_F(xr[r], m)) m = xr[r];
            y[o] = m;
        }
    } else if (p->nr <= 1) {
        int64_t R = p->red, I = p->inner, nb = (I + RED_BLK - 1) / RED_BLK;
#pragma omp parallel for num_threads(nt) schedule(static) if (p->n_out * R > 32768)
        for (int64_t t = 0; t < p->outer * nb; t++) {
            int64_t o = t / nb, i0 = (t % nb) * RED_BLK, w = I - i0 < RED_BLK ? I - i0 : RED_BLK;
            float m[RED_BLK];
            for (int64_t i = 0; i < w; i++) m[i] = -INFINITY;
            for (int64_t r = 0; r < R; r++) {
                const float *xr = x + (o * R + r) * I + i0;
                for (int64_t i = 0; i < w; i++)
                    if (MAX_BETTER_F(xr[i], m[i])) m[i] = xr[i];
            }
            memcpy(y + o * I + i0, m, (size_t)w * sizeof(float));
        }
    } else {
#pragma omp parallel for num_threads(nt) schedule(static) if (p->n_out * p->n_red > 32768)
        for (int64_t o = 0; o < p->n_out; o++) {
            int64_t idx[AT_MAX_RANK] = {0}, off = rplan_base(p, o);
            float m = -INFINITY;
            for (int64_t r = 0; r < p->n_red; r++) {
                if (MAX_BETTER_F(x[off], m)) m = x[off];
                off += rplan_step(p, idx);
            }
            y[o] = m;
        }
    }
}

static void max_i64(const rplan *p, const int64_t *x, int64_t *y, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (p->n_out * p->n_red > 32768)
    for (int64_t o = 0; o < p->n_out; o++) {
        int64_t idx[AT_MAX_RANK] = {0}, off = rplan_base(p, o);
        int64_t m = INT64_MIN; /* ONNX: the type's minimum for an empty set */
        for (int64_t r = 0; r < p->n_red; r++) {
            if (x[off] > m) m = x[off];
            off += rplan_step(p, idx);
        }
        y[o] = m;
    }
}

static at_status reduce_cpu(at_kernel_ctx *k, red_kind kind) {
    const at_tensor *x = &k->in[0];
    uint32_t mask;
    at_status st = kernel_mask(k, 1, x->shape.rank, &mask);
    if (st) return st;
    rplan p;
    rplan_make(&x->shape, mask, &p);
    if (p.n_out == 0) return AT_OK;
    int nt = nthreads(k);
    if (x->dtype == AT_F32) {
        if (kind == RED_MAX)
            max_f32(&p, AT_F32P(x), AT_F32P(&k->out[0]), nt);
        else
            sum_f32(&p, AT_F32P(x), AT_F32P(&k->out[0]),
                    kind == RED_MEAN ? 1.0 / (double)p.n_red : 1.0, nt);
    } else if (x->dtype == AT_I64 && kind != RED_MEAN) {
        if (kind == RED_MAX)
            max_i64(&p, AT_I64P(x), AT_I64P(&k->out[0]), nt);
        else
            sum_i64(&p, AT_I64P(x), AT_I64P(&k->out[0]), nt);
    } else {
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "dtype %s", at_dtype_name(x->dtype));
    }
    return AT_OK;
}

static at_status reduce_sum_cpu(at_kernel_ctx *k) {
    return reduce_cpu(k, RED_SUM);
}
static at_status reduce_mean_cpu(at_kernel_ctx *k) {
    return reduce_cpu(k, RED_MEAN);
}
static at_status reduce_max_cpu(at_kernel_ctx *k) {
    return reduce_cpu(k, RED_MAX);
}

/* ------------------------------------------------------------------------------------------ */
/* Shape rules */

static at_status reduce_infer_common(at_infer_ctx *c, bool allow_i64) {
    at_dtype dt = c->in_dtype[0];
    if (dt != AT_F32 && !(allow_i64 && dt == AT_I64))
        return at_infer_fail(c, AT_E_SHAPE, "unsupported dtype %s", at_dtype_name(dt));
    const at_shape *xs = &c->in_shape[0];
    bool keep = at_attr_int(c->node, "keepdims", 1) != 0;
    uint32_t mask;
    bool known;
    at_status st = infer_mask(c, 1, xs->rank, &mask, &known);
    if (st) return st;
    at_shape out = {0};
    if (!known) {
        if (!keep)
            return at_infer_fail(c, AT_E_UNSUPPORTED,
                                 "axes input must be constant when keepdims = 0");
        out.rank = xs->rank;
        for (int d = 0; d < xs->rank; d++) out.dim[d] = xs->dim[d] == 1 ? 1 : at_sym_fresh(c->g);
    } else {
        for (int d = 0; d < xs->rank; d++) {
            if (mask & (1u << d)) {
                if (keep) out.dim[out.rank++] = 1;
            } else {
                out.dim[out.rank++] = xs->dim[d];
            }
        }
    }
    c->out_dtype[0] = dt;
    c->out_shape[0] = out;
    return AT_OK;
}

static at_status reduce_sum_infer(at_infer_ctx *c) {
    return reduce_infer_common(c, true);
}
static at_status reduce_mean_infer(at_infer_ctx *c) {
    return reduce_infer_common(c, false);
}
static at_status reduce_max_infer(at_infer_ctx *c) {
    return reduce_infer_common(c, true);
}

/* The shape whose data is input idx (an int64 [rank] value): from its data when known, else,
 * while building, from the input of the Shape node that produced it (keeping symbols), else
 * fresh symbols. */
static at_status shape_input(at_infer_ctx *c, int idx, at_shape *out) {
    const at_shape *ss = &c->in_shape[idx];
    if (c->in_dtype[idx] != AT_I64 || ss->rank != 1 || ss->dim[0] < 0 || ss->dim[0] > AT_MAX_RANK)
        return at_infer_fail(c, AT_E_SHAPE, "shape input must be int64 [rank]");
    memset(out, 0, sizeof *out);
    out->rank = (int32_t)ss->dim[0];
    const int64_t *data = c->in_data ? (const int64_t *)c->in_data[idx] : NULL;
    if (data) {
        for (int d = 0; d < out->rank; d++) {
            if (data[d] < 0)
                return at_infer_fail(c, AT_E_SHAPE, "negative dim %lld in shape input",
                                     (long long)data[d]);
            out->dim[d] = data[d];
        }
        return AT_OK;
    }
    if (c->concrete) return at_infer_fail(c, AT_E_UNSUPPORTED, "shape input must be constant");
    if (c->g && c->node && c->node->n_in > idx && c->node->in[idx] >= 0) {
        int prod = c->g->vals[c->node->in[idx]].producer;
        if (prod >= 0) {
            const at_node_rec *n = &c->g->nodes[prod];
            if (strcmp(n->op_type, "Shape") == 0 && n->n_attrs == 0 && n->n_in == 1 &&
                n->in[0] >= 0 && c->g->vals[n->in[0]].shape.rank == out->rank) {
                *out = c->g->vals[n->in[0]].shape;
                return AT_OK;
            }
        }
    }
    for (int d = 0; d < out->rank; d++) out->dim[d] = at_sym_fresh(c->g);
    return AT_OK;
}

/* dY must have the reduced form of x_shape. */
static at_status check_dy(at_infer_ctx *c, const at_shape *xs, uint32_t mask, bool known) {
    const at_shape *dy = &c->in_shape[0];
    if (c->in_dtype[0] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "dY must be float32, got %s",
                             at_dtype_name(c->in_dtype[0]));
    if (!known) return AT_OK;
    bool keep = at_attr_int(c->node, "keepdims", 1) != 0;
    int want = keep ? xs->rank : xs->rank - popcount32(mask);
    if (dy->rank != want)
        return at_infer_fail(c, AT_E_SHAPE, "dY has rank %d, want %d", (int)dy->rank, want);
    for (int d = 0, j = 0; d < xs->rank; d++) {
        bool red = mask & (1u << d);
        if (red && !keep) continue;
        int64_t w = red ? 1 : xs->dim[d], h = dy->dim[j++];
        if (w >= 0 && h >= 0 && w != h)
            return at_infer_fail(c, AT_E_SHAPE, "dY dim %d is %lld, want %lld", j - 1, (long long)h,
                                 (long long)w);
    }
    return AT_OK;
}

static at_status reduce_bcast_grad_infer(at_infer_ctx *c) {
    at_shape xs;
    at_status st = shape_input(c, 1, &xs);
    if (st) return st;
    uint32_t mask;
    bool known;
    st = infer_mask(c, 2, xs.rank, &mask, &known);
    if (st) return st;
    st = check_dy(c, &xs, mask, known);
    if (st) return st;
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = xs;
    return AT_OK;
}

static at_status reduce_max_grad_infer(at_infer_ctx *c) {
    if (c->in_dtype[1] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "X must be float32, got %s",
                             at_dtype_name(c->in_dtype[1]));
    const at_shape *xs = &c->in_shape[1];
    uint32_t mask;
    bool known;
    at_status st = infer_mask(c, 2, xs->rank, &mask, &known);
    if (st) return st;
    st = check_dy(c, xs, mask, known);
    if (st) return st;
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = *xs;
    return AT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Backward kernels */

/* Shape of the tensor whose dims are the int64 data of t. */
static at_status shape_from_tensor(at_kernel_ctx *k, const at_tensor *t, at_shape *s) {
    if (t->dtype != AT_I64 || t->shape.rank != 1 || t->shape.dim[0] > AT_MAX_RANK ||
        (t->shape.dim[0] > 0 && !t->data))
        return at_kernel_fail(k, AT_E_INVALID, "bad shape input");
    memset(s, 0, sizeof *s);
    s->rank = (int32_t)t->shape.dim[0];
    for (int d = 0; d < s->rank; d++) s->dim[d] = AT_I64P(t)[d];
    return AT_OK;
}

/* dx = broadcast(dy) * scale over the reduced sets; scale < 0 means 1 / count. */
static at_status reduce_bcast_grad_cpu(at_kernel_ctx *k, bool mean) {
    at_shape xs;
    at_status st = shape_from_tensor(k, &k->in[1], &xs);
    if (st) return st;
    uint32_t mask;
    st = kernel_mask(k, 2, xs.rank, &mask);
    if (st) return st;
    rplan p;
    rplan_make(&xs, mask, &p);
    const float *dy = AT_F32P(&k->in[0]);
    float *dx = AT_F32P(&k->out[0]);
    float s = mean ? (float)(1.0 / (double)p.n_red) : 1.0f;
    int nt = nthreads(k);
    if (p.n_out == 0 || p.n_red == 0) return AT_OK;
    if (p.nr <= 1) {
        int64_t R = p.red, I = p.inner;
#pragma omp parallel for num_threads(nt) schedule(static) if (p.n_out * R > 32768)
        for (int64_t t = 0; t < p.outer * R; t++) {
            const float *g = dy + (t / R) * I;
            float *d = dx + t * I;
            for (int64_t i = 0; i < I; i++) d[i] = g[i] * s;
        }
    } else {
#pragma omp parallel for num_threads(nt) schedule(static) if (p.n_out * p.n_red > 32768)
        for (int64_t o = 0; o < p.n_out; o++) {
            int64_t idx[AT_MAX_RANK] = {0}, off = rplan_base(&p, o);
            float g = dy[o] * s;
            for (int64_t r = 0; r < p.n_red; r++) {
                dx[off] = g;
                off += rplan_step(&p, idx);
            }
        }
    }
    return AT_OK;
}

static at_status reduce_sum_grad_cpu(at_kernel_ctx *k) {
    return reduce_bcast_grad_cpu(k, false);
}
static at_status reduce_mean_grad_cpu(at_kernel_ctx *k) {
    return reduce_bcast_grad_cpu(k, true);
}

static at_status reduce_max_grad_cpu(at_kernel_ctx *k) {
    const at_tensor *x = &k->in[1];
    uint32_t mask;
    at_status st = kernel_mask(k, 2, x->shape.rank, &mask);
    if (st) return st;
    rplan p;
    rplan_make(&x->shape, mask, &p);
    const float *dy = AT_F32P(&k->in[0]), *xv = AT_F32P(x);
    float *dx = AT_F32P(&k->out[0]);
    int nt = nthreads(k);
    int64_t n = at_shape_numel(&x->shape);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dx[i] = 0.0f;
    if (p.n_out == 0 || p.n_red == 0) return AT_OK;
    if (p.nr <= 1) {
        int64_t R = p.red, I = p.inner, nb = (I + RED_BLK - 1) / RED_BLK;
#pragma omp parallel for num_threads(nt) schedule(static) if (p.n_out * R > 32768)
        for (int64_t t = 0; t < p.outer * nb; t++) {
            int64_t o = t / nb, i0 = (t % nb) * RED_BLK, w = I - i0 < RED_BLK ? I - i0 : RED_BLK;
            float m[RED_BLK];
            int64_t at[RED_BLK];
            for (int64_t i = 0; i < w; i++) {
                m[i] = xv[o * R * I + i0 + i];
                at[i] = 0;
            }
            for (int64_t r = 1; r < R; r++) {
                const float *xr = xv + (o * R + r) * I + i0;
                for (int64_t i = 0; i < w; i++)
                    if (MAX_BETTER_F(xr[i], m[i])) m[i] = xr[i], at[i] = r;
            }
            for (int64_t i = 0; i < w; i++) dx[(o * R + at[i]) * I + i0 + i] = dy[o * I + i0 + i];
        }
    } else {
#pragma omp parallel for num_threads(nt) schedule(static) if (p.n_out * p.n_red > 32768)
        for (int64_t o = 0; o < p.n_out; o++) {
            int64_t idx[AT_MAX_RANK] = {0}, off = rplan_base(&p, o), best = off;
            float m = xv[off];
            for (int64_t r = 1; r < p.n_red; r++) {
                off += rplan_step(&p, idx);
                if (MAX_BETTER_F(xv[off], m)) m = xv[off], best = off;
            }
            dx[best] = dy[o];
        }
    }
    return AT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Gradient rules */

static at_val axes_input(const at_grad_ctx *c, int idx) {
    return at_grad_node(c)->n_in > idx ? at_grad_in(c, idx) : AT_NONE;
}

/* Emits op(dy_in, ref, axes?) with the forward node's keepdims / noop attributes. */
static at_status emit_reduce_like(at_grad_ctx *c, const char *op, const char *domain, at_val a,
                                  at_val b, at_val axes, at_val *out) {
    const at_node_rec *n = at_grad_node(c);
    at_attr attrs[2] = {
        AT_ATTR_I("keepdims", at_attr_int(n, "keepdims", 1)),
        AT_ATTR_I("noop_with_empty_axes", at_attr_int(n, "noop_with_empty_axes", 0))};
    at_val in[3] = {a, b, axes};
    int n_in = b == AT_NONE ? 1 : 2;
    if (axes != AT_NONE) {
        if (b == AT_NONE)
            in[1] = axes, n_in = 2;
        else
            n_in = 3;
    }
    if (at_node_add(c->g, op, domain, in, n_in, out, 1, attrs, 2) < 0) {
        at_status st = at_graph_status(c->g);
        return st ? st : AT_E_INTERNAL;
    }
    return AT_OK;
}

static at_status bcast_grad_rule(at_grad_ctx *c, const char *op) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    at_val x = at_grad_in(c, 0), axes = axes_input(c, 1);
    at_val shp = at_shape_of(c->g, x);
    if (shp == AT_NONE) return at_graph_status(c->g) ? at_graph_status(c->g) : AT_E_INTERNAL;
    return emit_reduce_like(c, op, AT_DOMAIN_ATTUNE, c->dy[0], shp, axes, &c->dx[0]);
}

static at_status reduce_sum_grad(at_grad_ctx *c) {
    return bcast_grad_rule(c, "ReduceSumGrad");
}
static at_status reduce_mean_grad(at_grad_ctx *c) {
    return bcast_grad_rule(c, "ReduceMeanGrad");
}

static at_status reduce_max_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    at_val x = at_grad_in(c, 0), axes = axes_input(c, 1);
    if (at_value_dtype(c->g, x) != AT_F32) return AT_OK;
    return emit_reduce_like(c, "ReduceMaxGrad", AT_DOMAIN_ATTUNE, c->dy[0], x, axes, &c->dx[0]);
}

/* The broadcast backward ops are linear in dY; their adjoint is the forward reduction. */
static at_status reduce_sum_grad_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    return emit_reduce_like(c, "ReduceSum", AT_DOMAIN_ONNX, c->dy[0], AT_NONE, axes_input(c, 2),
                            &c->dx[0]);
}

static at_status reduce_mean_grad_grad(at_grad_ctx *c) {
    if (!c->need[0] || c->dy[0] == AT_NONE) return AT_OK;
    return emit_reduce_like(c, "ReduceMean", AT_DOMAIN_ONNX, c->dy[0], AT_NONE, axes_input(c, 2),
                            &c->dx[0]);
}

/* ------------------------------------------------------------------------------------------ */
/* Records */

static const at_attr_schema reduce_attrs[] = {
    {"keepdims", AT_ATTR_INT, false}, {"noop_with_empty_axes", AT_ATTR_INT, false}, {NULL}};

const at_op_def at_op_def_ReduceSum = {
    .name = "ReduceSum",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .attrs = reduce_attrs,
    .infer = reduce_sum_infer,
    .cpu = reduce_sum_cpu,
    .grad = reduce_sum_grad,
    .nondiff = 1u << 1,
};
const at_op_def at_op_def_ReduceMean = {
    .name = "ReduceMean",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .attrs = reduce_attrs,
    .infer = reduce_mean_infer,
    .cpu = reduce_mean_cpu,
    .grad = reduce_mean_grad,
    .nondiff = 1u << 1,
};
const at_op_def at_op_def_ReduceMax = {
    .name = "ReduceMax",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .attrs = reduce_attrs,
    .infer = reduce_max_infer,
    .cpu = reduce_max_cpu,
    .grad = reduce_max_grad,
    .nondiff = 1u << 1,
};
/* inputs: dY, shape (int64 [rank] of X), axes? */
const at_op_def at_op_def_ReduceSumGrad = {
    .name = "ReduceSumGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 2,
    .max_in = 3,
    .min_out = 1,
    .max_out = 1,
    .attrs = reduce_attrs,
    .infer = reduce_bcast_grad_infer,
    .cpu = reduce_sum_grad_cpu,
    .grad = reduce_sum_grad_grad,
    .nondiff = (1u << 1) | (1u << 2),
};
const at_op_def at_op_def_ReduceMeanGrad = {
    .name = "ReduceMeanGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 2,
    .max_in = 3,
    .min_out = 1,
    .max_out = 1,
    .attrs = reduce_attrs,
    .infer = reduce_bcast_grad_infer,
    .cpu = reduce_mean_grad_cpu,
    .grad = reduce_mean_grad_grad,
    .nondiff = (1u << 1) | (1u << 2),
};
/* inputs: dY, X, axes?; not differentiable itself (the argmax is piecewise constant). */
const at_op_def at_op_def_ReduceMaxGrad = {
    .name = "ReduceMaxGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 2,
    .max_in = 3,
    .min_out = 1,
    .max_out = 1,
    .attrs = reduce_attrs,
    .infer = reduce_max_grad_infer,
    .cpu = reduce_max_grad_cpu,
    .nondiff = (1u << 1) | (1u << 2),
};

/* ------------------------------------------------------------------------------------------ */
/* Builders */

static at_val reduce_build(at_graph *g, const char *op, at_val x, int n_axes, const int64_t *axes,
                           int keepdims) {
    if (x == AT_NONE) return AT_NONE;
    at_val in[2] = {x, AT_NONE};
    int n_in = 1;
    if (n_axes > 0) {
        if (!axes) {
            at_graph_fail(g, AT_E_INVALID, "%s: axes is NULL with n_axes = %d", op, n_axes);
            return AT_NONE;
        }
        in[1] = at_const_i64s(g, n_axes, axes);
        if (in[1] == AT_NONE) return AT_NONE;
        n_in = 2;
    }
    at_attr a = AT_ATTR_I("keepdims", keepdims ? 1 : 0);
    return at_node1(g, op, in, n_in, &a, 1);
}

at_val at_reduce_sum(at_graph *g, at_val x, int n_axes, const int64_t *axes, int keepdims) {
    return reduce_build(g, "ReduceSum", x, n_axes, axes, keepdims);
}
at_val at_reduce_mean(at_graph *g, at_val x, int n_axes, const int64_t *axes, int keepdims) {
    return reduce_build(g, "ReduceMean", x, n_axes, axes, keepdims);
}
at_val at_reduce_max(at_graph *g, at_val x, int n_axes, const int64_t *axes, int keepdims) {
    return reduce_build(g, "ReduceMax", x, n_axes, axes, keepdims);
}
