/* Dropout's select-and-mask span with AVX-512 (ops/dropout.c runs it where the CPU has it).
 * Internal. */
#ifndef ATTUNE_RUNTIME_CPU_DROPOUT_AVX512_H
#define ATTUNE_RUNTIME_CPU_DROPOUT_AVX512_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/rng.h"

#include "runtime/cpu/vec.h" /* at_cpu_avx512 */

/* For groups of 64 elements starting at element 4 j0 (Philox blocks j0, j0 + 1, ... of
 * (key, step), four elements a block): keep <=> (word >> 8) >= thr, y = keep ? x scale : 0,
 * mask (may be NULL) = keep. x, y and mask point at the first element of the span. */
void at_dropout_avx512(at_philox_key key, uint64_t j0, int64_t groups, uint64_t step, uint32_t thr,
                       float scale, const float *x, float *y, uint8_t *mask);

#endif
