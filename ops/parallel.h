/* Parallel loops of CPU kernels. A session with more than one thread gives its kernels a pool
 * (runtime/cpu/pool.h) whose caller never waits for a helper that has not started: a kernel of
 * 30 us gains from a second thread there, where an OpenMP region with sleeping workers (the
 * passive wait policy) costs 10-50 us to wake them. Without a pool (one thread, or no threads
 * could start) the loops run on the caller, or on k->threads OpenMP threads. Internal. */
#ifndef ATTUNE_OPS_PARALLEL_H
#define ATTUNE_OPS_PARALLEL_H

#include <stdint.h>

#include "ops/op.h"

/* fn(arg, lo, hi) runs items [lo, hi) of a loop. */
typedef void (*at_range_fn)(void *arg, int64_t lo, int64_t hi);

/* Threads a kernel may split its work over: the pool's, else k->threads. */
int at_par_threads(const at_kernel_ctx *k);

/* Runs fn over [0, n) in blocks of at least `grain` items, and returns when all have run. Blocks
 * are contiguous and ordered; more blocks than threads let an early thread take a late one's
 * share. A block boundary falls on a multiple of `align` items (1 for none), so that SIMD loops
 * keep their alignment and a row never splits. */
void at_par_range(const at_kernel_ctx *k, int64_t n, int64_t grain, int64_t align, at_range_fn fn,
                  void *arg);

#endif
