/* CUDA kernels of the misc family (ops/misc.c): Erf. CUDA's erff is within two ulp of the
 * correctly rounded value, as glibc's is, so the two backends agree to a few ulp. */
#include <math.h>

#include "runtime/cuda/cuda_common.cuh"

__global__ void erf_kernel(const float *x, float *y, int64_t n) {
    AT_GRID_LOOP(i, n) y[i] = erff(x[i]);
}

static at_status erf_cuda(at_kernel_ctx *k) {
    int64_t n = at_shape_numel(&k->out[0].shape);
    if (n <= 0) return AT_OK;
    erf_kernel<<<at_cu_grid(k, n), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
        (const float *)k->in[0].data, (float *)k->out[0].data, n);
    AT_CU_LAUNCHED(k, "erf_kernel");
    return AT_OK;
}

void at_cuda_register_misc(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, Erf, erf_cuda, NULL);
}
