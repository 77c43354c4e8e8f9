/* Random ops of ONNX: RandomNormalLike and RandomUniformLike (opset 1+, unchanged to 21).
 *
 * Both draw from the session's counter-based stream (runtime/rng.h): element i of a node's
 * output is at_rng_normal / at_rng_uniform under key at_rng_key(seed, node) at the session
 * step, so a run is a pure function of (seed, step, node) on every thread count. ONNX's `seed`
 * attribute is accepted and ignored, as Dropout's is: a per-node seed would make every step
 * draw the same numbers. The output takes only its shape from the input, so the input never
 * carries a gradient (nondiff) and the ops have no gradient rule.
 *
 * Output dtype: the `dtype` attribute (TensorProto code) or, without it, the input's, which
 * must then be float32; only float32 is produced. */
#include <math.h>
#include <omp.h>

#include "ops/op.h"
#include "runtime/rng.h"

enum { ONNX_FLOAT = 1 }; /* TensorProto.FLOAT */

static int nthreads(const at_kernel_ctx *k) {
    return k->threads > 0 ? k->threads : omp_get_max_threads();
}

static at_status like_infer(at_infer_ctx *c) {
    const at_attr_rec *dt = at_attr_find(c->node, "dtype");
    if (dt) {
        if (at_attr_int(c->node, "dtype", ONNX_FLOAT) != ONNX_FLOAT)
            return at_infer_fail(c, AT_E_UNSUPPORTED, "dtype %lld: only float32 (1) is supported",
                                 (long long)at_attr_int(c->node, "dtype", ONNX_FLOAT));
    } else if (c->in_dtype[0] != AT_F32) {
        return at_infer_fail(c, AT_E_SHAPE,
                             "without a dtype attribute the input must be float32, got %s",
                             at_dtype_name(c->in_dtype[0]));
    }
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = c->in_shape[0];
    return AT_OK;
}

/* One Philox block feeds four consecutive elements in both streams (runtime/rng.c), so the
 * kernels draw a block at a time and give exactly what at_rng_normal / at_rng_uniform give
 * element by element (tests/test_ops_random.c compares them). */

static at_status normal_cpu(at_kernel_ctx *k) {
    float mean = at_attr_float(k->node, "mean", 0.0f),
          scale = at_attr_float(k->node, "scale", 1.0f);
    if (!isfinite(mean) || !isfinite(scale))
        return at_kernel_fail(k, AT_E_INVALID, "mean %g and scale %g must be finite", (double)mean,
                              (double)scale);
    float *y = k->out[0].data;
    int64_t n = at_shape_numel(&k->out[0].shape), nb = (n + 3) / 4;
    at_philox_key key = at_rng_key(k->seed, (uint32_t)k->node_id);
    uint64_t step = k->step;
#pragma omp parallel for num_threads(nthreads(k)) schedule(static) if (nb > 4096)
    for (int64_t j = 0; j < nb; j++) {
        uint32_t w[4];
        at_philox4x32(key, (uint32_t)j, (uint32_t)((uint64_t)j >> 32), (uint32_t)step,
                      (uint32_t)(step >> 32) ^ 0x80000000u, w);
        for (int p = 0; p < 2; p++) {
            float u1 = (float)((w[2 * p] >> 8) + 1u) * (1.0f / 16777216.0f);
            float u2 = (float)(w[2 * p + 1] >> 8) * (1.0f / 16777216.0f);
            float r = sqrtf(-2.0f * logf(u1));
            float th = 6.28318530717958647692f * u2;
            int64_t i = 4 * j + 2 * p;
            if (i < n) y[i] = r * cosf(th) * scale + mean;
            if (i + 1 < n) y[i + 1] = r * sinf(th) * scale + mean;
        }
    }
    return AT_OK;
}

static at_status uniform_cpu(at_kernel_ctx *k) {
    float lo = at_attr_float(k->node, "low", 0.0f), hi = at_attr_float(k->node, "high", 1.0f);
    if (!isfinite(lo) || !isfinite(hi) || !(lo <= hi))
        return at_kernel_fail(k, AT_E_INVALID, "low %g and high %g: want finite low <= high",
                              (double)lo, (double)hi);
    float *y = k->out[0].data;
    int64_t n = at_shape_numel(&k->out[0].shape), nb = (n + 3) / 4;
    at_philox_key key = at_rng_key(k->seed, (uint32_t)k->node_id);
    uint64_t step = k->step;
    float range = hi - lo;
#pragma omp parallel for num_threads(nthreads(k)) schedule(static) if (nb > 4096)
    for (int64_t j = 0; j < nb; j++) {
        uint32_t w[4];
        at_philox4x32(key, (uint32_t)j, (uint32_t)((uint64_t)j >> 32), (uint32_t)step,
                      (uint32_t)(step >> 32), w);
        for (int q = 0; q < 4 && 4 * j + q < n; q++) {
            float u = (float)(w[q] >> 8) * (1.0f / 16777216.0f);
            float v = lo + range * u;
            /* Rounding can reach high when range is large against low; the interval is
             * half-open. */
            y[4 * j + q] = v < hi || lo == hi ? v : nextafterf(hi, lo);
        }
    }
    return AT_OK;
}

static const at_attr_schema normal_attrs[] = {{"dtype", AT_ATTR_INT, false},
                                              {"mean", AT_ATTR_FLOAT, false},
                                              {"scale", AT_ATTR_FLOAT, false},
                                              {"seed", AT_ATTR_FLOAT, false},
                                              {NULL, 0, false}};
static const at_attr_schema uniform_attrs[] = {{"dtype", AT_ATTR_INT, false},
                                               {"high", AT_ATTR_FLOAT, false},
                                               {"low", AT_ATTR_FLOAT, false},
                                               {"seed", AT_ATTR_FLOAT, false},
                                               {NULL, 0, false}};

const at_op_def at_op_def_RandomNormalLike = {
    .name = "RandomNormalLike",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 1,
    .min_out = 1,
    .max_out = 1,
    .attrs = normal_attrs,
    .infer = like_infer,
    .cpu = normal_cpu,
    .nondiff = 1u,
};

const at_op_def at_op_def_RandomUniformLike = {
    .name = "RandomUniformLike",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 1,
    .max_in = 1,
    .min_out = 1,
    .max_out = 1,
    .attrs = uniform_attrs,
    .infer = like_infer,
    .cpu = uniform_cpu,
    .nondiff = 1u,
};
