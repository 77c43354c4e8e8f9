/* Dropout (ONNX 13+) and its backward op DropoutGrad (ai.attune).
 *
 * The mask comes from the session's counter-based RNG: element i is kept when
 * at_rng_uniform(at_rng_key(seed, node), step, i) >= ratio, so one seed, step and node give
 * one mask on every backend and thread count. ONNX's `seed` attribute is accepted and
 * ignored: a per-node seed would break that reproducibility contract. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops/op.h"
#include "ops/parallel.h"
#include "runtime/cpu/dropout_avx512.h"
#include "runtime/rng.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { DO_X, DO_RATIO, DO_TRAINING };

static bool present(const at_infer_ctx *c, int i) {
    return i < c->n_in && c->in_dtype[i] != AT_UNDEFINED;
}

static const void *kin(const at_kernel_ctx *k, int i) {
    return i < k->n_in ? k->in[i].data : NULL;
}

/* A scalar input: rank 0, or one element of any rank (exporters write [1] as often as []). */
static at_status check_scalar(at_infer_ctx *c, int i, at_dtype want, const char *what) {
    if (c->in_dtype[i] != want)
        return at_infer_fail(c, AT_E_SHAPE, "%s must be %s, got %s", what, at_dtype_name(want),
                             at_dtype_name(c->in_dtype[i]));
    for (int d = 0; d < c->in_shape[i].rank; d++) {
        int64_t n = c->in_shape[i].dim[d];
        if (n >= 0 && n != 1)
            return at_infer_fail(c, AT_E_SHAPE, "%s must be a scalar (dim %d is %lld)", what, d,
                                 (long long)n);
    }
    return AT_OK;
}

/* Reads ratio and training_mode; *scale is what kept elements are multiplied by. */
static at_status read_mode(at_kernel_ctx *k, int ratio_in, int training_in, float *ratio,
                           bool *training, float *scale) {
    const float *r = kin(k, ratio_in);
    const uint8_t *t = kin(k, training_in);
    *ratio = r ? r[0] : 0.5f;
    *training = t && t[0];
    *scale = 1.0f;
    if (!*training) return AT_OK;
    if (!(*ratio >= 0.0f && *ratio <= 1.0f))
        return at_kernel_fail(k, AT_E_INVALID, "ratio %g outside [0, 1]", (double)*ratio);
    /* ratio 1 drops everything; the scale is then never applied to a kept element. */
    *scale = *ratio < 1.0f ? 1.0f / (1.0f - *ratio) : 0.0f;
    return AT_OK;
}

/* at_philox4x32 (runtime/rng.c) for PHILOX_LANES consecutive blocks j0, j0 + 1, ... at once:
 * the same rounds on four blocks per SSE2 register (the 32 x 32 -> 64 products by pmuludq,
 * as Random123's SSE version), or lane by lane without SSE2; one call per block was the cost
 * of a dropout. out[w][l] is word w of block j0 + l. tests/test_ops_dropout.c checks the
 * masks against at_rng_uniform. */
enum { PHILOX_LANES = 8 };
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

#ifdef __SSE2__
/* hi and lo words of the four products a[l] * m. */
static inline void mulhilo4(__m128i a, __m128i m, __m128i *hi, __m128i *lo) {
    const __m128i low = _mm_set_epi32(0, -1, 0, -1);
    __m128i even = _mm_mul_epu32(a, m), odd = _mm_mul_epu32(_mm_srli_epi64(a, 32), m);
    *hi = _mm_or_si128(_mm_srli_epi64(even, 32), _mm_andnot_si128(low, odd));
    *lo = _mm_or_si128(_mm_and_si128(even, low), _mm_slli_epi64(odd, 32));
}
#endif

