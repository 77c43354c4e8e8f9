/* Philox4x32-10 on the device: the same function as at_philox4x32 in runtime/rng.c (whose
 * comment defines the streams), so dropout masks and random ops draw the CPU's numbers.
 * Internal; included by the CUDA kernels that draw random numbers. */
#ifndef ATTUNE_RUNTIME_CUDA_PHILOX_CUH
#define ATTUNE_RUNTIME_CUDA_PHILOX_CUH

#include <stdint.h>

#define AT_PHILOX_M0 0xD2511F53u
#define AT_PHILOX_M1 0xCD9E8D57u
#define AT_PHILOX_W0 0x9E3779B9u
#define AT_PHILOX_W1 0xBB67AE85u

__device__ inline void at_dev_philox4x32(uint32_t k0, uint32_t k1, uint32_t c[4]) {
    uint32_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
#pragma unroll
    for (int r = 0; r < 10; r++) {
        if (r) k0 += AT_PHILOX_W0, k1 += AT_PHILOX_W1;
        uint32_t hi0 = __umulhi(AT_PHILOX_M0, c0), lo0 = AT_PHILOX_M0 * c0;
        uint32_t hi1 = __umulhi(AT_PHILOX_M1, c2), lo1 = AT_PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    c[0] = c0, c[1] = c1, c[2] = c2, c[3] = c3;
}

/* The block of four words behind elements 4j .. 4j+3 at a step; `normal` flips bit 31 of the
 * last counter word, as runtime/rng.c does for the normal stream. */
__device__ inline void at_dev_philox_block(uint32_t k0, uint32_t k1, int64_t j, uint64_t step,
                                           bool normal, uint32_t w[4]) {
    w[0] = (uint32_t)j;
    w[1] = (uint32_t)((uint64_t)j >> 32);
    w[2] = (uint32_t)step;
    w[3] = (uint32_t)(step >> 32) ^ (normal ? 0x80000000u : 0u);
    at_dev_philox4x32(k0, k1, w);
}

/* A word's top 24 bits scaled by 2^-24: exact, so the same float as the CPU's. */
__device__ inline float at_dev_u24(uint32_t w) {
    return (float)(w >> 8) * (1.0f / 16777216.0f);
}

#endif
