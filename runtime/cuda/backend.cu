/* The CUDA backend: device start-up (one device, one stream, cuBLAS and cuDNN handles), device
 * and pinned memory, stream-ordered copies, the kernel table filled by the op families in
 * ops/cuda/, the device error record, and the row-major GEMM helpers the families share. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/cuda_common.cuh"

/* ---- kernel table ---- */

static at_cuda_kernel_def g_kernels[AT_OP_COUNT];

/* Filled at load time (namespace-scope dynamic initialization, before any session exists), so
 * lookups need no lock. */
static int register_all() {
    at_cuda_register_elementwise(g_kernels);
    at_cuda_register_matmul(g_kernels);
    at_cuda_register_conv(g_kernels);
    at_cuda_register_reduce(g_kernels);
    at_cuda_register_softmax(g_kernels);
    at_cuda_register_layernorm(g_kernels);
    at_cuda_register_loss(g_kernels);
    at_cuda_register_shape(g_kernels);
    at_cuda_register_gather(g_kernels);
    at_cuda_register_dropout(g_kernels);
    at_cuda_register_lstm(g_kernels);
    at_cuda_register_optim(g_kernels);
    at_cuda_register_misc(g_kernels);
    at_cuda_register_random(g_kernels);
    at_cuda_register_crf(g_kernels);
    return 1;
}
static int g_registered = register_all();

extern "C" at_kernel_fn at_cuda_kernel_for(int op) {
    (void)g_registered;
    return op >= 0 && op < AT_OP_COUNT ? g_kernels[op].run : NULL;
}

static at_workspace_fn cu_workspace(int op) {
    return op >= 0 && op < AT_OP_COUNT ? g_kernels[op].workspace : NULL;
}

/* ---- start-up and shutdown ---- */

/* cuBLAS's recommended workspace on Hopper (4 MiB suffices elsewhere). */
#define AT_CU_BLAS_WS ((size_t)32 << 20)

#define INIT_CHECK(call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            at_err_set(err, AT_E_DEVICE, "%s failed: %s", #call, cudaGetErrorString(e_));          \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

static void cu_shutdown(void *state) {
    at_cuda_ctx *c = (at_cuda_ctx *)state;
    if (!c) return;
    /* Teardown errors are not actionable: the process keeps going without this device. */
    if (c->stream) cudaStreamSynchronize(c->stream);
    at_cu_graph_reset(c);
    free(c->graphs);
    if (c->dnn) cudnnDestroy(c->dnn);
    if (c->blas) cublasDestroy(c->blas);
    if (c->blas_ws) cudaFree(c->blas_ws);
    if (c->dstep) cudaFree(c->dstep);
    if (c->hstep) cudaFreeHost(c->hstep);
    if (c->derr) cudaFree(c->derr);
    if (c->dslot) cudaFree(c->dslot);
    if (c->herr) cudaFreeHost(c->herr);
    if (c->hslot) cudaFreeHost(c->hslot);
    if (c->hscratch) cudaFreeHost(c->hscratch);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

static at_status cu_init(void **state, at_err *err) {
    *state = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess)
        return at_err_set(err, AT_E_DEVICE, "no CUDA device (cudaGetDeviceCount: %s)",
                          cudaGetErrorString(e));
    if (count <= 0)
        return at_err_set(err, AT_E_DEVICE, "no CUDA device (cudaGetDeviceCount found none)");
    int dev = 0;
    const char *env = getenv("ATTUNE_CUDA_DEVICE");
    if (env && *env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (*end || v < 0 || v >= count)
            return at_err_set(err, AT_E_DEVICE,
                              "ATTUNE_CUDA_DEVICE=%s: not a device index in [0, %d)", env, count);
        dev = (int)v;
    }
    at_cuda_ctx *c = (at_cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return at_err_set(err, AT_E_NOMEM, "out of memory");
    c->device = dev;
    {
        INIT_CHECK(cudaSetDevice(dev));
        INIT_CHECK(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, dev));
        INIT_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
        INIT_CHECK(cudaMalloc((void **)&c->derr, sizeof(at_cuda_errword)));
        INIT_CHECK(cudaMemsetAsync(c->derr, 0, sizeof(at_cuda_errword), c->stream));
        INIT_CHECK(cudaStreamSynchronize(c->stream));
        INIT_CHECK(cudaMalloc((void **)&c->dslot, sizeof(unsigned long long)));
        INIT_CHECK(cudaMallocHost((void **)&c->herr, sizeof(at_cuda_errword)));
        INIT_CHECK(cudaMallocHost((void **)&c->hslot, sizeof(unsigned long long) * 2));
        INIT_CHECK(cudaMalloc((void **)&c->dstep, sizeof(unsigned long long)));
        INIT_CHECK(cudaMallocHost((void **)&c->hstep, sizeof(unsigned long long)));
        INIT_CHECK(cudaMalloc(&c->blas_ws, AT_CU_BLAS_WS));
        cublasStatus_t bs = cublasCreate(&c->blas);
        if (bs != CUBLAS_STATUS_SUCCESS) {
            c->blas = NULL;
            at_err_set(err, AT_E_DEVICE, "cublasCreate failed: %s", cublasGetStatusString(bs));
            goto fail;
        }
        bs = cublasSetStream(c->blas, c->stream);
        /* After SetStream, which resets the workspace to cuBLAS's own pool: a workspace of
         * ours means no allocation while a graph is captured. */
        if (bs == CUBLAS_STATUS_SUCCESS)
            bs = cublasSetWorkspace(c->blas, c->blas_ws, AT_CU_BLAS_WS);
        if (bs == CUBLAS_STATUS_SUCCESS)
            bs = cublasSetPointerMode(c->blas, CUBLAS_POINTER_MODE_HOST);
        /* Plain float32 (no TF32 tensor-core rounding): results stay comparable with the CPU. */
        if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
        if (bs != CUBLAS_STATUS_SUCCESS) {
            at_err_set(err, AT_E_DEVICE,
                       "cublasSetStream/SetWorkspace/SetPointerMode/SetMathMode failed: %s",
                       cublasGetStatusString(bs));
            goto fail;
        }
        /* No kernel needs cuDNN yet (Conv is im2col + cuBLAS): a missing cuDNN runtime must not
         * take the whole backend down, so a failure here only leaves the handle NULL. */
        if (cudnnCreate(&c->dnn) != CUDNN_STATUS_SUCCESS)
            c->dnn = NULL;
        else if (cudnnSetStream(c->dnn, c->stream) != CUDNN_STATUS_SUCCESS) {
            cudnnDestroy(c->dnn);
            c->dnn = NULL;
        }
    }
    *state = c;
    return AT_OK;
fail:
    cu_shutdown(c);
    return err ? err->code : AT_E_DEVICE;
}

