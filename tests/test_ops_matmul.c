/* MatMul and Gemm against plain triple-loop references, with gradients w.r.t. every input. */
#include "check.h"
#include "op_harness.h"

/* ---- MatMul reference: numpy.matmul, spelled out ---- */

static void ref_matmul(const at_tensor *in, int n_in, at_tensor *out, int n_out) {
    (void)n_in;
    (void)n_out;
    const at_tensor *A = &in[0], *B = &in[1];
    int ra = A->shape.rank, rb = B->shape.rank;
    /* promoted 2-D (or more) shapes */
    at_shape pa = A->shape, pb = B->shape;
    if (ra == 1) pa = AT_SHAPE(1, A->shape.dim[0]);
    if (rb == 1) pb = AT_SHAPE(B->shape.dim[0], 1);
    int64_t M = pa.dim[pa.rank - 2], K = pa.dim[pa.rank - 1], N = pb.dim[pb.rank - 1];
    int na = pa.rank - 2, nb = pb.rank - 2, nr = na > nb ? na : nb;
    int64_t bd[AT_MAX_RANK];
    int64_t nbatch = 1;
    for (int i = 0; i < nr; i++) {
        int ia = i - (nr - na), ib = i - (nr - nb);
        int64_t da = ia >= 0 ? pa.dim[ia] : 1, db = ib >= 0 ? pb.dim[ib] : 1;
        bd[i] = da > db ? da : db;
        nbatch *= bd[i];
    }
    out->dtype = AT_F32;
    out->shape.rank = 0;
    for (int i = 0; i < nr; i++) out->shape.dim[out->shape.rank++] = bd[i];
    if (ra > 1) out->shape.dim[out->shape.rank++] = M;
    if (rb > 1) out->shape.dim[out->shape.rank++] = N;
    const float *a = A->data, *b = B->data;
    float *y = out->data;
    for (int64_t t = 0; t < nbatch; t++) {
        /* this batch item's index into each operand's own batch dims */
        int64_t idx[AT_MAX_RANK], rem = t, offa = 0, offb = 0;
        for (int i = nr - 1; i >= 0; i--) {
            idx[i] = rem % bd[i];
            rem /= bd[i];
        }
        for (int i = 0; i < na; i++) {
            int64_t d = pa.dim[i], j = idx[i + (nr - na)];
            offa = offa * d + (d == 1 ? 0 : j);
        }
        for (int i = 0; i < nb; i++) {
            int64_t d = pb.dim[i], j = idx[i + (nr - nb)];
            offb = offb * d + (d == 1 ? 0 : j);
        }
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += (double)a[offa * M * K + m * K + k] * b[offb * K * N + k * N + n];
                y[(t * M + m) * N + n] = (float)s;
            }
    }
}

static int build_matmul(at_graph *g, const at_val *in, at_val *out) {
    out[0] = at_matmul(g, in[0], in[1]);
    return 1;
}

/* ---- Gemm reference ---- */

static void ref_gemm(const at_tensor *in, int n_in, at_tensor *out, int ta, int tb, float alpha,
                     float beta) {
    const at_tensor *A = &in[0], *B = &in[1], *C = n_in > 2 ? &in[2] : NULL;
    int64_t M = A->shape.dim[ta ? 1 : 0], K = A->shape.dim[ta ? 0 : 1];
    int64_t N = B->shape.dim[tb ? 0 : 1];
    out->dtype = AT_F32;
    out->shape = AT_SHAPE(M, N);
    const float *a = A->data, *b = B->data;
    float *y = out->data;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                double av = ta ? a[k * M + m] : a[m * K + k];
                double bv = tb ? b[n * K + k] : b[k * N + n];
                s += av * bv;
            }
            double c = 0;
            if (C) {
                const at_shape *cs = &C->shape;
                const float *cp = C->data;
                if (cs->rank == 0)
                    c = cp[0];
                else if (cs->rank == 1)
                    c = cp[cs->dim[0] == 1 ? 0 : n];
                else
                    c = cp[(cs->dim[0] == 1 ? 0 : m) * cs->dim[1] + (cs->dim[1] == 1 ? 0 : n)];
            }
            y[m * N + n] = (float)(alpha * s + beta * c);
        }
}

#define GEMM_DEF(id, ta, tb, alpha, beta)                                                          \
    static int id##_build(at_graph *g, const at_val *in, at_val *out) {                            \
        at_val c = at_graph_num_inputs(g) > 2 ? in[2] : AT_NONE;                                   \
        out[0] = at_gemm(g, in[0], in[1], c, alpha, beta, ta, tb);                                 \
        return 1;                                                                                  \
    }                                                                                              \
    static void id##_ref(const at_tensor *in, int n_in, at_tensor *out, int n_out) {               \
        (void)n_out;                                                                               \
        ref_gemm(in, n_in, out, ta, tb, alpha, beta);                                              \
    }

