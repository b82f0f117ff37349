// GEMM throughput: our CPU kernel beside OpenBLAS (both on all OpenMP threads), f16/bf16 and
// transposed variants, and the CUDA kernels when a real GPU is present (timed with CUDA events), beside
// cuBLAS (sgemm/cublas/..., hgemm/cublas/4096, bf16gemm/cublas/4096) in builds with the vendor references.
// Run: build/bench/bench_gemm --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench/kernel_harness.h"
#include "core/machine.h"
#include "core/half.h"
#include "kernels/gemm.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif
#ifdef SEGENGINE_VENDOR_BENCH
#include "bench/vendor/vendor.h"
#endif

namespace se::kernels {
namespace {

struct Shape {
  int64_t m, n, k;
  bool trans_a = false, trans_b = false;
};

template <typename T>
std::vector<T> random_values(int64_t count) {
  std::mt19937 gen(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<T> out(static_cast<size_t>(count));
  for (auto& x : out) x = static_cast<T>(dist(gen));
  return out;
}

GemmDesc make_desc(const Shape& s, DType dtype) {
  GemmDesc d;
  d.m = s.m;
  d.n = s.n;
  d.k = s.k;
  d.trans_a = s.trans_a;
  d.trans_b = s.trans_b;
  d.lda = s.trans_a ? s.m : s.k;
  d.ldb = s.trans_b ? s.k : s.n;
  d.ldc = s.n;
  d.dtype = dtype;
  return d;
}

void set_flops(benchmark::State& state, const Shape& s) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * double(s.m) * double(s.n) * double(s.k) * double(state.iterations()),
                         benchmark::Counter::kIsRate);
}

template <typename T>
void bm_cpu_gemm(benchmark::State& state, Shape s, DType dtype) {
  const GemmDesc d = make_desc(s, dtype);
  const auto a = random_values<T>(s.m * s.k), b = random_values<T>(s.k * s.n);
  std::vector<T> c(static_cast<size_t>(s.m * s.n));
  for (auto _ : state) {
    cpu::gemm(d, a.data(), b.data(), c.data(), nullptr);
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(state, s);
  state.SetLabel(cpu::gemm_isa_name(cpu::gemm_isa()));
}

CBLAS_TRANSPOSE cblas_trans(bool t) { return t ? CblasTrans : CblasNoTrans; }

void bm_openblas_sgemm(benchmark::State& state, Shape s) {
  const GemmDesc d = make_desc(s, DType::f32);
  const auto a = random_values<float>(s.m * s.k), b = random_values<float>(s.k * s.n);
  std::vector<float> c(static_cast<size_t>(s.m * s.n));
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, cblas_trans(s.trans_a), cblas_trans(s.trans_b), int(s.m), int(s.n), int(s.k), 1.0f,
                a.data(), int(d.lda), b.data(), int(d.ldb), 0.0f, c.data(), int(d.ldc));
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(state, s);
}

void bm_openblas_dgemm(benchmark::State& state, Shape s) {
  const auto a = random_values<double>(s.m * s.k), b = random_values<double>(s.k * s.n);
  std::vector<double> c(static_cast<size_t>(s.m * s.n));
  for (auto _ : state) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(s.m), int(s.n), int(s.k), 1.0, a.data(), int(s.k),
                b.data(), int(s.n), 0.0, c.data(), int(s.n));
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(state, s);
}

#ifdef SEGENGINE_HAS_CUDA
// Times on the GPU the call that `prepare(a, b, c)` returns for device copies of the operands (CUDA events,
// one warm-up).
template <typename T>
void time_device_gemm(benchmark::State& state, const Shape& s,
                      const std::function<std::function<void()>(const void*, const void*, void*)>& prepare) {
  const auto a = random_values<T>(s.m * s.k), b = random_values<T>(s.k * s.n);
  void* da = cuda::device_malloc(a.size() * sizeof(T));
  void* db = cuda::device_malloc(b.size() * sizeof(T));
  void* dc = cuda::device_malloc(size_t(s.m * s.n) * sizeof(T));
  cuda::copy_host_to_device(da, a.data(), a.size() * sizeof(T), nullptr);
  cuda::copy_host_to_device(db, b.data(), b.size() * sizeof(T), nullptr);
  bench::time_calls(state, bench::Backend::cuda, prepare(da, db, dc), "GFLOP/s",
                    2.0 * double(s.m) * double(s.n) * double(s.k));
  cuda::device_free(da);
  cuda::device_free(db);
  cuda::device_free(dc);
}

template <typename T>
void bm_cuda_gemm(benchmark::State& state, Shape s, DType dtype) {
  const GemmDesc d = make_desc(s, dtype);
  time_device_gemm<T>(state, s, [&](const void* a, const void* b, void* c) {
    return [&d, a, b, c] { cuda::gemm(d, a, b, c, nullptr); };
  });
}
#endif

#ifdef SEGENGINE_VENDOR_BENCH
// cuBLAS on the same row-major operands: cublasGemmEx with f32 compute (no TF32).
template <typename T>
void bm_cublas_gemm(benchmark::State& state, Shape s, DType dtype) {
  const auto args = vendor::cublas_gemm_args(make_desc(s, dtype));
  time_device_gemm<T>(state, s, [&](const void* a, const void* b, void* c) -> std::function<void()> {
    return vendor::gemm(args.value(), dtype, a, b, c, nullptr);
  });
}
#endif

