/* Vector math for the transcendental activations, included once per instruction set: by
 * ops/elementwise.c at the baseline ISA (VM_BYTES 16: SSE2 on x86-64) and by
 * runtime/cpu/vec_avx2.c under an AVX2 + FMA target (VM_BYTES 32). Each inclusion defines
 * the span functions VM_FN(name); the including file picks the one the CPU runs.
 *
 * glibc's tanhf, erff and expf are scalar calls, so a loop over them never vectorizes; they
 * were the largest cost outside BLAS in a training step (tanh of the additive attention's
 * [B,T,T,a] energies). These branch-free forms use GCC/Clang vector extensions. Against
 * double precision on a dense grid: tanh and erf (Eigen's rational approximations on a
 * clamped input) within 4.5e-7 absolute, exp (Cephes' expf) within 1e-7 relative. NaN stays
 * NaN. No include guard: meant to be included again under another VM_BYTES. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#ifndef VM_BYTES
#error "define VM_BYTES (vector bytes) and VM_FN(name) before including ops/vmath.h"
#endif

typedef float vf __attribute__((vector_size(VM_BYTES)));
typedef int32_t vi __attribute__((vector_size(VM_BYTES)));
enum { VL = (int)(sizeof(vf) / sizeof(float)) };

static inline vf vsplat(float a) {
    return (vf){0} + a;
}
static inline vi visplat(int32_t a) {
    return (vi){0} + a;
}
static inline vf vsel(vi m, vf a, vf b) { /* m ? a : b, lane by lane (m all ones or zeros) */
    return (vf)((m & (vi)a) | (~m & (vi)b));
}
static inline vf vabs(vf x) {
    return (vf)((vi)x & visplat(0x7fffffff));
}
/* x clamped to [lo, hi]; comparisons are false for NaN, which passes through. */
static inline vf vclamp(vf x, float lo, float hi) {
    x = vsel(x > vsplat(hi), vsplat(hi), x);
    return vsel(x < vsplat(lo), vsplat(lo), x);
}

static inline vf vtanh(vf x) {
    /* Beyond +-7.9053 the rational is exactly +-1 in float. */
    vf c = vclamp(x, -7.90531110763549805f, 7.90531110763549805f), x2 = c * c;
    vf p = vsplat(-2.76076847742355e-16f);
    p = p * x2 + vsplat(2.00018790482477e-13f);
    p = p * x2 + vsplat(-8.60467152213735e-11f);
    p = p * x2 + vsplat(5.12229709037114e-08f);
    p = p * x2 + vsplat(1.48572235717979e-05f);
    p = p * x2 + vsplat(6.37261928875436e-04f);
    p = p * x2 + vsplat(4.89352455891786e-03f);
    vf q = vsplat(1.19825839466702e-06f);
    q = q * x2 + vsplat(1.18534705686654e-04f);
    q = q * x2 + vsplat(2.26843463243900e-03f);
    q = q * x2 + vsplat(4.89352518554385e-03f);
    return vsel(vabs(x) < vsplat(0.0004f), x, p * c / q);
}

static inline vf verf(vf x) {
    vf c = vclamp(x, -4.0f, 4.0f), x2 = c * c; /* erf(4) is 1 in float */
    vf p = vsplat(-2.72614225801306e-10f);
    p = p * x2 + vsplat(2.77068142495902e-08f);
    p = p * x2 + vsplat(-2.10102402082508e-06f);
    p = p * x2 + vsplat(-5.69250639462346e-05f);
    p = p * x2 + vsplat(-7.34990630326855e-04f);
    p = p * x2 + vsplat(-2.95459980854025e-03f);
    p = p * x2 + vsplat(-1.60960333262415e-02f);
    vf q = vsplat(-1.45660718464996e-05f);
    q = q * x2 + vsplat(-2.13374055278905e-04f);
    q = q * x2 + vsplat(-1.68282697438203e-03f);
    q = q * x2 + vsplat(-7.37332916720468e-03f);
    q = q * x2 + vsplat(-1.42647390514189e-02f);
    return p * c / q;
}

