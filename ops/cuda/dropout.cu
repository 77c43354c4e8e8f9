/* CUDA kernels of Dropout and DropoutGrad (ops/dropout.c).
 *
 * The mask is drawn from the same counter-based stream as runtime/rng.c: Philox4x32-10 keyed by
 * at_rng_key(seed, node), element i kept when the top 24 bits of word i & 3 of block
 * (i >> 2, step) scaled by 2^-24 are >= ratio. Uniforms are exact, so the masks agree with the
 * CPU's bit for bit. A thread takes one block of four elements. */
#include <math.h>

#include "runtime/cuda/cuda_common.cuh"
#include "runtime/cuda/philox.cuh"

enum { DO_X, DO_RATIO, DO_TRAINING };
enum { DG_DY, DG_MASK, DG_RATIO, DG_TRAINING };

/* ratio and training_mode from the host (fed or constant; read back otherwise), and the scale of
 * kept elements, as the CPU's read_mode. */
static at_status read_mode(at_kernel_ctx *k, int ratio_in, int training_in, float *ratio,
                           bool *training, float *scale) {
    const void *r = NULL, *t = NULL;
    AT_CU_TRY(at_cu_read_input(k, ratio_in, &r));
    *ratio = r ? ((const float *)r)[0] : 0.5f;
    AT_CU_TRY(at_cu_read_input(k, training_in, &t));
    *training = t && ((const uint8_t *)t)[0];
    *scale = 1.0f;
    if (!*training) return AT_OK;
    if (!(*ratio >= 0.0f && *ratio <= 1.0f))
        return at_kernel_fail(k, AT_E_INVALID, "ratio %g outside [0, 1]", (double)*ratio);
    *scale = *ratio < 1.0f ? 1.0f / (1.0f - *ratio) : 0.0f;
    return AT_OK;
}

__global__ void dropout_kernel(const float *x, float *y, uint8_t *mask, int64_t n, uint32_t k0,
                               uint32_t k1, uint64_t hstep, const unsigned long long *dstep,
                               float ratio, float scale) {
    int64_t nb = (n + 3) / 4;
    uint64_t step = at_dev_step(dstep, hstep);
    AT_GRID_LOOP(j, nb) {
        uint32_t w[4];
        at_dev_philox_block(k0, k1, j, step, false, w);
        int64_t end = 4 * j + 4 < n ? 4 * j + 4 : n;
        for (int64_t i = 4 * j; i < end; i++) {
            float u = at_dev_u24(w[i & 3]);
            bool keep = u >= ratio;
            y[i] = keep ? x[i] * scale : 0.0f;
            if (mask) mask[i] = keep;
        }
    }
}

static at_status dropout_cuda(at_kernel_ctx *k) {
    float ratio, scale;
    bool training;
    AT_CU_TRY(read_mode(k, DO_RATIO, DO_TRAINING, &ratio, &training, &scale));
    const float *x = (const float *)k->in[DO_X].data;
    float *y = (float *)k->out[0].data;
    uint8_t *mask = k->n_out > 1 ? (uint8_t *)k->out[1].data : NULL;
    int64_t n = at_shape_numel(&k->in[DO_X].shape);
    if (n <= 0) return AT_OK;
    cudaStream_t s = at_cu_stream(k);
    if (!training) {
        if (y != x)
            AT_CU_CHECK(
                k, cudaMemcpyAsync(y, x, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, s));
        if (mask) AT_CU_CHECK(k, cudaMemsetAsync(mask, 1, (size_t)n, s));
        return AT_OK;
    }
    at_philox_key key = at_rng_key(k->seed, (uint32_t)k->node_id);
    dropout_kernel<<<at_cu_grid(k, (n + 3) / 4), AT_CU_THREADS, 0, s>>>(
        x, y, mask, n, key.k0, key.k1, k->step, at_cu_step_dev(k), ratio, scale);
    AT_CU_LAUNCHED(k, "dropout_kernel");
    return AT_OK;
}

__global__ void dropout_grad_kernel(const float *dy, const uint8_t *mask, float *dx, int64_t n,
                                    float scale) {
    AT_GRID_LOOP(i, n) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
}

static at_status dropout_grad_cuda(at_kernel_ctx *k) {
    float ratio, scale;
    bool training;
    AT_CU_TRY(read_mode(k, DG_RATIO, DG_TRAINING, &ratio, &training, &scale));
    int64_t n = at_shape_numel(&k->in[DG_DY].shape);
    if (n <= 0) return AT_OK;
    dropout_grad_kernel<<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const float *)k->in[DG_DY].data, (const uint8_t *)k->in[DG_MASK].data,
        (float *)k->out[0].data, n, scale);
    AT_CU_LAUNCHED(k, "dropout_grad_kernel");
    return AT_OK;
}

void at_cuda_register_dropout(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, Dropout, dropout_cuda, NULL);
    AT_CUDA_REG(t, DropoutGrad, dropout_grad_cuda, NULL);
}
