// Test kernels for the emulator's warp collectives: shuffles, votes, reductions.
#include "tests/emu/device_array.cuh"
#include "tests/emu/emu_test_kernels.h"

namespace se::emu::test {
namespace {

constexpr unsigned kFull = 0xffffffffu;

__device__ long long warp_sum(long long value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(kFull, value, offset);
  return value;
}

__global__ void shuffle_block_sum_kernel(const int* in, long long* sums) {
  alignas(16) __shared__ long long warp_sums[32];
  const unsigned lane = threadIdx.x % 32;
  const unsigned warp = threadIdx.x / 32;
  const long long value = warp_sum(in[blockIdx.x * blockDim.x + threadIdx.x]);
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  if (warp == 0) {
    const long long total = warp_sum(lane < blockDim.x / 32 ? warp_sums[lane] : 0);
    if (lane == 0) sums[blockIdx.x] = total;
  }
}

// out[lane * 8 + i]: 0 shfl(src 3), 1 shfl(src lane+1, width 8), 2 up(1), 3 up(2, width 8), 4 down(1),
// 5 down(4, width 16), 6 xor(1), 7 xor(16, width 16). Lane values are lane * 10.
__global__ void shuffle_patterns_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x);
  const int v = lane * 10;
  int* o = out + lane * 8;
  o[0] = __shfl_sync(kFull, v, 3);
  o[1] = __shfl_sync(kFull, v, lane + 1, 8);
  o[2] = __shfl_up_sync(kFull, v, 1);
  o[3] = __shfl_up_sync(kFull, v, 2, 8);
  o[4] = __shfl_down_sync(kFull, v, 1);
  o[5] = __shfl_down_sync(kFull, v, 4, 16);
  o[6] = __shfl_xor_sync(kFull, v, 1);
  o[7] = __shfl_xor_sync(kFull, v, 16, 16);
}

__global__ void wide_shuffle_kernel(WideShuffle* out) {
  const int lane = static_cast<int>(threadIdx.x);
  const double d = lane + 0.25;
  const long long ll = (1ll << 40) + lane;
  const __half h = __float2half(static_cast<float>(lane));
  const __nv_bfloat16 bf = __float2bfloat16(static_cast<float>(lane) * 2.0f);
  out[lane].d = __shfl_xor_sync(kFull, d, 1);
  out[lane].ll = __shfl_xor_sync(kFull, ll, 1);
  out[lane].h = __half2float(__shfl_xor_sync(kFull, h, 1));
  out[lane].bf = __bfloat162float(__shfl_xor_sync(kFull, bf, 1));
}

// out[lane * 12 + i]: 0 all(v>0), 1 any(v>100), 2 ballot(v odd), 3 reduce_add, 4 reduce_min (int),
// 5 reduce_max (int), 6 reduce_min (unsigned), 7 reduce_and, 8 reduce_or, 9 reduce_xor,
// 10 match_any(v % 4), 11 ballot over the even lanes only (odd lanes write 0).
__global__ void votes_kernel(const int* values, unsigned* out) {
  const unsigned lane = threadIdx.x;
  const int v = values[lane];
  unsigned* o = out + lane * 12;
  o[0] = static_cast<unsigned>(__all_sync(kFull, v > 0));
  o[1] = static_cast<unsigned>(__any_sync(kFull, v > 100));
  o[2] = __ballot_sync(kFull, v & 1);
  o[3] = static_cast<unsigned>(__reduce_add_sync(kFull, v));
  o[4] = static_cast<unsigned>(__reduce_min_sync(kFull, v));
  o[5] = static_cast<unsigned>(__reduce_max_sync(kFull, v));
  o[6] = __reduce_min_sync(kFull, static_cast<unsigned>(v));
  o[7] = __reduce_and_sync(kFull, static_cast<unsigned>(v));
  o[8] = __reduce_or_sync(kFull, static_cast<unsigned>(v));
  o[9] = __reduce_xor_sync(kFull, static_cast<unsigned>(v));
  o[10] = __match_any_sync(kFull, v % 4);
  o[11] = 0;
  if (lane % 2 == 0) o[11] = __ballot_sync(0x55555555u, v > 0);
  __syncwarp();
}

}  // namespace

std::vector<long long> run_shuffle_block_sum(const std::vector<int>& in, unsigned block) {
  const size_t blocks = in.size() / block;
  DeviceArray<int> d_in(in);
  DeviceArray<long long> d_sums(blocks);
  SE_LAUNCH(shuffle_block_sum_kernel, blocks, block, 0, nullptr, d_in.get(), d_sums.get());
  return d_sums.download();
}

std::vector<int> run_shuffle_patterns() {
  DeviceArray<int> out(32 * 8);
  SE_LAUNCH(shuffle_patterns_kernel, 1, 32, 0, nullptr, out.get());
  return out.download();
}

std::vector<WideShuffle> run_wide_shuffles() {
  DeviceArray<WideShuffle> out(32);
  SE_LAUNCH(wide_shuffle_kernel, 1, 32, 0, nullptr, out.get());
  return out.download();
}

std::vector<unsigned> run_votes(const std::vector<int>& values) {
  DeviceArray<int> d_values(values);
  DeviceArray<unsigned> out(32 * 12);
  SE_LAUNCH(votes_kernel, 1, 32, 0, nullptr, d_values.get(), out.get());
  return out.download();
}

}  // namespace se::emu::test
