// Kernels timed by bench_emu.cpp (emulated builds only): launch overhead, block barriers, a shared-memory
// tiled SGEMM and a warp-shuffle block reduction.
#include "bench/emu_kernels.h"
#include "kernels/cuda/common.cuh"

namespace se::bench {
namespace {

constexpr int kTile = 16;
constexpr unsigned kFullMask = 0xffffffffu;

__global__ void empty_kernel() {}

__global__ void barriers_kernel(int barriers) {
  for (int i = 0; i < barriers; ++i) __syncthreads();
}

__global__ void sgemm_tiled_kernel(const float* a, const float* b, float* c, int n) {
  alignas(16) __shared__ float a_tile[kTile][kTile];
  alignas(16) __shared__ float b_tile[kTile][kTile];
  const int row = static_cast<int>(blockIdx.y * kTile + threadIdx.y);
  const int col = static_cast<int>(blockIdx.x * kTile + threadIdx.x);
  float sum = 0.0f;
  for (int k0 = 0; k0 < n; k0 += kTile) {
    const int ak = k0 + static_cast<int>(threadIdx.x);
    const int bk = k0 + static_cast<int>(threadIdx.y);
    a_tile[threadIdx.y][threadIdx.x] = row < n && ak < n ? a[row * n + ak] : 0.0f;
    b_tile[threadIdx.y][threadIdx.x] = bk < n && col < n ? b[bk * n + col] : 0.0f;
    __syncthreads();
    for (int kk = 0; kk < kTile; ++kk) sum += a_tile[threadIdx.y][kk] * b_tile[kk][threadIdx.x];
    __syncthreads();
  }
  if (row < n && col < n) c[row * n + col] = sum;
}

__device__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(kFullMask, value, offset);
  return value;
}

__global__ void shuffle_block_sum_kernel(const float* in, float* sums) {
  alignas(16) __shared__ float warp_sums[32];
  const unsigned lane = threadIdx.x % 32;
  const unsigned warp = threadIdx.x / 32;
  const float value = warp_sum(in[blockIdx.x * blockDim.x + threadIdx.x]);
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  if (warp == 0) {
    const float total = warp_sum(lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f);
    if (lane == 0) sums[blockIdx.x] = total;
  }
}

}  // namespace

void emu_launch_empty(unsigned blocks, unsigned threads) {
  SE_LAUNCH(empty_kernel, blocks, threads, 0, nullptr);
}

void emu_launch_barriers(unsigned threads, int barriers) {
  SE_LAUNCH(barriers_kernel, 1, threads, 0, nullptr, barriers);
}

void emu_sgemm_tiled(const float* a, const float* b, float* c, int n) {
  const unsigned tiles = static_cast<unsigned>((n + kTile - 1) / kTile);
  SE_LAUNCH(sgemm_tiled_kernel, dim3(tiles, tiles), dim3(kTile, kTile), 0, nullptr, a, b, c, n);
}

void emu_shuffle_block_sum(const float* in, float* sums, unsigned blocks, unsigned threads) {
  SE_LAUNCH(shuffle_block_sum_kernel, blocks, threads, 0, nullptr, in, sums);
}

}  // namespace se::bench
