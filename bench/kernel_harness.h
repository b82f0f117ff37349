// What the kernel benchmarks of bench/ share: memory on the CPU or on a real GPU, a call that picks
// kernels::cpu::fn or kernels::cuda::fn, and a timing loop that reports GB/s or GFLOP/s. A benchmark
// registered with register_on_backends runs as NAME/cpu (host clock, all OpenMP threads) and, when a
// GPU that is not the emulator is present, as NAME/cuda (CUDA events, manual time). In builds with the
// vendor references (SEGENGINE_VENDOR_BENCH), register_vendor adds NAME/cudnn or NAME/cublas beside it:
// the library's call for the same work, timed the same way.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/stream.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif
#ifdef SEGENGINE_VENDOR_BENCH
#include "bench/vendor/vendor.h"
#endif

namespace se::kernels::bench {

enum class Backend { cpu, cuda };

// Calls kernels::cpu::fn or kernels::cuda::fn with the same arguments and the default stream.
#ifdef SEGENGINE_HAS_CUDA
#define SE_BENCH_CALL(backend, fn, ...)                    \
  do {                                                     \
    if ((backend) == ::se::kernels::bench::Backend::cpu) { \
      ::se::kernels::cpu::fn(__VA_ARGS__, nullptr);        \
    } else {                                               \
      ::se::kernels::cuda::fn(__VA_ARGS__, nullptr);       \
    }                                                      \
  } while (0)
#else
#define SE_BENCH_CALL(backend, fn, ...)           \
  do {                                            \
    (void)(backend);                              \
    ::se::kernels::cpu::fn(__VA_ARGS__, nullptr); \
  } while (0)
#endif

// Uniform values in [lo, hi), the same on every run.
inline std::vector<float> random_values(int64_t count, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(42);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(static_cast<size_t>(count));
  for (auto& x : out) x = dist(gen);
  return out;
}

// Class indices spread over [0, classes): i * step % classes.
inline std::vector<int64_t> class_indices(int64_t count, int64_t classes, int64_t step = 7) {
  std::vector<int64_t> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out[static_cast<size_t>(i)] = i * step % classes;
  return out;
}

// `values` in host memory for the CPU, or copied to device memory for CUDA.
template <typename T>
class Buffer {
 public:
  Buffer(Backend backend, std::vector<T> values) : host_(std::move(values)) {
#ifdef SEGENGINE_HAS_CUDA
    if (backend == Backend::cuda) {
      const size_t bytes = host_.size() * sizeof(T);
      device_ = cuda::device_malloc(bytes);
      cuda::copy_host_to_device(device_, host_.data(), bytes, nullptr);
      cuda::device_synchronize();
      host_ = {};
    }
#else
    (void)backend;
#endif
  }
  // `count` zeros: an output, paged in before the timing.
  Buffer(Backend backend, int64_t count) : Buffer(backend, std::vector<T>(static_cast<size_t>(count))) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
#ifdef SEGENGINE_HAS_CUDA
    if (device_ != nullptr) cuda::device_free(device_);
#endif
  }
  T* data() {
    return device_ != nullptr ? static_cast<T*>(device_) : host_.data();
  }

 private:
  std::vector<T> host_;
  void* device_ = nullptr;
};

// Runs `call` once to warm up, then once per iteration, and reports `amount` (bytes or FLOPs per call) as
// the rate `counter` in units of 1e9 per second.
inline void time_calls(benchmark::State& state, Backend backend, const std::function<void()>& call, const char* counter,
                       double amount) {
  call();
#ifdef SEGENGINE_HAS_CUDA
  if (backend == Backend::cuda) {
    cuda::Event start = cuda::event_create(true), stop = cuda::event_create(true);
    for (auto _ : state) {
      cuda::event_record(start, nullptr);
      call();
      cuda::event_record(stop, nullptr);
      cuda::event_synchronize(stop);
      state.SetIterationTime(cuda::event_elapsed_ms(start, stop) * 1e-3);
    }
    cuda::event_destroy(start);
    cuda::event_destroy(stop);
    state.counters[counter] = benchmark::Counter(amount * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    return;
  }
#else
  (void)backend;
#endif
  for (auto _ : state) {
    call();
    benchmark::ClobberMemory();
  }
  state.counters[counter] = benchmark::Counter(amount * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Whether a GPU that is not the emulator is present: the CUDA and vendor cases run only there.
inline bool real_gpu_present() {
#ifdef SEGENGINE_HAS_CUDA
  return cuda::device_count() > 0 && !cuda::device_info(0).emulated;
#else
  return false;
#endif
}

// Registers `bm(state, backend)` as `name`/cpu and, on a real GPU, as `name`/cuda.
inline void register_on_backends(const std::string& name, const std::function<void(benchmark::State&, Backend)>& bm) {
  benchmark::RegisterBenchmark((name + "/cpu").c_str(), [bm](benchmark::State& state) { bm(state, Backend::cpu); })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  if (real_gpu_present()) {
    benchmark::RegisterBenchmark((name + "/cuda").c_str(), [bm](benchmark::State& state) { bm(state, Backend::cuda); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

#ifdef SEGENGINE_VENDOR_BENCH
// Registers `bm(state)` as `name`/`library` (e.g. "cudnn") on a real GPU: `bm` prepares a vendor::Call for
// the work of `name`/cuda and times it with time_calls(state, Backend::cuda, ...). A configuration the
// library rejects, or any other failure while preparing, is reported as the benchmark's error.
inline void register_vendor(const std::string& name, const char* library,
                            const std::function<void(benchmark::State&)>& bm) {
  if (!real_gpu_present()) return;
  benchmark::RegisterBenchmark((name + "/" + library).c_str(),
                               [bm](benchmark::State& state) {
                                 try {
                                   bm(state);
                                 } catch (const Error& e) {  // vendor::NotSupported included
                                   state.SkipWithError(e.what());
                                 }
                               })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}
#endif

// Registers `bm(state, backend, backward)` as `family`/forward/`shape` and `family`/backward/`shape`.
inline void register_directions(const std::string& family, const std::string& shape,
                                const std::function<void(benchmark::State&, Backend, bool backward)>& bm) {
  for (bool backward : {false, true}) {
    register_on_backends(family + (backward ? "/backward/" : "/forward/") + shape,
                         [bm, backward](benchmark::State& state, Backend backend) { bm(state, backend, backward); });
  }
}

// The body of a benchmark program's main(): registers its cases, then runs the ones the flags select.
inline int run_benchmarks(int argc, char** argv, void (*register_benchmarks)()) {
  benchmark::Initialize(&argc, argv);
  register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace se::kernels::bench
