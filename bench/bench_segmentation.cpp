// CPU throughput of the U-Net up-path and the segmentation-loss building blocks: conv_transpose2d (k2 s2,
// all three passes, GFLOP/s and % of the f32 peak), the stable radix sort and cumsum on Lovasz-softmax's
// shape (19 rows of 512x512 errors) with std::stable_sort as the baseline, and the fused focal loss.
// Run: build/bench/bench_segmentation --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/machine.h"
#include "kernels/conv.h"
#include "kernels/loss.h"
#include "kernels/sort.h"

namespace se::kernels {
namespace {

std::vector<float> random_values(int64_t count, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(42);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(static_cast<size_t>(count));
  for (auto& x : out) x = dist(gen);
  return out;
}

enum class Pass { forward, backward_data, backward_weight };

void bm_conv_transpose(benchmark::State& state, ConvTranspose2dDesc d, Pass pass, double peak_gflops) {
  const auto x = random_values(conv_transpose2d_x_elements(d)), w = random_values(conv_transpose2d_w_elements(d));
  const auto b = random_values(d.c_out), dy = random_values(conv_transpose2d_y_elements(d));
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
  for (auto _ : state) {
    switch (pass) {
      case Pass::forward: cpu::conv_transpose2d_forward(d, x.data(), w.data(), b.data(), y.data(), nullptr); break;
      case Pass::backward_data: cpu::conv_transpose2d_backward_data(d, dy.data(), w.data(), dx.data(), nullptr); break;
      case Pass::backward_weight:
        cpu::conv_transpose2d_backward_weight(d, x.data(), dy.data(), dw.data(), db.data(), nullptr, nullptr);
        break;
    }
    benchmark::ClobberMemory();
  }
  // Multiply-adds x 2: every input pixel meets C_out / groups * KH * KW weights.
  const double flops = 2.0 * double(conv_transpose2d_x_elements(d)) * double(d.c_out / d.groups) *
                       double(d.kernel_h * d.kernel_w) * double(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
  state.counters["%peak"] = benchmark::Counter(flops * 1e-9 / peak_gflops * 100.0, benchmark::Counter::kIsRate);
}

constexpr int64_t kClasses = 19, kPixels = 512 * 512;

void bm_sort(benchmark::State& state, bool descending) {
  const auto x = random_values(kClasses * kPixels, 0.0f, 1.0f);
  std::vector<float> values(x.size());
  std::vector<int64_t> indices(x.size());
  const SortDesc d{kClasses, kPixels, descending, DType::f32};
  for (auto _ : state) {
    cpu::sort(d, x.data(), values.data(), indices.data(), nullptr, nullptr);
    benchmark::ClobberMemory();
  }
  state.counters["Mkeys/s"] =
      benchmark::Counter(double(x.size()) * 1e-6 * double(state.iterations()), benchmark::Counter::kIsRate);
}

// The baseline: std::stable_sort of the indices of each row, rows in parallel.
void bm_std_stable_sort(benchmark::State& state) {
  const auto x = random_values(kClasses * kPixels, 0.0f, 1.0f);
  std::vector<int64_t> indices(x.size());
  for (auto _ : state) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t r = 0; r < kClasses; ++r) {
      int64_t* row = indices.data() + r * kPixels;
      const float* keys = x.data() + r * kPixels;
      std::iota(row, row + kPixels, int64_t{0});
      std::stable_sort(row, row + kPixels, [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
    }
    benchmark::ClobberMemory();
  }
  state.counters["Mkeys/s"] =
      benchmark::Counter(double(x.size()) * 1e-6 * double(state.iterations()), benchmark::Counter::kIsRate);
}

void bm_cumsum(benchmark::State& state) {
  const auto x = random_values(kClasses * kPixels);
  std::vector<float> y(x.size());
  const CumsumDesc d{kClasses, kPixels, 1, false, DType::f32};
  for (auto _ : state) {
    cpu::cumsum(d, x.data(), y.data(), nullptr);
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] =
      benchmark::Counter(double(x.size()) * 8e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

void bm_focal(benchmark::State& state, bool backward) {
  const auto logits = random_values(kClasses * kPixels, -4.0f, 4.0f);
  std::vector<int64_t> target(kPixels);
  for (int64_t i = 0; i < kPixels; ++i) target[i] = i * 7 % kClasses;
  std::vector<float> loss(kPixels), valid(kPixels), lse(kPixels), grad(logits.size());
  const float one = 1.0f;
  FocalLossDesc d;
  d.classes = kClasses;
  d.spatial = kPixels;
  int64_t bad = d.ignore_index;
  cpu::focal_loss_forward<float>(loss.data(), valid.data(), lse.data(), &bad, logits.data(), target.data(), nullptr, d,
                                 nullptr);
  for (auto _ : state) {
    if (backward) {
      cpu::focal_loss_backward<float>(grad.data(), &one, 0, logits.data(), lse.data(), target.data(), nullptr, d,
                                      nullptr);
    } else {
      cpu::focal_loss_forward<float>(loss.data(), valid.data(), lse.data(), &bad, logits.data(), target.data(), nullptr,
                                     d, nullptr);
    }
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(
      double(logits.size() * (backward ? 8 : 4)) * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

void register_benchmarks() {
  const int threads = omp_get_max_threads();
  const double peak = machine::cpu_f32_peak_gflops(threads);
  benchmark::AddCustomContext("threads (OpenMP)", std::to_string(threads));
  benchmark::AddCustomContext("f32 peak GFLOP/s", machine::cpu_f32_peak_description(threads));
  // U-Net's up-convolutions at a 512x512 input, then the demo's (configs/unet.json: base width 16, 8
  // images of 64x64, maps from 4x4): small images, several to a GEMM.
  std::vector<std::pair<int64_t, int64_t>> up_convs;  // (input size, batch)
  for (int64_t size : {32, 64, 128, 256}) up_convs.emplace_back(size, 1);
  for (int64_t size : {4, 8, 16, 32}) up_convs.emplace_back(size, 8);
  for (auto [size, batch] : up_convs) {
    ConvTranspose2dDesc d;
    d.n = batch;
    d.c_in = (batch == 1 ? 64 * 512 : 16 * 64) / size;
    d.c_out = d.c_in / 2;
    d.h = d.w = size;
    d.kernel_h = d.kernel_w = d.stride_h = d.stride_w = 2;
    d.has_bias = true;
    const std::string name = std::string(batch == 1 ? "unet_up_" : "demo_unet_up_") + std::to_string(d.c_in) + "ch_" +
                             std::to_string(size) + (batch == 1 ? "" : "_n8");
    for (auto [p, pass] : {std::pair{Pass::forward, "forward"}, std::pair{Pass::backward_data, "backward_data"},
                           std::pair{Pass::backward_weight, "backward_weight"}}) {
      benchmark::RegisterBenchmark(("conv_transpose2d/" + std::string(pass) + "/" + name).c_str(), bm_conv_transpose, d,
                                   p, peak)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::RegisterBenchmark("sort/ascending/19x512x512", bm_sort, false)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("sort/descending/19x512x512", bm_sort, true)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("std_stable_sort/19x512x512", bm_std_stable_sort)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("cumsum/19x512x512", bm_cumsum)->UseRealTime()->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("focal_loss/forward/19x512x512", bm_focal, false)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("focal_loss/backward/19x512x512", bm_focal, true)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
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
