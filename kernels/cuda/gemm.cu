// CUDA GEMM: a shared-memory tiled kernel with register blocking for f32 (128 x 128 x 8 block tile,
// 8 x 8 outputs per thread) and f64 (64 x 64 x 8, 4 x 4), and a tensor-core kernel (nvcuda::wmma
// 16 x 16 x 16, f32 accumulate) for f16/bf16. Transposes are absorbed by the tile loaders; batch
// items run along gridDim.z. Built by nvcc and by the emulator from this one source (DESIGN.md rules).
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/wmma_tile.cuh"
#include "kernels/gemm.h"

namespace se::kernels::cuda {
namespace {

// Passed by value to the kernels.
struct GemmArgs {
  int64_t m, n, k;
  int64_t lda, ldb, ldc;
  int64_t stride_a, stride_b, stride_c;
  int64_t batch;
  float alpha, beta;
  bool trans_a, trans_b;
  bool vec_a, vec_b;  // A / B allow 16-byte loads: f32, 16-byte aligned base, ld and batch stride % 4 == 0
};

constexpr unsigned int kMaxGridYZ = 65535;

// Copies op(X)[row0:row0+ROWS, k0:k0+BK] into s, k-major: s[p * ROWS + r]; zero outside the matrix.
// k_contig: element (r, p) is at x[r * ld + p], else at x[p * ld + r]. Consecutive threads read
// consecutive addresses in both cases.
template <typename T, int ROWS, int BK, int THREADS>
__device__ void load_tile(T* s, const T* x, int64_t ld, bool k_contig, int64_t row0, int64_t rows, int64_t k0,
                          int64_t k, bool vec) {
  const int tid = static_cast<int>(threadIdx.x);
  if constexpr (std::is_same_v<T, float>) {
    if (vec && row0 + ROWS <= rows && k0 + BK <= k) {  // interior tile: float4 loads
      for (int e = tid; e < ROWS * BK / 4; e += THREADS) {
        if (k_contig) {
          const int r = e / (BK / 4), p = (e % (BK / 4)) * 4;
          const float4 v = *reinterpret_cast<const float4*>(x + (row0 + r) * ld + k0 + p);
          s[(p + 0) * ROWS + r] = v.x;
          s[(p + 1) * ROWS + r] = v.y;
          s[(p + 2) * ROWS + r] = v.z;
          s[(p + 3) * ROWS + r] = v.w;
        } else {
          const int p = e / (ROWS / 4), r = (e % (ROWS / 4)) * 4;
          *reinterpret_cast<float4*>(s + p * ROWS + r) =
              *reinterpret_cast<const float4*>(x + (k0 + p) * ld + row0 + r);
        }
      }
      return;
    }
  }
  for (int e = tid; e < ROWS * BK; e += THREADS) {
    int r, p;
    if (k_contig) {
      r = e / BK;
      p = e % BK;
    } else {
      p = e / ROWS;
      r = e % ROWS;
    }
    const int64_t gr = row0 + r, gp = k0 + p;
    const bool inside = gr < rows && gp < k;
    s[p * ROWS + r] = inside ? x[k_contig ? gr * ld + gp : gp * ld + gr] : T(0);
  }
}

// Block tile BM x BN, k step BK; each of the (BM / TM) x (BN / TN) threads owns TM x TN outputs, taken in
// runs of 4 rows (columns) spaced so that a warp's shared-memory reads of one run are contiguous (no bank
// conflicts; nvcc turns each run into one 16-byte load).
template <int THREADS_ALONG>
__device__ inline int strided_index(int thread, int i) {
  return (i / 4) * THREADS_ALONG * 4 + thread * 4 + i % 4;
}

template <typename T, int BM, int BN, int BK, int TM, int TN>
__global__ void gemm_tiled_kernel(GemmArgs g, const T* a,  // (batch, m, k) or (batch, k, m) when trans_a
                                  const T* b,              // (batch, k, n) or (batch, n, k) when trans_b
                                  T* c) {                  // (batch, m, n)
  constexpr int kThreads = (BM / TM) * (BN / TN);
  static_assert(TM % 4 == 0 && TN % 4 == 0, "register tiles are taken in runs of 4");
  alignas(16) __shared__ T as[BK * BM];
  alignas(16) __shared__ T bs[BK * BN];
  const int tx = static_cast<int>(threadIdx.x) % (BN / TN);
  const int ty = static_cast<int>(threadIdx.x) / (BN / TN);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const T alpha = static_cast<T>(g.alpha), beta = static_cast<T>(g.beta);

  for (int64_t item = blockIdx.z; item < g.batch; item += gridDim.z) {
    const T* ab = a + item * g.stride_a;
    const T* bb = b + item * g.stride_b;
    T* cb = c + item * g.stride_c;
    T acc[TM][TN];
    for (int i = 0; i < TM; ++i) {
      for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
    }
    for (int64_t k0 = 0; k0 < g.k; k0 += BK) {
      load_tile<T, BM, BK, kThreads>(as, ab, g.lda, !g.trans_a, m0, g.m, k0, g.k, g.vec_a);
      load_tile<T, BN, BK, kThreads>(bs, bb, g.ldb, g.trans_b, n0, g.n, k0, g.k, g.vec_b);
      __syncthreads();
      for (int p = 0; p < BK; ++p) {
        T ar[TM], br[TN];
        for (int i = 0; i < TM; ++i) ar[i] = as[p * BM + strided_index<BM / TM>(ty, i)];
        for (int j = 0; j < TN; ++j) br[j] = bs[p * BN + strided_index<BN / TN>(tx, j)];
        for (int i = 0; i < TM; ++i) {
          for (int j = 0; j < TN; ++j) acc[i][j] += ar[i] * br[j];
        }
      }
      __syncthreads();  // the next k step overwrites the tiles
    }
    for (int i = 0; i < TM; ++i) {
      const int64_t row = m0 + strided_index<BM / TM>(ty, i);
      if (row >= g.m) continue;
      for (int j = 0; j < TN; ++j) {
        const int64_t col = n0 + strided_index<BN / TN>(tx, j);
        if (col >= g.n) continue;
        T* out = cb + row * g.ldc + col;
        *out = g.beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *out;
      }
    }
  }
}

__device__ inline float to_float(__half x) { return __half2float(x); }
__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T>
__device__ inline T from_float(float x);
template <>
__device__ inline __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Tensor cores for f16/bf16 (kernels/cuda/wmma_tile.cuh); the epilogue applies alpha, beta, the
// bounds and the conversion.
template <typename T>
__global__ void gemm_wmma_kernel(GemmArgs g, const T* a,  // (batch, m, k) or (batch, k, m) when trans_a
                                 const T* b,              // (batch, k, n) or (batch, n, k) when trans_b
                                 T* c) {                  // (batch, m, n)
  using namespace wmma_tile;
  alignas(32) __shared__ T as[kBM * kLdA];  // op(A) tile, row-major
  alignas(32) __shared__ T bs[kBK * kLdB];  // op(B) tile, row-major
  alignas(32) __shared__ float cs[kBM * kLdC];
  const int tid = static_cast<int>(threadIdx.x);
  const WarpCorner corner = warp_corner(tid);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const T zero = from_float<T>(0.0f);

  for (int64_t item = blockIdx.z; item < g.batch; item += gridDim.z) {
    const T* ab = a + item * g.stride_a;
    const T* bb = b + item * g.stride_b;
    T* cb = c + item * g.stride_c;
    Accumulators acc;
    clear(acc);
    for (int64_t k0 = 0; k0 < g.k; k0 += kBK) {
      for (int e = tid; e < kBM * kBK; e += kThreads) {
        int i, p;
        if (g.trans_a) {  // op(A)(i, p) = a[p * lda + i]
          p = e / kBM;
          i = e % kBM;
        } else {
          i = e / kBK;
          p = e % kBK;
        }
        const int64_t gi = m0 + i, gp = k0 + p;
        const bool inside = gi < g.m && gp < g.k;
        as[i * kLdA + p] = inside ? ab[g.trans_a ? gp * g.lda + gi : gi * g.lda + gp] : zero;
      }
      for (int e = tid; e < kBK * kBN; e += kThreads) {
        int p, j;
        if (g.trans_b) {  // op(B)(p, j) = b[j * ldb + p]
          j = e / kBK;
          p = e % kBK;
        } else {
          p = e / kBN;
          j = e % kBN;
        }
        const int64_t gp = k0 + p, gj = n0 + j;
        const bool inside = gp < g.k && gj < g.n;
        bs[p * kLdB + j] = inside ? bb[g.trans_b ? gj * g.ldb + gp : gp * g.ldb + gj] : zero;
      }
      __syncthreads();
      multiply_accumulate(acc, as, bs, corner);
      __syncthreads();  // the next k step overwrites the tiles
    }
    store(cs, acc, corner);
    __syncthreads();
    for (int e = tid; e < kBM * kBN; e += kThreads) {
      const int i = e / kBN, j = e % kBN;
      const int64_t row = m0 + i, col = n0 + j;
      if (row >= g.m || col >= g.n) continue;
      T* out = cb + row * g.ldc + col;
      float v = g.alpha * cs[i * kLdC + j];
      if (g.beta != 0.0f) v += g.beta * to_float(*out);
      *out = from_float<T>(v);
    }
    __syncthreads();  // the next batch item overwrites cs
  }
}

template __global__ void gemm_tiled_kernel<float, 128, 128, 8, 8, 8>(GemmArgs, const float*, const float*, float*);
template __global__ void gemm_tiled_kernel<double, 64, 64, 8, 4, 4>(GemmArgs, const double*, const double*,
                                                                     double*);
template __global__ void gemm_wmma_kernel<__half>(GemmArgs, const __half*, const __half*, __half*);
template __global__ void gemm_wmma_kernel<__nv_bfloat16>(GemmArgs, const __nv_bfloat16*, const __nv_bfloat16*,
                                                         __nv_bfloat16*);

dim3 gemm_grid(const GemmDesc& d, int bm, int bn) {
  const unsigned int grid_y = ceil_div(d.m, bm);
  SE_CHECK(grid_y <= kMaxGridYZ, "gemm: m = ", d.m, " needs ", grid_y, " row blocks (at most ", kMaxGridYZ, ")");
  const unsigned int grid_z = static_cast<unsigned int>(std::min<int64_t>(d.batch, kMaxGridYZ));
  return dim3(ceil_div(d.n, bn), grid_y, grid_z);
}

bool allows_vec4(const void* ptr, int64_t ld, int64_t stride) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && ld % 4 == 0 && stride % 4 == 0;
}

}  // namespace