/* ---- memory and copies ---- */

static at_status cu_alloc(void *state, size_t bytes, void **ptr, at_err *err) {
    (void)state;
    *ptr = NULL;
    cudaError_t e = cudaMalloc(ptr, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        *ptr = NULL;
        return at_err_set(err, e == cudaErrorMemoryAllocation ? AT_E_NOMEM : AT_E_DEVICE,
                          "cudaMalloc of %zu bytes failed: %s", bytes, cudaGetErrorString(e));
    }
    return AT_OK;
}

static void cu_free(void *state, void *ptr) {
    (void)state;
    if (ptr) cudaFree(ptr);
}

static at_status cu_alloc_host(void *state, size_t bytes, void **ptr, at_err *err) {
    (void)state;
    *ptr = NULL;
    cudaError_t e = cudaMallocHost(ptr, bytes ? bytes : 64);
    if (e != cudaSuccess) {
        *ptr = NULL;
        return at_err_set(err, AT_E_NOMEM, "cudaMallocHost of %zu bytes failed: %s", bytes,
                          cudaGetErrorString(e));
    }
    return AT_OK;
}

static void cu_free_host(void *state, void *ptr) {
    (void)state;
    if (ptr) cudaFreeHost(ptr);
}

static at_status copy_kind(void *state, void *dst, const void *src, size_t bytes,
                           cudaMemcpyKind kind, const char *what, at_err *err) {
    at_cuda_ctx *c = (at_cuda_ctx *)state;
    if (!bytes) return AT_OK;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, c->stream);
    if (e != cudaSuccess)
        return at_err_set(err, AT_E_DEVICE, "cudaMemcpyAsync (%s, %zu bytes) failed: %s", what,
                          bytes, cudaGetErrorString(e));
    return AT_OK;
}

static at_status cu_upload(void *state, void *dst, const void *src, size_t bytes, at_err *err) {
    return copy_kind(state, dst, src, bytes, cudaMemcpyHostToDevice, "host to device", err);
}
static at_status cu_download(void *state, void *dst, const void *src, size_t bytes, at_err *err) {
    return copy_kind(state, dst, src, bytes, cudaMemcpyDeviceToHost, "device to host", err);
}
static at_status cu_copy(void *state, void *dst, const void *src, size_t bytes, at_err *err) {
    return copy_kind(state, dst, src, bytes, cudaMemcpyDeviceToDevice, "device to device", err);
}

/* Also called first in every run: the thread running a session need not be the one that
 * opened it, so the device is made current here. */