static void philox_lanes(at_philox_key key, uint64_t j0, uint64_t step,
                         uint32_t out[4][PHILOX_LANES]) {
#ifdef __SSE2__
    const __m128i m0 = _mm_set1_epi32((int)PHILOX_M0), m1 = _mm_set1_epi32((int)PHILOX_M1);
    for (int h = 0; h < PHILOX_LANES; h += 4) {
        uint32_t lo[4], hi[4];
        for (int l = 0; l < 4; l++) {
            uint64_t j = j0 + (uint64_t)(h + l);
            lo[l] = (uint32_t)j, hi[l] = (uint32_t)(j >> 32);
        }
        __m128i c0 = _mm_loadu_si128((const __m128i *)lo),
                c1 = _mm_loadu_si128((const __m128i *)hi);
        __m128i c2 = _mm_set1_epi32((int)(uint32_t)step), c3 = _mm_set1_epi32((int)(step >> 32));
        uint32_t k0 = key.k0, k1 = key.k1;
        for (int r = 0; r < 10; r++) {
            if (r) k0 += PHILOX_W0, k1 += PHILOX_W1;
            __m128i hi0, lo0, hi1, lo1;
            mulhilo4(c0, m0, &hi0, &lo0);
            mulhilo4(c2, m1, &hi1, &lo1);
            c0 = _mm_xor_si128(_mm_xor_si128(hi1, c1), _mm_set1_epi32((int)k0));
            c1 = lo1;
            c2 = _mm_xor_si128(_mm_xor_si128(hi0, c3), _mm_set1_epi32((int)k1));
            c3 = lo0;
        }
        _mm_storeu_si128((__m128i *)(out[0] + h), c0);
        _mm_storeu_si128((__m128i *)(out[1] + h), c1);
        _mm_storeu_si128((__m128i *)(out[2] + h), c2);
        _mm_storeu_si128((__m128i *)(out[3] + h), c3);
    }
#else
    for (int l = 0; l < PHILOX_LANES; l++) {
        uint32_t w[4];
        uint64_t j = j0 + (uint64_t)l;
        at_philox4x32(key, (uint32_t)j, (uint32_t)(j >> 32), (uint32_t)step, (uint32_t)(step >> 32),
                      w);
        for (int q = 0; q < 4; q++) out[q][l] = w[q];
    }
#endif
}

/* ---- Dropout ---- */

static const at_attr_schema dropout_attrs[] = {{"seed", AT_ATTR_INT, false}, {NULL}};

static at_status dropout_infer(at_infer_ctx *c) {
    if (c->in_dtype[DO_X] != AT_F32)
        return at_infer_fail(c, AT_E_UNSUPPORTED, "data must be float32, got %s",
                             at_dtype_name(c->in_dtype[DO_X]));
    at_status st;
    if (present(c, DO_RATIO) && (st = check_scalar(c, DO_RATIO, AT_F32, "ratio")) != AT_OK)
        return st;
    if (present(c, DO_TRAINING) &&
        (st = check_scalar(c, DO_TRAINING, AT_BOOL, "training_mode")) != AT_OK)
        return st;
    if (present(c, DO_RATIO) && c->in_data[DO_RATIO]) {
        float r = *(const float *)c->in_data[DO_RATIO];
        if (!(r >= 0.0f && r <= 1.0f))
            return at_infer_fail(c, AT_E_INVALID, "ratio %g outside [0, 1]", (double)r);
    }
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = c->in_shape[DO_X];
    if (c->n_out > 1) {
        c->out_dtype[1] = AT_BOOL;
        c->out_shape[1] = c->in_shape[DO_X];
    }
    return AT_OK;
}

/* y = keep ? x scale : 0 over m elements, branch-free (inlined with a constant m for the
 * full groups, which GCC unrolls into vector selects). */
static inline void dropout_select(const float *x, float *y, const uint32_t *r, uint32_t thr,
                                  float scale, int m) {
    for (int e = 0; e < m; e++) y[e] = r[e] >= thr ? x[e] * scale : 0.0f;
}

