/* The vector spans of ops/vmath.h at 64 bytes (AVX-512F), chosen at run time by at_cpu_avx512
 * (runtime/cpu/dropout_avx512.c), so the build keeps the baseline ISA and still runs anywhere.
 * With compilers other than GCC on x86 these are the baseline code again and never chosen. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "runtime/cpu/vec.h"

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define AT_VEC_AVX512 1
#pragma GCC push_options
#pragma GCC target("avx512f")
#define VM_BYTES 64
#else
#define AT_VEC_AVX512 0
#define VM_BYTES      16
#endif
#define VM_FN(name) name##_avx512
#include "ops/vmath.h"
#if AT_VEC_AVX512
#pragma GCC pop_options
#endif

bool at_vec_avx512(void) {
    return AT_VEC_AVX512;
}
