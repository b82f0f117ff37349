// Internal to the CPU GEMM: the register-blocked micro-kernels and their cache blocking.
// A micro-kernel computes one MR x NR tile of C from packed panels:
//   ap: (kc, MR) one micro-panel of op(A), k-major, rows past mr zero-filled
//   bp: (kc, NR) one micro-panel of op(B), k-major, columns past nr zero-filled
// and stores C[0:mr, 0:nr] = alpha * ap^T @ bp + beta * C (C is not read when beta == 0).
#pragma once

#include <cstdint>

#include "kernels/gemm.h"

namespace se::kernels::cpu::detail {

template <typename Acc>
using MicroKernel = void (*)(int64_t kc, const Acc* ap, const Acc* bp, Acc* c, int64_t ldc, Acc alpha, Acc beta,
                             int mr, int nr);

// Register tile (mr x nr) and cache blocks: an (mc, kc) block of A stays in L2, a (kc, nc) block of B
// in L3, and one (kc, nr) micro-panel of B in L1 while the micro-panels of A stream past it.
template <typename Acc>
struct GemmKernel {
  MicroKernel<Acc> run = nullptr;
  int mr = 0, nr = 0;
  int64_t mc = 0, kc = 0, nc = 0;
};

// The kernel of an ISA for a product of m rows (the row tile is picked to waste the fewest padded rows;
// every choice sums each output in the same order, so results do not depend on it).
GemmKernel<float> f32_kernel(GemmIsa isa, int64_t m);
GemmKernel<double> f64_kernel(GemmIsa isa, int64_t m);

// out[p * ld_out + r] = rows[r][p] for 8 rows r (row r at first + r * row_stride) and p < kb, by 8 x 8
// AVX register transposes; call only where gemm_isa_supported(GemmIsa::avx2).
void transpose_8_rows_avx2(const float* first, int64_t row_stride, int64_t kb, float* out, int64_t ld_out);

// Writes a finished tile (mr x nr of `tile`, row stride tile_ld) to C with alpha and beta.
template <typename Acc>
inline void store_tile(const Acc* tile, int tile_ld, Acc* c, int64_t ldc, Acc alpha, Acc beta, int mr, int nr) {
  for (int i = 0; i < mr; ++i) {
    Acc* c_row = c + i * ldc;
    const Acc* t_row = tile + i * tile_ld;
    if (beta == Acc(0)) {
      for (int j = 0; j < nr; ++j) c_row[j] = alpha * t_row[j];
    } else {
      for (int j = 0; j < nr; ++j) c_row[j] = alpha * t_row[j] + beta * c_row[j];
    }
  }
}

}  // namespace se::kernels::cpu::detail