GEMM_DEF(gemm_nn, 0, 0, 1.0f, 1.0f)
GEMM_DEF(gemm_tn, 1, 0, 1.0f, 1.0f)
GEMM_DEF(gemm_nt, 0, 1, 0.5f, 2.0f)
GEMM_DEF(gemm_tt, 1, 1, -1.5f, 0.25f)
GEMM_DEF(gemm_nn_ab, 0, 0, 2.0f, -0.7f)
GEMM_DEF(gemm_tt_noc, 1, 1, 2.0f, 1.0f)
GEMM_DEF(gemm_nt_noc, 0, 1, 1.0f, 1.0f)
GEMM_DEF(gemm_tn_beta0, 1, 0, 1.0f, 0.0f)

/* ---- error reporting: what builds must refuse ---- */

static void check_errors(void) {
    at_graph *g = at_graph_new();
    at_val a = at_input(g, "a", AT_F32, AT_SHAPE(3, 4));
    at_val b = at_input(g, "b", AT_F32, AT_SHAPE(5, 6));
    CHECK(at_matmul(g, a, b) == AT_NONE, "inner-dim mismatch must fail");
    CHECK(at_graph_status(g) == AT_E_SHAPE, "status %d", at_graph_status(g));
    CHECK(strstr(at_graph_error(g), "inner dims") != NULL, "message: %s", at_graph_error(g));
    at_graph_free(g);

    g = at_graph_new();
    a = at_input(g, "a", AT_F32, AT_SHAPE(2, 3, 4));
    b = at_input(g, "b", AT_F32, AT_SHAPE(3, 4, 5));
    CHECK(at_matmul(g, a, b) == AT_NONE, "batch mismatch must fail");
    CHECK(at_graph_status(g) == AT_E_SHAPE, "status %d", at_graph_status(g));
    at_graph_free(g);

    g = at_graph_new();
    a = at_input(g, "a", AT_F32, AT_SHAPE(3, 4));
    b = at_input(g, "b", AT_F32, AT_SHAPE(4, 5));
    at_val c = at_input(g, "c", AT_F32, AT_SHAPE(2, 5));
    CHECK(at_gemm(g, a, b, c, 1, 1, 0, 0) == AT_NONE, "C [2,5] must not broadcast to [3,5]");
    CHECK(at_graph_status(g) == AT_E_SHAPE, "status %d", at_graph_status(g));
    at_graph_free(g);

    /* symbolic batch passes through; a symbolic inner dim never fails while building */
    g = at_graph_new();
    int64_t B = at_sym(g, "B"), T = at_sym(g, "T");
    a = at_input(g, "a", AT_F32, AT_SHAPE(B, T, 8));
    b = at_input(g, "b", AT_F32, AT_SHAPE(8, 3));
    at_val y = at_matmul(g, a, b);
    at_shape ys = at_value_shape(g, y);
    CHECK(ys.rank == 3 && ys.dim[0] == B && ys.dim[1] == T && ys.dim[2] == 3, "rank %d", ys.rank);
    at_val s = at_input(g, "s", AT_F32, AT_SHAPE(B, 8, T));
    at_val z = at_matmul(g, a, s);
    at_shape zs = at_value_shape(g, z);
    CHECK(zs.rank == 3 && zs.dim[0] == B && zs.dim[1] == T && zs.dim[2] == T, "rank %d", zs.rank);
    CHECK(at_graph_status(g) == AT_OK, "%s", at_graph_error(g));
    at_graph_free(g);
}

/* Rows. The ops are bilinear, so a central difference is exact for any step up to rounding;
 * a large step keeps that rounding small. */
#define TOL(atol_, gtol_, eps_)                                                                    \
    .atol = (atol_), .rtol = (atol_), .grad_atol = (gtol_), .grad_rtol = (gtol_), .fd_eps = (eps_)
#define MM(name_, a_, b_)                                                                          \
    {                                                                                              \
        .name = (name_), .n_in = 2, .in = {a_, b_}, .build = build_matmul, .ref = ref_matmul,      \
        TOL(1e-5, 2e-3, 0.5)                                                                       \
    }
#define GEMM(name_, id, ...)                                                                       \
    {                                                                                              \
        .name = (name_), .n_in = (int)(sizeof((oh_input[]){__VA_ARGS__}) / sizeof(oh_input)),      \
        .in = {__VA_ARGS__}, .build = id##_build, .ref = id##_ref, TOL(1e-5, 2e-3, 0.5)            \
    }
#define F32_SCALAR                                                                                 \
    { .dt = AT_F32, .shape = {.rank = 0}, .lo = -1, .hi = 1, .grad = true }

