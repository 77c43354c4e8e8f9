/* Optimizer update ops (ai.attune): Increment, SGD, Adam, AdamW, ClipGlobalNorm, and their
 * builders. Update ops write in place: `alias` tells the planner which output shares memory
 * with which input (param, moments, velocity, step counter), and the planner runs the update
 * after every other reader of that buffer. The formulas follow torch.optim (SGD, Adam, AdamW)
 * and torch.nn.utils.clip_grad_norm_, so a run can be compared with a PyTorch reference.
 * None of these ops is differentiable. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"
#include "ops/parallel.h"

#ifdef __SSE2__
#include <emmintrin.h>
typedef float v4f __attribute__((vector_size(16)));
#endif

#define NO_GRAD    (~(uint64_t)0)
#define ADAM_CHUNK 4096

/* ------------------------------------------------------------------------------------------ */
/* Shape helpers. */

/* Dims that are both concrete must agree; symbols are accepted while building since two
 * different symbols may still bind to the same size. */
static bool shapes_compatible(const at_shape *a, const at_shape *b) {
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] >= 0 && b->dim[i] >= 0 && a->dim[i] != b->dim[i]) return false;
    return true;
}

/* Rank 0 or a single element (symbols are accepted while building). */
static bool is_scalar_shape(const at_shape *s) {
    for (int i = 0; i < s->rank; i++)
        if (s->dim[i] >= 0 && s->dim[i] != 1) return false;
    return true;
}

static at_status check_like(at_infer_ctx *c, int i, int ref, const char *what) {
    char a[96], b[96];
    if (c->in_dtype[i] != c->in_dtype[ref])
        return at_infer_fail(c, AT_E_SHAPE, "%s has dtype %s, param has %s", what,
                             at_dtype_name(c->in_dtype[i]), at_dtype_name(c->in_dtype[ref]));
    if (!shapes_compatible(&c->in_shape[i], &c->in_shape[ref]))
        return at_infer_fail(c, AT_E_SHAPE, "%s has shape %s, param has %s", what,
                             at_shape_str(&c->in_shape[i], a, sizeof a),
                             at_shape_str(&c->in_shape[ref], b, sizeof b));
    return AT_OK;
}

static at_status check_scalar(at_infer_ctx *c, int i, const char *what, bool allow_i64) {
    char a[96];
    at_dtype dt = c->in_dtype[i];
    if (dt != AT_F32 && !(allow_i64 && dt == AT_I64))
        return at_infer_fail(c, AT_E_SHAPE, "%s must be a float32 scalar, got %s", what,
                             at_dtype_name(dt));
    if (!is_scalar_shape(&c->in_shape[i]))
        return at_infer_fail(c, AT_E_SHAPE, "%s must be a scalar, got shape %s", what,
                             at_shape_str(&c->in_shape[i], a, sizeof a));
    return AT_OK;
}

static float scalar_f32(const at_tensor *t) {
    if (t->dtype == AT_I64) return (float)((const int64_t *)t->data)[0];
    return ((const float *)t->data)[0];
}

/* ------------------------------------------------------------------------------------------ */
/* Increment(counter) -> counter + 1, in place. The optimizer step t. */

static at_status increment_infer(at_infer_ctx *c) {
    at_dtype dt = c->in_dtype[0];
    if (dt != AT_F32 && dt != AT_I64)
        return at_infer_fail(c, AT_E_SHAPE, "counter must be float32 or int64, got %s",
                             at_dtype_name(dt));
    c->out_dtype[0] = dt;
    c->out_shape[0] = c->in_shape[0];
    return AT_OK;
}

static at_status increment_cpu(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->in[0].shape);
    if (k->in[0].dtype == AT_I64) {
        const int64_t *x = AT_I64P(&k->in[0]);
        int64_t *y = AT_I64P(&k->out[0]);
        for (int64_t i = 0; i < n; i++) y[i] = x[i] + 1;
    } else {
        const float *x = AT_F32P(&k->in[0]);
        float *y = AT_F32P(&k->out[0]);
        for (int64_t i = 0; i < n; i++) y[i] = x[i] + 1.0f;
    }
    return AT_OK;
}

