// The CPU GEMM micro-kernels: AVX-512 (12 x 32), AVX2 + FMA (6 x 16) and portable C++ (f32 4 x 16,
// f64 4 x 8). The vector kernels carry __attribute__((target)) so this file builds without -march
// flags and the driver picks one at run time with __builtin_cpu_supports.
#include <immintrin.h>

#include "kernels/cpu/gemm_microkernels.h"

namespace se::kernels::cpu::detail {
namespace {

// Portable kernel: the accumulator array is small enough for the compiler to keep in vector registers.
template <typename Acc, int MR, int NR>
void microkernel_generic(int64_t kc, const Acc* __restrict ap, const Acc* __restrict bp, Acc* c, int64_t ldc,
                         Acc alpha, Acc beta, int mr, int nr) {
  Acc acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int i = 0; i < MR; ++i) {
      for (int j = 0; j < NR; ++j) acc[i][j] += ap[i] * bp[j];
    }
    ap += MR;
    bp += NR;
  }
  store_tile(&acc[0][0], NR, c, ldc, alpha, beta, mr, nr);
}

// AVX2 + FMA: 6 rows x 2 ymm = 12 accumulators, 2 B vectors and 1 broadcast: 15 of 16 ymm registers.
constexpr int kAvx2Mr = 6;
constexpr int kAvx2Nr = 16;

__attribute__((target("avx2,fma"))) void microkernel_avx2(int64_t kc, const float* __restrict ap,
                                                           const float* __restrict bp, float* c, int64_t ldc,
                                                           float alpha, float beta, int mr, int nr) {
  __m256 acc[kAvx2Mr][2];
#pragma GCC unroll 6
  for (int i = 0; i < kAvx2Mr; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(bp);
    const __m256 b1 = _mm256_load_ps(bp + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kAvx2Mr; ++i) {
      const __m256 a = _mm256_broadcast_ss(ap + i);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
    ap += kAvx2Mr;
    bp += kAvx2Nr;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (mr == kAvx2Mr && nr == kAvx2Nr) {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < kAvx2Mr; ++i) {
      float* row = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(va, acc[i][0]);
      __m256 r1 = _mm256_mul_ps(va, acc[i][1]);
      if (beta != 0.0f) {
        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row + 8), r1);
      }
      _mm256_storeu_ps(row, r0);
      _mm256_storeu_ps(row + 8, r1);
    }
    return;
  }
  alignas(32) float tile[kAvx2Mr * kAvx2Nr];
  for (int i = 0; i < kAvx2Mr; ++i) {
    _mm256_store_ps(tile + i * kAvx2Nr, acc[i][0]);
    _mm256_store_ps(tile + i * kAvx2Nr + 8, acc[i][1]);
  }
  store_tile(tile, kAvx2Nr, c, ldc, alpha, beta, mr, nr);
}

// AVX-512: 12 rows x 2 zmm = 24 accumulators, 2 B vectors and broadcasts: 27 of 32 zmm registers.
// Zen 4 runs a 512-bit FMA as two 256-bit halves, so the peak equals AVX2's, but half the
// instructions leave more room for the loads.
constexpr int kAvx512Mr = 12;
constexpr int kAvx512Nr = 32;

__attribute__((target("avx512f"))) void microkernel_avx512(int64_t kc, const float* __restrict ap,
                                                            const float* __restrict bp, float* c, int64_t ldc,
                                                            float alpha, float beta, int mr, int nr) {
  __m512 acc[kAvx512Mr][2];
#pragma GCC unroll 12
  for (int i = 0; i < kAvx512Mr; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(bp);
    const __m512 b1 = _mm512_load_ps(bp + 16);
#pragma GCC unroll 12
    for (int i = 0; i < kAvx512Mr; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i]);
      acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
    }
    ap += kAvx512Mr;
    bp += kAvx512Nr;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (mr == kAvx512Mr && nr == kAvx512Nr) {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < kAvx512Mr; ++i) {
      float* row = c + i * ldc;
      __m512 r0 = _mm512_mul_ps(va, acc[i][0]);
      __m512 r1 = _mm512_mul_ps(va, acc[i][1]);
      if (beta != 0.0f) {
        r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(row), r0);
        r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(row + 16), r1);
      }
      _mm512_storeu_ps(row, r0);
      _mm512_storeu_ps(row + 16, r1);
    }
    return;
  }
  alignas(64) float tile[kAvx512Mr * kAvx512Nr];
  for (int i = 0; i < kAvx512Mr; ++i) {
    _mm512_store_ps(tile + i * kAvx512Nr, acc[i][0]);
    _mm512_store_ps(tile + i * kAvx512Nr + 16, acc[i][1]);
  }
  store_tile(tile, kAvx512Nr, c, ldc, alpha, beta, mr, nr);
}

}  // namespace

GemmKernel<float> f32_kernel(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::avx512: return {microkernel_avx512, kAvx512Mr, kAvx512Nr, 192, 256, 4096};
    case GemmIsa::avx2: return {microkernel_avx2, kAvx2Mr, kAvx2Nr, 192, 256, 4096};
    case GemmIsa::generic: return {microkernel_generic<float, 4, 16>, 4, 16, 128, 256, 4096};
  }
  SE_THROW("gemm: unknown micro-kernel ISA ", static_cast<int>(isa));
}

GemmKernel<double> f64_kernel() { return {microkernel_generic<double, 4, 8>, 4, 8, 96, 256, 2048}; }

}  // namespace se::kernels::cpu::detail