/* Elements of blocks gi PHILOX_LANES .. + PHILOX_LANES - 1 (clipped to n). */
static void portable_group(at_philox_key key, uint64_t step, uint32_t thr, float scale,
                           const float *x, float *y, uint8_t *mask, int64_t n, int64_t gi) {
    uint32_t w[4][PHILOX_LANES], r[4 * PHILOX_LANES];
    int64_t j0 = gi * PHILOX_LANES, i0 = 4 * j0;
    philox_lanes(key, (uint64_t)j0, step, w);
    for (int l = 0; l < PHILOX_LANES; l++)
        for (int q = 0; q < 4; q++) r[4 * l + q] = w[q][l] >> 8;
    int m = n - i0 < 4 * PHILOX_LANES ? (int)(n - i0) : 4 * PHILOX_LANES;
    if (m == 4 * PHILOX_LANES)
        dropout_select(x + i0, y + i0, r, thr, scale, 4 * PHILOX_LANES);
    else
        dropout_select(x + i0, y + i0, r, thr, scale, m);
    if (mask)
        for (int e = 0; e < m; e++) mask[i0 + e] = r[e] >= thr;
}

typedef struct {
    at_philox_key key;
    uint64_t step;
    uint32_t thr;
    float scale;
    const float *x;
    float *y;
    uint8_t *mask;
    int64_t n;
} drop_job;

/* Groups [lo, hi) of 64 elements through the AVX-512 rounds. */
static void drop_avx512(void *arg, int64_t lo, int64_t hi) {
    const drop_job *j = arg;
    at_dropout_avx512(j->key, (uint64_t)(16 * lo), hi - lo, j->step, j->thr, j->scale,
                      j->x + 64 * lo, j->y + 64 * lo, j->mask ? j->mask + 64 * lo : NULL);
}

static void drop_portable(void *arg, int64_t lo, int64_t hi) {
    const drop_job *j = arg;
    for (int64_t gi = lo; gi < hi; gi++)
        portable_group(j->key, j->step, j->thr, j->scale, j->x, j->y, j->mask, j->n, gi);
}

static at_status dropout_cpu(at_kernel_ctx *k) {
    float ratio, scale;
    bool training;
    at_status st = read_mode(k, DO_RATIO, DO_TRAINING, &ratio, &training, &scale);
    if (st != AT_OK) return st;
    const float *x = k->in[DO_X].data;
    float *y = k->out[0].data;
    uint8_t *mask = k->n_out > 1 ? k->out[1].data : NULL;
    int64_t n = at_shape_numel(&k->in[DO_X].shape);
    if (!training) {
        if (y != x && n) memcpy(y, x, (size_t)n * sizeof(float));
        if (mask && n) memset(mask, 1, (size_t)n);
        return AT_OK;
    }
    at_philox_key key = at_rng_key(k->seed, (uint32_t)k->node_id);
    uint64_t step = k->step;
    /* keep <=> (w >> 8) / 2^24 >= ratio <=> (w >> 8) >= ceil(ratio 2^24): the same test in
     * integers (ratio 2^24 is exact in double), so the select loop below vectorizes. */
    uint32_t thr = (uint32_t)ceil((double)ratio * 16777216.0);
    /* One Philox block serves four consecutive elements, exactly as at_rng_uniform defines
     * them (tests/test_ops_dropout.c compares the two). Blocks go PHILOX_LANES at a time
     * through philox_lanes, whose lane loops vectorize. */
    drop_job j = {key, step, thr, scale, x, y, mask, n};
    if (at_cpu_avx512()) { /* groups of 64 elements (16 blocks) in registers, then the rest */
        int64_t g64 = n / 64;
        at_par_range(k, g64, 128, 1, drop_avx512, &j);
        int64_t nb = (n + 3) / 4, ngroups = (nb + PHILOX_LANES - 1) / PHILOX_LANES;
        for (int64_t gi = 16 * g64 / PHILOX_LANES; gi < ngroups; gi++)
            portable_group(key, step, thr, scale, x, y, mask, n, gi);
        return AT_OK;
    }
    int64_t nb = (n + 3) / 4, ngroups = (nb + PHILOX_LANES - 1) / PHILOX_LANES;
    at_par_range(k, ngroups, 2048 / PHILOX_LANES, 1, drop_portable, &j);
    return AT_OK;
}