static const at_attr_schema no_attrs[] = {{NULL}};

static int increment_alias(const at_node_rec *n, int out) {
    (void)n;
    return out == 0 ? 0 : -1;
}

const at_op_def at_op_def_Increment = {
    .name = "Increment",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 1,
    .max_in = 1,
    .min_out = 1,
    .max_out = 1,
    .attrs = no_attrs,
    .infer = increment_infer,
    .cpu = increment_cpu,
    .nondiff = NO_GRAD,
    .alias = increment_alias,
};

/* ------------------------------------------------------------------------------------------ */
/* SGD(param, grad, lr[, velocity]) -> param'(, velocity'), as torch.optim.SGD with
 * dampening 0:
 *   g = grad + wd * p;  v = momentum * v + g;  g = nesterov ? g + momentum * v : v;
 *   p = p - lr * g.
 * Without momentum the velocity is optional; a zero-initialized velocity gives torch's
 * first step (buf = g) since dampening is 0. */

static const at_attr_schema sgd_attrs[] = {{"momentum", AT_ATTR_FLOAT, false},
                                           {"weight_decay", AT_ATTR_FLOAT, false},
                                           {"nesterov", AT_ATTR_INT, false},
                                           {NULL}};

static bool has_input(const at_infer_ctx *c, int i) {
    return i < c->n_in && c->in_dtype[i] != AT_UNDEFINED;
}

static at_status sgd_infer(at_infer_ctx *c) {
    at_status st;
    if (c->in_dtype[0] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "param must be float32, got %s",
                             at_dtype_name(c->in_dtype[0]));
    if ((st = check_like(c, 1, 0, "grad"))) return st;
    if ((st = check_scalar(c, 2, "lr", false))) return st;
    bool vel = has_input(c, 3);
    if (vel && (st = check_like(c, 3, 0, "velocity"))) return st;
    float momentum = at_attr_float(c->node, "momentum", 0.0f);
    if (momentum != 0.0f && !vel)
        return at_infer_fail(c, AT_E_INVALID, "momentum %g needs the velocity input",
                             (double)momentum);
    if (at_attr_int(c->node, "nesterov", 0) && momentum == 0.0f)
        return at_infer_fail(c, AT_E_INVALID, "nesterov needs a nonzero momentum");
    if (vel != (c->n_out == 2))
        return at_infer_fail(c, AT_E_INVALID,
                             "with a velocity input SGD has 2 outputs, without it 1 (got %d)",
                             c->n_out);
    for (int j = 0; j < c->n_out; j++) {
        c->out_dtype[j] = AT_F32;
        c->out_shape[j] = c->in_shape[j == 0 ? 0 : 3];
    }
    return AT_OK;
}

static at_status sgd_cpu(at_kernel_ctx *k) {
    const at_node_rec *nd = k->node;
    float momentum = at_attr_float(nd, "momentum", 0.0f);
    float wd = at_attr_float(nd, "weight_decay", 0.0f);
    int nesterov = at_attr_int(nd, "nesterov", 0) != 0;
    float lr = scalar_f32(&k->in[2]);
    int64_t n = at_shape_numel(&k->in[0].shape);
    const float *p = AT_F32P(&k->in[0]), *gr = AT_F32P(&k->in[1]);
    float *po = AT_F32P(&k->out[0]);
    bool vel = k->n_in > 3 && k->in[3].data && k->n_out > 1;
    const float *v = vel ? AT_F32P(&k->in[3]) : NULL;
    float *vo = vel ? AT_F32P(&k->out[1]) : NULL;
    /* Each element is read before it is written, so in-place and separate buffers agree. */
#pragma omp parallel for schedule(static) num_threads(k->threads) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i];
        float g = gr[i];
        if (wd != 0.0f) g = g + wd * pi;
        if (vel) {
            float b = momentum * v[i] + g;
            vo[i] = b;
            g = nesterov ? g + momentum * b : b;
        }
        po[i] = pi - lr * g;
    }
    return AT_OK;
}

