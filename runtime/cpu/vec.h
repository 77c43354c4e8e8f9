/* CPU vector spans by instruction set: the baseline ones are defined by ops/elementwise.c
 * (ops/vmath.h at 16 bytes), the AVX2 + FMA ones by runtime/cpu/vec_avx2.c. Internal. */
#ifndef ATTUNE_RUNTIME_CPU_VEC_H
#define ATTUNE_RUNTIME_CPU_VEC_H

#include <stdbool.h>
#include <stdint.h>

/* Whether the *_avx2 spans may run here (the CPU has AVX2 and FMA, and this build compiled
 * them for it). Cached after the first call. */
bool at_cpu_avx2(void);
/* Whether this build compiled the *_avx512 spans for AVX-512 (GCC on x86); run them only where
 * at_cpu_avx512() (runtime/cpu/dropout_avx512.h) also holds. */
bool at_vec_avx512(void);
/* Whether this CPU has AVX-512F (runtime/cpu/dropout_avx512.c). Cached. */
bool at_cpu_avx512(void);

/* The widest build of span `name` (at_vm_gelu, ...) this CPU and build run. */
#define AT_VM_PICK(name)                                                                           \
    (at_vec_avx512() && at_cpu_avx512() ? name##_avx512 : at_cpu_avx2() ? name##_avx2 : name##_base)

#define AT_VM_DECLARE(SFX)                                                                         \
    void at_vm_gelu_##SFX(const float *x, float *y, int64_t n, bool approx);                       \
    void at_vm_tanh_##SFX(const float *x, float *y, int64_t n, bool approx);                       \
    void at_vm_sigmoid_##SFX(const float *x, float *y, int64_t n, bool approx);                    \
    void at_vm_exp_##SFX(const float *x, float *y, int64_t n, bool approx);                        \
    void at_vm_gelu_grad_##SFX(const float *dy, const float *x, float *dx, int64_t n, bool approx);
AT_VM_DECLARE(base)
AT_VM_DECLARE(avx2)
AT_VM_DECLARE(avx512)
#undef AT_VM_DECLARE

#endif
