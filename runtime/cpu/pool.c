/* The pool of pool.h. Posting a run and joining it happen under the mutex, so a helper never
 * reads a run's fields while they are written; items are claimed with an atomic counter; the
 * caller waits for `done` to reach n, and, before it posts the next run, for every helper that
 * joined the last one to have left it (so no late claim can hit the new run's counter). */
#include "runtime/cpu/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long a helper polls for the next run before it sleeps, and how often it yields the core
 * meanwhile (so that a caller sharing its core is not held up by the spinning). */
#define SPIN_NS     40000
#define YIELD_POLLS 64

struct at_pool {
    int n_threads;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint_fast64_t gen; /* run number; bumped (under mu) when a run is posted */
    bool stop;                /* under mu */
    int active;               /* helpers inside a run (under mu) */
    /* the current run, written under mu before gen is bumped */
    void (*fn)(void *, int64_t);
    void *arg;
    int64_t n;
    /* the counters on cache lines of their own: both threads write them for every item */
    _Alignas(64) atomic_int_fast64_t next; /* next item to claim */
    _Alignas(64) atomic_int_fast64_t done; /* items finished */
    char pad[64 - sizeof(atomic_int_fast64_t)];
};

static void claim_all(at_pool *p) {
    int64_t i;
    while ((i = atomic_fetch_add(&p->next, 1)) < p->n) {
        p->fn(p->arg, i);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Polls gen for up to SPIN_NS; true when it moved past seen. */
static bool spin_for_run(at_pool *p, uint64_t seen) {
    int64_t end = now_ns() + SPIN_NS;
    for (int k = 1;; k++) {
        if (atomic_load(&p->gen) != seen) return true;
        CPU_RELAX();
        if (k % YIELD_POLLS == 0) {
            if (now_ns() > end) return false;
            sched_yield();
        }
    }
}

static void *helper(void *arg) {
    at_pool *p = arg;
    uint64_t seen = 0;
    for (;;) {
        spin_for_run(p, seen);
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->gen) == seen && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = atomic_load(&p->gen);
        p->active++;
        pthread_mutex_unlock(&p->mu);
        claim_all(p);
        pthread_mutex_lock(&p->mu);
        p->active--;
        pthread_mutex_unlock(&p->mu);
    }
}

at_pool *at_pool_new(int helpers) {
    if (helpers < 1) return NULL;
    at_pool *p = aligned_alloc(64, (sizeof(at_pool) + 63) / 64 * 64);
    if (p) memset(p, 0, sizeof *p);
    if (!p) return NULL;
    p->th = calloc((size_t)helpers, sizeof *p->th);
    if (!p->th || pthread_mutex_init(&p->mu, NULL)) {
        free(p->th);
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->cv, NULL)) {
        pthread_mutex_destroy(&p->mu);
        free(p->th);
        free(p);
        return NULL;
    }
    atomic_init(&p->gen, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    for (int i = 0; i < helpers; i++) {
        if (pthread_create(&p->th[i], NULL, helper, p)) break;
        p->n_threads++;
    }
    if (p->n_threads < helpers) { /* some would not start: none rather than fewer */
        at_pool_free(p);
        return NULL;
    }
    return p;
}

int at_pool_threads(const at_pool *p) {
    return p ? p->n_threads + 1 : 1;
}

void at_pool_free(at_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->th[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->th);
    free(p);
}

void at_pool_run(at_pool *p, int64_t n, void (*fn)(void *arg, int64_t i), void *arg) {
    if (!p || n < 2) {
        for (int64_t i = 0; i < n; i++) fn(arg, i);
        return;
    }
    pthread_mutex_lock(&p->mu);
    while (p->active) { /* a helper still leaving the last run */
        pthread_mutex_unlock(&p->mu);
        CPU_RELAX();
        pthread_mutex_lock(&p->mu);
    }
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    atomic_store(&p->next, 0);
    atomic_store(&p->done, 0);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    claim_all(p);
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n) CPU_RELAX();
}
