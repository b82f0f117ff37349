// The implicit-GEMM block kernels behind CUDA Conv2d (conv.cu for NCHW, conv_channels_last.cu for
// NHWC). A problem P describes one pass as C(g)[m, n] = sum_k A(g)[m, k] * B(g)[k, n] per group g,
// and supplies the operands element by element, computing the im2col / col2im addresses on the fly:
//   using Element (the tensors' type), Acc (f32, or f64 for f64);
//   kAAlongK / kBAlongK: whether A / B are contiguous in memory along k (the tile loaders then put
//     consecutive threads along k, otherwise along m / n, so that a warp's loads coalesce);
//   kMAlongGridX: m tiles along gridDim.x (2^31 - 1 tiles) rather than y (65535), for m = pixels;
//   s (ConvArgs), m(), n(), k(), a(g, m, k), b(g, k, n), store(g, m, n, value).
// f32/f64: a shared-memory tiled kernel (64 x 64 block tile, k step 16, 4 x 4 outputs per thread).
// f16/bf16: tensor cores (nvcuda::wmma 16 x 16 x 16, f32 accumulate; 64 x 64 block tile, k step 32,
// four warps of 2 x 2 fragments), the same loaders filling half-precision tiles.
// Templates only: each .cu instantiates them for its own problems (DESIGN.md: explicit instantiation).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/conv.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/wmma_tile.cuh"

namespace se::kernels::cuda::conv_gemm {

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// The descriptor as the kernels see it, passed by value.
struct ConvArgs {
  int64_t n, c_in, h, w, c_out;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t groups, cg, og;  // cg, og: input and output channels per group
  int64_t oh, ow;
  int64_t k;           // cg * kh * kw
  ConvActivation act;  // the forward's fused epilogue
};

inline ConvArgs conv_args(const Conv2dDesc& d) {
  return {d.n,
          d.c_in,
          d.h,
          d.w,
          d.c_out,
          d.kernel_h,
          d.kernel_w,
          d.stride_h,
          d.stride_w,
          d.pad_h,
          d.pad_w,
          d.dilation_h,
          d.dilation_w,
          d.groups,
          d.c_in / d.groups,
          d.c_out / d.groups,
          conv2d_output_h(d),
          conv2d_output_w(d),
          d.c_in / d.groups * d.kernel_h * d.kernel_w,
          d.activation};
}

constexpr int kBM = 64, kBN = 64, kBK = 16, kTM = 4, kTN = 4;
constexpr int kGemmThreads = (kBM / kTM) * (kBN / kTN);
constexpr unsigned int kMaxGridYZ = 65535;
static_assert(kBM == kConvWeightTile && kBN == kConvWeightTile && kMaxGridYZ == kConvMaxGridYZ,
              "kernels/conv.h sizes the backward weight's splits with these tiles");

// The block's tile corner: m tiles along x or y (P::kMAlongGridX), n tiles along the other.
template <typename P>
__device__ inline int64_t tile_m0() {
  return static_cast<int64_t>(P::kMAlongGridX ? blockIdx.x : blockIdx.y) * kBM;
}
template <typename P>
__device__ inline int64_t tile_n0() {
  return static_cast<int64_t>(P::kMAlongGridX ? blockIdx.y : blockIdx.x) * kBN;
}

// C(g)[m, n] = sum over k in this block's split of A(g)[m, k] * B(g)[k, n]; blockIdx.z = split * groups + g.
// Thread (ty, tx) owns rows ty + 16 i and columns tx + 16 j: a warp reads 16 consecutive shared words.
template <typename P>
__global__ void conv_gemm_kernel(P p, int64_t k_per_split) {
  using Acc = typename P::Acc;
  alignas(16) __shared__ Acc as[kBK * kBM];  // k-major
  alignas(16) __shared__ Acc bs[kBK * kBN];  // k-major
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % (kBN / kTN), ty = tid / (kBN / kTN);
  const int64_t g = blockIdx.z % p.s.groups;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z / p.s.groups) * k_per_split;
  const int64_t k_end = k_begin + k_per_split < p.k() ? k_begin + k_per_split : p.k();
  const int64_t m0 = tile_m0<P>(), n0 = tile_n0<P>();
  const int64_t m_size = p.m(), n_size = p.n();
  Acc acc[kTM][kTN];
  for (int i = 0; i < kTM; ++i) {
    for (int j = 0; j < kTN; ++j) acc[i][j] = Acc(0);
  }
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kBK) {
    for (int e = tid; e < kBK * kBM; e += kGemmThreads) {
      const int kk = P::kAAlongK ? e % kBK : e / kBM;
      const int mm = P::kAAlongK ? e / kBK : e % kBM;
      const int64_t gm = m0 + mm, gk = k0 + kk;
      as[kk * kBM + mm] = gm < m_size && gk < k_end ? p.a(g, gm, gk) : Acc(0);
    }
    for (int e = tid; e < kBK * kBN; e += kGemmThreads) {
      const int kk = P::kBAlongK ? e % kBK : e / kBN;
      const int nn = P::kBAlongK ? e / kBK : e % kBN;
      const int64_t gn = n0 + nn, gk = k0 + kk;
      bs[kk * kBN + nn] = gn < n_size && gk < k_end ? p.b(g, gk, gn) : Acc(0);
    }
    __syncthreads();
    for (int kk = 0; kk < kBK; ++kk) {
      Acc ar[kTM], br[kTN];
      for (int i = 0; i < kTM; ++i) ar[i] = as[kk * kBM + ty + i * (kBM / kTM)];
      for (int j = 0; j < kTN; ++j) br[j] = bs[kk * kBN + tx + j * (kBN / kTN)];
      for (int i = 0; i < kTM; ++i) {
        for (int j = 0; j < kTN; ++j) acc[i][j] += ar[i] * br[j];
      }
    }
    __syncthreads();  // the next k step overwrites the tiles
  }
  // Unrolled: a rolled loop (the epilogue's activation makes it long) would index acc at run time.
  SE_UNROLL
  for (int i = 0; i < kTM; ++i) {
    const int64_t row = m0 + ty + i * (kBM / kTM);
    SE_UNROLL
    for (int j = 0; j < kTN; ++j) {
      const int64_t col = n0 + tx + j * (kBN / kTN);
      if (row < m_size && col < n_size) p.store(g, row, col, acc[i][j]);
    }
  }
}

