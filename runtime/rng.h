/* The counter-based generator (Philox4x32-10) behind every random number in
 * attune: keyed by (seed, step, node), so a mask depends only on where and
 * when it is drawn, never on thread count or backend. Internal header; the
 * CUDA kernels implement the same function. */
#ifndef ATTUNE_RUNTIME_RNG_H
#define ATTUNE_RUNTIME_RNG_H

#include <stdint.h>

typedef struct at_philox_key {
    uint32_t k0, k1;
} at_philox_key;

/* Four 32-bit outputs for counter (c0..c3) under key. */
void at_philox4x32(at_philox_key key, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                   uint32_t out[4]);

/* Key for (seed, node): the step goes into the counter. */
at_philox_key at_rng_key(uint64_t seed, uint32_t node);

/* Uniform float in [0, 1) for element i of (key, step), using 24 bits. */
float at_rng_uniform(at_philox_key key, uint64_t step, uint64_t i);
/* Standard normal for element i (Box-Muller on two uniforms). */
float at_rng_normal(at_philox_key key, uint64_t step, uint64_t i);

#endif
