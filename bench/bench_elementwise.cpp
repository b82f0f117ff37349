// Elementwise bandwidth: add on f32, contiguous, 16M elements (two reads and one write per element),
// on the CPU (all OpenMP threads) and on a real GPU when present (timed with CUDA events). Reports
// memory traffic as the counter GB (shown per second), to compare with the machine's bandwidth.
// Run: build/bench/bench_elementwise --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "kernels/elementwise.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace se::kernels {
namespace {

constexpr int64_t kNumel = int64_t{16} << 20;
constexpr double kBytesPerCall = 3.0 * sizeof(float) * static_cast<double>(kNumel);

BinaryDesc add_desc() {
  BinaryDesc desc;
  desc.op = BinaryOp::add;
  desc.dtype = DType::f32;
  desc.a.ndim = desc.b.ndim = 1;
  desc.a.sizes[0] = desc.b.sizes[0] = kNumel;
  desc.a.strides[0] = desc.b.strides[0] = 1;
  return desc;
}

void set_bandwidth(benchmark::State& state) {
  state.counters["GB"] = benchmark::Counter(kBytesPerCall * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_cpu_add(benchmark::State& state) {
  std::vector<float> a(kNumel, 1.0f), b(kNumel, 2.0f), out(kNumel);  // (kNumel) each
  const BinaryDesc desc = add_desc();
  cpu::binary(out.data(), a.data(), b.data(), desc, nullptr);  // warm-up: page in the output
  for (auto _ : state) {
    cpu::binary(out.data(), a.data(), b.data(), desc, nullptr);
    benchmark::DoNotOptimize(out.data());
  }
  set_bandwidth(state);
}

#ifdef SEGENGINE_HAS_CUDA
void bm_cuda_add(benchmark::State& state) {
  const size_t bytes = kNumel * sizeof(float);
  void* a = cuda::device_malloc(bytes);  // (kNumel) each
  void* b = cuda::device_malloc(bytes);
  void* out = cuda::device_malloc(bytes);
  cuda::memset_device(a, 0, bytes, nullptr);
  cuda::memset_device(b, 0, bytes, nullptr);
  const BinaryDesc desc = add_desc();
  cuda::Event start = cuda::event_create(true), stop = cuda::event_create(true);
  cuda::binary(out, a, b, desc, nullptr);  // warm-up
  for (auto _ : state) {
    cuda::event_record(start, nullptr);
    cuda::binary(out, a, b, desc, nullptr);
    cuda::event_record(stop, nullptr);
    cuda::event_synchronize(stop);
    state.SetIterationTime(cuda::event_elapsed_ms(start, stop) * 1e-3);
  }
  set_bandwidth(state);
  cuda::event_destroy(start);
  cuda::event_destroy(stop);
  cuda::device_free(a);
  cuda::device_free(b);
  cuda::device_free(out);
}
#endif

void register_benchmarks() {
  benchmark::RegisterBenchmark("add/f32/16M/cpu", bm_cpu_add)->UseRealTime();
#ifdef SEGENGINE_HAS_CUDA
  if (cuda::device_count() > 0 && !cuda::device_info(0).emulated) {
    benchmark::RegisterBenchmark("add/f32/16M/cuda", bm_cuda_add)->UseManualTime();
  }
#endif
}

}  // namespace
}  // namespace se::kernels

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  se::kernels::register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
