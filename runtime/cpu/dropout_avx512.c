/* Dropout's inner span with AVX-512: the Philox4x32-10 blocks of 16 consecutive counters in one
 * register each word (the 32 x 32 -> 64 products by vpmuludq on the even and odd lanes), the
 * four words interleaved back into element order, the keep test, the select and the 0/1 mask
 * bytes, all in registers. At four SSE2 lanes the Philox rounds were the cost of a dropout
 * (about 3.7 ns an element, bench/NOTES.md). Same words, same test as ops/dropout.c's
 * portable path, so the same masks bit for bit (tests/test_ops_dropout.c). */
#include "runtime/cpu/dropout_avx512.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

bool at_cpu_avx512(void) {
#if HAVE_X86
    static int cached = -1; /* a benign race: every thread computes the same answer */
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") != 0;
    }
    return cached;
#else
    return false;
#endif
}

#if HAVE_X86
/* hi and lo words of a[l] * m for all 16 lanes. */
__attribute__((target("avx512f"))) static inline void mulhilo16(__m512i a, __m512i m, __m512i *hi,
                                                                __m512i *lo) {
    __m512i even = _mm512_mul_epu32(a, m), odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
    *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

/* Elements 64 g .. 64 g + 63 of the span: blocks j0 .. j0 + 15. */
__attribute__((target("avx512f"))) static void group64(at_philox_key key, uint64_t j0,
                                                       uint64_t step, uint32_t thr, float scale,
                                                       const float *x, float *y, uint8_t *mask) {
    uint32_t lo[16], hi[16];
    for (int l = 0; l < 16; l++) {
        uint64_t j = j0 + (uint64_t)l;
        lo[l] = (uint32_t)j, hi[l] = (uint32_t)(j >> 32);
    }
    __m512i c0 = _mm512_loadu_si512(lo), c1 = _mm512_loadu_si512(hi);
    __m512i c2 = _mm512_set1_epi32((int)(uint32_t)step), c3 = _mm512_set1_epi32((int)(step >> 32));
    const __m512i m0 = _mm512_set1_epi32((int)PHILOX_M0), m1 = _mm512_set1_epi32((int)PHILOX_M1);
    uint32_t k0 = key.k0, k1 = key.k1;
    for (int r = 0; r < 10; r++) {
        if (r) k0 += PHILOX_W0, k1 += PHILOX_W1;
        __m512i hi0, lo0, hi1, lo1;
        mulhilo16(c0, m0, &hi0, &lo0);
        mulhilo16(c2, m1, &hi1, &lo1);
        c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)k0));
        c1 = lo1;
        c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)k1));
        c3 = lo0;
    }
    /* Word q of block l is element 4 l + q: a 4 x 4 transpose of dwords within each 128-bit
     * lane (block 4L + i's words in u_i's lane L), then of the 128-bit lanes. */
    __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
    __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
    __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
    __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
    __m512i a = _mm512_shuffle_i32x4(u0, u1, 0x44), b = _mm512_shuffle_i32x4(u2, u3, 0x44);
    __m512i c = _mm512_shuffle_i32x4(u0, u1, 0xEE), d = _mm512_shuffle_i32x4(u2, u3, 0xEE);
    __m512i v[4] = {_mm512_shuffle_i32x4(a, b, 0x88), _mm512_shuffle_i32x4(a, b, 0xDD),
                    _mm512_shuffle_i32x4(c, d, 0x88), _mm512_shuffle_i32x4(c, d, 0xDD)};
    const __m512i t = _mm512_set1_epi32((int)thr), one = _mm512_set1_epi32(1);
    const __m512 s = _mm512_set1_ps(scale);
    for (int i = 0; i < 4; i++) {
        __mmask16 keep = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(v[i], 8), t);
        _mm512_storeu_ps(y + 16 * i, _mm512_maskz_mul_ps(keep, _mm512_loadu_ps(x + 16 * i), s));
        if (mask)
            _mm_storeu_si128((__m128i *)(mask + 16 * i),
                             _mm512_cvtepi32_epi8(_mm512_maskz_mov_epi32(keep, one)));
    }
}
#endif

void at_dropout_avx512(at_philox_key key, uint64_t j0, int64_t groups, uint64_t step, uint32_t thr,
                       float scale, const float *x, float *y, uint8_t *mask) {
#if HAVE_X86
    for (int64_t g = 0; g < groups; g++)
        group64(key, j0 + 16 * (uint64_t)g, step, thr, scale, x + 64 * g, y + 64 * g,
                mask ? mask + 64 * g : NULL);
#else
    (void)key, (void)j0, (void)groups, (void)step, (void)thr, (void)scale, (void)x, (void)y,
        (void)mask;
#endif
}