static int sgd_alias(const at_node_rec *n, int out) {
    (void)n;
    return out == 0 ? 0 : out == 1 ? 3 : -1;
}

const at_op_def at_op_def_SGD = {
    .name = "SGD",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 3,
    .max_in = 4,
    .min_out = 1,
    .max_out = 2,
    .attrs = sgd_attrs,
    .infer = sgd_infer,
    .cpu = sgd_cpu,
    .nondiff = NO_GRAD,
    .alias = sgd_alias,
};

/* ------------------------------------------------------------------------------------------ */
/* Adam / AdamW(param, grad, m, v, t, lr) -> param', m', v'. t is the step after increment
 * (1 on the first step). As torch.optim.Adam / AdamW (amsgrad off):
 *   AdamW: p = p * (1 - lr * wd)            Adam: g = grad + wd * p
 *   m = m + (1 - b1) * (g - m)              (torch's lerp)
 *   v = b2 * v + (1 - b2) * g * g
 *   p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * The bias corrections are computed in double, as torch does with Python floats. */

static const at_attr_schema adam_attrs[] = {{"beta1", AT_ATTR_FLOAT, false},
                                            {"beta2", AT_ATTR_FLOAT, false},
                                            {"epsilon", AT_ATTR_FLOAT, false},
                                            {"weight_decay", AT_ATTR_FLOAT, false},
                                            {NULL}};

static at_status adam_infer(at_infer_ctx *c) {
    at_status st;
    if (c->in_dtype[0] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "param must be float32, got %s",
                             at_dtype_name(c->in_dtype[0]));
    if ((st = check_like(c, 1, 0, "grad"))) return st;
    if ((st = check_like(c, 2, 0, "m"))) return st;
    if ((st = check_like(c, 3, 0, "v"))) return st;
    if ((st = check_scalar(c, 4, "step t", true))) return st;
    if ((st = check_scalar(c, 5, "lr", false))) return st;
    float b1 = at_attr_float(c->node, "beta1", 0.9f);
    float b2 = at_attr_float(c->node, "beta2", 0.999f);
    if (!(b1 >= 0.0f && b1 < 1.0f) || !(b2 >= 0.0f && b2 < 1.0f))
        return at_infer_fail(c, AT_E_INVALID, "betas must lie in [0, 1), got %g and %g", (double)b1,
                             (double)b2);
    static const int from[3] = {0, 2, 3};
    for (int j = 0; j < 3; j++) {
        c->out_dtype[j] = AT_F32;
        c->out_shape[j] = c->in_shape[from[j]];
    }
    return AT_OK;
}

typedef struct {
    bool decoupled;
    float b2, eps, wd, step_size, bc2_sqrt, decay, omb1, omb2;
    const float *p, *gr, *m, *v;
    float *po, *mo, *vo;
} adam_job;

/* Elements [lo, hi) of an Adam step. Each element is read before it is written, so in-place and
 * separate buffers agree. Four lanes at a time through SSE2 (sqrtf's errno check keeps the
 * compiler from vectorizing the scalar loop), the same operations in the same order, so every
 * lane rounds exactly as the scalar tail does. */