void gemm(const GemmDesc& desc, const void* a, const void* b, void* c, Stream stream) {
  validate_gemm(desc);
  if (desc.batch == 0 || desc.m == 0 || desc.n == 0) return;
  SE_CHECK(c != nullptr, "gemm: C is null");
  SE_CHECK(desc.k == 0 || (a != nullptr && b != nullptr), "gemm: A or B is null");
  GemmArgs g{desc.m,        desc.n,        desc.k,        desc.lda,  desc.ldb,   desc.ldc,    desc.stride_a,
             desc.stride_b, desc.stride_c, desc.batch,    desc.alpha, desc.beta, desc.trans_a, desc.trans_b,
             false,         false};
  switch (desc.dtype) {
    case DType::f32: {
      g.vec_a = allows_vec4(a, desc.lda, desc.stride_a);
      g.vec_b = allows_vec4(b, desc.ldb, desc.stride_b);
      SE_LAUNCH((gemm_tiled_kernel<float, 128, 128, 8, 8, 8>), gemm_grid(desc, 128, 128), 256, 0, stream, g,
                static_cast<const float*>(a), static_cast<const float*>(b), static_cast<float*>(c));
      break;
    }
    case DType::f64:
      SE_LAUNCH((gemm_tiled_kernel<double, 64, 64, 8, 4, 4>), gemm_grid(desc, 64, 64), 256, 0, stream, g,
                static_cast<const double*>(a), static_cast<const double*>(b), static_cast<double*>(c));
      break;
    case DType::f16:
      SE_LAUNCH(gemm_wmma_kernel<__half>, gemm_grid(desc, wmma_tile::kBM, wmma_tile::kBN), wmma_tile::kThreads, 0,
                stream, g,
                static_cast<const __half*>(a), static_cast<const __half*>(b), static_cast<__half*>(c));
      break;
    case DType::bf16:
      SE_LAUNCH(gemm_wmma_kernel<__nv_bfloat16>, gemm_grid(desc, wmma_tile::kBM, wmma_tile::kBN),
                wmma_tile::kThreads, 0, stream, g,
                static_cast<const __nv_bfloat16*>(a), static_cast<const __nv_bfloat16*>(b),
                static_cast<__nv_bfloat16*>(c));
      break;
    default: SE_THROW("gemm: dtype ", dtype_name(desc.dtype), " is not supported");
  }
}

}  // namespace se::kernels::cuda
