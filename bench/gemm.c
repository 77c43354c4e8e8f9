/* GEMM throughput at the joint model's shapes: attune's MatMul op (one
 * session run holding one node) against calling OpenBLAS's cblas_sgemm
 * directly on the same buffers, measured side by side. Prints a Markdown
 * table; the ratio column is attune GFLOP/s over OpenBLAS GFLOP/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "attune/attune.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct shape_case {
    const char *what;
    int batch, m, k, n;
} shape_case;

enum { REPS = 41 };

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    const shape_case cases[] = {
        {"projection B*T x d -> d (B=32,T=16)", 1, 512, 256, 256},
        {"FFN up (B=32,T=16)", 1, 512, 256, 1024},
        {"FFN down (B=32,T=16)", 1, 512, 1024, 256},
        {"projection (B=32,T=48)", 1, 1536, 256, 256},
        {"attention scores, 4 heads (B=32,T=16)", 128, 16, 64, 16},
        {"attention context, 4 heads (B=32,T=48)", 128, 48, 48, 64},
        {"LSTM input gates (B=32,T=16,H=128)", 1, 512, 128, 512},
    };
    openblas_set_num_threads(threads);
    printf("| shape | batch x (m,k,n) | attune ms | OpenBLAS ms | attune/OpenBLAS throughput |\n");
    printf("|---|---|---|---|---|\n");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const shape_case *sc = &cases[c];
        at_graph *g = at_graph_new();
        at_shape sa = sc->batch > 1 ? AT_SHAPE(sc->batch, sc->m, sc->k) : AT_SHAPE(sc->m, sc->k);
        at_shape sb = sc->batch > 1 ? AT_SHAPE(sc->batch, sc->k, sc->n) : AT_SHAPE(sc->k, sc->n);
        at_val a = at_input(g, "a", AT_F32, sa), b = at_input(g, "b", AT_F32, sb);
        at_val y = at_matmul(g, a, b);
        size_t na = (size_t)sc->batch * sc->m * sc->k, nb = (size_t)sc->batch * sc->k * sc->n;
        size_t ny = (size_t)sc->batch * sc->m * sc->n;
        float *A = malloc(na * 4), *Bm = malloc(nb * 4), *Y = malloc(ny * 4);
        if (!A || !Bm || !Y) return 1;
        for (size_t i = 0; i < na; i++) A[i] = (float)((i * 7) % 13) * 0.01f;
        for (size_t i = 0; i < nb; i++) Bm[i] = (float)((i * 5) % 11) * 0.01f;
        at_session_opts o = at_session_defaults();
        o.threads = threads;
        at_err err;
        at_session *s = at_session_new(g, &o, &err);
        if (!s) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        at_feed f[2] = {{a, {AT_F32, sa, A}}, {b, {AT_F32, sb, Bm}}};
        double ta[REPS], tb[REPS];
        at_tensor out;
        for (int r = 0; r < REPS + 3; r++) { /* interleaved, 3 warm-up rounds */
            double t0 = now();
            at_session_run(s, f, 2, &y, 1, &out, NULL, 0);
            double t1 = now();
            for (int bi = 0; bi < sc->batch; bi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, sc->m, sc->n, sc->k, 1.0f,
                            A + (size_t)bi * sc->m * sc->k, sc->k, Bm + (size_t)bi * sc->k * sc->n,
                            sc->n, 0.0f, Y + (size_t)bi * sc->m * sc->n, sc->n);
            double t2 = now();
            if (r >= 3) ta[r - 3] = t1 - t0, tb[r - 3] = t2 - t1;
        }
        qsort(ta, REPS, sizeof(double), cmp_d);
        qsort(tb, REPS, sizeof(double), cmp_d);
        double ma = ta[REPS / 2] * 1e3, mb = tb[REPS / 2] * 1e3;
        printf("| %s | %d x (%d,%d,%d) | %.3f | %.3f | %.2f |\n", sc->what, sc->batch, sc->m, sc->k,
               sc->n, ma, mb, mb / ma);
        at_session_free(s);
        at_graph_free(g);
        free(A), free(Bm), free(Y);
    }
    return 0;
}