static void adam_range(void *arg, int64_t lo, int64_t hi) {
    const adam_job *j = arg;
    const float *p = j->p, *gr = j->gr, *m = j->m, *v = j->v;
    float *po = j->po, *mo = j->mo, *vo = j->vo;
    const float b2 = j->b2, eps = j->eps, wd = j->wd, step_size = j->step_size;
    const float bc2_sqrt = j->bc2_sqrt, decay = j->decay, omb1 = j->omb1, omb2 = j->omb2;
    const bool decoupled = j->decoupled;
    int64_t i = lo, end = hi;
#ifdef __SSE2__
    const v4f vdecay = {decay, decay, decay, decay}, vwd = {wd, wd, wd, wd};
    const v4f vomb1 = {omb1, omb1, omb1, omb1}, vomb2 = {omb2, omb2, omb2, omb2};
    const v4f vb2 = {b2, b2, b2, b2}, vbc2 = {bc2_sqrt, bc2_sqrt, bc2_sqrt, bc2_sqrt};
    const v4f veps = {eps, eps, eps, eps};
    const v4f vstep = {step_size, step_size, step_size, step_size};
    for (; i + 4 <= end; i += 4) {
        v4f pi, g, mm, vv;
        memcpy(&pi, p + i, sizeof pi);
        memcpy(&g, gr + i, sizeof g);
        memcpy(&mm, m + i, sizeof mm);
        memcpy(&vv, v + i, sizeof vv);
        if (decoupled) {
            if (wd != 0.0f) pi = pi * vdecay;
        } else if (wd != 0.0f) {
            g = g + vwd * pi;
        }
        v4f mi = mm + vomb1 * (g - mm);
        v4f vi = vv * vb2 + vomb2 * g * g;
        v4f denom = (v4f)_mm_sqrt_ps((__m128)vi) / vbc2 + veps;
        v4f pn = pi - vstep * (mi / denom);
        memcpy(mo + i, &mi, sizeof mi);
        memcpy(vo + i, &vi, sizeof vi);
        memcpy(po + i, &pn, sizeof pn);
    }
#endif
    for (; i < end; i++) {
        float pi = p[i], g = gr[i];
        if (decoupled) {
            if (wd != 0.0f) pi = pi * decay;
        } else if (wd != 0.0f) {
            g = g + wd * pi;
        }
        float mi = m[i] + omb1 * (g - m[i]);
        float vi = v[i] * b2 + omb2 * g * g;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        mo[i] = mi;
        vo[i] = vi;
        po[i] = pi - step_size * (mi / denom);
    }
}

static at_status adam_step(at_kernel_ctx *k, bool decoupled, float wd_default) {
    const at_node_rec *nd = k->node;
    float b1 = at_attr_float(nd, "beta1", 0.9f);
    float b2 = at_attr_float(nd, "beta2", 0.999f);
    float eps = at_attr_float(nd, "epsilon", 1e-8f);
    float wd = at_attr_float(nd, "weight_decay", wd_default);
    double t = scalar_f32(&k->in[4]);
    double lr = scalar_f32(&k->in[5]);
    if (!(t >= 1.0))
        return at_kernel_fail(k, AT_E_INVALID,
                              "step t is %g; Adam needs t >= 1 (feed it the incremented counter)",
                              t);
    adam_job j = {decoupled,
                  b2,
                  eps,
                  wd,
                  (float)(lr / (1.0 - pow(b1, t))),
                  (float)sqrt(1.0 - pow(b2, t)),
                  (float)(1.0 - lr * wd),
                  1.0f - b1,
                  1.0f - b2,
                  AT_F32P(&k->in[0]),
                  AT_F32P(&k->in[1]),
                  AT_F32P(&k->in[2]),
                  AT_F32P(&k->in[3]),
                  AT_F32P(&k->out[0]),
                  AT_F32P(&k->out[1]),
                  AT_F32P(&k->out[2])};
    at_par_range(k, at_shape_numel(&k->in[0].shape), ADAM_CHUNK, 16, adam_range, &j);
    return AT_OK;
}

static at_status adam_cpu(at_kernel_ctx *k) {
    return adam_step(k, false, 0.0f);
}
static at_status adamw_cpu(at_kernel_ctx *k) {
    return adam_step(k, true, 0.01f);
}

static int adam_alias(const at_node_rec *n, int out) {
    (void)n;
    static const int to[3] = {0, 2, 3};
    return out >= 0 && out < 3 ? to[out] : -1;
}

const at_op_def at_op_def_Adam = {
    .name = "Adam",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 6,
    .max_in = 6,
    .min_out = 3,
    .max_out = 3,
    .attrs = adam_attrs,
    .infer = adam_infer,
    .cpu = adam_cpu,
    .nondiff = NO_GRAD,
    .alias = adam_alias,
};

