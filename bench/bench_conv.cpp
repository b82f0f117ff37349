// Conv2d throughput on the CPU: forward, backward data and backward weight on U-Net layer shapes
// (3x3, pad 1, N = 1), reporting GFLOP/s and the percentage of the machine's f32 peak (the same peak
// as bench_gemm), plus a depthwise and a 1x1 layer. Each backward pass counts the forward's FLOPs.
// Run: build/bench/bench_conv --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <omp.h>

#include <random>
#include <string>
#include <vector>

#include "core/machine.h"
#include "kernels/conv.h"

namespace se::kernels {
namespace {

enum class Pass { forward, backward_data, backward_weight };

const char* pass_name(Pass p) {
  switch (p) {
    case Pass::forward: return "forward";
    case Pass::backward_data: return "backward_data";
    case Pass::backward_weight: return "backward_weight";
  }
  return "?";
}

std::vector<float> random_values(int64_t count) {
  std::mt19937 gen(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> out(static_cast<size_t>(count));
  for (auto& x : out) x = dist(gen);
  return out;
}

Conv2dDesc conv3x3(int64_t channels, int64_t size) {
  Conv2dDesc d;
  d.c_in = d.c_out = channels;
  d.h = d.w = size;
  d.kernel_h = d.kernel_w = 3;
  d.pad_h = d.pad_w = 1;
  d.has_bias = true;
  return d;
}

void bm_cpu_conv(benchmark::State& state, Conv2dDesc d, Pass pass, double peak_gflops) {
  const auto x = random_values(conv2d_x_elements(d)), w = random_values(conv2d_w_elements(d));
  const auto b = random_values(d.c_out), dy = random_values(conv2d_y_elements(d));
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
  for (auto _ : state) {
    switch (pass) {
      case Pass::forward: cpu::conv2d_forward(d, x.data(), w.data(), b.data(), y.data(), nullptr); break;
      case Pass::backward_data: cpu::conv2d_backward_data(d, dy.data(), w.data(), dx.data(), nullptr); break;
      case Pass::backward_weight:
        cpu::conv2d_backward_weight(d, x.data(), dy.data(), dw.data(), db.data(), nullptr);
        break;
    }
    benchmark::ClobberMemory();
  }
  const double flops = conv2d_flops(d) * double(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
  state.counters["%peak"] = benchmark::Counter(flops * 1e-9 / peak_gflops * 100.0, benchmark::Counter::kIsRate);
}

void register_benchmarks() {
  const int threads = omp_get_max_threads();
  const double peak = machine::cpu_f32_peak_gflops(threads);
  benchmark::AddCustomContext("threads (OpenMP)", std::to_string(threads));
  benchmark::AddCustomContext("f32 peak GFLOP/s", machine::cpu_f32_peak_description(threads));

  std::vector<std::pair<std::string, Conv2dDesc>> shapes = {
      {"unet3x3_64ch_256", conv3x3(64, 256)},
      {"unet3x3_128ch_128", conv3x3(128, 128)},
      {"unet3x3_256ch_64", conv3x3(256, 64)},
      {"unet3x3_512ch_32", conv3x3(512, 32)},
  };
  Conv2dDesc depthwise = conv3x3(256, 64);
  depthwise.groups = 256;
  shapes.emplace_back("depthwise3x3_256ch_64", depthwise);
  Conv2dDesc pointwise = conv3x3(256, 64);
  pointwise.kernel_h = pointwise.kernel_w = 1;
  pointwise.pad_h = pointwise.pad_w = 0;
  shapes.emplace_back("pointwise_256ch_64", pointwise);

  for (const auto& [name, d] : shapes) {
    for (Pass p : {Pass::forward, Pass::backward_data, Pass::backward_weight}) {
      benchmark::RegisterBenchmark(("conv2d/" + std::string(pass_name(p)) + "/" + name).c_str(), bm_cpu_conv, d, p,
                                   peak)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
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