static at_status cu_sync(void *state, at_err *err) {
    at_cuda_ctx *c = (at_cuda_ctx *)state;
    cudaError_t e = cudaSetDevice(c->device);
    if (e != cudaSuccess)
        return at_err_set(err, AT_E_DEVICE, "cudaSetDevice(%d) failed: %s", c->device,
                          cudaGetErrorString(e));
    e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess)
        return at_err_set(err, AT_E_DEVICE,
                          "cudaStreamSynchronize failed: %s (an earlier kernel failed; run with "
                          "CUDA_LAUNCH_BLOCKING=1 to find which)",
                          cudaGetErrorString(e));
    return AT_OK;
}

static void *cu_node_state(void *state, const void *const *host_in, int n_in) {
    at_cuda_ctx *c = (at_cuda_ctx *)state;
    c->host_in = host_in;
    c->n_host_in = n_in;
    return c;
}

at_status at_cu_read_input(at_kernel_ctx *k, int i, const void **host) {
    *host = NULL;
    if (i >= k->n_in || !k->in[i].data) return AT_OK;
    const void *h = at_cu_host_in(k, i);
    if (h) {
        *host = h;
        return AT_OK;
    }
    at_cuda_ctx *c = at_cu(k);
    if (c->capturing) {
        /* A download waits for the stream, which a capture forbids: the run goes uncaptured. */
        c->capture_refused = true;
        return at_kernel_fail(k, AT_E_UNSUPPORTED,
                              "input %d is computed on the device and read on the host: not "
                              "capturable",
                              i);
    }
    size_t bytes = at_tensor_nbytes(&k->in[i]);
    if (bytes > c->hscratch_cap) {
        /* Rare: a shape-like input computed on the device. Grown once, kept. */
        if (c->hscratch) AT_CU_CHECK(k, cudaFreeHost(c->hscratch));
        c->hscratch = NULL;
        c->hscratch_cap = 0;
        size_t cap = bytes < 4096 ? 4096 : bytes;
        AT_CU_CHECK(k, cudaMallocHost(&c->hscratch, cap));
        c->hscratch_cap = cap;
    }
    if (bytes) {
        AT_CU_CHECK(k, cudaMemcpyAsync(c->hscratch, k->in[i].data, bytes, cudaMemcpyDeviceToHost,
                                       c->stream));
        AT_CU_CHECK(k, cudaStreamSynchronize(c->stream));
    }
    *host = c->hscratch;
    return AT_OK;
}

/* ---- device error record ---- */

static double bits_to_double(long long v) {
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

static at_status cu_poll_error(void *state, int *node, char *msg, size_t cap) {
    at_cuda_ctx *c = (at_cuda_ctx *)state;
    *node = -1;
    msg[0] = 0;
    cudaError_t e = cudaMemcpyAsync(c->herr, c->derr, sizeof(at_cuda_errword),
                                    cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        snprintf(msg, cap,
                 "cudaStreamSynchronize failed: %s (an earlier kernel failed; run with "
                 "CUDA_LAUNCH_BLOCKING=1 to find which)",
                 cudaGetErrorString(e));
        return AT_E_DEVICE;
    }
    const at_cuda_errword *w = c->herr;
    if (!w->flag) return AT_OK;
    *node = w->node;
    const long long *v = w->v;
    switch (w->what) {
    case AT_DERR_INDEX:
        snprintf(msg, cap,
                 "index %lld (indices element %lld) out of range [-%lld, %lld) for axis %lld", v[0],
                 v[1], v[2], v[2], v[3]);
        break;
    case AT_DERR_LABEL:
        snprintf(msg, cap, "label %lld at position %lld out of range [0, %lld)", v[0], v[1], v[2]);
        break;
    case AT_DERR_SEQLEN:
        snprintf(msg, cap, "sequence_lens[%lld] = %lld outside [0, %lld]", v[0], v[1], v[2]);
        break;
    case AT_DERR_STEP:
        snprintf(msg, cap, "step t is %g; Adam needs t >= 1 (feed it the incremented counter)",
                 bits_to_double(v[0]));
        break;
    case AT_DERR_RATIO:
        snprintf(msg, cap, "ratio %g outside [0, 1]", bits_to_double(v[0]));
        break;
    default:
        snprintf(msg, cap, "bad data (device error kind %d)", w->what);
        break;
    }
    /* Cleared for the next run; the stream is idle, so a plain memset is ordered. */
    e = cudaMemsetAsync(c->derr, 0, sizeof(at_cuda_errword), c->stream);
    if (e != cudaSuccess) {
        snprintf(msg + strlen(msg), cap - strlen(msg), " (and clearing the record failed: %s)",
                 cudaGetErrorString(e));
        return AT_E_DEVICE;
    }
    return AT_E_INVALID;
}

/* ---- finite check ---- */

__global__ void first_nonfinite_kernel(const float *x, int64_t n, unsigned long long *slot) {
    AT_GRID_LOOP(i, n) {
        if (!isfinite(x[i])) atomicMin(slot, (unsigned long long)i);
    }
}

static at_status cu_first_nonfinite(void *state, const float *x, int64_t n, int64_t *index,
                                    float *value, at_err *err) {
    at_cuda_ctx *c = (at_cuda_ctx *)state;
    *index = -1;
    *value = 0;
    if (n <= 0) return AT_OK;
#define FN_CHECK(call)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return at_err_set(err, AT_E_DEVICE, "%s failed: %s", #call, cudaGetErrorString(e_));   \
    } while (0)
    FN_CHECK(cudaMemsetAsync(c->dslot, 0xff, sizeof(unsigned long long), c->stream));
    int64_t blocks = (n + 255) / 256;
    if (blocks > (int64_t)c->sm_count * 32) blocks = (int64_t)c->sm_count * 32;
    if (blocks < 1) blocks = 1;
    first_nonfinite_kernel<<<(unsigned)blocks, 256, 0, c->stream>>>(x, n, c->dslot);
    FN_CHECK(cudaGetLastError());
    FN_CHECK(cudaMemcpyAsync(c->hslot, c->dslot, sizeof(unsigned long long), cudaMemcpyDeviceToHost,
                             c->stream));
    FN_CHECK(cudaStreamSynchronize(c->stream));
    if (c->hslot[0] >= (unsigned long long)n) return AT_OK;
    *index = (int64_t)c->hslot[0];
    FN_CHECK(cudaMemcpyAsync(c->hslot + 1, x + *index, sizeof(float), cudaMemcpyDeviceToHost,
                             c->stream));
    FN_CHECK(cudaStreamSynchronize(c->stream));
    memcpy(value, c->hslot + 1, sizeof(float));
#undef FN_CHECK
    return AT_OK;
}