/* The mask output: the node's own if it has one, else appended now, so the backward pass
 * reads the forward's mask instead of redrawing it (a redraw would need the forward node's
 * id, which changes when a graph is rewritten or reloaded). */
static at_val dropout_mask(at_grad_ctx *c) {
    const at_node_rec *n = at_grad_node(c);
    if (n->n_out > 1 && n->out[1] != AT_NONE) return n->out[1];
    return at_node_append_output(c->g, c->node);
}

static at_val dropout_grad_node(at_graph *g, at_val dy, at_val mask, at_val ratio,
                                at_val training) {
    at_val in[4] = {dy, mask, ratio, training};
    at_val out = AT_NONE;
    if (at_node_add(g, "DropoutGrad", AT_DOMAIN_ATTUNE, in, 4, &out, 1, NULL, 0) < 0)
        return AT_NONE;
    return out;
}

static at_status dropout_grad(at_grad_ctx *c) {
    if (!c->need[DO_X] || c->dy[0] == AT_NONE) return AT_OK;
    const at_node_rec *n = at_grad_node(c);
    at_val ratio = n->n_in > DO_RATIO ? n->in[DO_RATIO] : AT_NONE;
    at_val training = n->n_in > DO_TRAINING ? n->in[DO_TRAINING] : AT_NONE;
    if (training == AT_NONE) {
        /* Inference mode for good: the op is the identity. */
        c->dx[DO_X] = c->dy[0];
        return AT_OK;
    }
    at_val mask = dropout_mask(c);
    if (mask == AT_NONE) return at_graph_status(c->g);
    c->dx[DO_X] = dropout_grad_node(c->g, c->dy[0], mask, ratio, training);
    return c->dx[DO_X] == AT_NONE ? at_graph_status(c->g) : AT_OK;
}

const at_op_def at_op_def_Dropout = {
    .name = "Dropout",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 3,
    .min_out = 1,
    .max_out = 2,
    .attrs = dropout_attrs,
    .infer = dropout_infer,
    .cpu = dropout_cpu,
    .grad = dropout_grad,
    .nondiff = (1u << DO_RATIO) | (1u << DO_TRAINING),
};

/* ---- DropoutGrad(dy, mask, ratio?, training_mode?) -> dx ----
 * dx = dy * mask * scale, with the forward's scale: 1 / (1 - ratio) in training, else 1. */

enum { DG_DY, DG_MASK, DG_RATIO, DG_TRAINING };

static at_status dropout_grad_infer(at_infer_ctx *c) {
    if (c->in_dtype[DG_DY] != AT_F32)
        return at_infer_fail(c, AT_E_SHAPE, "dy must be float32, got %s",
                             at_dtype_name(c->in_dtype[DG_DY]));
    if (c->in_dtype[DG_MASK] != AT_BOOL)
        return at_infer_fail(c, AT_E_SHAPE, "mask must be bool, got %s",
                             at_dtype_name(c->in_dtype[DG_MASK]));
    const at_shape *a = &c->in_shape[DG_DY], *m = &c->in_shape[DG_MASK];
    bool same = a->rank == m->rank;
    for (int d = 0; same && d < a->rank; d++)
        same = a->dim[d] < 0 || m->dim[d] < 0 || a->dim[d] == m->dim[d];
    if (!same) return at_infer_fail(c, AT_E_SHAPE, "dy and mask shapes differ");
    at_status st;
    if (present(c, DG_RATIO) && (st = check_scalar(c, DG_RATIO, AT_F32, "ratio")) != AT_OK)
        return st;
    if (present(c, DG_TRAINING) &&
        (st = check_scalar(c, DG_TRAINING, AT_BOOL, "training_mode")) != AT_OK)
        return st;
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = *a;
    return AT_OK;
}