const at_op_def at_op_def_AdamW = {
    .name = "AdamW",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 6,
    .max_in = 6,
    .min_out = 3,
    .max_out = 3,
    .attrs = adam_attrs,
    .infer = adam_infer,
    .cpu = adamw_cpu,
    .nondiff = NO_GRAD,
    .alias = adam_alias,
};

/* ------------------------------------------------------------------------------------------ */
/* ClipGlobalNorm(g_1..g_n) -> (g'_1..g'_n, norm), as torch.nn.utils.clip_grad_norm_:
 *   norm = sqrt(sum_i |g_i|^2);  scale = min(1, max_norm / (norm + 1e-6));  g'_i = scale * g_i.
 * The outputs are separate buffers (no alias): a gradient may be a fed input or be fetched
 * unclipped in the same run, and the planner frees the unclipped one right after.
 * The sum is cut into fixed chunks of CLIP_CHUNK elements, each summed in double, and the
 * chunk sums are added in order, so the norm is the same for every thread count. */

#define CLIP_CHUNK 4096

static const at_attr_schema clip_attrs[] = {{"max_norm", AT_ATTR_FLOAT, true}, {NULL}};

static at_status clip_infer(at_infer_ctx *c) {
    if (c->n_out != c->n_in + 1)
        return at_infer_fail(c, AT_E_INVALID, "%d gradients need %d outputs, got %d", c->n_in,
                             c->n_in + 1, c->n_out);
    float max_norm = at_attr_float(c->node, "max_norm", 1.0f);
    if (!(max_norm >= 0.0f) || isinf(max_norm))
        return at_infer_fail(c, AT_E_INVALID, "max_norm must be finite and >= 0, got %g",
                             (double)max_norm);
    for (int i = 0; i < c->n_in; i++) {
        if (c->in_dtype[i] != AT_F32)
            return at_infer_fail(c, AT_E_SHAPE, "gradient %d must be float32, got %s", i,
                                 at_dtype_name(c->in_dtype[i]));
        c->out_dtype[i] = AT_F32;
        c->out_shape[i] = c->in_shape[i];
    }
    c->out_dtype[c->n_in] = AT_F32;
    c->out_shape[c->n_in] = at_shape_make(0, NULL);
    return AT_OK;
}

static int64_t clip_chunks(int64_t numel) {
    return (numel + CLIP_CHUNK - 1) / CLIP_CHUNK;
}

/* Chunk offsets [n + 1] then one double a chunk. */
static size_t clip_workspace(const at_kernel_ctx *k) {
    int64_t total = 0;
    for (int i = 0; i < k->n_in; i++) total += clip_chunks(at_shape_numel(&k->in[i].shape));
    return (size_t)(k->n_in + 1) * sizeof(int64_t) + (size_t)(total ? total : 1) * sizeof(double);
}

/* The tensor that global chunk c belongs to: the last i with start[i] <= c. */
static int clip_find(const int64_t *start, int n, int64_t c) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (start[mid] <= c)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Sum of x[e]^2 in double: eight running sums (they vectorize; one sum is a chain of
 * dependent adds, 4 cycles an element), added in a fixed order. */
#define SQ_LANES 8
static double sum_squares(const float *x, int64_t n) {
    double acc[SQ_LANES] = {0};
    int64_t e = 0;
    for (; e + SQ_LANES <= n; e += SQ_LANES)
        for (int l = 0; l < SQ_LANES; l++) acc[l] += (double)x[e + l] * (double)x[e + l];
    double s = 0.0;
    for (int l = 0; l < SQ_LANES; l++) s += acc[l];
    for (; e < n; e++) s += (double)x[e] * (double)x[e];
    return s;
}

/* ClipGlobalNorm's two passes over the global chunks [lo, hi): the sums of squares, then the
 * scaling. Empty tensors own no chunks: clip_find lands on the last tensor starting at c. */
typedef struct {
    const at_kernel_ctx *k;
    const int64_t *start;
    double *part;
    float scale;
} clip_job;

