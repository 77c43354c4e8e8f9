/* The matmul family: MatMul (numpy matmul semantics) and Gemm, both through CBLAS. */
#include <limits.h>
#include <string.h>

#include <cblas.h>

#include "ops/lanes.h"
#include "ops/op.h"
#include "ops/parallel.h"
#include "runtime/cpu/gemm_packed.h"
#include "runtime/cpu/vec.h"

/* ---- shared GEMM call ---- */

#define SMALL_MNK 1e6 /* OpenBLAS's small-matrix GEMM limit on M N K (0.3.16 and later) */

/* Row-major C[M,N] = alpha * op(A) op(B) + beta * C with the degenerate sizes BLAS
 * implementations disagree on (K == 0, zero leading dims) handled here. */
static void sgemm_rm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    /* A GEMM with one output column or row is a matrix-vector product, and one with K = 1 an
     * outer product. OpenBLAS's GEMM packs the big operand first, then runs at 1-3 GFLOP/s
     * on these shapes (the additive attention's [B*T*T, a] x [a, 1] scores and their
     * gradients); GEMV and the plain loop read it once. */
    if (N == 1) { /* C[:, 0] = op(A) op(B)[:, 0] */
        cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, (int)(ta ? K : M),
                    (int)(ta ? M : K), alpha, A, (int)(lda > 0 ? lda : 1), B,
                    (int)(tb ? 1 : (ldb > 0 ? ldb : 1)), beta, C, (int)(ldc > 0 ? ldc : 1));
        return;
    }
    if (M == 1) { /* C[0, :] = op(B)^T op(A)[0, :] */
        cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, (int)(tb ? N : K),
                    (int)(tb ? K : N), alpha, B, (int)(ldb > 0 ? ldb : 1), A,
                    (int)(ta ? (lda > 0 ? lda : 1) : 1), beta, C, 1);
        return;
    }
    if (K == 1) { /* C = alpha a b^T + beta C */
        int64_t ia = ta ? 1 : lda, ib = tb ? ldb : 1;
        for (int64_t i = 0; i < M; i++) {
            float ai = alpha * A[i * ia], *c = C + i * ldc;
            if (beta == 0.0f)
                for (int64_t j = 0; j < N; j++) c[j] = ai * B[j * ib];
            else
                for (int64_t j = 0; j < N; j++) c[j] = ai * B[j * ib] + beta * c[j];
        }
        return;
    }
    /* A few rows against a wide operand (batch-1 inference: T rows through each weight).
     * OpenBLAS packs both operands of a GEMM above its small-matrix limit (M N K <= 1e6 runs
     * unpacked kernels where the build has them), and packing a weight costs more than
     * multiplying a few rows by it. Column blocks under the limit skip the packing: 1.1-4x
     * faster for 4..64 rows against this model's weights (bench/NOTES.md), the same sums up
     * to rounding. Power-of-two blocks of 64 columns or more: other widths measured slower. */
    if (!ta && !tb && M <= 64 && (double)M * (double)N * (double)K > SMALL_MNK) {
        int64_t nc = 64;
        while ((double)M * (double)(2 * nc) * (double)K <= SMALL_MNK && 2 * nc < N) nc *= 2;
        if ((double)M * (double)nc * (double)K <= SMALL_MNK) {
            for (int64_t j = 0; j < N; j += nc)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M,
                            (int)(N - j < nc ? N - j : nc), (int)K, alpha, A, (int)lda, B + j,
                            (int)ldb, beta, C + j, (int)ldc);
            return;
        }
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)(lda > 0 ? lda : 1), B,
                (int)(ldb > 0 ? ldb : 1), beta, C, (int)(ldc > 0 ? ldc : 1));
}

/* When OpenBLAS runs single-threaded (sessions set it so), a GEMM worth splitting is cut into
 * blocks of rows (or of columns when N > M, so the smaller operand is the one each block packs
 * again), one a thread, on block edges of 16 (the BLAS kernels' register block), and split like
 * any kernel loop (parallel.h). With a multi-threaded OpenBLAS (a program set it) the call goes
 * to it whole: its own pool splits it, and calling it from several threads at once would make
 * its workers contend. */
