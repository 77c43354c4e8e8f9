/* GEMM against a weight packed once: for a few rows (batch-1 inference: T rows through each
 * weight) the cost of a BLAS call is packing the weight on every call; a plan packs a weight
 * that no node updates once, into panels of at_gemm_pack_nr() columns stored k-major, so the
 * kernel streams it front to back. Internal. */
#ifndef ATTUNE_RUNTIME_CPU_GEMM_PACKED_H
#define ATTUNE_RUNTIME_CPU_GEMM_PACKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/cpu/pool.h"

/* Panel width in columns of the kernel this CPU runs (32 with AVX-512, 16 with AVX2 + FMA), or
 * 0 when it has neither (callers then keep to BLAS). Cached after the first call. */
int at_gemm_pack_nr(void);

/* Floats a packed [K, N] weight takes (N rounded up to whole panels). */
size_t at_gemm_pack_floats(int64_t K, int64_t N);

/* Packs op(B) (B is [K, N] row-major, or [N, K] when trans) into dst, 64-byte aligned and of
 * at_gemm_pack_floats(K, N) floats; the last panel's missing columns are zeros. Needs
 * at_gemm_pack_nr() > 0. */
void at_gemm_pack(const float *B, int64_t K, int64_t N, bool trans, float *dst);

/* C[M, N] = alpha A[M, K] Bp + (beta ? C : 0) + bias, beta 0 or 1, A row-major with leading
 * dim lda, C with ldc, bias (NULL: none) a row added to every row, padded with zeros to whole
 * panels; the pool's threads (NULL: the caller alone) take whole panels when the product is
 * large enough. Sums run over k in order, one FMA a step, so the result does not depend on the
 * threads; with alpha 1 and a bias, each output is the same float sum as a separate Add's. */
void at_gemm_packed(at_pool *pool, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *Bp, bool beta, const float *bias, float *C,
                    int64_t ldc);

#endif