static int64_t clip_span(const clip_job *j, int64_t c, int *i, int64_t *hi) {
    *i = clip_find(j->start, j->k->n_in, c);
    int64_t numel = at_shape_numel(&j->k->in[*i].shape);
    int64_t lo = (c - j->start[*i]) * CLIP_CHUNK;
    *hi = lo + CLIP_CHUNK < numel ? lo + CLIP_CHUNK : numel;
    return lo;
}

static void clip_sums(void *arg, int64_t lo, int64_t hi) {
    const clip_job *j = arg;
    for (int64_t c = lo; c < hi; c++) {
        int i;
        int64_t e1, e0 = clip_span(j, c, &i, &e1);
        j->part[c] = sum_squares(AT_F32P(&j->k->in[i]) + e0, e1 - e0);
    }
}

static void clip_scale(void *arg, int64_t lo, int64_t hi) {
    const clip_job *j = arg;
    for (int64_t c = lo; c < hi; c++) {
        int i;
        int64_t e1, e0 = clip_span(j, c, &i, &e1);
        const float *x = AT_F32P(&j->k->in[i]);
        float *y = AT_F32P(&j->k->out[i]);
        const float scale = j->scale;
        for (int64_t e = e0; e < e1; e++) y[e] = x[e] * scale;
    }
}

static at_status clip_cpu(at_kernel_ctx *k) {
    int n = k->n_in;
    if (k->ws_size < clip_workspace(k))
        return at_kernel_fail(k, AT_E_INTERNAL, "workspace of %zu bytes, need %zu", k->ws_size,
                              clip_workspace(k));
    int64_t *start = (int64_t *)k->ws;
    double *part = (double *)(start + n + 1);
    start[0] = 0;
    for (int i = 0; i < n; i++)
        start[i + 1] = start[i] + clip_chunks(at_shape_numel(&k->in[i].shape));
    int64_t total = start[n];

    clip_job j = {k, start, part, 0.0f};
    at_par_range(k, total, 2, 1, clip_sums, &j);
    double sumsq = 0.0;
    for (int64_t c = 0; c < total; c++) sumsq += part[c];

    float norm = (float)sqrt(sumsq);
    float max_norm = at_attr_float(k->node, "max_norm", 1.0f);
    float scale = max_norm / (norm + 1e-6f);
    if (scale > 1.0f) scale = 1.0f;
    AT_F32P(&k->out[n])[0] = norm;

    j.scale = scale;
    at_par_range(k, total, 2, 1, clip_scale, &j);
    return AT_OK;
}

const at_op_def at_op_def_ClipGlobalNorm = {
    .name = "ClipGlobalNorm",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 1,
    .max_in = AT_VARIADIC,
    .min_out = 2,
    .max_out = AT_VARIADIC,
    .attrs = clip_attrs,
    .infer = clip_infer,
    .cpu = clip_cpu,
    .workspace = clip_workspace,
    .nondiff = NO_GRAD,
};

/* ------------------------------------------------------------------------------------------ */
/* Builders. */

#define NAME_CAP 512

/* base if no value has that name yet, else base.1, base.2, ... (the first free one): each
 * builder call owns its state, so a second optimizer over the same params (another training
 * phase) starts from fresh moments, as a new torch optimizer would. */
static at_status unique_name(at_graph *g, const char *base, char *buf) {
    if ((size_t)snprintf(buf, NAME_CAP, "%s", base) >= NAME_CAP)
        return at_graph_fail(g, AT_E_INVALID, "optimizer state name too long: %.64s...", base);
    for (int k = 1; at_graph_find(g, buf) != AT_NONE; k++) {
        if ((size_t)snprintf(buf, NAME_CAP, "%s.%d", base, k) >= NAME_CAP)
            return at_graph_fail(g, AT_E_INVALID, "optimizer state name too long: %.64s...", base);
    }
    return AT_OK;
}