#define PAR_MNK 2e6 /* below this M N K one thread is as fast as two (wake-up cost) */

bool at_blas_single(void) {
    return openblas_get_num_threads() == 1;
}

typedef struct {
    bool ta, tb, rows;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_split;

static void gemm_part(void *arg, int64_t lo, int64_t hi) {
    const gemm_split *g = arg;
    if (g->rows)
        sgemm_rm(g->ta, g->tb, hi - lo, g->N, g->K, g->alpha,
                 g->ta ? g->A + lo : g->A + lo * g->lda, g->lda, g->B, g->ldb, g->beta,
                 g->C + lo * g->ldc, g->ldc);
    else
        sgemm_rm(g->ta, g->tb, g->M, hi - lo, g->K, g->alpha, g->A, g->lda,
                 g->tb ? g->B + lo * g->ldb : g->B + lo, g->ldb, g->beta, g->C + lo, g->ldc);
}

void at_sgemm(const at_kernel_ctx *k, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
              float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc) {
    bool rows = M >= N;
    int64_t total = rows ? M : N, threads = at_par_threads(k);
    int64_t parts = threads < total / 16 ? threads : total / 16;
    gemm_split g = {ta, tb, rows, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
    if (parts < 2 || (double)M * (double)N * (double)K < PAR_MNK || !at_blas_single()) {
        gemm_part(&g, 0, total);
        return;
    }
    at_par_range(k, total, total / parts, 16, gemm_part, &g); /* parts blocks */
}

static bool fits_int(int64_t v) {
    return v >= 0 && v <= INT_MAX;
}

static bool same_shape(at_graph *g, at_val a, at_val b) {
    at_shape sa = at_value_shape(g, a), sb = at_value_shape(g, b);
    return at_shape_equal(&sa, &sb);
}

/* d reduced to ref's shape when a broadcast made them differ. */
static at_val reduce_to(at_graph *g, at_val d, at_val ref) {
    if (d == AT_NONE || same_shape(g, d, ref)) return d;
    return at_sum_to_shape(g, d, ref);
}

static at_val transpose_last2(at_graph *g, at_val x) {
    int r = at_value_shape(g, x).rank;
    int64_t perm[AT_MAX_RANK];
    for (int i = 0; i < r; i++) perm[i] = i;
    perm[r - 2] = r - 1;
    perm[r - 1] = r - 2;
    return at_transpose(g, x, r, perm);
}

static at_val unsqueeze1(at_graph *g, at_val x, int64_t axis) {
    return at_unsqueeze(g, x, 1, &axis);
}

/* ---- MatMul ---- */

static const at_attr_schema matmul_attrs[] = {{NULL}};

static at_status matmul_infer(at_infer_ctx *c) {
    const at_shape *a = &c->in_shape[0], *b = &c->in_shape[1];
    if (c->in_dtype[0] != AT_F32 || c->in_dtype[1] != AT_F32)
        return at_infer_fail(c, AT_E_UNSUPPORTED, "MatMul supports float32 operands only");
    if (a->rank < 1 || b->rank < 1)
        return at_infer_fail(c, AT_E_SHAPE, "operands must have rank >= 1 (got %d and %d)", a->rank,
                             b->rank);
    int64_t ka = a->dim[a->rank - 1];
    int64_t kb = b->rank >= 2 ? b->dim[b->rank - 2] : b->dim[0];
    if (ka >= 0 && kb >= 0 && ka != kb)
        return at_infer_fail(c, AT_E_SHAPE, "inner dims differ (%lld vs %lld)", (long long)ka,
                             (long long)kb);
    at_shape ba = {0}, bb = {0}, out;
    ba.rank = a->rank > 2 ? a->rank - 2 : 0;
    bb.rank = b->rank > 2 ? b->rank - 2 : 0;
    memcpy(ba.dim, a->dim, sizeof(int64_t) * (size_t)ba.rank);
    memcpy(bb.dim, b->dim, sizeof(int64_t) * (size_t)bb.rank);
    char msg[256] = "";
    if (at_broadcast_shapes(&ba, &bb, &out, msg, sizeof msg) != AT_OK)
        return at_infer_fail(c, AT_E_SHAPE, "batch dims do not broadcast: %s", msg);
    if (a->rank >= 2) out.dim[out.rank++] = a->dim[a->rank - 2];
    if (b->rank >= 2) out.dim[out.rank++] = b->dim[b->rank - 1];
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = out;
    return AT_OK;
}

/* y[r] = A[r, :] . b for R rows of K, in 16 running lanes, rows split by at_par_range. Used for
 * every MatMul against a vector (additive attention scores against their v vector): each row's
 * sum is the same whoever runs it, so results do not depend on the thread count, and no BLAS
 * threads compete with the pool's. */
typedef struct gemv_job {
    int64_t K;
    const float *A, *b;
    float *y;
} gemv_job;

static void gemv_range(void *arg, int64_t lo, int64_t hi) {
    const gemv_job *j = arg;
    for (int64_t r = lo; r < hi; r++) j->y[r] = at_lanes_dot(j->A + r * j->K, j->b, j->K);
}

static void gemv_rows(const at_kernel_ctx *k, int64_t R, int64_t K, const float *A, const float *b,
                      float *y) {
    gemv_job j = {K, A, b, y};
    at_par_range(k, R, 32768 / (K ? K : 1) + 1, 1, gemv_range, &j);
}

/* One item of a batched product: its offsets into A and B from its index over the broadcast
 * batch dims, then one GEMM. */
typedef struct batch_items {
    int nb;
    const int64_t *ydim, *sta, *stb;
    int64_t M, N, K;
    const float *a, *b;
    float *y;
} batch_items;

/* Item t's matrix offsets into A and B (in matrices) from its index over the batch dims. */
static void item_offsets(const batch_items *bi, int64_t t, int64_t *oa, int64_t *ob) {
    int64_t rem = t;
    *oa = *ob = 0;
    for (int i = bi->nb - 1; i >= 0; i--) {
        int64_t idx = rem % bi->ydim[i];
        rem /= bi->ydim[i];
        *oa += idx * bi->sta[i];
        *ob += idx * bi->stb[i];
    }
}

#define ITEM_WORK 1e6

static void batch_item(const batch_items *bi, int64_t t) {
    int64_t oa, ob;
    item_offsets(bi, t, &oa, &ob);
    int64_t M = bi->M, N = bi->N, K = bi->K;
    sgemm_rm(false, false, M, N, K, 1.0f, bi->a + oa * M * K, K, bi->b + ob * K * N, N, 0.0f,
             bi->y + t * M * N, N);
}

static void blas_items(void *arg, int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; t++) batch_item(arg, t);
}

/* A fused additive score (runtime/plan.h): y[r] = v . tanh(a[r] + b[r]) for each row r of the
 * [..., K] broadcast of a and b, through the same tanh span and lanes dot as the unfused Tanh
 * and GEMV, so the sums are the same bits. */
typedef struct {
    const at_shape *es; /* the broadcast shape [..., K] */
    int64_t sa[AT_MAX_RANK], sb[AT_MAX_RANK];
    const float *a, *b, *v;
    float *y;
    int64_t K;
    void (*tanh_span)(const float *, float *, int64_t, bool);
} score_job;

static void score_rows(void *arg, int64_t lo, int64_t hi) {
    const score_job *j = arg;
    _Alignas(64) float e[AT_SCORE_MAX_K];
    for (int64_t r = lo; r < hi; r++) {
        const float *a = j->a + at_row_offset(j->es, j->sa, r);
        const float *b = j->b + at_row_offset(j->es, j->sb, r);
        for (int64_t c = 0; c < j->K; c++) e[c] = a[c] + b[c];
        j->tanh_span(e, e, j->K, false);
        j->y[r] = at_lanes_dot(e, j->v, j->K);
    }
}

static at_status additive_score(at_kernel_ctx *k) {
    score_job j;
    j.es = &k->in[0].shape;
    j.K = j.es->dim[j.es->rank - 1];
    if (j.K > AT_SCORE_MAX_K || k->in[1].shape.dim[0] != j.K)
        return at_kernel_fail(k, AT_E_INTERNAL, "fused additive score of width %lld",
                              (long long)j.K);
    at_bcast_strides(&k->score_in[0].shape, j.es, j.sa);
    at_bcast_strides(&k->score_in[1].shape, j.es, j.sb);
    j.a = k->score_in[0].data, j.b = k->score_in[1].data;
    j.v = AT_F32P(&k->in[1]);
    j.y = AT_F32P(&k->out[0]);
    j.tanh_span = AT_VM_PICK(at_vm_tanh);
    int64_t rows = at_shape_numel(j.es) / j.K;
    at_par_range(k, rows, 4096 / j.K + 1, 1, score_rows, &j);
    return AT_OK;
}

static at_status matmul_cpu(at_kernel_ctx *k) {
    if (k->score_in) return additive_score(k);
    const at_tensor *A = &k->in[0], *B = &k->in[1];
    at_tensor *Y = &k->out[0];
    const at_shape *sa = &A->shape, *sb = &B->shape;
    int ra = sa->rank, rb = sb->rank;
    int64_t K = sa->dim[ra - 1];
    int64_t Kb = rb >= 2 ? sb->dim[rb - 2] : sb->dim[0];
    int64_t M = ra >= 2 ? sa->dim[ra - 2] : 1;
    int64_t N = rb >= 2 ? sb->dim[rb - 1] : 1;
    if (K != Kb)
        return at_kernel_fail(k, AT_E_SHAPE, "inner dims differ (%lld vs %lld)", (long long)K,
                              (long long)Kb);
    /* Batch dims right-aligned; a missing or size-1 dim of an operand repeats its matrix. */
    int na = ra > 2 ? ra - 2 : 0, nbb = rb > 2 ? rb - 2 : 0;
    int nb = na > nbb ? na : nbb;
    int64_t ydim[AT_MAX_RANK], sta[AT_MAX_RANK], stb[AT_MAX_RANK];
    int64_t batch = 1, batch_b = 1;
    int64_t pa = 1, pb = 1;
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
        batch_b *= db;
    }
    if (batch == 0 || M == 0 || N == 0) return AT_OK;
    if (!fits_int(M) || !fits_int(N) || !fits_int(K))
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "matrix dims exceed the BLAS int range");
    const float *a = AT_F32P(A), *b = AT_F32P(B);
    float *y = AT_F32P(Y);
    /* B shared by every batch item (a weight): one tall GEMM over all rows of A. */
    if (batch_b == 1 && fits_int(batch * M)) {
        if (N == 1) { /* scores against a vector: the same sums at every thread count */
            gemv_rows(k, batch * M, K, a, b, y);
            return AT_OK;
        }
        if (k->packed) { /* a few rows against a weight the plan packed */
            at_gemm_packed(k->pool, batch * M, N, K, 1.0f, a, K, k->packed, false, k->bias, y, N);
            return AT_OK;
        }
        at_sgemm(k, false, false, batch * M, N, K, 1.0f, a, K, b, N, 0.0f, y, N);
        return AT_OK;
    }
    /* Small products (attention heads): each item a single-threaded GEMM, whole items to a
     * thread, in blocks of ITEM_WORK multiply-adds at least (one item of the attention scores,
     * 16 x 64 x 16, takes half a microsecond: less than handing it to a thread costs). With a
     * multi-threaded OpenBLAS (no pool, and the program set it so) each item goes to it whole. */
    batch_items bi = {nb, ydim, sta, stb, M, N, K, a, b, y};
    if (!at_blas_single()) {
        for (int64_t t = 0; t < batch; t++) batch_item(&bi, t);
        return AT_OK;
    }
    double item = (double)M * (double)N * (double)K;
    at_par_range(k, batch, (int64_t)(ITEM_WORK / item) + 1, 1, blas_items, &bi);
    return AT_OK;
}

