/* The index arithmetic of the 1-D convolution's im2col and col2im, shared by the CPU kernels
 * (ops/conv.c) and the CUDA kernels (ops/cuda/conv.cu) so that both read and write the same
 * input elements. Column entry (tap k, output o) reads input position o s + k d - pb, where s is
 * the stride, d the dilation and pb the leading padding; positions outside [0, L) are padding.
 * Internal. */
#ifndef ATTUNE_OPS_CONV_INDEX_H
#define ATTUNE_OPS_CONV_INDEX_H

#include <stdint.h>

#ifdef __CUDACC__
#define AT_CONV_HD __host__ __device__
#else
#define AT_CONV_HD
#endif

/* Tap k's offset: entry (k, o) reads position o s + at_conv_tap_off(k, ...). */
static inline AT_CONV_HD int64_t at_conv_tap_off(int64_t k, int64_t dil, int64_t pb) {
    return k * dil - pb;
}

/* The outputs o in [*o0, *o1) (within [0, Lo)) whose entry at tap offset off reads the input;
 * the others read padding. Splitting the range keeps the bounds test out of copy loops. */
static inline AT_CONV_HD void at_conv_valid_range(int64_t off, int64_t s, int64_t L, int64_t Lo,
                                                  int64_t *o0, int64_t *o1) {
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = L - off <= 0 ? 0 : (L - off + s - 1) / s;
    if (b > Lo) b = Lo;
    if (a > b) a = b;
    *o0 = a;
    *o1 = b;
}

/* The input position entry (k, o) reads, or -1 for padding (im2col's gather). */
static inline AT_CONV_HD int64_t at_conv_src(int64_t o, int64_t off, int64_t s, int64_t L) {
    int64_t l = o * s + off;
    return l >= 0 && l < L ? l : -1;
}

/* The output o whose entry at tap offset off reads input position l, or -1 when none does
 * (col2im's gather: dX[l] sums these entries over the taps). */
static inline AT_CONV_HD int64_t at_conv_dst(int64_t l, int64_t off, int64_t s, int64_t Lo) {
    int64_t num = l - off;
    if (num < 0 || num % s) return -1;
    return num / s < Lo ? num / s : -1;
}

#endif