static inline vf vexp(vf x) {
    const float hi = 88.72283935546875f, lo = -87.33654475f; /* lo: 2^n stays normal */
    vf c = vclamp(x, lo, hi);
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick (no rounding call), r = x - n ln 2 in two
     * parts, e^r by a degree-6 polynomial, 2^n built in the exponent bits. */
    const float magic = 12582912.0f;
    vf t = c * vsplat(1.44269504088896341f) + vsplat(magic), n = t - vsplat(magic);
    vf r = c - n * vsplat(0.693359375f);
    r = r - n * vsplat(-2.12194440e-4f);
    vf p = vsplat(1.9875691500e-4f);
    p = p * r + vsplat(1.3981999507e-3f);
    p = p * r + vsplat(8.3334519073e-3f);
    p = p * r + vsplat(4.1665795894e-2f);
    p = p * r + vsplat(1.6666665459e-1f);
    p = p * r + vsplat(5.0000001201e-1f);
    p = p * r * r + r + vsplat(1.0f);
    const int32_t bias = 0x4B400000 - 127; /* magic's bits, less the exponent bias */
    vi e = ((vi)t - visplat(bias)) << 23;
    vf y = p * (vf)e;
    y = vsel(x > vsplat(hi), vsplat(INFINITY), y);
    return vsel(x < vsplat(lo), vsplat(0.0f), y);
}

static inline vf vsigmoid(vf x) {
    /* e^-|x| never overflows; 1 / (1 + e) or e / (1 + e) by the sign keeps relative accuracy
     * in both tails. */
    vf e = vexp(-vabs(x));
    return vsel(x >= vsplat(0.0f), vsplat(1.0f), e) / (vsplat(1.0f) + e);
}

#ifndef GELU_K
#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#endif

/* Gelu with ONNX's approximate = "none" (erf) or "tanh". */
static inline vf vgelu(vf x, bool approx) {
    if (approx)
        return vsplat(0.5f) * x *
               (vsplat(1.0f) + vtanh(vsplat(GELU_K) * (x + vsplat(0.044715f) * x * x * x)));
    return vsplat(0.5f) * x * (vsplat(1.0f) + verf(x * vsplat(0.70710678118654752f)));
}

static inline vf vgelu_grad(vf x, bool approx) {
    if (approx) {
        vf t = vtanh(vsplat(GELU_K) * (x + vsplat(0.044715f) * x * x * x));
        vf du = vsplat(GELU_K) * (vsplat(1.0f) + vsplat(3.0f * 0.044715f) * x * x);
        return vsplat(0.5f) * (vsplat(1.0f) + t) + vsplat(0.5f) * x * (vsplat(1.0f) - t * t) * du;
    }
    vf cdf = vsplat(0.5f) * (vsplat(1.0f) + verf(x * vsplat(0.70710678118654752f)));
    vf pdf = vsplat(0.3989422804014327f) * vexp(vsplat(-0.5f) * x * x);
    return cdf + x * pdf;
}

/* Loads up to VL floats (the rest zero) and stores the first m lanes back. */
static inline vf vload(const float *p, int64_t m) {
    vf v = vsplat(0.0f);
    memcpy(&v, p, (size_t)m * sizeof(float));
    return v;
}

/* y[i] = VEXPR(x[i]) over n elements, VL lanes at a time; y == x is fine. */
#define VM_SPAN1(NAME, VEXPR)                                                                      \
    void VM_FN(NAME)(const float *X, float *Y, int64_t n, bool approx) {                           \
        (void)approx;                                                                              \
        int64_t i = 0;                                                                             \
        for (; i + VL <= n; i += VL) {                                                             \
            vf x;                                                                                  \
            memcpy(&x, X + i, sizeof x);                                                           \
            vf y = (VEXPR);                                                                        \
            memcpy(Y + i, &y, sizeof y);                                                           \
        }                                                                                          \
        if (i < n) {                                                                               \
            vf x = vload(X + i, n - i);                                                            \
            vf y = (VEXPR);                                                                        \
            memcpy(Y + i, &y, (size_t)(n - i) * sizeof(float));                                    \
        }                                                                                          \
    }

VM_SPAN1(at_vm_gelu, vgelu(x, approx))
VM_SPAN1(at_vm_tanh, vtanh(x))
VM_SPAN1(at_vm_sigmoid, vsigmoid(x))
VM_SPAN1(at_vm_exp, vexp(x))

/* dx[i] = dy[i] gelu'(x[i]). */
void VM_FN(at_vm_gelu_grad)(const float *D, const float *S, float *Y, int64_t n, bool approx) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        vf d, x;
        memcpy(&d, D + i, sizeof d);
        memcpy(&x, S + i, sizeof x);
        vf y = d * vgelu_grad(x, approx);
        memcpy(Y + i, &y, sizeof y);
    }
    if (i < n) {
        vf y = vload(D + i, n - i) * vgelu_grad(vload(S + i, n - i), approx);
        memcpy(Y + i, &y, (size_t)(n - i) * sizeof(float));
    }
}