/* dA = dY Bᵀ, dB = Aᵀ dY on the 2-D promoted operands, then reduced over broadcast batch dims
 * and the promoted dims removed again. */
static at_status matmul_grad(at_grad_ctx *c) {
    at_graph *g = c->g;
    at_val a = at_grad_in(c, 0), b = at_grad_in(c, 1), dy = c->dy[0];
    if (dy == AT_NONE) return AT_OK;
    at_shape sa = at_value_shape(g, a), sb = at_value_shape(g, b);
    int ra = sa.rank, rb = sb.rank;
    if (ra == 1 && rb == 1) { /* a dot product: dy is a scalar */
        if (c->need[0]) c->dx[0] = at_mul(g, dy, b);
        if (c->need[1]) c->dx[1] = at_mul(g, dy, a);
        return at_graph_status(g);
    }
    if (c->need[0]) {
        at_val d;
        int64_t N = sb.dim[rb - 1];
        if (ra == 2 && rb == 2) {
            d = at_gemm(g, dy, b, AT_NONE, 1.0f, 1.0f, 0, 1);
        } else if (rb == 2 && ra > 2 && N >= 0) {
            /* A weight applied to every row: one GEMM over all rows with B transposed by the
             * BLAS flag, not a copy of Bᵀ; the reshapes are views (no copies either). */
            int64_t fy[2] = {-1, N};
            d = at_gemm(g, at_reshape(g, dy, 2, fy), b, AT_NONE, 1.0f, 1.0f, 0, 1);
            d = at_reshape_to(g, d, at_shape_of(g, a));
        } else {
            /* dy as [..., M, N] with the dim numpy removed put back as 1 */
            at_val dy2 = ra == 1 ? unsqueeze1(g, dy, -2) : rb == 1 ? unsqueeze1(g, dy, -1) : dy;
            at_val bt = rb == 1 ? unsqueeze1(g, b, 0) : transpose_last2(g, b);
            d = at_matmul(g, dy2, bt); /* [..., M, K]; M = 1 when a is 1-D */
        }
        c->dx[0] = reduce_to(g, d, a);
    }
    if (c->need[1]) {
        at_val d;
        int64_t K = sa.dim[ra - 1], N = sb.dim[rb - 1];
        if (rb == 1) {
            /* dBᵀ = dyᵀ A as [..., 1, K], summed to [K] */
            d = at_matmul(g, unsqueeze1(g, dy, -2), a);
        } else if (ra == 2 && rb == 2) {
            d = at_gemm(g, a, dy, AT_NONE, 1.0f, 1.0f, 1, 0);
        } else if (rb == 2 && ra > 2 && K >= 0 && N >= 0) {
            /* A weight applied to every row: one GEMM over all rows, not a batched product
             * followed by a reduction over the batch. */
            int64_t fa[2] = {-1, K}, fy[2] = {-1, N};
            d = at_gemm(g, at_reshape(g, a, 2, fa), at_reshape(g, dy, 2, fy), AT_NONE, 1.0f, 1.0f,
                        1, 0);
        } else {
            at_val dy2 = ra == 1 ? unsqueeze1(g, dy, -2) : dy;
            at_val at = ra == 1 ? unsqueeze1(g, a, 1) : transpose_last2(g, a);
            d = at_matmul(g, at, dy2);
        }
        c->dx[1] = reduce_to(g, d, b);
    }
    return at_graph_status(g);
}