/* "<param name><suffix>", made unique. */
static at_val new_state_like(at_graph *g, at_val p, const char *suffix) {
    char base[NAME_CAP], name[NAME_CAP];
    const char *pn = at_value_name(g, p);
    if ((size_t)snprintf(base, sizeof base, "%s%s", pn ? pn : "param", suffix) >= sizeof base) {
        at_graph_fail(g, AT_E_INVALID, "optimizer state name too long for param %.64s...", pn);
        return AT_NONE;
    }
    if (unique_name(g, base, name) != AT_OK) return AT_NONE;
    return at_state(g, name, at_value_dtype(g, p), at_value_shape(g, p));
}

/* The common prefix of the params' names up to and including its last '.' or '/', so the
 * step counter of an optimizer over "disc.*" is "disc.adam_t". */
static void common_prefix(const at_graph *g, int n, const at_val *params, char *buf, size_t cap) {
    buf[0] = 0;
    if (n <= 0) return;
    const char *first = at_value_name(g, params[0]);
    if (!first) return;
    size_t len = strlen(first);
    for (int i = 1; i < n && len; i++) {
        const char *s = at_value_name(g, params[i]);
        size_t j = 0;
        while (j < len && s && s[j] && s[j] == first[j]) j++;
        len = s ? j : 0;
    }
    while (len && first[len - 1] != '.' && first[len - 1] != '/') len--;
    if (len >= cap) len = 0;
    memcpy(buf, first, len);
    buf[len] = 0;
}

/* Checks the arguments shared by the update builders; sets updates[] to AT_NONE. */
static at_status check_update_args(at_graph *g, const char *who, int n, const at_val *params,
                                   const at_val *grads, at_val lr, at_val *updates) {
    if (!g) return AT_E_INVALID;
    if (n < 0 || (n > 0 && (!params || !grads || !updates)))
        return at_graph_fail(g, AT_E_INVALID, "%s: bad arguments (n = %d)", who, n);
    for (int i = 0; i < n; i++) updates[i] = AT_NONE;
    bool none = lr == AT_NONE;
    for (int i = 0; i < n; i++) none |= params[i] == AT_NONE || grads[i] == AT_NONE;
    if (none) {
        /* Sticky errors: an AT_NONE input means an earlier call already failed. */
        if (at_graph_status(g) != AT_OK) return at_graph_status(g);
        return at_graph_fail(g, AT_E_INVALID, "%s: a param, gradient or lr is AT_NONE", who);
    }
    for (int i = 0; i < n; i++) {
        at_value_kind kind = at_value_kind_of(g, params[i]);
        if (kind != AT_VALUE_PARAM && kind != AT_VALUE_STATE)
            return at_graph_fail(g, AT_E_INVALID,
                                 "%s: %s is not a parameter (an update needs a persistent buffer)",
                                 who, at_value_name(g, params[i]));
    }
    return at_graph_status(g);
}

static at_status adam_build(at_graph *g, const char *op, int n, const at_val *params,
                            const at_val *grads, at_val lr, const at_adam_opts *o, float wd_dflt,
                            at_val *updates) {
    at_status st = check_update_args(g, op, n, params, grads, lr, updates);
    if (st != AT_OK || n == 0) return st;
    at_adam_opts d = {0.9f, 0.999f, 1e-8f, wd_dflt};
    if (o) d = *o;

    char prefix[NAME_CAP], base[NAME_CAP + 16], name[NAME_CAP];
    common_prefix(g, n, params, prefix, sizeof prefix);
    snprintf(base, sizeof base, "%sadam_t", prefix);
    if (unique_name(g, base, name) != AT_OK) return at_graph_status(g);
    at_val t = at_state(g, name, AT_F32, at_shape_make(0, NULL));
    at_val t1 = AT_NONE;
    if (t == AT_NONE || at_node_add(g, "Increment", AT_DOMAIN_ATTUNE, &t, 1, &t1, 1, NULL, 0) < 0)
        return at_graph_status(g) ? at_graph_status(g) : AT_E_INTERNAL;

    at_attr attrs[4] = {AT_ATTR_F("beta1", d.beta1), AT_ATTR_F("beta2", d.beta2),
                        AT_ATTR_F("epsilon", d.epsilon), AT_ATTR_F("weight_decay", d.weight_decay)};
    for (int i = 0; i < n; i++) {
        at_val m = new_state_like(g, params[i], ".adam_m");
        at_val v = new_state_like(g, params[i], ".adam_v");
        if (m == AT_NONE || v == AT_NONE) break;
        at_val in[6] = {params[i], grads[i], m, v, t1, lr}, out[3];
        if (at_node_add(g, op, AT_DOMAIN_ATTUNE, in, 6, out, 3, attrs, 4) < 0) break;
        updates[i] = out[0];
    }
    st = at_graph_status(g);
    if (st != AT_OK)
        for (int i = 0; i < n; i++) updates[i] = AT_NONE;
    return st;
}