void register_benchmarks() {
  const int threads = omp_get_max_threads();
  openblas_set_num_threads(threads);
  benchmark::AddCustomContext("threads (OpenMP and OpenBLAS)", std::to_string(threads));
  benchmark::AddCustomContext("f32 peak GFLOP/s", machine::cpu_f32_peak_description(threads));

  const std::vector<std::pair<std::string, Shape>> f32_shapes = {
      {"256", {256, 256, 256}},
      {"512", {512, 512, 512}},
      {"1024", {1024, 1024, 1024}},
      {"2048", {2048, 2048, 2048}},
      {"1024_tA", {1024, 1024, 1024, true, false}},
      {"1024_tB", {1024, 1024, 1024, false, true}},
      {"1024_tAtB", {1024, 1024, 1024, true, true}},
      // U-Net 3x3 convolutions as GEMM: (pixels, 9 Cin) @ (9 Cin, Cout), and the weight-stationary
      // form (Cout, 9 Cin) @ (9 Cin, pixels).
      {"unet_4096x64x576", {4096, 64, 576}},
      {"unet_16384x32x288", {16384, 32, 288}},
      {"unet_1024x256x2304", {1024, 256, 2304}},
      {"unet_64x4096x576", {64, 4096, 576}},
      // The RGB input layer's weight gradient, (9 * 3, pixels) @ (pixels, 64): one 2048-pixel chunk (in
      // cache) and a whole 512 x 512 image (from memory).
      {"unet_wgrad_27x64x2048_tB", {27, 64, 2048, false, true}},
      {"unet_wgrad_27x64x262144_tB", {27, 64, 262144, false, true}},
      // DeepLab's ASPP rate-12 branch (2048 -> 256 at 64x64), backward data, dcol (9 Cin, 512 pixels) =
      // W^T (9 Cin, Cout) @ dy (Cout, 512 pixels): all 2048 channels at once (37 MB of C), and one of the
      // 40 channel slices that the CPU conv computes instead (52 channels, C within L2).
      {"aspp_dcol_18432x512x256_tA", {18432, 512, 256, true, false}},
      {"aspp_dcol_slice_468x512x256_tA", {468, 512, 256, true, false}},
      // SegFormer-B0's stage-1 Linear layers at batch 2 (32768 tokens of 32 features): y = x @ W^T with the
      // activation x as a tall, narrow A, and the Mix-FFN's fc1 (32 -> 128) and fc2 (128 -> 32).
      {"segformer_linear_32768x32x32_tB", {32768, 32, 32, false, true}},
      {"segformer_fc1_32768x128x32_tB", {32768, 128, 32, false, true}},
      {"segformer_fc2_32768x32x128_tB", {32768, 32, 128, false, true}},
      // Their backward: dx = dy @ W (tokens, out) @ (out, in), and dW = dy^T @ x, (out, tokens) @ (tokens,
      // in) with dy stored (tokens, out): a transposed A with a long k.
      {"segformer_fc1_dx_32768x32x128", {32768, 32, 128}},
      {"segformer_fc1_dw_128x32x32768_tA", {128, 32, 32768, true, false}},
      {"segformer_fc2_dw_32x128x32768_tA", {32, 128, 32768, true, false}},
      {"segformer_linear_dw_32x32x32768_tA", {32, 32, 32768, true, false}},
      // The decode head's stage-1 and stage-2 projections (32 and 64 -> 256): their weight gradients.
      {"segformer_head_dw_256x32x32768_tA", {256, 32, 32768, true, false}},
      {"segformer_head_dw_256x64x8192_tA", {256, 64, 8192, true, false}},
  };
  for (const auto& [name, s] : f32_shapes) {
    benchmark::RegisterBenchmark(("sgemm/ours/" + name).c_str(), bm_cpu_gemm<float>, s, DType::f32)->UseRealTime();
    benchmark::RegisterBenchmark(("sgemm/openblas/" + name).c_str(), bm_openblas_sgemm, s)->UseRealTime();
  }
  const Shape cube{1024, 1024, 1024};
  benchmark::RegisterBenchmark("hgemm/ours/1024", bm_cpu_gemm<f16>, cube, DType::f16)->UseRealTime();
  benchmark::RegisterBenchmark("bf16gemm/ours/1024", bm_cpu_gemm<bf16>, cube, DType::bf16)->UseRealTime();
  benchmark::RegisterBenchmark("dgemm/ours/1024", bm_cpu_gemm<double>, cube, DType::f64)->UseRealTime();
  benchmark::RegisterBenchmark("dgemm/openblas/1024", bm_openblas_dgemm, cube)->UseRealTime();

#ifdef SEGENGINE_HAS_CUDA
  if (cuda::device_count() > 0 && !cuda::device_info(0).emulated) {
    for (const auto& [name, s] : f32_shapes) {
      benchmark::RegisterBenchmark(("sgemm/cuda/" + name).c_str(), bm_cuda_gemm<float>, s, DType::f32)
          ->UseManualTime();
    }
    const Shape big{4096, 4096, 4096};
    benchmark::RegisterBenchmark("hgemm/cuda/4096", bm_cuda_gemm<f16>, big, DType::f16)->UseManualTime();
    benchmark::RegisterBenchmark("bf16gemm/cuda/4096", bm_cuda_gemm<bf16>, big, DType::bf16)->UseManualTime();
    benchmark::RegisterBenchmark("dgemm/cuda/1024", bm_cuda_gemm<double>, cube, DType::f64)->UseManualTime();
#ifdef SEGENGINE_VENDOR_BENCH
    for (const auto& [name, s] : f32_shapes) {
      benchmark::RegisterBenchmark(("sgemm/cublas/" + name).c_str(), bm_cublas_gemm<float>, s, DType::f32)
          ->UseManualTime();
    }
    benchmark::RegisterBenchmark("hgemm/cublas/4096", bm_cublas_gemm<f16>, big, DType::f16)->UseManualTime();
    benchmark::RegisterBenchmark("bf16gemm/cublas/4096", bm_cublas_gemm<bf16>, big, DType::bf16)->UseManualTime();
#endif
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