const at_op_def at_op_def_MatMul = {
    .name = "MatMul",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 2,
    .max_in = 2,
    .min_out = 1,
    .max_out = 1,
    .attrs = matmul_attrs,
    .infer = matmul_infer,
    .cpu = matmul_cpu,
    .grad = matmul_grad,
};

at_val at_matmul(at_graph *g, at_val a, at_val b) {
    at_val in[2] = {a, b};
    if (!g || a == AT_NONE || b == AT_NONE) return AT_NONE;
    return at_node1(g, "MatMul", in, 2, NULL, 0);
}

/* ---- Gemm ---- */

static const at_attr_schema gemm_attrs[] = {{"alpha", AT_ATTR_FLOAT, false},
                                            {"beta", AT_ATTR_FLOAT, false},
                                            {"transA", AT_ATTR_INT, false},
                                            {"transB", AT_ATTR_INT, false},
                                            {NULL}};

static bool has_c(int n_in, const at_dtype *dt) {
    return n_in > 2 && dt[2] != AT_UNDEFINED;
}

static at_status gemm_infer(at_infer_ctx *c) {
    const at_shape *a = &c->in_shape[0], *b = &c->in_shape[1];
    bool ta = at_attr_int(c->node, "transA", 0) != 0, tb = at_attr_int(c->node, "transB", 0) != 0;
    bool hc = has_c(c->n_in, c->in_dtype);
    if (c->in_dtype[0] != AT_F32 || c->in_dtype[1] != AT_F32 || (hc && c->in_dtype[2] != AT_F32))
        return at_infer_fail(c, AT_E_UNSUPPORTED, "Gemm supports float32 operands only");
    if (a->rank != 2 || b->rank != 2)
        return at_infer_fail(c, AT_E_SHAPE, "A and B must be 2-D (got rank %d and %d)", a->rank,
                             b->rank);
    int64_t M = a->dim[ta ? 1 : 0], K = a->dim[ta ? 0 : 1];
    int64_t Kb = b->dim[tb ? 1 : 0], N = b->dim[tb ? 0 : 1];
    if (K >= 0 && Kb >= 0 && K != Kb)
        return at_infer_fail(c, AT_E_SHAPE, "inner dims differ (%lld vs %lld)", (long long)K,
                             (long long)Kb);
    if (hc) {
        const at_shape *cs = &c->in_shape[2];
        if (cs->rank > 2)
            return at_infer_fail(c, AT_E_SHAPE, "C must have rank <= 2 (got %d)", cs->rank);
        int64_t want[2] = {M, N};
        for (int i = 0; i < cs->rank; i++) {
            int64_t d = cs->dim[i], w = want[2 - cs->rank + i];
            if (d >= 0 && w >= 0 && d != 1 && d != w)
                return at_infer_fail(c, AT_E_SHAPE,
                                     "C does not broadcast to [%lld,%lld] (dim %d is %lld)",
                                     (long long)M, (long long)N, i, (long long)d);
        }
    }
    c->out_dtype[0] = AT_F32;
    c->out_shape[0] = AT_SHAPE(M, N);
    return AT_OK;
}