// The same implicit GEMM on tensor cores for f16/bf16 (kernels/cuda/wmma_tile.cuh): the loaders'
// values (exact in f32) go into half-precision tiles, and the epilogue rounds once per output as the
// f32 path does.
template <typename P>
__global__ void conv_wmma_kernel(P p, int64_t k_per_split) {
  namespace tile = wmma_tile;  // qualified: the f32 tile above has its own kBM and kBK
  using T = typename P::Element;
  alignas(32) __shared__ T as[tile::kBM * tile::kLdA];  // A tile, row-major (m, k)
  alignas(32) __shared__ T bs[tile::kBK * tile::kLdB];  // B tile, row-major (k, n)
  alignas(32) __shared__ float cs[tile::kBM * tile::kLdC];
  const int tid = static_cast<int>(threadIdx.x);
  const tile::WarpCorner corner = tile::warp_corner(tid);
  const int64_t g = blockIdx.z % p.s.groups;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z / p.s.groups) * k_per_split;
  const int64_t k_end = k_begin + k_per_split < p.k() ? k_begin + k_per_split : p.k();
  const int64_t m0 = tile_m0<P>(), n0 = tile_n0<P>();
  const int64_t m_size = p.m(), n_size = p.n();
  const T zero = static_cast<T>(0.0f);
  tile::Accumulators acc;
  tile::clear(acc);
  for (int64_t k0 = k_begin; k0 < k_end; k0 += tile::kBK) {
    for (int e = tid; e < tile::kBM * tile::kBK; e += tile::kThreads) {
      const int kk = P::kAAlongK ? e % tile::kBK : e / tile::kBM;
      const int mm = P::kAAlongK ? e / tile::kBK : e % tile::kBM;
      const int64_t gm = m0 + mm, gk = k0 + kk;
      as[mm * tile::kLdA + kk] = gm < m_size && gk < k_end ? static_cast<T>(p.a(g, gm, gk)) : zero;
    }
    for (int e = tid; e < tile::kBK * tile::kBN; e += tile::kThreads) {
      const int kk = P::kBAlongK ? e % tile::kBK : e / tile::kBN;
      const int nn = P::kBAlongK ? e / tile::kBK : e % tile::kBN;
      const int64_t gn = n0 + nn, gk = k0 + kk;
      bs[kk * tile::kLdB + nn] = gn < n_size && gk < k_end ? static_cast<T>(p.b(g, gk, gn)) : zero;
    }
    __syncthreads();
    tile::multiply_accumulate(acc, as, bs, corner);
    __syncthreads();  // the next k step overwrites the tiles
  }
  tile::store(cs, acc, corner);
  __syncthreads();
  for (int e = tid; e < tile::kBM * tile::kBN; e += tile::kThreads) {  // consecutive threads along n
    const int i = e / tile::kBN, j = e % tile::kBN;
    const int64_t row = m0 + i, col = n0 + j;
    if (row < m_size && col < n_size) p.store(g, row, col, cs[i * tile::kLdC + j]);
  }
}

