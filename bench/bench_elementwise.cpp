// Elementwise bandwidth, f32, contiguous: add on 16M elements (two reads and one write per element), and
// dropout (p 0.1) forward and backward on SegFormer-B0's decoder features (256 x 128 x 128; forward reads x
// and writes y and the byte mask, backward reads grad_y and the mask and writes grad_x), on the CPU (all
// OpenMP threads) and on a real GPU when present (timed with CUDA events). Reports memory traffic as GB/s,
// to compare with the machine's bandwidth.
// Run: build/bench/bench_elementwise --benchmark_counters_tabular=true
#include <cstdint>
#include <vector>

#include "bench/kernel_harness.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"

namespace se::kernels::bench {
namespace {

constexpr int64_t kNumel = int64_t{16} << 20;

BinaryDesc add_desc() {
  BinaryDesc desc;
  desc.op = BinaryOp::add;
  desc.dtype = DType::f32;
  desc.a = desc.b = flat_layout(kNumel);
  return desc;
}

void bm_add(benchmark::State& state, Backend backend) {
  Buffer<float> a(backend, std::vector<float>(kNumel, 1.0f)), b(backend, std::vector<float>(kNumel, 2.0f));
  Buffer<float> out(backend, kNumel);  // (kNumel) each
  const BinaryDesc desc = add_desc();
  time_calls(
      state, backend, [&] { SE_BENCH_CALL(backend, binary, out.data(), a.data(), b.data(), desc); }, "GB",
      3.0 * sizeof(float) * kNumel);
}

void bm_dropout(benchmark::State& state, Backend backend, bool backward_pass) {
  DropoutDesc d;
  d.count = 256 * 128 * 128;
  d.seed = 42;
  d.p = 0.1f;
  Buffer<float> x(backend, random_values(d.count)), y(backend, d.count);  // (count) each
  Buffer<uint8_t> mask(backend, d.count);                                 // (count)
  auto forward = [&] { SE_BENCH_CALL(backend, dropout_forward, d, x.data(), y.data(), mask.data()); };
  const double bytes = (2.0 * sizeof(float) + 1.0) * static_cast<double>(d.count);
  if (!backward_pass) {
    time_calls(state, backend, forward, "GB/s", bytes);
    return;
  }
  forward();
  time_calls(
      state, backend, [&] { SE_BENCH_CALL(backend, dropout_backward, d, y.data(), mask.data(), x.data()); }, "GB/s",
      bytes);
}

void register_benchmarks() {
  register_on_backends("add/f32/16M", bm_add);
  register_directions("dropout", "256x128x128", bm_dropout);
}

}  // namespace
}  // namespace se::kernels::bench

int main(int argc, char** argv) {
  return se::kernels::bench::run_benchmarks(argc, argv, se::kernels::bench::register_benchmarks);
}