static at_status gemm_cpu(at_kernel_ctx *k) {
    const at_tensor *A = &k->in[0], *B = &k->in[1];
    const at_tensor *C = k->n_in > 2 && k->in[2].data ? &k->in[2] : NULL;
    at_tensor *Y = &k->out[0];
    bool ta = at_attr_int(k->node, "transA", 0) != 0, tb = at_attr_int(k->node, "transB", 0) != 0;
    float alpha = at_attr_float(k->node, "alpha", 1.0f),
          beta = at_attr_float(k->node, "beta", 1.0f);
    int64_t M = A->shape.dim[ta ? 1 : 0], K = A->shape.dim[ta ? 0 : 1];
    int64_t Kb = B->shape.dim[tb ? 1 : 0], N = B->shape.dim[tb ? 0 : 1];
    if (K != Kb)
        return at_kernel_fail(k, AT_E_SHAPE, "inner dims differ (%lld vs %lld)", (long long)K,
                              (long long)Kb);
    if (!fits_int(M) || !fits_int(N) || !fits_int(K))
        return at_kernel_fail(k, AT_E_UNSUPPORTED, "matrix dims exceed the BLAS int range");
    float *y = AT_F32P(Y);
    float gemm_beta = 0.0f;
    if (C) {
        /* C's strides in [M, N] coordinates; 0 along broadcast dims. */
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
        const float *cp = AT_F32P(C);
        int nt = k->threads > 0 ? k->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (M * N > 32768)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) y[i * N + j] = beta * cp[i * cm + j * cn];
        gemm_beta = 1.0f;
    }
    if (k->packed && !ta) {
        at_gemm_packed(k->pool, M, N, K, alpha, AT_F32P(A), A->shape.dim[1], k->packed,
                       gemm_beta != 0.0f, NULL, y, N);
        return AT_OK;
    }
    at_sgemm(k, ta, tb, M, N, K, alpha, AT_F32P(A), A->shape.dim[1], AT_F32P(B), B->shape.dim[1],
             gemm_beta, y, N);
    return AT_OK;
}

