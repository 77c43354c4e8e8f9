/* The thread pool of runtime/cpu/pool.h: every item runs exactly once per run, its writes are
 * seen by the caller when the run returns, runs follow each other back to back (a helper that
 * joins late must never claim an item of the next run), with 1 and 3 helpers, and NULL or
 * zero-helper pools run everything on the caller. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "runtime/cpu/pool.h"

enum { MAX_N = 700 };

typedef struct job {
    int run;                 /* which run this is */
    atomic_int count[MAX_N]; /* times item i ran */
    int stamp[MAX_N];        /* the run that wrote item i (plain writes) */
    int64_t slow_every;      /* items that spin a while, to let helpers join */
} job;

static void item(void *arg, int64_t i) {
    job *j = arg;
    atomic_fetch_add(&j->count[i], 1);
    j->stamp[i] = j->run;
    if (j->slow_every && i % j->slow_every == 0)
        for (volatile int k = 0; k < 2000; k++) {
        }
}

static void runs(at_pool *p, const char *what) {
    job *j = calloc(1, sizeof *j);
    if (!j) {
        CHECK(0, "out of memory");
        return;
    }
    int64_t bad_count = 0, bad_stamp = 0;
    for (int r = 1; r <= 3000; r++) {
        int64_t n = (r * 7919) % MAX_N; /* 0 .. MAX_N - 1, small ones included */
        j->run = r;
        j->slow_every = r % 3 ? 0 : 17;
        for (int64_t i = 0; i < n; i++) atomic_store(&j->count[i], 0);
        at_pool_run(p, n, item, j);
        for (int64_t i = 0; i < n; i++) {
            bad_count += atomic_load(&j->count[i]) != 1;
            bad_stamp += j->stamp[i] != r;
        }
    }
    CHECK(bad_count == 0, "%s: %lld items did not run exactly once", what, (long long)bad_count);
    CHECK(bad_stamp == 0, "%s: %lld items' writes not seen after the run", what,
          (long long)bad_stamp);
    free(j);
}

int main(void) {
    CHECK(at_pool_new(0) == NULL, "a pool of 0 helpers");
    at_pool_free(NULL);
    runs(NULL, "no pool");
    at_pool *p1 = at_pool_new(1), *p3 = at_pool_new(3);
    CHECK(p1 && p3, "pools of 1 and 3 helpers");
    if (p1) runs(p1, "1 helper");
    if (p3) runs(p3, "3 helpers");
    at_pool_free(p1);
    at_pool_free(p3);
    return check_done("test_pool");
}
