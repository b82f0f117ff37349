// The copies of the CPU conv's implicit GEMM (conv_im2col.h): the runs of a row of col, each a stretch of
// one input row or zeros. On small maps a run is a handful of values (8 x 8 maps: 8, or 7 beside the
// padding), so that what each run costs beyond its values is most of the time: in AVX-512, every run is
// one masked load and store per 16 values, zeros a load with an empty mask, without a branch on its
// length or kind. This file has no -march flags; the AVX-512 loop is picked at run time.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/conv_im2col.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace se::kernels::cpu::conv_gemm {
namespace {

template <int kBlock, typename T>
void copy_block(T* d, const T* s) {
  T block[kBlock];
  std::memcpy(block, s, sizeof(block));
  std::memcpy(d, block, sizeof(block));
}

// len values in blocks of 4 or 8, the last block overlapping the one before.
template <typename T>
void copy_values(T* d, const T* s, int64_t len) {
  if (len >= 8) {
    int64_t v = 0;
    for (; v + 8 <= len; v += 8) copy_block<8>(d + v, s + v);
    if (v < len) copy_block<8>(d + len - 8, s + len - 8);
  } else if (len >= 4) {
    copy_block<4>(d, s);
    copy_block<4>(d + len - 4, s + len - 4);
  } else {
    for (int64_t v = 0; v < len; ++v) d[v] = s[v];
  }
}

template <typename T>
void copy_runs_portable(const ColumnRun* run, const ColumnRun* end, const T* plane, T* dst) {
  static constexpr T kZeros[8] = {};
  for (; run != end; ++run) {
    T* d = dst + run->dst;
    if (run->src >= 0) {
      copy_values(d, plane + run->src, run->len);
    } else {
      for (int64_t v = 0; v < run->len; v += 8) copy_values(d + v, kZeros, std::min<int64_t>(run->len - v, 8));
    }
  }
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) void copy_runs_avx512(const ColumnRun* run, const ColumnRun* end,
                                                           const float* plane, float* dst) {
  for (; run != end; ++run) {
    float* d = dst + run->dst;
    const bool zeros = run->src < 0;
    const float* s = zeros ? d : plane + run->src;  // any address: an empty mask reads nothing
    int64_t v = 0;
    for (; v + 16 <= run->len; v += 16) {
      _mm512_storeu_ps(d + v, _mm512_maskz_loadu_ps(zeros ? 0 : 0xFFFF, s + v));
    }
    const __mmask16 tail = static_cast<__mmask16>((1u << (run->len - v)) - 1);
    _mm512_mask_storeu_ps(d + v, tail, _mm512_maskz_loadu_ps(zeros ? 0 : tail, s + v));
  }
}
#endif

}  // namespace

void copy_column_runs(const ColumnRun* run, const ColumnRun* end, const float* plane, float* dst) {
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) return copy_runs_avx512(run, end, plane, dst);
#endif
  copy_runs_portable(run, end, plane, dst);
}

void copy_column_runs(const ColumnRun* run, const ColumnRun* end, const double* plane, double* dst) {
  copy_runs_portable(run, end, plane, dst);
}

}  // namespace se::kernels::cpu::conv_gemm