typedef struct {
    const float *dy;
    const uint8_t *mask;
    float *dx;
    float scale;
} dgrad_job;

static void dgrad_range(void *arg, int64_t lo, int64_t hi) {
    const dgrad_job *j = arg;
    const float *dy = j->dy, scale = j->scale;
    const uint8_t *mask = j->mask;
    float *dx = j->dx;
    for (int64_t i = lo; i < hi; i++) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
}

static at_status dropout_grad_cpu(at_kernel_ctx *k) {
    float ratio, scale;
    bool training;
    at_status st = read_mode(k, DG_RATIO, DG_TRAINING, &ratio, &training, &scale);
    if (st != AT_OK) return st;
    const float *dy = k->in[DG_DY].data;
    const uint8_t *mask = k->in[DG_MASK].data;
    float *dx = k->out[0].data;
    int64_t n = at_shape_numel(&k->in[DG_DY].shape);
    dgrad_job j = {dy, mask, dx, scale};
    at_par_range(k, n, 8192, 64, dgrad_range, &j);
    return AT_OK;
}

/* DropoutGrad is linear in dy with the same mask: its gradient is itself. */
static at_status dropout_grad_grad(at_grad_ctx *c) {
    if (!c->need[DG_DY] || c->dy[0] == AT_NONE) return AT_OK;
    const at_node_rec *n = at_grad_node(c);
    at_val mask = n->in[DG_MASK];
    at_val ratio = n->n_in > DG_RATIO ? n->in[DG_RATIO] : AT_NONE;
    at_val training = n->n_in > DG_TRAINING ? n->in[DG_TRAINING] : AT_NONE;
    c->dx[DG_DY] = dropout_grad_node(c->g, c->dy[0], mask, ratio, training);
    return c->dx[DG_DY] == AT_NONE ? at_graph_status(c->g) : AT_OK;
}

const at_op_def at_op_def_DropoutGrad = {
    .name = "DropoutGrad",
    .domain = AT_DOMAIN_ATTUNE,
    .min_in = 2,
    .max_in = 4,
    .min_out = 1,
    .max_out = 1,
    .infer = dropout_grad_infer,
    .cpu = dropout_grad_cpu,
    .grad = dropout_grad_grad,
    .nondiff = (1u << DG_MASK) | (1u << DG_RATIO) | (1u << DG_TRAINING),
};

/* ---- builder ---- */

at_val at_dropout(at_graph *g, at_val x, float ratio, at_val training, at_val *mask_out) {
    if (mask_out) *mask_out = AT_NONE;
    if (!g || at_graph_status(g) != AT_OK) return AT_NONE;
    if (x == AT_NONE) {
        at_graph_fail(g, AT_E_INVALID, "at_dropout: x is AT_NONE");
        return AT_NONE;
    }
    if (!(ratio >= 0.0f && ratio <= 1.0f)) {
        at_graph_fail(g, AT_E_INVALID, "at_dropout: ratio %g outside [0, 1]", (double)ratio);
        return AT_NONE;
    }
    at_val in[3] = {x, at_const_f32(g, ratio), training};
    if (in[1] == AT_NONE) return AT_NONE;
    at_val out[2] = {AT_NONE, AT_NONE};
    int n_in = training == AT_NONE ? 2 : 3;
    if (at_node_add(g, "Dropout", AT_DOMAIN_ONNX, in, n_in, out, mask_out ? 2 : 1, NULL, 0) < 0)
        return AT_NONE;
    if (mask_out) *mask_out = out[1];
    return out[0];
}
