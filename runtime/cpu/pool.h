/* A small thread pool for the short parallel loops of batch-1 inference. OpenMP's fork-join
 * makes the caller wait at the region's end for every team member, so a helper that wakes late
 * (a sleeping thread takes 10 to 50 us, more on a loaded machine) stretches a 20 us GEMM past
 * its 1-thread time. Here the caller claims items from a shared counter like any helper and
 * waits only for items that a helper has already claimed: a run is never much slower than on
 * the caller alone, and faster whenever a helper is awake. Helpers spin briefly after a run
 * (the next kernel usually follows within microseconds), then sleep. Internal. */
#ifndef ATTUNE_RUNTIME_CPU_POOL_H
#define ATTUNE_RUNTIME_CPU_POOL_H

#include <stdint.h>

typedef struct at_pool at_pool;

/* A pool of `helpers` threads (>= 1), owned by the caller (at_pool_free). NULL when threads
 * cannot be started or memory runs out: callers then run serially. */
at_pool *at_pool_new(int helpers);
/* Threads that run a pool's items: its helpers and the caller; 1 for NULL. */
int at_pool_threads(const at_pool *p);
/* Stops and joins the helpers. NULL is a no-op. */
void at_pool_free(at_pool *p);

/* Runs fn(arg, i) once for every i in [0, n), on the calling thread and the helpers that join in
 * time, and returns when all n have run (their writes visible to the caller). p NULL: all on the
 * caller. One run at a time per pool (a pool belongs to one session). */
void at_pool_run(at_pool *p, int64_t n, void (*fn)(void *arg, int64_t i), void *arg);

#endif
