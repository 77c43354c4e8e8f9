/* ops/vmath.h's spans compiled for AVX2 + FMA (8 lanes instead of SSE2's 4), chosen at run
 * time by at_cpu_avx2, so the build keeps the baseline ISA and still runs anywhere. With
 * compilers other than GCC on x86 the spans are the baseline code again and at_cpu_avx2 is
 * false. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "runtime/cpu/vec.h"

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define AT_VEC_AVX2 1
/* Only the spans get the target: at_cpu_avx2 below must run on any CPU. */
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define VM_BYTES 32
#else
#define AT_VEC_AVX2 0
#define VM_BYTES    16
#endif
#define VM_FN(name) name##_avx2
#include "ops/vmath.h"
#if AT_VEC_AVX2
#pragma GCC pop_options
#endif

bool at_cpu_avx2(void) {
#if AT_VEC_AVX2
    static int cached = -1; /* a benign race: every thread computes the same answer */
    if (cached < 0) cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return cached;
#else
    return false;
#endif
}