at_status at_adamw(at_graph *g, int n, const at_val *params, const at_val *grads, at_val lr,
                   const at_adam_opts *o, at_val *updates) {
    return adam_build(g, "AdamW", n, params, grads, lr, o, 0.01f, updates);
}

at_status at_adam(at_graph *g, int n, const at_val *params, const at_val *grads, at_val lr,
                  const at_adam_opts *o, at_val *updates) {
    return adam_build(g, "Adam", n, params, grads, lr, o, 0.0f, updates);
}

at_status at_sgd(at_graph *g, int n, const at_val *params, const at_val *grads, at_val lr,
                 float momentum, float weight_decay, at_val *updates) {
    at_status st = check_update_args(g, "SGD", n, params, grads, lr, updates);
    if (st != AT_OK) return st;
    at_attr attrs[2] = {AT_ATTR_F("momentum", momentum), AT_ATTR_F("weight_decay", weight_decay)};
    for (int i = 0; i < n; i++) {
        at_val in[4] = {params[i], grads[i], lr, AT_NONE}, out[2];
        int n_in = 3, n_out = 1;
        if (momentum != 0.0f) {
            in[3] = new_state_like(g, params[i], ".momentum_buffer");
            if (in[3] == AT_NONE) break;
            n_in = 4, n_out = 2;
        }
        if (at_node_add(g, "SGD", AT_DOMAIN_ATTUNE, in, n_in, out, n_out, attrs, 2) < 0) break;
        updates[i] = out[0];
    }
    st = at_graph_status(g);
    if (st != AT_OK)
        for (int i = 0; i < n; i++) updates[i] = AT_NONE;
    return st;
}

at_status at_clip_global_norm(at_graph *g, int n, const at_val *grads, float max_norm, at_val *out,
                              at_val *norm_out) {
    if (!g) return AT_E_INVALID;
    if (n <= 0 || !grads || !out)
        return at_graph_fail(g, AT_E_INVALID, "ClipGlobalNorm: bad arguments (n = %d)", n);
    for (int i = 0; i < n; i++) out[i] = AT_NONE;
    if (norm_out) *norm_out = AT_NONE;
    for (int i = 0; i < n; i++) {
        if (grads[i] != AT_NONE) continue;
        if (at_graph_status(g) != AT_OK) return at_graph_status(g);
        return at_graph_fail(g, AT_E_INVALID, "ClipGlobalNorm: gradient %d is AT_NONE", i);
    }
    if (at_graph_status(g) != AT_OK) return at_graph_status(g);
    at_val outs_small[17];
    at_val *outs = outs_small;
    if (n + 1 > (int)(sizeof outs_small / sizeof *outs_small)) {
        outs = malloc((size_t)(n + 1) * sizeof *outs);
        if (!outs) return at_graph_fail(g, AT_E_NOMEM, "ClipGlobalNorm: out of memory");
    }
    at_attr attr = AT_ATTR_F("max_norm", max_norm);
    if (at_node_add(g, "ClipGlobalNorm", AT_DOMAIN_ATTUNE, grads, n, outs, n + 1, &attr, 1) >= 0) {
        for (int i = 0; i < n; i++) out[i] = outs[i];
        if (norm_out) *norm_out = outs[n];
    }
    if (outs != outs_small) free(outs);
    return at_graph_status(g);
}