int main(int argc, char **argv) {
    oh_case cases[] = {
        MM("matmul_2d", OH_F32(-1, 1, 3, 4), OH_F32(-1, 1, 4, 5)),
        MM("matmul_3d_2d", OH_F32(-1, 1, 2, 3, 4), OH_F32(-1, 1, 4, 5)),
        MM("matmul_batched_3d", OH_F32(-1, 1, 2, 3, 4), OH_F32(-1, 1, 2, 4, 5)),
        MM("matmul_bcast_batch", OH_F32(-1, 1, 2, 1, 3, 4), OH_F32(-1, 1, 5, 4, 2)),
        MM("matmul_bcast_both", OH_F32(-1, 1, 1, 3, 2, 4), OH_F32(-1, 1, 2, 1, 4, 3)),
        MM("matmul_2d_3d", OH_F32(-1, 1, 3, 4), OH_F32(-1, 1, 2, 4, 5)),
        MM("matmul_1d_2d", OH_F32(-1, 1, 4), OH_F32(-1, 1, 4, 5)),
        MM("matmul_2d_1d", OH_F32(-1, 1, 3, 4), OH_F32(-1, 1, 4)),
        MM("matmul_1d_1d", OH_F32(-1, 1, 6), OH_F32(-1, 1, 6)),
        MM("matmul_1d_3d", OH_F32(-1, 1, 4), OH_F32(-1, 1, 2, 4, 5)),
        MM("matmul_3d_1d", OH_F32(-1, 1, 2, 3, 4), OH_F32(-1, 1, 4)),
        MM("matmul_size1_dims", OH_F32(-1, 1, 1, 1, 4), OH_F32(-1, 1, 3, 4, 1)),
        MM("matmul_attention", OH_F32(-1, 1, 2, 7, 8), OH_F32(-1, 1, 2, 8, 7)),
        /* few rows against a weight (the column-block path of sgemm_rm): sizes off and on
         * the kernels' 16-wide blocks */
        MM("matmul_few_rows_tails", OH_F32(-1, 1, 1, 21, 40), OH_F32(-1, 1, 40, 37)),
        MM("matmul_few_rows_blocks", OH_F32(-1, 1, 2, 16, 24), OH_F32(-1, 1, 24, 32)),
        {.name = "matmul_model",
         .n_in = 2,
         .in = {OH_F32(-1, 1, 4, 16, 256), OH_F32(-1, 1, 256, 128)},
         .build = build_matmul,
         .ref = ref_matmul,
         TOL(1e-4, 3e-2, 1.0)},

        /* Gemm: every transA/transB pair; alpha, beta; C as [M,N], [N], scalar, [M,1], [1,N],
         * absent */
        GEMM("gemm_nn_c_mn", gemm_nn, OH_F32(-1, 1, 3, 4), OH_F32(-1, 1, 4, 5),
             OH_F32(-1, 1, 3, 5)),
        GEMM("gemm_tn_c_n", gemm_tn, OH_F32(-1, 1, 4, 3), OH_F32(-1, 1, 4, 5), OH_F32(-1, 1, 5)),
        GEMM("gemm_nt_c_scalar_ab", gemm_nt, OH_F32(-1, 1, 3, 4), OH_F32(-1, 1, 5, 4), F32_SCALAR),
        GEMM("gemm_tt_c_m1_ab", gemm_tt, OH_F32(-1, 1, 4, 3), OH_F32(-1, 1, 5, 4),
             OH_F32(-1, 1, 3, 1)),
        GEMM("gemm_nn_c_1n_ab", gemm_nn_ab, OH_F32(-1, 1, 3, 4), OH_F32(-1, 1, 4, 5),
             OH_F32(-1, 1, 1, 5)),
        GEMM("gemm_tt_no_c", gemm_tt_noc, OH_F32(-1, 1, 4, 3), OH_F32(-1, 1, 5, 4)),
        GEMM("gemm_nt_no_c", gemm_nt_noc, OH_F32(-1, 1, 6, 7), OH_F32(-1, 1, 2, 7)),
        GEMM("gemm_tn_beta0", gemm_tn_beta0, OH_F32(-1, 1, 4, 3), OH_F32(-1, 1, 4, 5),
             OH_F32(-1, 1, 3, 5)),
        {.name = "gemm_model",
         .n_in = 3,
         .in = {OH_F32(-1, 1, 64, 256), OH_F32(-1, 1, 128, 256), OH_F32(-1, 1, 128)},
         .build = gemm_nt_build,
         .ref = gemm_nt_ref,
         TOL(1e-4, 3e-2, 1.0)},
    };
    check_errors();
    int rc = oh_run(cases, (int)(sizeof cases / sizeof cases[0]), "test_ops_matmul", argc, argv);
    return check_done("test_ops_matmul errors") || rc;
}
