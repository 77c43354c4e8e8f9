/* The vector spans of ops/vmath.h per instruction set (baseline SSE2, AVX2, AVX-512) give the
 * same bits on the same inputs: a wide sweep, special values and every tail length, for each
 * function and both Gelu forms. Sets this CPU lacks are skipped, saying so. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "runtime/cpu/dropout_avx512.h"
#include "runtime/cpu/vec.h"

typedef void (*span_fn)(const float *x, float *y, int64_t n, bool approx);
typedef void (*grad_fn)(const float *dy, const float *x, float *dx, int64_t n, bool approx);

static int64_t bits_differ(const float *a, const float *b, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += memcmp(a + i, b + i, sizeof(float)) != 0;
    return bad;
}

static void compare(const char *isa, const char *name, span_fn base, span_fn wide, grad_fn gbase,
                    grad_fn gwide, const float *x, const float *dy, int64_t n, float *y0,
                    float *y1) {
    for (int approx = 0; approx < 2; approx++) {
        /* every length up to 70 (tails of every vector width), then the whole sweep */
        for (int64_t len = 1; len <= 70; len++) {
            if (base)
                base(x, y0, len, approx), wide(x, y1, len, approx);
            else
                gbase(dy, x, y0, len, approx), gwide(dy, x, y1, len, approx);
            CHECK(bits_differ(y0, y1, len) == 0, "%s %s approx %d: length %lld differs", isa, name,
                  approx, (long long)len);
        }
        if (base)
            base(x, y0, n, approx), wide(x, y1, n, approx);
        else
            gbase(dy, x, y0, n, approx), gwide(dy, x, y1, n, approx);
        int64_t bad = bits_differ(y0, y1, n);
        CHECK(bad == 0, "%s %s approx %d: %lld of %lld results differ from the baseline", isa, name,
              approx, (long long)bad, (long long)n);
    }
}

#define ALL(isa, SFX)                                                                              \
    do {                                                                                           \
        compare(isa, "gelu", at_vm_gelu_base, at_vm_gelu_##SFX, NULL, NULL, x, dy, n, y0, y1);     \
        compare(isa, "tanh", at_vm_tanh_base, at_vm_tanh_##SFX, NULL, NULL, x, dy, n, y0, y1);     \
        compare(isa, "sigmoid", at_vm_sigmoid_base, at_vm_sigmoid_##SFX, NULL, NULL, x, dy, n, y0, \
                y1);                                                                               \
        compare(isa, "exp", at_vm_exp_base, at_vm_exp_##SFX, NULL, NULL, x, dy, n, y0, y1);        \
        compare(isa, "gelu_grad", NULL, NULL, at_vm_gelu_grad_base, at_vm_gelu_grad_##SFX, x, dy,  \
                n, y0, y1);                                                                        \
    } while (0)

int main(void) {
    const int64_t sweep = 1 << 20;
    const float special[] = {0.0f,   -0.0f, INFINITY, -INFINITY, NAN,   1e-40f, -1e-40f, 88.7f,
                             -88.7f, 1e30f, -1e30f,   9.0f,      -9.0f, 15.0f,  -15.0f};
    const int64_t ns = (int64_t)(sizeof special / sizeof *special), n = sweep + ns;
    float *x = malloc(sizeof(float) * (size_t)n), *dy = malloc(sizeof(float) * (size_t)n);
    float *y0 = malloc(sizeof(float) * (size_t)n), *y1 = malloc(sizeof(float) * (size_t)n);
    if (!x || !dy || !y0 || !y1) return 1;
    for (int64_t i = 0; i < sweep; i++) {
        x[i] = -20.0f + 40.0f * (float)i / (float)sweep;
        dy[i] = 1.0f - 2.0f * (float)(i % 17) / 16.0f;
    }
    memcpy(x + sweep, special, sizeof special);
    for (int64_t i = sweep; i < n; i++) dy[i] = 0.5f;
    if (at_cpu_avx2())
        ALL("avx2", avx2);
    else
        printf("test_vec_isa: AVX2 + FMA not on this CPU: skipped\n");
    if (at_vec_avx512() && at_cpu_avx512())
        ALL("avx512", avx512);
    else
        printf("test_vec_isa: AVX-512 not on this CPU or build: skipped\n");
    free(x), free(dy), free(y0), free(y1);
    return check_done("test_vec_isa");
}
