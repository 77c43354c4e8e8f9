/* CUDA kernels of RandomNormalLike and RandomUniformLike (ops/random.c): the streams of
 * runtime/rng.c under key at_rng_key(seed, node) at the session step, a Philox block of four
 * elements per thread as the CPU kernels draw them. Uniforms are exact and the affine map is
 * rounded step by step (no fused multiply-add), so they match the CPU bit for bit; normals go
 * through logf / sqrtf / cosf / sinf and match to a few ulp. */
#include <math.h>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/philox.cuh"

__global__ void normal_kernel(float *y, int64_t n, uint32_t k0, uint32_t k1, uint64_t hstep,
                              const unsigned long long *dstep, float mean, float scale) {
    uint64_t step = at_dev_step(dstep, hstep);
    AT_GRID_LOOP(j, (n + 3) / 4) {
        uint32_t w[4];
        at_dev_philox_block(k0, k1, j, step, true, w);
#pragma unroll
        for (int p = 0; p < 2; p++) {
            /* u1 in (0, 1] keeps logf finite; u2 in [0, 1) is the angle. */
            float u1 = (float)((w[2 * p] >> 8) + 1u) * (1.0f / 16777216.0f);
            float u2 = at_dev_u24(w[2 * p + 1]);
            float r = sqrtf(__fmul_rn(-2.0f, logf(u1)));
            float th = __fmul_rn(6.28318530717958647692f, u2);
            int64_t i = 4 * j + 2 * p;
            if (i < n) y[i] = __fadd_rn(__fmul_rn(__fmul_rn(r, cosf(th)), scale), mean);
            if (i + 1 < n) y[i + 1] = __fadd_rn(__fmul_rn(__fmul_rn(r, sinf(th)), scale), mean);
        }
    }
}

__global__ void uniform_kernel(float *y, int64_t n, uint32_t k0, uint32_t k1, uint64_t hstep,
                               const unsigned long long *dstep, float lo, float hi) {
    uint64_t step = at_dev_step(dstep, hstep);
    float range = __fsub_rn(hi, lo);
    AT_GRID_LOOP(j, (n + 3) / 4) {
        uint32_t w[4];
        at_dev_philox_block(k0, k1, j, step, false, w);
        for (int q = 0; q < 4 && 4 * j + q < n; q++) {
            float v = __fadd_rn(lo, __fmul_rn(range, at_dev_u24(w[q])));
            /* The interval is half-open; rounding can reach high when range is large. */
            y[4 * j + q] = v < hi || lo == hi ? v : nextafterf(hi, lo);
        }
    }
}

static at_status normal_cuda(at_kernel_ctx *k) {
    float mean = at_attr_float(k->node, "mean", 0.0f),
          scale = at_attr_float(k->node, "scale", 1.0f);
    if (!isfinite(mean) || !isfinite(scale))
        return at_kernel_fail(k, AT_E_INVALID, "mean %g and scale %g must be finite", (double)mean,
                              (double)scale);
    int64_t n = at_shape_numel(&k->out[0].shape);
    if (n <= 0) return AT_OK;
    at_philox_key key = at_rng_key(k->seed, (uint32_t)k->node_id);
    normal_kernel<<<at_cu_grid(k, (n + 3) / 4), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (float *)k->out[0].data, n, key.k0, key.k1, k->step, at_cu_step_dev(k), mean, scale);
    AT_CU_LAUNCHED(k, "normal_kernel");
    return AT_OK;
}

static at_status uniform_cuda(at_kernel_ctx *k) {
    float lo = at_attr_float(k->node, "low", 0.0f), hi = at_attr_float(k->node, "high", 1.0f);
    if (!isfinite(lo) || !isfinite(hi) || !(lo <= hi))
        return at_kernel_fail(k, AT_E_INVALID, "low %g and high %g: want finite low <= high",
                              (double)lo, (double)hi);
    int64_t n = at_shape_numel(&k->out[0].shape);
    if (n <= 0) return AT_OK;
    at_philox_key key = at_rng_key(k->seed, (uint32_t)k->node_id);
    uniform_kernel<<<at_cu_grid(k, (n + 3) / 4), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (float *)k->out[0].data, n, key.k0, key.k1, k->step, at_cu_step_dev(k), lo, hi);
    AT_CU_LAUNCHED(k, "uniform_kernel");
    return AT_OK;
}

void at_cuda_register_random(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, RandomNormalLike, normal_cuda, NULL);
    AT_CUDA_REG(t, RandomUniformLike, uniform_cuda, NULL);
}
