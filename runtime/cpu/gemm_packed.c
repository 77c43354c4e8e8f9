/* The packed-weight GEMM of gemm_packed.h: one register tile kernel per instruction set,
 * compiled with a target attribute and chosen at run time. A tile is MR rows by two vectors
 * of columns (one panel); the accumulators stay in registers over all of K, and the panel
 * (K x NR floats) is read once per MR rows, from the front. */
#include "runtime/cpu/gemm_packed.h"

#include "runtime/cpu/vec.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

/* Below this M N K the pool is not asked: a 16 x 64 x 256 product takes about 5 us, the
 * hand-off a microsecond or two. */
#define PAR_MNK 2.5e5

/* The CPU checks are runtime/cpu/vec.h's (cached there); at_cpu_avx2 also needs a build that
 * compiled the AVX2 spans (GCC), so other compilers use the AVX-512 tile or BLAS. */
int at_gemm_pack_nr(void) {
#if HAVE_X86
    return at_cpu_avx512() ? 32 : at_cpu_avx2() ? 16 : 0;
#else
    return 0;
#endif
}

static int64_t panels(int64_t N, int nr) {
    return (N + nr - 1) / nr;
}

size_t at_gemm_pack_floats(int64_t K, int64_t N) {
    int nr = at_gemm_pack_nr();
    return nr ? (size_t)(panels(N, nr) * nr * K) : 0;
}

void at_gemm_pack(const float *B, int64_t K, int64_t N, bool trans, float *dst) {
    int nr = at_gemm_pack_nr();
    for (int64_t p = 0; p < panels(N, nr); p++)
        for (int64_t k = 0; k < K; k++) {
            float *d = dst + (p * K + k) * nr;
            for (int j = 0; j < nr; j++) {
                int64_t n = p * nr + j;
                d[j] = n >= N ? 0.0f : trans ? B[n * K + k] : B[k * N + n];
            }
        }
}

#if HAVE_X86
#define MR512 8
#define ROW512(r)                                                                                  \
    const float *a##r = rows[r];                                                                   \
    __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
#define FMA512(r)                                                                                  \
    {                                                                                              \
        __m512 a = _mm512_set1_ps(a##r[k]);                                                        \
        c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                                                 \
        c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);                                                 \
    }
#define STORE512(r)                                                                                \
    {                                                                                              \
        float *c = C + (r)*ldc;                                                                    \
        __m512 y0 = _mm512_mul_ps(c##r##0, al), y1 = _mm512_mul_ps(c##r##1, al);                   \
        if (beta) {                                                                                \
            y0 = _mm512_add_ps(y0, _mm512_loadu_ps(c));                                            \
            y1 = _mm512_add_ps(y1, _mm512_loadu_ps(c + 16));                                       \
        }                                                                                          \
        if (bias) {                                                                                \
            y0 = _mm512_add_ps(y0, bb0);                                                           \
            y1 = _mm512_add_ps(y1, bb1);                                                           \
        }                                                                                          \
        _mm512_storeu_ps(c, y0);                                                                   \
        _mm512_storeu_ps(c + 16, y1);                                                              \
    }

/* Named accumulators, not an array: GCC keeps an array of vectors on the stack. */
__attribute__((target("avx512f"))) static void tile512(int64_t K, float alpha,
                                                       const float *const *rows, const float *Bp,
                                                       bool beta, const float *bias, float *C,
                                                       int64_t ldc) {
    ROW512(0);
    ROW512(1);
    ROW512(2);
    ROW512(3);
    ROW512(4);
    ROW512(5);
    ROW512(6);
    ROW512(7);
    for (int64_t k = 0; k < K; k++) {
        __m512 b0 = _mm512_load_ps(Bp + k * 32), b1 = _mm512_load_ps(Bp + k * 32 + 16);
        FMA512(0);
        FMA512(1);
        FMA512(2);
        FMA512(3);
        FMA512(4);
        FMA512(5);
        FMA512(6);
        FMA512(7);
    }
    __m512 al = _mm512_set1_ps(alpha);
    __m512 bb0 = bias ? _mm512_load_ps(bias) : al, bb1 = bias ? _mm512_load_ps(bias + 16) : al;
    STORE512(0);
    STORE512(1);
    STORE512(2);
    STORE512(3);
    STORE512(4);
    STORE512(5);
    STORE512(6);
    STORE512(7);
}

#define MR256 6
#define ROW256(r)                                                                                  \
    const float *a##r = rows[r];                                                                   \
    __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
#define FMA256(r)                                                                                  \
    {                                                                                              \
        __m256 a = _mm256_set1_ps(a##r[k]);                                                        \
        c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);                                                 \
        c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);                                                 \
    }
