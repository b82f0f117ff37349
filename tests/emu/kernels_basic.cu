// Test kernels for the emulator: indexing, shared memory, barriers, atomics, launch errors, exceptions.
#include <stdexcept>

#include "tests/emu/device_array.cuh"
#include "tests/emu/emu_test_kernels.h"

namespace se::emu::test {
namespace {

__global__ void indexing_kernel(int* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  out[block * blockDim.x * blockDim.y * blockDim.z + thread] = static_cast<int>(block * 10000 + thread);
}

__global__ void static_shared_reverse_kernel(const float* in, float* out) {
  alignas(16) __shared__ float tile[256];
  const unsigned t = threadIdx.x;
  tile[t] = in[blockIdx.x * 256 + t];
  __syncthreads();
  out[blockIdx.x * 256 + t] = tile[255 - t];
}

__global__ void dynamic_shared_reverse_kernel(const float* in, float* out) {
  DYN_SHARED(float, tile);
  const unsigned t = threadIdx.x;
  const unsigned n = blockDim.x;
  tile[t] = in[blockIdx.x * n + t];
  __syncthreads();
  out[blockIdx.x * n + t] = tile[n - 1 - t];
}

__global__ void tree_sum_kernel(const int* in, long long* sums, int* counts) {
  alignas(16) __shared__ long long partial[1024];
  const unsigned t = threadIdx.x;
  const int value = in[blockIdx.x * blockDim.x + t];
  partial[t] = value;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (t < stride) partial[t] += partial[t + stride];
    __syncthreads();
  }
  const int positive = __syncthreads_count(value > 0);
  const int all_small = __syncthreads_and(value < 1000);
  const int any_zero = __syncthreads_or(value == 0);
  if (t == 0) {
    sums[blockIdx.x] = partial[0];
    counts[3 * blockIdx.x + 0] = positive;
    counts[3 * blockIdx.x + 1] = all_small;
    counts[3 * blockIdx.x + 2] = any_zero;
  }
}

struct AtomicCounters {
  int add_int;
  unsigned add_unsigned;
  unsigned long long add_u64;
  float add_float;
  double add_double;
  int max_int;
  int min_int;
  unsigned inc_wrapped;
  int cas_sum;
  unsigned or_bits;
  int sub_int;
  __half half_sum;
};

__global__ void global_atomics_kernel(AtomicCounters* c) {
  const int id = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(&c->add_int, 1);
  atomicAdd(&c->add_unsigned, 2u);
  atomicAdd(&c->add_u64, 3ull);
  atomicAdd(&c->add_float, 1.0f);
  atomicAdd(&c->add_double, 0.5);
  atomicMax(&c->max_int, id);
  atomicMin(&c->min_int, -id);
  atomicInc(&c->inc_wrapped, 99u);  // counts modulo 100
  int old = c->cas_sum;
  for (;;) {  // the classic compare-and-swap loop
    const int seen = atomicCAS(&c->cas_sum, old, old + 1);
    if (seen == old) break;
    old = seen;
  }
  atomicOr(&c->or_bits, 1u << (id % 32));
  atomicSub(&c->sub_int, 2);
  if (threadIdx.x == 0) atomicAdd(&c->half_sum, __float2half(1.0f));
}

__global__ void shared_histogram_kernel(const int* values, int n, int bins, unsigned* histogram) {
  alignas(16) __shared__ unsigned local[64];
  for (int b = static_cast<int>(threadIdx.x); b < bins; b += static_cast<int>(blockDim.x)) local[b] = 0;
  __syncthreads();
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < n;
       i += static_cast<int>(gridDim.x * blockDim.x)) {
    atomicAdd(&local[values[i]], 1u);
  }
  __syncthreads();
  for (int b = static_cast<int>(threadIdx.x); b < bins; b += static_cast<int>(blockDim.x)) {
    atomicAdd(&histogram[b], local[b]);
  }
}

__global__ void empty_kernel() {}

__global__ void busy_kernel(float* data, int n, int iterations) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  float x = data[i];
  for (int k = 0; k < iterations; ++k) x = x * 0.999f + 0.001f * static_cast<float>(k % 7);
  data[i] = x;
}

__global__ void throwing_kernel(int thrower, int* out) {
#ifdef SEGENGINE_CUDA_EMU
  if (static_cast<int>(threadIdx.x) == thrower && blockIdx.x == 0) throw std::runtime_error("planted failure");
#else
  if (static_cast<int>(threadIdx.x) == thrower && blockIdx.x == 0) __trap();
#endif
  __syncthreads();
  out[threadIdx.x] = 1;
}

}  // namespace

