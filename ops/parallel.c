/* The parallel loops of parallel.h. */
#include "ops/parallel.h"

#include "runtime/cpu/pool.h"

/* Blocks per thread on the pool: a helper that joins late still finds work. */
#define BLOCKS_PER_THREAD 4

typedef struct {
    at_range_fn fn;
    void *arg;
    int64_t n, blocks, align;
} range_job;

static int64_t block_edge(const range_job *j, int64_t b) {
    if (b >= j->blocks) return j->n;
    int64_t e = j->n * b / j->blocks;
    return e / j->align * j->align;
}

static void range_block(void *arg, int64_t b) {
    const range_job *j = arg;
    int64_t lo = block_edge(j, b), hi = block_edge(j, b + 1);
    if (hi > lo) j->fn(j->arg, lo, hi);
}

int at_par_threads(const at_kernel_ctx *k) {
    if (k->pool) return at_pool_threads(k->pool);
    return k->threads > 1 ? k->threads : 1;
}

void at_par_range(const at_kernel_ctx *k, int64_t n, int64_t grain, int64_t align, at_range_fn fn,
                  void *arg) {
    int threads = at_par_threads(k);
    if (grain < 1) grain = 1;
    if (align < 1) align = 1;
    int64_t most = n / grain;
    if (threads < 2 || most < 2) {
        if (n > 0) fn(arg, 0, n);
        return;
    }
    int64_t per = k->pool ? BLOCKS_PER_THREAD : 1;
    range_job j = {fn, arg, n, most < threads * per ? most : threads * per, align};
    if (k->pool) {
        at_pool_run(k->pool, j.blocks, range_block, &j);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < j.blocks; b++) range_block(&j, b);
}
