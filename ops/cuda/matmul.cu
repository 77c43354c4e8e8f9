/* CUDA kernels of the matmul family (ops/matmul.c): MatMul with numpy broadcasting and Gemm,
 * through cuBLAS in float32. MatMul with a shared B (a weight) is one tall GEMM over every row
 * of A, as on the CPU; batched products (attention) are one strided-batched call when neither
 * operand or only A is broadcast, and a loop of GEMMs for the remaining broadcast patterns. */
#include "runtime/cuda/cuda_common.cuh"

static at_status matmul_cuda(at_kernel_ctx *k) {
    const at_tensor *A = &k->in[0], *B = &k->in[1];
    const at_shape *sa = &A->shape, *sb = &B->shape;
    int ra = sa->rank, rb = sb->rank;
    int64_t K = sa->dim[ra - 1];
    int64_t Kb = rb >= 2 ? sb->dim[rb - 2] : sb->dim[0];
    int64_t M = ra >= 2 ? sa->dim[ra - 2] : 1;
    int64_t N = rb >= 2 ? sb->dim[rb - 1] : 1;
    if (K != Kb)
        return at_kernel_fail(k, AT_E_SHAPE, "inner dims differ (%lld vs %lld)", (long long)K,
                              (long long)Kb);
    int na = ra > 2 ? ra - 2 : 0, nbb = rb > 2 ? rb - 2 : 0;
    int nb = na > nbb ? na : nbb;
    int64_t ydim[AT_MAX_RANK], sta[AT_MAX_RANK], stb[AT_MAX_RANK];
    int64_t batch = 1, pa = 1, pb = 1;
    for (int i = nb - 1; i >= 0; i--) {
        int ia = i - (nb - na), ib = i - (nb - nbb);
        int64_t da = ia >= 0 ? sa->dim[ia] : 1, db = ib >= 0 ? sb->dim[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return at_kernel_fail(k, AT_E_SHAPE, "batch dim %d does not broadcast (%lld vs %lld)",
                                  i, (long long)da, (long long)db);
        ydim[i] = da > db ? da : db;
        if (da == 0 || db == 0) ydim[i] = 0;
        sta[i] = da == 1 ? 0 : pa;
        stb[i] = db == 1 ? 0 : pb;
        pa *= da;
        pb *= db;
        batch *= ydim[i];
    }
    if (batch == 0 || M == 0 || N == 0) return AT_OK;
    const float *a = (const float *)A->data, *b = (const float *)B->data;
    float *y = (float *)k->out[0].data;
    if (pb == 1) /* B shared by every batch item: one GEMM over all rows of A */
        return at_cu_gemm(k, false, false, batch * M, N, K, 1.0f, a, K, b, N, 0.0f, y, N);
    if ((pa == batch || pa == 1) && pb == batch)
        return at_cu_gemm_batched(k, false, false, M, N, K, 1.0f, a, K, pa == 1 ? 0 : M * K, b, N,
                                  K * N, 0.0f, y, N, M * N, batch);
    for (int64_t t = 0; t < batch; t++) {
        int64_t rem = t, oa = 0, ob = 0;
        for (int i = nb - 1; i >= 0; i--) {
            int64_t idx = rem % ydim[i];
            rem /= ydim[i];
            oa += idx * sta[i];
            ob += idx * stb[i];
        }
        AT_CU_TRY(at_cu_gemm(k, false, false, M, N, K, 1.0f, a + oa * M * K, K, b + ob * K * N, N,
                             0.0f, y + t * M * N, N));
    }
    return AT_OK;
}

/* y[i, j] = beta * C[i * cm + j * cn] (C broadcast to [M, N]). */
__global__ void gemm_bias_kernel(float *y, const float *c, int64_t M, int64_t N, int64_t cm,
                                 int64_t cn, float beta) {
    AT_GRID_LOOP(i, M * N) {
        int64_t r = i / N, col = i % N;
        y[i] = beta * c[r * cm + col * cn];
    }
}

static at_status gemm_cuda(at_kernel_ctx *k) {
    const at_tensor *A = &k->in[0], *B = &k->in[1];
    const at_tensor *C = k->n_in > 2 && k->in[2].data ? &k->in[2] : NULL;
    bool ta = at_attr_int(k->node, "transA", 0) != 0, tb = at_attr_int(k->node, "transB", 0) != 0;
    float alpha = at_attr_float(k->node, "alpha", 1.0f),
          beta = at_attr_float(k->node, "beta", 1.0f);
    int64_t M = A->shape.dim[ta ? 1 : 0], K = A->shape.dim[ta ? 0 : 1];
    int64_t Kb = B->shape.dim[tb ? 1 : 0], N = B->shape.dim[tb ? 0 : 1];
    if (K != Kb)
        return at_kernel_fail(k, AT_E_SHAPE, "inner dims differ (%lld vs %lld)", (long long)K,
                              (long long)Kb);
    float *y = (float *)k->out[0].data;
    float gemm_beta = 0.0f;
    if (M == 0 || N == 0) return AT_OK;
    if (C) {
        int64_t cm = 0, cn = 0;
        const at_shape *cs = &C->shape;
        if (cs->rank == 2) {
            cm = cs->dim[0] == 1 ? 0 : cs->dim[1];
            cn = cs->dim[1] == 1 ? 0 : 1;
            if ((cs->dim[0] != 1 && cs->dim[0] != M) || (cs->dim[1] != 1 && cs->dim[1] != N))
                return at_kernel_fail(k, AT_E_SHAPE, "C does not broadcast to [%lld,%lld]",
                                      (long long)M, (long long)N);
        } else if (cs->rank == 1) {
            cn = cs->dim[0] == 1 ? 0 : 1;
            if (cs->dim[0] != 1 && cs->dim[0] != N)
                return at_kernel_fail(k, AT_E_SHAPE, "C does not broadcast to [%lld,%lld]",
                                      (long long)M, (long long)N);
        }
        gemm_bias_kernel<<<at_cu_grid(k, M * N), AT_CU_THREADS, 0, at_cu_stream(k)>>>(
            y, (const float *)C->data, M, N, cm, cn, beta);
        AT_CU_LAUNCHED(k, "gemm_bias_kernel");
        gemm_beta = 1.0f;
    }
    return at_cu_gemm(k, ta, tb, M, N, K, alpha, (const float *)A->data, A->shape.dim[1],
                      (const float *)B->data, B->shape.dim[1], gemm_beta, y, N);
}

void at_cuda_register_matmul(at_cuda_kernel_def *t) {
    AT_CUDA_REG(t, MatMul, matmul_cuda, NULL);
    AT_CUDA_REG(t, Gemm, gemm_cuda, NULL);
}
