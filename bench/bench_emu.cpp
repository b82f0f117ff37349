// The CUDA emulator's own costs (emulated builds only): launch overhead of an empty kernel, one
// __syncthreads per thread, a 256^3 shared-memory tiled SGEMM and a warp-shuffle block reduction.
// Blocks run on SEGENGINE_EMU_THREADS OS threads (default: all cores); set it to 1 for steadier figures.
// SEGENGINE_EMU_SCHEDULE picks the thread order, as for the tests.
// Run: build-emu/bench/bench_emu --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench/emu_kernels.h"

namespace se::bench {
namespace {

// Device buffer for the benchmarks; aborts on failure (a benchmark has no one to report to).
class DeviceFloats {
 public:
  explicit DeviceFloats(const std::vector<float>& host) : count_(host.size()) {
    if (cudaMalloc(reinterpret_cast<void**>(&ptr_), count_ * sizeof(float)) != cudaSuccess ||
        cudaMemcpy(ptr_, host.data(), count_ * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess) {
      std::fprintf(stderr, "bench_emu: cannot allocate %zu floats\n", count_);
      std::abort();
    }
  }
  ~DeviceFloats() { (void)cudaFree(ptr_); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;

  float* get() const { return ptr_; }
  float at(size_t i) const {
    float value = 0.0f;
    (void)cudaMemcpy(&value, ptr_ + i, sizeof(float), cudaMemcpyDeviceToHost);
    return value;
  }

 private:
  float* ptr_ = nullptr;
  size_t count_;
};

// Seconds per `per_iteration` units of work, shown as a time (e.g. "7.1n" = 7.1 ns).
benchmark::Counter time_per(double per_iteration, const benchmark::State& state) {
  return benchmark::Counter(per_iteration * static_cast<double>(state.iterations()),
                            benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Args: blocks, threads per block.
void BM_LaunchEmpty(benchmark::State& state) {
  const auto blocks = static_cast<unsigned>(state.range(0));
  const auto threads = static_cast<unsigned>(state.range(1));
  for (auto _ : state) emu_launch_empty(blocks, threads);
  state.counters["per_thread"] = time_per(blocks * threads, state);
}
BENCHMARK(BM_LaunchEmpty)->Args({1, 32})->Args({64, 256})->UseRealTime()->Unit(benchmark::kMicrosecond);

// Args: threads in the block. Each launch does kBarriers __syncthreads per thread.
void BM_SyncThreads(benchmark::State& state) {
  constexpr int kBarriers = 200;
  const auto threads = static_cast<unsigned>(state.range(0));
  for (auto _ : state) emu_launch_barriers(threads, kBarriers);
  state.counters["per_thread_barrier"] = time_per(static_cast<double>(threads) * kBarriers, state);
}
BENCHMARK(BM_SyncThreads)->Arg(256)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Args: n (C = A * B, all n x n).
void BM_SgemmTiled(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const std::vector<float> ones(static_cast<size_t>(n) * n, 1.0f);
  DeviceFloats a(ones), b(ones), c(ones);
  for (auto _ : state) emu_sgemm_tiled(a.get(), b.get(), c.get(), n);
  if (c.at(0) != static_cast<float>(n)) state.SkipWithError("wrong SGEMM result");
  state.counters["flops"] =
      benchmark::Counter(2.0 * n * n * n * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SgemmTiled)->Arg(256)->UseRealTime()->Unit(benchmark::kMillisecond);

// Args: blocks, threads per block. Five shuffles per warp, a barrier, five more in warp 0.
void BM_ShuffleBlockSum(benchmark::State& state) {
  const auto blocks = static_cast<unsigned>(state.range(0));
  const auto threads = static_cast<unsigned>(state.range(1));
  const std::vector<float> ones(static_cast<size_t>(blocks) * threads, 1.0f);
  DeviceFloats in(ones), sums(std::vector<float>(blocks, 0.0f));
  for (auto _ : state) emu_shuffle_block_sum(in.get(), sums.get(), blocks, threads);
  if (sums.at(blocks - 1) != static_cast<float>(threads)) state.SkipWithError("wrong block sum");
  state.counters["per_element"] = time_per(static_cast<double>(blocks) * threads, state);
}
BENCHMARK(BM_ShuffleBlockSum)->Args({256, 256})->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace se::bench

BENCHMARK_MAIN();
