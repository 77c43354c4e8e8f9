/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011), matching Random123's philox4x32 with R = 10 bit for bit.
 *
 * The streams are defined here once; the CUDA kernels must compute the same function:
 *   key      = at_rng_key(seed, node): splitmix64(splitmix64(seed) ^ node), low word k0,
 *              high word k1 (splitmix64 is a bijection, so distinct seeds give distinct keys
 *              for one node and distinct nodes give distinct keys for one seed).
 *   uniform  element i of step s: counter {lo(i >> 2), hi(i >> 2), lo(s), hi(s)}, output
 *              word i & 3, top 24 bits scaled by 2^-24. Four consecutive elements share one
 *              block, so a kernel can draw four at a time with one at_philox4x32 call.
 *   normal   element i of step s: the counter of the block i >> 2 with bit 31 of the last
 *              word flipped (so normals never reuse the uniforms' words), output words
 *              2p, 2p + 1 with p = (i >> 1) & 1 as the two uniforms of Box-Muller, the cosine
 *              branch for even i and the sine branch for odd i.
 * Uniforms are exact integers scaled by a power of two, so they (and dropout masks) agree bit
 * for bit across backends; normals go through logf/sqrtf/cosf and agree to a few ulp. */
#include "runtime/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void at_philox4x32(at_philox_key key, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                   uint32_t out[4]) {
    uint32_t k0 = key.k0, k1 = key.k1;
    for (int r = 0; r < 10; r++) {
        if (r) k0 += PHILOX_W0, k1 += PHILOX_W1;
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

static uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

at_philox_key at_rng_key(uint64_t seed, uint32_t node) {
    uint64_t z = splitmix64(splitmix64(seed) ^ node);
    return (at_philox_key){(uint32_t)z, (uint32_t)(z >> 32)};
}

float at_rng_uniform(at_philox_key key, uint64_t step, uint64_t i) {
    uint32_t w[4];
    uint64_t j = i >> 2;
    at_philox4x32(key, (uint32_t)j, (uint32_t)(j >> 32), (uint32_t)step, (uint32_t)(step >> 32), w);
    return (float)(w[i & 3] >> 8) * (1.0f / 16777216.0f);
}

float at_rng_normal(at_philox_key key, uint64_t step, uint64_t i) {
    uint32_t w[4];
    uint64_t j = i >> 2;
    at_philox4x32(key, (uint32_t)j, (uint32_t)(j >> 32), (uint32_t)step,
                  (uint32_t)(step >> 32) ^ 0x80000000u, w);
    unsigned p = (unsigned)(i >> 1) & 1u;
    /* u1 in (0, 1] keeps logf finite; u2 in [0, 1) is the angle. */
    float u1 = (float)((w[2 * p] >> 8) + 1u) * (1.0f / 16777216.0f);
    float u2 = (float)(w[2 * p + 1] >> 8) * (1.0f / 16777216.0f);
    float r = sqrtf(-2.0f * logf(u1));
    float th = 6.28318530717958647692f * u2;
    return (i & 1) ? r * sinf(th) : r * cosf(th);
}
