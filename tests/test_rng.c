/* The counter-based generator: Random123 known answers, the documented stream layout
 * (which the CUDA kernels must reproduce), distribution moments, and independence from the
 * thread count. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "runtime/rng.h"

/* Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter, key, expected. */
static const uint32_t kat[3][10] = {
    {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
     0xa20bc7c6, 0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
     0x5001e420, 0x24126ea1},
};

static void test_kat(void) {
    for (int v = 0; v < 3; v++) {
        const uint32_t *r = kat[v];
        uint32_t out[4];
        at_philox4x32((at_philox_key){r[4], r[5]}, r[0], r[1], r[2], r[3], out);
        for (int j = 0; j < 4; j++)
            CHECK(out[j] == r[6 + j], "vector %d word %d: got %08x, want %08x", v, j, out[j],
                  r[6 + j]);
    }
}

/* The layout the CUDA side relies on: element i is word i & 3 of block i >> 2, counter words
 * 2 and 3 the step. */
static void test_layout(void) {
    at_philox_key key = at_rng_key(42, 7);
    uint64_t step = 0x0000000500000003ull;
    for (uint64_t j = 0; j < 64; j += 7) {
        uint64_t blk = j + 0x100000000ull; /* exercise the high counter word */
        uint32_t w[4];
        at_philox4x32(key, (uint32_t)blk, (uint32_t)(blk >> 32), 3, 5, w);
        for (int l = 0; l < 4; l++) {
            float want = (float)(w[l] >> 8) / 16777216.0f;
            float got = at_rng_uniform(key, step, blk * 4 + (uint64_t)l);
            CHECK(got == want, "block %llu lane %d: %.9g vs %.9g", (unsigned long long)blk, l, got,
                  want);
        }
    }
}

static void test_keys(void) {
    at_philox_key a = at_rng_key(1, 0), b = at_rng_key(1, 0), c = at_rng_key(1, 1),
                  d = at_rng_key(2, 0);
    CHECK(a.k0 == b.k0 && a.k1 == b.k1, "same seed and node give the same key");
    CHECK(a.k0 != c.k0 || a.k1 != c.k1, "another node gives another key");
    CHECK(a.k0 != d.k0 || a.k1 != d.k1, "another seed gives another key");
    /* seed and node must not simply add: (s, n + 1) and (s + 1, n) differ. */
    at_philox_key e = at_rng_key(3, 4), f = at_rng_key(4, 3);
    CHECK(e.k0 != f.k0 || e.k1 != f.k1, "seed and node are not interchangeable");
}

static void test_uniform_moments(void) {
    const int64_t n = 1 << 20;
    at_philox_key key = at_rng_key(1234, 3);
    double s = 0, s2 = 0, lag = 0;
    float lo = 1, hi = 0, prev = 0;
    int64_t below = 0;
    for (int64_t i = 0; i < n; i++) {
        float u = at_rng_uniform(key, 9, (uint64_t)i);
        s += u, s2 += (double)u * u;
        if (i) lag += ((double)u - 0.5) * ((double)prev - 0.5);
        prev = u;
        lo = u < lo ? u : lo, hi = u > hi ? u : hi;
        below += u < 0.2f;
    }
    double mean = s / n, var = s2 / n - mean * mean, corr = lag / (n - 1) / (1.0 / 12);
    /* 5 sigma: sd of the mean is sqrt(1/12 / n) ~ 2.8e-4, of the variance ~ 7e-5. */
    CHECK_NEAR(mean, 0.5, 1.5e-3);
    CHECK_NEAR(var, 1.0 / 12, 4e-4);
    CHECK_NEAR(corr, 0.0, 5e-3);
    CHECK(lo >= 0.0f && hi < 1.0f, "range [%g, %g]", lo, hi);
    CHECK_NEAR((double)below / n, 0.2, 2e-3);
}

static void test_steps_differ(void) {
    at_philox_key key = at_rng_key(5, 5);
    int same = 0, n = 4096;
    for (int i = 0; i < n; i++)
        same += at_rng_uniform(key, 0, (uint64_t)i) == at_rng_uniform(key, 1, (uint64_t)i);
    CHECK(same < 4, "%d of %d elements equal across steps", same, n);
    same = 0;
    at_philox_key other = at_rng_key(5, 6);
    for (int i = 0; i < n; i++)
        same += at_rng_uniform(key, 0, (uint64_t)i) == at_rng_uniform(other, 0, (uint64_t)i);
    CHECK(same < 4, "%d of %d elements equal across nodes", same, n);
}

static void test_normal_moments(void) {
    const int64_t n = 1 << 20;
    at_philox_key key = at_rng_key(99, 1);
    double s = 0, s2 = 0, s3 = 0, s4 = 0, pair = 0;
    int finite = 1;
    float prev = 0;
    for (int64_t i = 0; i < n; i++) {
        float z = at_rng_normal(key, 2, (uint64_t)i);
        if (!isfinite(z)) finite = 0;
        double d = z;
        s += d, s2 += d * d, s3 += d * d * d, s4 += d * d * d * d;
        /* the cosine and sine of one Box-Muller pair are uncorrelated */
        if (i & 1) pair += d * prev;
        prev = z;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    CHECK(finite, "every normal is finite");
    CHECK_NEAR(mean, 0.0, 5e-3);
    CHECK_NEAR(var, 1.0, 7e-3);
    CHECK_NEAR(s3 / n, 0.0, 1.5e-2);
    CHECK_NEAR(s4 / n, 3.0, 4e-2);
    CHECK_NEAR(pair / (n / 2), 0.0, 7e-3);
    /* normals and uniforms of one key and step are separate streams */
    double cross = 0;
    for (int64_t i = 0; i < 65536; i++)
        cross += at_rng_normal(key, 2, (uint64_t)i) * (at_rng_uniform(key, 2, (uint64_t)i) - 0.5);
    CHECK_NEAR(cross / 65536, 0.0, 6e-3);
}

static void test_threads(void) {
    const int n = 100003;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    CHECK(a && b && c, "allocation");
    if (!a || !b || !c) return;
    at_philox_key key = at_rng_key(77, 12);
    for (int i = 0; i < n; i++) a[i] = at_rng_uniform(key, 3, (uint64_t)i);
#pragma omp parallel for num_threads(2) schedule(static)
    for (int i = 0; i < n; i++) b[i] = at_rng_uniform(key, 3, (uint64_t)i);
#pragma omp parallel for num_threads(3) schedule(dynamic, 97)
    for (int i = 0; i < n; i++) c[i] = at_rng_uniform(key, 3, (uint64_t)i);
    CHECK(memcmp(a, b, n * sizeof *a) == 0, "2 threads give the serial stream");
    CHECK(memcmp(a, c, n * sizeof *a) == 0, "3 threads, dynamic schedule, give the serial stream");
    free(a), free(b), free(c);
}

int main(void) {
    test_kat();
    test_layout();
    test_keys();
    test_uniform_moments();
    test_steps_differ();
    test_normal_moments();
    test_threads();
    return check_done("test_rng");
}