template <typename T>
constexpr bool kUsesTensorCores = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

// Grid of the implicit GEMM with `splits` parts of K (times groups along z).
template <typename P>
void launch_gemm(const P& p, int64_t m, int64_t n, int64_t k, int64_t splits, Stream stream) {
  const unsigned int m_tiles = ceil_div(m, kBM), n_tiles = ceil_div(n, kBN);
  const unsigned int tiles_y = P::kMAlongGridX ? n_tiles : m_tiles;
  const int64_t grid_z = p.s.groups * splits;
  SE_CHECK(tiles_y <= kMaxGridYZ && grid_z <= kMaxGridYZ, "conv2d: a ", m, " x ", n, " GEMM with ", grid_z,
           " group splits exceeds the CUDA grid");
  const dim3 grid(P::kMAlongGridX ? m_tiles : n_tiles, tiles_y, static_cast<unsigned int>(grid_z));
  if constexpr (kUsesTensorCores<typename P::Element>) {
    static_assert(wmma_tile::kBM == kBM && wmma_tile::kBN == kBN, "one grid for both kernels");
    const int64_t k_per_split = ((k + splits - 1) / splits + wmma_tile::kBK - 1) / wmma_tile::kBK * wmma_tile::kBK;
    SE_LAUNCH(conv_wmma_kernel<P>, grid, wmma_tile::kThreads, 0, stream, p, k_per_split);
  } else {
    const int64_t k_per_split = ((k + splits - 1) / splits + kBK - 1) / kBK * kBK;
    SE_LAUNCH(conv_gemm_kernel<P>, grid, kGemmThreads, 0, stream, p, k_per_split);
  }
}

// Writes one weight-gradient value at `index` of dw: into the block's part of the partial sums when the
// pixels are split over blocks (f32, f64; kernels/conv.h, conv2d_backward_weight_splits), else into dw.
template <typename T, typename Acc>
__device__ inline void store_weight_gradient(T* dw, T* partials, const ConvArgs& s, int64_t index, Acc v) {
  if (partials == nullptr) {
    dw[index] = static_cast<T>(v);
    return;
  }
  const int64_t split = blockIdx.z / s.groups;
  partials[split * s.c_out * s.k + index] = static_cast<T>(v);
}

// Explicit instantiation of both block kernels for a problem template over the four element types.
#define SE_CONV_GEMM_INSTANTIATE_ALL(Problem)                                                      \
  template __global__ void conv_gemm::conv_gemm_kernel<Problem<float>>(Problem<float>, int64_t);   \
  template __global__ void conv_gemm::conv_gemm_kernel<Problem<double>>(Problem<double>, int64_t); \
  template __global__ void conv_gemm::conv_wmma_kernel<Problem<__half>>(Problem<__half>, int64_t); \
  template __global__ void conv_gemm::conv_wmma_kernel<Problem<__nv_bfloat16>>(Problem<__nv_bfloat16>, int64_t);

}  // namespace se::kernels::cuda::conv_gemm
