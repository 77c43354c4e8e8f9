/* What every CUDA source of attune shares: the backend state a kernel finds in k->backend,
 * status checks that name the failing call, launch geometry, the device-side error record,
 * the GEMM helpers and the registration of the op families' kernels. Internal. */
#ifndef ATTUNE_RUNTIME_CUDA_COMMON_CUH
#define ATTUNE_RUNTIME_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdint.h>

extern "C" {
#include "ops/op.h"
#include "runtime/rng.h"
}
#include "runtime/backend.h"

/* ---- the device error record ----
 * Kernels that meet bad data (an index out of range) cannot return a status: the first one
 * writes this record (first writer wins) and the session reads it after the run, naming the
 * node. Kernels clamp or skip the bad element, so nothing is read out of bounds. */
enum at_derr_kind {
    AT_DERR_NONE = 0,
    AT_DERR_INDEX,  /* v: value, element, dim, axis */
    AT_DERR_LABEL,  /* v: label, position, classes */
    AT_DERR_SEQLEN, /* v: batch item, length, T */
    AT_DERR_STEP,   /* v[0]: the step t as double bits */
    AT_DERR_RATIO,  /* v[0]: the ratio as double bits */
};

struct at_cuda_errword {
    int flag, node, what, pad;
    long long v[4];
};

__device__ inline void at_dev_fail(at_cuda_errword *w, int node, int what, long long a, long long b,
                                   long long c, long long d) {
    if (atomicCAS(&w->flag, 0, 1) == 0) {
        w->node = node;
        w->what = what;
        w->v[0] = a;
        w->v[1] = b;
        w->v[2] = c;
        w->v[3] = d;
        __threadfence();
    }
}

/* ---- the backend state: one device, one stream ---- */

struct at_cuda_ctx {
    int device, sm_count;
    cudaStream_t stream;
    cublasHandle_t blas;
    cudnnHandle_t dnn;         /* NULL when cuDNN could not start (no kernel needs it yet) */
    void *blas_ws;             /* cuBLAS's workspace, ours so that capture allocates nothing */
    at_cuda_errword *derr;     /* device */
    at_cuda_errword *herr;     /* pinned, for poll_error */
    unsigned long long *dslot; /* device scratch for first_nonfinite */
    unsigned long long *hslot; /* pinned */
    void *hscratch;            /* pinned scratch for reading small device inputs */
    size_t hscratch_cap;
    /* set per node by node_state */
    const void *const *host_in;
    int n_host_in;
    /* CUDA graphs (runtime/cuda/graph.cu) */
    unsigned long long *dstep; /* device copy of the session step, set before each graph launch */
    unsigned long long *hstep; /* pinned source of that copy */
    bool capturing;            /* kernels are being captured into a graph, not run */
    bool capture_refused;      /* a kernel met something a graph cannot hold */
    struct at_cu_graphs *graphs;
};

static inline at_cuda_ctx *at_cu(const at_kernel_ctx *k) {
    return (at_cuda_ctx *)k->backend;
}
static inline cudaStream_t at_cu_stream(const at_kernel_ctx *k) {
    return at_cu(k)->stream;
}

/* Under capture, a kernel that shapes its launches by a feed's host data makes the graph valid
 * for that data only: graph.cu notes the feed and replays the graph only while it holds the
 * same bytes. */
void at_cu_graph_consult(at_cuda_ctx *c, const void *host);

/* Input i's data as the host knows it (fed, constant or folded), else NULL. */
static inline const void *at_cu_host_in(const at_kernel_ctx *k, int i) {
    at_cuda_ctx *c = at_cu(k);
    const void *h = i < c->n_host_in && c->host_in ? c->host_in[i] : NULL;
    if (h && c->capturing) at_cu_graph_consult(c, h);
    return h;
}

/* The same for host-side checks whose failure the device also records (index, label and step
 * checks): NULL under capture, so that checking a feed does not tie the graph to its data. */
static inline const void *at_cu_host_peek(const at_kernel_ctx *k, int i) {
    return at_cu(k)->capturing ? NULL : at_cu_host_in(k, i);
}

/* Input i's data on the host: the host's copy where it has one, else downloaded (this waits
 * for the stream; refused under capture). The pointer is valid until the next call for this
 * node. */
at_status at_cu_read_input(at_kernel_ctx *k, int i, const void **host);

/* The session step for random streams: kernels take k->step by value and this pointer, which is
 * NULL except under capture, where it points at the device copy that every graph launch
 * refreshes (a captured value would repeat on every replay). */
static inline const unsigned long long *at_cu_step_dev(const at_kernel_ctx *k) {
    return at_cu(k)->capturing ? at_cu(k)->dstep : NULL;
}
__device__ inline uint64_t at_dev_step(const unsigned long long *dstep, uint64_t step) {
    return dstep ? (uint64_t)*dstep : step;
}

/* ---- checks: every CUDA, cuBLAS and cuDNN call; the session adds the node's name ---- */

