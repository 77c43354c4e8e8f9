/* GEMM throughput at the joint model's shapes: attune's MatMul op (one
 * session run holding one node) against calling OpenBLAS's cblas_sgemm
 * directly on the same buffers, measured side by side. Prints a Markdown
 * table; the ratio column is attune GFLOP/s over OpenBLAS GFLOP/s.
 *
 *
 *   bench_gemm [THREADS] [attune | openblas]
 *
 * With a side, only that side runs, and it prints one JSON line a shape (bench/run.sh runs the
 * two sides as separate processes, alternately, and bench/report.py makes the table): each
 * library keeps threads that spin for a while after a call (OpenBLAS's workers, the session
 * pool's helpers), and on two cores a call right after the other library's runs beside its
 * spinning threads, which measures the hand-over more than the GEMM. Without a side both run in
 * one process, alternating in blocks of BLOCK calls, and it prints a Markdown table. */
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

enum { REPS = 42, BLOCK = 6 };
#define WARM_S 0.5

typedef enum { SIDE_BOTH, SIDE_ATTUNE, SIDE_BLAS } side_t;

static void blas_call(const shape_case *sc, const float *A, const float *Bm, float *Y) {
    for (int bi = 0; bi < sc->batch; bi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, sc->m, sc->n, sc->k, 1.0f,
                    A + (size_t)bi * sc->m * sc->k, sc->k, Bm + (size_t)bi * sc->k * sc->n, sc->n,
                    0.0f, Y + (size_t)bi * sc->m * sc->n, sc->n);
}

static double median_ms(double *t, int n) {
    qsort(t, (size_t)n, sizeof(double), cmp_d);
    return t[n / 2] * 1e3;
}

/* Times one shape; ma / mb are the medians (ms) of the sides that ran. */
static int run_case(const shape_case *sc, int threads, side_t side, double *ma, double *mb) {
    at_graph *g = at_graph_new();
    if (!g) return 1;
    at_shape sa = sc->batch > 1 ? AT_SHAPE(sc->batch, sc->m, sc->k) : AT_SHAPE(sc->m, sc->k);
    at_shape sb = sc->batch > 1 ? AT_SHAPE(sc->batch, sc->k, sc->n) : AT_SHAPE(sc->k, sc->n);
    at_val a = at_input(g, "a", AT_F32, sa), b = at_input(g, "b", AT_F32, sb);
    at_val y = at_matmul(g, a, b);
    size_t na = (size_t)sc->batch * sc->m * sc->k, nb = (size_t)sc->batch * sc->k * sc->n;
    size_t ny = (size_t)sc->batch * sc->m * sc->n;
    float *A = malloc(na * 4), *Bm = malloc(nb * 4), *Y = malloc(ny * 4);
    at_session *s = NULL;
    int rc = 1;
    if (!A || !Bm || !Y) goto done;
    for (size_t i = 0; i < na; i++) A[i] = (float)((i * 7) % 13) * 0.01f;
    for (size_t i = 0; i < nb; i++) Bm[i] = (float)((i * 5) % 11) * 0.01f;
    at_session_opts o = at_session_defaults();
    o.threads = threads;
    at_err err;
    if (side != SIDE_BLAS && !(s = at_session_new(g, &o, &err))) {
        fprintf(stderr, "bench_gemm: %s\n", err.msg);
        goto done;
    }
    /* the session set OpenBLAS to one thread (its pool splits GEMMs): direct calls get
     * `threads` again; with both sides in one process attune's calls then go to OpenBLAS whole */
    if (side != SIDE_ATTUNE) openblas_set_num_threads(threads);
    at_feed f[2] = {{a, {AT_F32, sa, A}}, {b, {AT_F32, sb, Bm}}};
    double ta[REPS], tb[REPS];
    at_tensor out;
    /* alternating blocks (one side only: its blocks back to back), the first a warm-up */
    for (int blk = 0; blk < REPS / BLOCK + 1; blk++) {
        for (int r = 0; side != SIDE_BLAS && r < BLOCK; r++) {
            double t0 = now();
            if (at_session_run(s, f, 2, &y, 1, &out, NULL, 0) != AT_OK) {
                fprintf(stderr, "bench_gemm: %s\n", at_session_error(s));
                goto done;
            }
            if (blk) ta[(blk - 1) * BLOCK + r] = now() - t0;
        }
        for (int r = 0; side != SIDE_ATTUNE && r < BLOCK; r++) {
            double t0 = now();
            blas_call(sc, A, Bm, Y);
            if (blk) tb[(blk - 1) * BLOCK + r] = now() - t0;
        }
    }
    if (side != SIDE_BLAS) *ma = median_ms(ta, REPS);
    if (side != SIDE_ATTUNE) *mb = median_ms(tb, REPS);
    rc = 0;
done:
    at_session_free(s);
    at_graph_free(g);
    free(A), free(Bm), free(Y);
    return rc;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    side_t side = SIDE_BOTH;
    if (argc > 2) {
        if (!strcmp(argv[2], "attune"))
            side = SIDE_ATTUNE;
        else if (!strcmp(argv[2], "openblas"))
            side = SIDE_BLAS;
        else {
            fprintf(stderr, "bench_gemm: side must be attune or openblas, got '%s'\n", argv[2]);
            return 2;
        }
    }
    if (threads < 1) {
        fprintf(stderr, "bench_gemm: threads must be >= 1\n");
        return 2;
    }
    const shape_case cases[] = {
        {"projection B*T x d -> d (B=32,T=16)", 1, 512, 256, 256},
        {"FFN up (B=32,T=16)", 1, 512, 256, 1024},
        {"FFN down (B=32,T=16)", 1, 512, 1024, 256},
        {"projection (B=32,T=48)", 1, 1536, 256, 256},
        {"attention scores, 4 heads (B=32,T=16)", 128, 16, 64, 16},
        {"attention context, 4 heads (B=32,T=48)", 128, 48, 48, 64},
        {"LSTM input gates (B=32,T=16,H=128)", 1, 512, 128, 512},
    };
    if (side == SIDE_BOTH) {
        printf("| shape | batch x (m,k,n) | attune ms | OpenBLAS ms | attune/OpenBLAS throughput "
               "|\n");
        printf("|---|---|---|---|---|\n");
    }
    /* Half a second of the largest shape first: on the shared VM a process's second vCPU
     * runs at full speed only after a while of use (without it the first shapes of a process
     * timed at one thread's speed, for both libraries alike). */
    for (double t0 = now(); now() - t0 < WARM_S;) {
        double ma = 0, mb = 0;
        if (run_case(&cases[1], threads, side, &ma, &mb)) return 1;
    }
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const shape_case *sc = &cases[c];
        double ma = 0, mb = 0;
        if (run_case(sc, threads, side, &ma, &mb)) return 1;
        if (side == SIDE_BOTH)
            printf("| %s | %d x (%d,%d,%d) | %.3f | %.3f | %.2f |\n", sc->what, sc->batch, sc->m,
                   sc->k, sc->n, ma, mb, mb / ma);
        else
            printf("{\"impl\":\"%s\",\"shape\":\"%s\",\"batch\":%d,\"m\":%d,\"k\":%d,"
                   "\"n\":%d,\"threads\":%d,\"median_ms\":%.4f}\n",
                   side == SIDE_ATTUNE ? "attune" : "openblas", sc->what, sc->batch, sc->m, sc->k,
                   sc->n, threads, side == SIDE_ATTUNE ? ma : mb);
        fflush(stdout);
    }
    return 0;
}