/* ---- GEMM ---- */

__global__ void scale_matrix_kernel(float *C, int64_t M, int64_t N, int64_t ldc, float beta) {
    AT_GRID_LOOP(i, M * N) {
        int64_t r = i / N, col = i % N;
        float *p = C + r * ldc + col;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

static bool fits_int(int64_t v) {
    return v >= 0 && v <= INT_MAX;
}

at_status at_cu_gemm_batched(at_kernel_ctx *k, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                             float alpha, const float *A, int64_t lda, int64_t sA, const float *B,
                             int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC,
                             int64_t batch) {
    if (M == 0 || N == 0 || batch == 0) return AT_OK;
    if (K == 0) {
        /* BLAS libraries disagree on k = 0; the CPU kernels give beta C. */
        for (int64_t b = 0; b < batch; b++) {
            scale_matrix_kernel<<<at_cu_grid(k, M * N), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
                C + b * sC, M, N, ldc, beta);
            AT_CU_LAUNCHED(k, "scale_matrix_kernel");
        }
        return AT_OK;
    }
    if (lda < 1) lda = 1;
    if (ldb < 1) ldb = 1;
    if (ldc < 1) ldc = 1;
    if (!fits_int(M) || !fits_int(N) || !fits_int(K) || !fits_int(lda) || !fits_int(ldb) ||
        !fits_int(ldc) || !fits_int(batch))
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "GEMM dims exceed the cuBLAS int range");
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands. */
    cublasHandle_t h = at_cu(k)->blas;
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch == 1) {
        AT_CUBLAS_CHECK(k, cublasSgemm(h, opb, opa, (int)N, (int)M, (int)K, &alpha, B, (int)ldb, A,
                                       (int)lda, &beta, C, (int)ldc));
    } else {
        AT_CUBLAS_CHECK(k, cublasSgemmStridedBatched(h, opb, opa, (int)N, (int)M, (int)K, &alpha, B,
                                                     (int)ldb, (long long)sB, A, (int)lda,
                                                     (long long)sA, &beta, C, (int)ldc,
                                                     (long long)sC, (int)batch));
    }
    return AT_OK;
}

at_status at_cu_gemm(at_kernel_ctx *k, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                     float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc) {
    return at_cu_gemm_batched(k, ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

/* ---- the table ---- */

static const at_backend_ops g_ops = {
    "cuda",
    cu_init,
    cu_shutdown,
    cu_alloc,
    cu_free,
    cu_alloc_host,
    cu_free_host,
    cu_upload,
    cu_download,
    cu_copy,
    cu_sync,
    at_cuda_kernel_for,
    cu_workspace,
    cu_node_state,
    cu_poll_error,
    cu_first_nonfinite,
    at_cu_graph_begin,
    at_cu_graph_end,
    at_cu_graph_reset,
};

extern "C" const at_backend_ops *at_cuda_backend(void) {
    return &g_ops;
}