#define AT_CU_CHECK(k, call)                                                                       \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return at_kernel_fail((k), AT_E_DEVICE, "%s failed: %s", #call,                        \
                                  cudaGetErrorString(e_));                                         \
    } while (0)

#define AT_CU_LAUNCHED(k, what)                                                                    \
    do {                                                                                           \
        cudaError_t e_ = cudaGetLastError();                                                       \
        if (e_ != cudaSuccess)                                                                     \
            return at_kernel_fail((k), AT_E_DEVICE, "launching %s failed: %s", (what),             \
                                  cudaGetErrorString(e_));                                         \
    } while (0)

#define AT_CUBLAS_CHECK(k, call)                                                                   \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return at_kernel_fail((k), AT_E_DEVICE, "%s failed: %s", #call,                        \
                                  cublasGetStatusString(s_));                                      \
    } while (0)

/* A status from a helper, passed on. */
#define AT_CU_TRY(expr)                                                                            \
    do {                                                                                           \
        at_status t_ = (expr);                                                                     \
        if (t_ != AT_OK) return t_;                                                                \
    } while (0)

/* ---- launch geometry: grid-stride loops over 64-bit counts ---- */

#define AT_CU_THREADS 256

static inline unsigned at_cu_grid(const at_kernel_ctx *k, int64_t n, int threads = AT_CU_THREADS) {
    int64_t b = (n + threads - 1) / threads;
    int64_t cap = (int64_t)(at_cu(k)->sm_count > 0 ? at_cu(k)->sm_count : 16) * 32;
    if (b > cap) b = cap;
    if (b < 1) b = 1;
    return (unsigned)b;
}

#define AT_GRID_LOOP(i, n)                                                                         \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)blockDim.x * gridDim.x)

/* ---- small device helpers ---- */

__device__ inline double at_warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ inline float at_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- GEMM on row-major operands (runtime/cuda/backend.cu) ----
 * C[M,N] = alpha op(A) op(B) + beta C, as cblas_sgemm(CblasRowMajor, ...), in float32 (no
 * TF32, so results stay comparable with the CPU). K == 0 gives beta C. */
at_status at_cu_gemm(at_kernel_ctx *k, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                     float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc);
/* The same for `batch` independent products at strides sA, sB, sC (elements; 0 repeats). */
at_status at_cu_gemm_batched(at_kernel_ctx *k, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                             float alpha, const float *A, int64_t lda, int64_t sA, const float *B,
                             int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC,
                             int64_t batch);

/* ---- reductions shared across families (ops/cuda/reduce.cu) ----
 * y = scale * (sum of x over the dims set in mask, bit d for dim d of xs), accumulated in double
 * in an order fixed by the shapes, so every run gives the same bits. ws: scratch of
 * at_cu_reduce_sum_ws() bytes. */
size_t at_cu_reduce_sum_ws(const at_shape *xs, uint32_t mask);
at_status at_cu_reduce_sum_f32(at_kernel_ctx *k, const float *x, const at_shape *xs, uint32_t mask,
                               double scale, float *y, void *ws, size_t ws_size);

/* ---- kernel registration ---- */

struct at_cuda_kernel_def {
    at_kernel_fn run;
    at_workspace_fn workspace; /* device scratch bytes; NULL: none */
};

#define AT_CUDA_REG(table, Name, fn, ws) ((table)[AT_OP_##Name] = at_cuda_kernel_def{(fn), (ws)})

/* One per family file in ops/cuda/, called once by runtime/cuda/backend.cu. */
void at_cuda_register_elementwise(at_cuda_kernel_def *t);
void at_cuda_register_matmul(at_cuda_kernel_def *t);
void at_cuda_register_conv(at_cuda_kernel_def *t);
void at_cuda_register_reduce(at_cuda_kernel_def *t);
void at_cuda_register_softmax(at_cuda_kernel_def *t);
void at_cuda_register_layernorm(at_cuda_kernel_def *t);
void at_cuda_register_loss(at_cuda_kernel_def *t);
void at_cuda_register_shape(at_cuda_kernel_def *t);
void at_cuda_register_gather(at_cuda_kernel_def *t);
void at_cuda_register_dropout(at_cuda_kernel_def *t);
void at_cuda_register_lstm(at_cuda_kernel_def *t);
void at_cuda_register_optim(at_cuda_kernel_def *t);
void at_cuda_register_misc(at_cuda_kernel_def *t);
void at_cuda_register_random(at_cuda_kernel_def *t);
void at_cuda_register_crf(at_cuda_kernel_def *t);

/* ---- CUDA graphs (runtime/cuda/graph.cu), behind at_backend_ops' graph_* entries ---- */
at_status at_cu_graph_begin(void *state, const at_backend_graph_run *run, int *mode, at_err *err);
at_status at_cu_graph_end(void *state, bool ok, bool *captured, at_err *err);
void at_cu_graph_reset(void *state);

#endif