static at_val scaled(at_graph *g, at_val x, float s) {
    return s == 1.0f ? x : at_mul(g, x, at_const_f32(g, s));
}

/* With op(A) [M,K], op(B) [K,N]: d op(A) = alpha dY op(B)ᵀ, d op(B) = alpha op(A)ᵀ dY; each
 * written as one Gemm with the transposes folded into its flags. */
static at_status gemm_grad(at_grad_ctx *c) {
    at_graph *g = c->g;
    const at_node_rec *n = at_grad_node(c);
    int ta = at_attr_int(n, "transA", 0) != 0, tb = at_attr_int(n, "transB", 0) != 0;
    float alpha = at_attr_float(n, "alpha", 1.0f), beta = at_attr_float(n, "beta", 1.0f);
    at_val a = at_grad_in(c, 0), b = at_grad_in(c, 1);
    at_val cv = c->n_in > 2 ? at_grad_in(c, 2) : AT_NONE;
    at_val dy = c->dy[0];
    if (dy == AT_NONE) return AT_OK;
    if (c->need[0])
        c->dx[0] = ta ? at_gemm(g, b, dy, AT_NONE, alpha, 1.0f, tb, 1)
                      : at_gemm(g, dy, b, AT_NONE, alpha, 1.0f, 0, !tb);
    if (c->need[1])
        c->dx[1] = tb ? at_gemm(g, dy, a, AT_NONE, alpha, 1.0f, 1, ta)
                      : at_gemm(g, a, dy, AT_NONE, alpha, 1.0f, !ta, 0);
    if (cv != AT_NONE && c->n_in > 2 && c->need[2])
        c->dx[2] = scaled(g, reduce_to(g, dy, cv), beta);
    return at_graph_status(g);
}

const at_op_def at_op_def_Gemm = {
    .name = "Gemm",
    .domain = AT_DOMAIN_ONNX,
    .min_in = 2,
    .max_in = 3,
    .min_out = 1,
    .max_out = 1,
    .attrs = gemm_attrs,
    .infer = gemm_infer,
    .cpu = gemm_cpu,
    .grad = gemm_grad,
};

at_val at_gemm(at_graph *g, at_val a, at_val b, at_val c, float alpha, float beta, int trans_a,
               int trans_b) {
    if (!g || a == AT_NONE || b == AT_NONE) return AT_NONE;
    at_val in[3] = {a, b, c};
    at_attr attrs[4];
    int na = 0;
    /* Defaults left out, as ONNX exporters do, so files stay small and readable. */
    if (alpha != 1.0f) attrs[na++] = AT_ATTR_F("alpha", alpha);
    if (beta != 1.0f) attrs[na++] = AT_ATTR_F("beta", beta);
    if (trans_a) attrs[na++] = AT_ATTR_I("transA", 1);
    if (trans_b) attrs[na++] = AT_ATTR_I("transB", 1);
    return at_node1(g, "Gemm", in, c == AT_NONE ? 2 : 3, attrs, na);
}
