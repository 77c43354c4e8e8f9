/* What a build without CUDA links: no CUDA backend and no CUDA kernels. The CUDA build defines
 * both in runtime/cuda/backend.cu instead. */
#include "runtime/backend.h"

#ifndef ATTUNE_HAVE_CUDA

const at_backend_ops *at_cuda_backend(void) {
    return NULL;
}

at_kernel_fn at_cuda_kernel_for(int op) {
    (void)op;
    return NULL;
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int at_backend_c_unused;

#endif
