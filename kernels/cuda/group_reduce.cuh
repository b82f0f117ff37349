// Warp- and block-wide all-reductions of an arbitrary trivially copyable state with a combine
// function, used by the reduce and softmax kernels. Every participating thread gets the same bits:
// partners always combine (lower lanes, higher lanes) in that order.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/cuda/common.cuh"

namespace se::kernels::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// __shfl_xor_sync of any state whose size is a multiple of 4 bytes, one 32-bit word at a time.
template <typename S>
__device__ S shfl_xor_state(const S& s, int lane_mask) {
  static_assert(sizeof(S) % 4 == 0, "shuffled states must be a whole number of 32-bit words");
  constexpr int kWords = sizeof(S) / 4;
  uint32_t words[kWords];
  memcpy(words, &s, sizeof(S));
  for (int w = 0; w < kWords; ++w) words[w] = __shfl_xor_sync(kFullMask, words[w], lane_mask);
  S out;
  memcpy(&out, words, sizeof(S));
  return out;
}

// All 32 lanes of the warp must call this.
template <typename S, typename Combine>
__device__ S warp_allreduce(S s, Combine combine) {
  const int lane = threadIdx.x % 32;
  for (int offset = 1; offset < 32; offset *= 2) {
    S other = shfl_xor_state(s, offset);
    s = (lane & offset) ? combine(other, s) : combine(s, other);
  }
  return s;
}

// Every thread of the block must call this; blockDim.x is a multiple of 32 and at most 1024, and
// blockDim.y == blockDim.z == 1. `scratch` holds at least 32 states of shared memory; it may be reused
// right after the call returns.
template <typename S, typename Combine>
__device__ S block_allreduce(S s, Combine combine, S* scratch) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  s = warp_allreduce(s, combine);
  if (lane == 0) scratch[warp] = s;
  __syncthreads();
  S total = scratch[0];
  for (int w = 1; w < warps; ++w) total = combine(total, scratch[w]);
  __syncthreads();
  return total;
}

}  // namespace se::kernels::cuda
