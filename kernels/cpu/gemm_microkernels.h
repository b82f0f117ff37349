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

// The micro-kernel reading either operand in place (gemm_microkernels.cpp): op(B)(p, j) = b[p * b_step + j]
// (a packed panel, b_step = NR, or a row-major B), and op(A)(i, p) = a[i * a_step + p] (GemmKernel::rows_of_a:
// whole MR rows of a row-major A, so mr == MR) or a[p * a_step + i] (columns_of_a: a packed panel, a_step = MR,
// or a transposed A). Stores C[0:mr, 0:nr] like MicroKernel and reads NR columns of B (past nr only in
// a zero-padded packed panel). A vector ISA's MicroKernel is its columns_of_a over packed panels, so both
// paths sum each output in one order and give the same bits.
template <typename Acc>
using InPlaceKernel = void (*)(int64_t kc, const Acc* a, int64_t a_step, const Acc* b, int64_t b_step, Acc* c,
                               int64_t ldc, Acc alpha, Acc beta, int mr, int nr);

// Register tile (mr x nr) and cache blocks: an (mc, kc) block of A stays in L2, a (kc, nc) block of B
// in L3, and one (kc, nr) micro-panel of B in L1 while the micro-panels of A stream past it.
template <typename Acc>
struct GemmKernel {
  MicroKernel<Acc> run = nullptr;
  int mr = 0, nr = 0;
  int64_t mc = 0, kc = 0, nc = 0;
  InPlaceKernel<Acc> rows_of_a = nullptr, columns_of_a = nullptr;  // null: operands are always packed
};

// The kernel of an ISA for a product of m rows (the row tile is picked to waste the fewest padded rows;
// every choice sums each output in the same order, so results do not depend on it).
GemmKernel<float> f32_kernel(GemmIsa isa, int64_t m);
GemmKernel<double> f64_kernel(GemmIsa isa, int64_t m);

// The dot-product kernel of C = A @ B^T when A (m, k) and B (n, k) are both contiguous along k and C is
// small (few outputs, long k: a shallow conv's weight gradient): no packing, each output is a dot product
// of two rows. One call adds (stores, unless `accumulate`), for i < rw and j < rv,
//   lanes[(i * lanes_ld + j) * L + l] += sum over p < kc, p % L == l, of w[i * ldw + p] * v[j * ldv + p]
// where w is DW rows (of A or of B), v is DN rows of the other, L the vector lanes; lanes is 64-byte
// aligned. Rows past rw (rv) repeat the last one and are not stored.
template <typename Acc>
using DotKernelFn = void (*)(int64_t kc, const Acc* w, int64_t ldw, int rw, const Acc* v, int64_t ldv, int rv,
                             bool accumulate, Acc* lanes, int64_t lanes_ld);

// sums[o] = the sum of the L lanes at lanes + o * L (64-byte aligned), in a fixed order, for o < count.
template <typename Acc>
using SumLanesFn = void (*)(const Acc* lanes, int64_t count, Acc* sums);

template <typename Acc>
struct DotKernel {
  DotKernelFn<Acc> run = nullptr;  // null: no such kernel for the ISA (the portable one)
  SumLanesFn<Acc> sum_lanes = nullptr;
  int dw = 0, dn = 0, lanes = 0;
  int64_t kc = 0;  // k block: DW rows of it stay in L1 while the DN-row groups of v pass
};

DotKernel<float> f32_dot_kernel(GemmIsa isa);
DotKernel<double> f64_dot_kernel(GemmIsa isa);

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