#define STORE256(r)                                                                                \
    {                                                                                              \
        float *c = C + (r)*ldc;                                                                    \
        __m256 y0 = _mm256_mul_ps(c##r##0, al), y1 = _mm256_mul_ps(c##r##1, al);                   \
        if (beta) {                                                                                \
            y0 = _mm256_add_ps(y0, _mm256_loadu_ps(c));                                            \
            y1 = _mm256_add_ps(y1, _mm256_loadu_ps(c + 8));                                        \
        }                                                                                          \
        if (bias) {                                                                                \
            y0 = _mm256_add_ps(y0, bb0);                                                           \
            y1 = _mm256_add_ps(y1, bb1);                                                           \
        }                                                                                          \
        _mm256_storeu_ps(c, y0);                                                                   \
        _mm256_storeu_ps(c + 8, y1);                                                               \
    }

__attribute__((target("avx2,fma"))) static void tile256(int64_t K, float alpha,
                                                        const float *const *rows, const float *Bp,
                                                        bool beta, const float *bias, float *C,
                                                        int64_t ldc) {
    ROW256(0);
    ROW256(1);
    ROW256(2);
    ROW256(3);
    ROW256(4);
    ROW256(5);
    for (int64_t k = 0; k < K; k++) {
        __m256 b0 = _mm256_load_ps(Bp + k * 16), b1 = _mm256_load_ps(Bp + k * 16 + 8);
        FMA256(0);
        FMA256(1);
        FMA256(2);
        FMA256(3);
        FMA256(4);
        FMA256(5);
    }
    __m256 al = _mm256_set1_ps(alpha);
    __m256 bb0 = bias ? _mm256_load_ps(bias) : al, bb1 = bias ? _mm256_load_ps(bias + 8) : al;
    STORE256(0);
    STORE256(1);
    STORE256(2);
    STORE256(3);
    STORE256(4);
    STORE256(5);
}

typedef struct panel_job {
    int nr;
    int64_t M, N, K;
    float alpha;
    const float *A;
    int64_t lda;
    const float *Bp;
    bool beta;
    const float *bias;
    float *C;
    int64_t ldc;
} panel_job;

/* Panel p, all M rows. An edge tile's missing rows read A's last row again and its block of C
 * goes through a buffer written back only where C exists (rows past M, columns past N). */
static void panel_item(void *arg, int64_t p) {
    const panel_job *j = arg;
    int nr = j->nr, mr = nr == 32 ? MR512 : MR256;
    int64_t nv = j->N - p * nr < nr ? j->N - p * nr : nr;
    const float *Bp = j->Bp + p * j->K * nr, *bias = j->bias ? j->bias + p * nr : NULL;
    float *C = j->C + p * nr, cbuf[MR512 * 32];
    const float *rows[MR512];
    for (int64_t i = 0; i < j->M; i += mr) {
        int64_t mv = j->M - i < mr ? j->M - i : mr;
        for (int r = 0; r < mr; r++) rows[r] = j->A + (i + (r < mv ? r : mv - 1)) * j->lda;
        bool whole = mv == mr && nv == nr;
        float *c = whole ? C + i * j->ldc : cbuf;
        int64_t lc = whole ? j->ldc : nr;
        if (!whole && j->beta)
            for (int64_t r = 0; r < mv; r++)
                memcpy(cbuf + r * nr, C + (i + r) * j->ldc, sizeof(float) * (size_t)nv);
        if (nr == 32)
            tile512(j->K, j->alpha, rows, Bp, j->beta, bias, c, lc);
        else
            tile256(j->K, j->alpha, rows, Bp, j->beta, bias, c, lc);
        if (!whole)
            for (int64_t r = 0; r < mv; r++)
                memcpy(C + (i + r) * j->ldc, cbuf + r * nr, sizeof(float) * (size_t)nv);
    }
}
#endif

void at_gemm_packed(at_pool *pool, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *Bp, bool beta, const float *bias, float *C,
                    int64_t ldc) {
#if HAVE_X86
    int nr = at_gemm_pack_nr();
    panel_job j = {nr, M, N, K, alpha, A, lda, Bp, beta, bias, C, ldc};
    at_pool_run((double)M * (double)N * (double)K < PAR_MNK ? NULL : pool, panels(N, nr),
                panel_item, &j);
#else
    (void)pool, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)Bp, (void)beta,
        (void)bias, (void)C, (void)ldc;
#endif
}