std::vector<int> run_indexing(Dims grid, Dims block) {
  const size_t total = static_cast<size_t>(grid.x) * grid.y * grid.z * block.x * block.y * block.z;
  DeviceArray<int> out(total);
  SE_LAUNCH(indexing_kernel, to_dim3(grid), to_dim3(block), 0, nullptr, out.get());
  return out.download();
}

std::vector<float> run_static_shared_reverse(const std::vector<float>& in) {
  DeviceArray<float> d_in(in), d_out(in.size());
  SE_LAUNCH(static_shared_reverse_kernel, in.size() / 256, 256, 0, nullptr, d_in.get(), d_out.get());
  return d_out.download();
}

std::vector<float> run_dynamic_shared_reverse(const std::vector<float>& in, unsigned block, size_t extra_bytes,
                                              bool opt_in) {
  DeviceArray<float> d_in(in), d_out(in.size());
  const size_t bytes = block * sizeof(float) + extra_bytes;
  if (opt_in) {
    CUDA_CHECK(cudaFuncSetAttribute(dynamic_shared_reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(bytes)));
  }
  SE_LAUNCH(dynamic_shared_reverse_kernel, in.size() / block, block, bytes, nullptr, d_in.get(), d_out.get());
  return d_out.download();
}

std::vector<long long> run_block_tree_sum(const std::vector<int>& in, unsigned block, std::vector<int>* counts) {
  const size_t blocks = in.size() / block;
  DeviceArray<int> d_in(in), d_counts(3 * blocks);
  DeviceArray<long long> d_sums(blocks);
  SE_LAUNCH(tree_sum_kernel, blocks, block, 0, nullptr, d_in.get(), d_sums.get(), d_counts.get());
  *counts = d_counts.download();
  return d_sums.download();
}

AtomicResults run_global_atomics(unsigned blocks) {
  AtomicCounters initial{};
  initial.max_int = -1;
  initial.min_int = 1;
  initial.half_sum = __float2half(0.0f);
  DeviceArray<AtomicCounters> d(std::vector<AtomicCounters>{initial});
  SE_LAUNCH(global_atomics_kernel, blocks, 256, 0, nullptr, d.get());
  const AtomicCounters c = d.download()[0];
  return {c.add_int, c.add_unsigned, c.add_u64, c.add_float, c.add_double, c.max_int,
          c.min_int, c.inc_wrapped, c.cas_sum, c.or_bits, c.sub_int, __half2float(c.half_sum)};
}

std::vector<unsigned> run_shared_histogram(const std::vector<int>& values, int bins) {
  DeviceArray<int> d_values(values);
  DeviceArray<unsigned> d_hist(std::vector<unsigned>(static_cast<size_t>(bins), 0u));
  SE_LAUNCH(shared_histogram_kernel, 8, 128, 0, nullptr, d_values.get(), static_cast<int>(values.size()), bins,
            d_hist.get());
  return d_hist.download();
}

int launch_status(Dims grid, Dims block, size_t shared_bytes) {
  (void)cudaGetLastError();
#ifdef SEGENGINE_CUDA_EMU
  se::emu::launch_kernel("empty_kernel", empty_kernel, to_dim3(grid), to_dim3(block), shared_bytes, nullptr);
#else
  empty_kernel<<<to_dim3(grid), to_dim3(block), shared_bytes>>>();  // the status itself is under test
#endif
  return static_cast<int>(cudaGetLastError());
}

void launch_checked(Dims grid, Dims block) { SE_LAUNCH(empty_kernel, to_dim3(grid), to_dim3(block), 0, nullptr); }

float run_busy_kernel(float* device_buffer, int n, int iterations, se::kernels::Stream stream) {
  SE_LAUNCH(busy_kernel, ceil_div(n, 256), 256, 0, stream, device_buffer, n, iterations);
  float first = 0;
  CUDA_CHECK(cudaMemcpy(&first, device_buffer, sizeof(float), cudaMemcpyDeviceToHost));
  return first;
}

void run_throwing_kernel(int thrower) {
  DeviceArray<int> out(64);
  SE_LAUNCH(throwing_kernel, 4, 64, 0, nullptr, thrower, out.get());
}

}  // namespace se::emu::test
