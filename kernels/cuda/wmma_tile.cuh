// The tensor-core block tile shared by the f16/bf16 GEMM (gemm.cu) and the implicit-GEMM convolution
// (conv.cu): a 64 x 64 output tile per block of four warps, each warp owning a 32 x 32 corner as 2 x 2
// nvcuda::wmma 16 x 16 x 16 accumulators in f32. The kernels fill row-major shared tiles of A (64 x 32)
// and B (32 x 64) their own way; the accumulators go back through shared memory for the epilogue,
// since their element layout is unspecified (DESIGN.md kernel rules).
#pragma once

#include <mma.h>

namespace se::kernels::cuda::wmma_tile {

constexpr int kBM = 64, kBN = 64, kBK = 32, kThreads = 128;
constexpr int kLdA = kBK + 8;  // padded rows against bank conflicts; multiples of 8 for wmma
constexpr int kLdB = kBN + 8;
constexpr int kLdC = kBN + 4;

struct Accumulators {
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> f[2][2];
};

// The warp's place in the block tile.
struct WarpCorner {
  int m, n;  // 0 or 1: rows m * 32.., columns n * 32..
};
__device__ inline WarpCorner warp_corner(int thread) { return {thread / 32 / 2, thread / 32 % 2}; }

__device__ inline void clear(Accumulators& acc) {
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) nvcuda::wmma::fill_fragment(acc.f[i][j], 0.0f);
  }
}

// acc += as (kBM x kBK, row-major, ld kLdA) x bs (kBK x kBN, row-major, ld kLdB) over the warp's corner.
template <typename T>
__device__ inline void multiply_accumulate(Accumulators& acc, const T* as, const T* bs, WarpCorner w) {
  namespace wmma = nvcuda::wmma;
  for (int kk = 0; kk < kBK; kk += 16) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
    for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], as + (w.m * 32 + i * 16) * kLdA + kk, kLdA);
    for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], bs + kk * kLdB + w.n * 32 + j * 16, kLdB);
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 2; ++j) wmma::mma_sync(acc.f[i][j], fa[i], fb[j], acc.f[i][j]);
    }
  }
}

// cs (kBM x kBN, row-major, ld kLdC) = the warp's corner of the accumulators.
__device__ inline void store(float* cs, const Accumulators& acc, WarpCorner w) {
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      nvcuda::wmma::store_matrix_sync(cs + (w.m * 32 + i * 16) * kLdC + w.n * 32 + j * 16, acc.f[i][j], kLdC,
                                      nvcuda::wmma::mem_row_major);
    }
  }
}

}  // namespace se::kernels::cuda::wmma_tile
