// Test kernels with planted synchronisation bugs: the emulator must catch them (death tests) or expose
// them under a non-default schedule (the missing barrier).
#include "tests/emu/device_array.cuh"
#include "tests/emu/emu_test_kernels.h"

namespace se::emu::test {
namespace {

__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x < 64) return;  // BUG: these threads never reach the barrier
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void divergent_barriers_kernel(int* out) {
  if (threadIdx.x % 2 == 0) {
    out[threadIdx.x] = 1;
    __syncthreads();  // BUG: even and odd threads wait at different barriers
  } else {
    __syncthreads();
    out[threadIdx.x] = 2;
  }
}

__global__ void lane_exited_kernel(int* out) {
  if (threadIdx.x == 31) return;  // BUG: lane 31 is named in the mask below
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}

__global__ void mask_mismatch_kernel(int* out) {
  const unsigned mask = threadIdx.x < 16 ? 0x0000ffffu : 0xffffffffu;  // BUG: the masks disagree
  out[threadIdx.x] = __shfl_xor_sync(mask, static_cast<int>(threadIdx.x), 1);
}

// BUG: no __syncthreads between the write and the read of the neighbour's element. Thread t reads the
// element of thread t - 1, so the default forward schedule (thread 0 first, each running until it blocks)
// happens to produce the right answer; reverse and random schedules read stale shared memory.
__global__ void missing_barrier_kernel(const int* in, int* out) {
  alignas(16) __shared__ int values[1024];
  const unsigned t = threadIdx.x;
  values[t] = in[t];
  out[t] = values[t > 0 ? t - 1 : 0];
}

// BUG: the last thread reads one element past `in` (n elements).
__global__ void global_overrun_kernel(const float* in, float* out, int n) {
  const int t = static_cast<int>(threadIdx.x);
  if (t < n) out[t] = in[t + 1];
}

// BUG: the last thread reads one element past the launch's dynamic shared memory (blockDim.x floats).
__global__ void shared_overrun_kernel(float* out) {
  DYN_SHARED(float, buffer);
  const unsigned t = threadIdx.x;
  buffer[t] = static_cast<float>(t);
  __syncthreads();
  out[t] = buffer[t + 1];
}

// Thread 0 of each block appends the block's index to `order`.
__global__ void block_order_kernel(unsigned* counter, unsigned* order) {
  if (threadIdx.x == 0) order[atomicAdd(counter, 1u)] = blockIdx.x;
}

}  // namespace

std::vector<unsigned> run_block_order(unsigned blocks) {
  DeviceArray<unsigned> counter(std::vector<unsigned>{0}), order(blocks);
  SE_LAUNCH(block_order_kernel, blocks, 32, 0, nullptr, counter.get(), order.get());
  return order.download();
}

void run_deadlock() {
  DeviceArray<int> out(128);
  SE_LAUNCH(deadlock_kernel, 1, 128, 0, nullptr, out.get());
}

void run_divergent_barriers() {
  DeviceArray<int> out(64);
  SE_LAUNCH(divergent_barriers_kernel, 1, 64, 0, nullptr, out.get());
}

void run_collective_lane_exited() {
  DeviceArray<int> out(32);
  SE_LAUNCH(lane_exited_kernel, 1, 32, 0, nullptr, out.get());
}

void run_collective_mask_mismatch() {
  DeviceArray<int> out(32);
  SE_LAUNCH(mask_mismatch_kernel, 1, 32, 0, nullptr, out.get());
}

void run_global_overrun() {
  DeviceArray<float> in(std::vector<float>(64, 1.0f)), out(64);
  SE_LAUNCH(global_overrun_kernel, 1, 64, 0, nullptr, in.get(), out.get(), 64);
}

void run_shared_overrun() {
  DeviceArray<float> out(64);
  // A larger launch first, so the emulator's shared buffer extends past the next launch's size.
  SE_LAUNCH(shared_overrun_kernel, 1, 64, 4096, nullptr, out.get());
  SE_LAUNCH(shared_overrun_kernel, 1, 64, 64 * sizeof(float), nullptr, out.get());
}

bool run_missing_barrier(unsigned block, int salt) {
  // Inputs differ per call (salt), so stale shared memory from an earlier launch cannot look right.
  std::vector<int> in(block);
  for (unsigned i = 0; i < block; ++i) in[i] = static_cast<int>(i) * 7 + salt * 100003;
  DeviceArray<int> d_in(in), d_out(block);
  SE_LAUNCH(missing_barrier_kernel, 1, block, 0, nullptr, d_in.get(), d_out.get());
  const std::vector<int> out = d_out.download();
  for (unsigned t = 0; t < block; ++t) {
    if (out[t] != in[t > 0 ? t - 1 : 0]) return false;
  }
  return true;
}

}  // namespace se::emu::test
