/* Sums over a row in AT_LANES running float lanes, added in double at the end: a loop with one
 * accumulator is a chain of dependent adds (4 cycles an element) that the compiler may not
 * reorder in ISO C; independent lanes vectorize. For rows of up to a few thousand elements,
 * where each lane adds few enough terms for float. Internal to the ops. */
#ifndef ATTUNE_OPS_LANES_H
#define ATTUNE_OPS_LANES_H

#include <stdint.h>

#define AT_LANES 16

/* sum of x[0..n) */
static inline double at_lanes_sum(const float *x, int64_t n) {
    float acc[AT_LANES] = {0};
    int64_t j = 0;
    for (; j + AT_LANES <= n; j += AT_LANES)
        for (int l = 0; l < AT_LANES; l++) acc[l] += x[j + l];
    double s = 0;
    for (int l = 0; l < AT_LANES; l++) s += acc[l];
    for (; j < n; j++) s += x[j];
    return s;
}

/* sum of (x[j] - c)^2 over x[0..n) */
static inline double at_lanes_sumsq_dev(const float *x, int64_t n, float c) {
    float acc[AT_LANES] = {0};
    int64_t j = 0;
    for (; j + AT_LANES <= n; j += AT_LANES)
        for (int l = 0; l < AT_LANES; l++) {
            float d = x[j + l] - c;
            acc[l] += d * d;
        }
    double s = 0;
    for (int l = 0; l < AT_LANES; l++) s += acc[l];
    for (; j < n; j++) {
        float d = x[j] - c;
        s += (double)d * d;
    }
    return s;
}

/* dot product of a[0..n) and b[0..n) */
static inline float at_lanes_dot(const float *a, const float *b, int64_t n) {
    float acc[AT_LANES] = {0};
    int64_t j = 0;
    for (; j + AT_LANES <= n; j += AT_LANES)
        for (int l = 0; l < AT_LANES; l++) acc[l] += a[j + l] * b[j + l];
    float s = 0;
    for (int l = 0; l < AT_LANES; l++) s += acc[l];
    for (; j < n; j++) s += a[j] * b[j];
    return s;
}

#endif
