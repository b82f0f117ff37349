// The cases of `segengine bench kernels`: what a case is, the options the cases depend on, the helpers
// that make their tensors, and the three functions that add them, one per file:
//   bench_cases_compute.cpp  conv2d, conv_transpose2d, gemm, attention (fused and the unfused reference)
//   bench_cases_memory.cpp   elementwise, softmax, reduce, batch/layer/group norm, pooling, resize, dropout
//   bench_cases_loss.cpp     sort, cumsum, cross-entropy, focal loss, metrics, optimizers
// Each case calls one kernel entry point of kernels/<family>.h through SE_DISPATCH (or the short sequence of
// entry points one layer runs, e.g. BatchNorm's statistics, finalize and normalize) on a layer shape of the
// model zoo at 512x512, batch 1. Its tensors are allocated by `prepare`, outside the timing.
//
// Byte counts (for GB/s) are what each kernel call has to read and write at least: every input once,
// every output once; a tensor two calls of one case both read counts twice.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <regex>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/ops.h"

namespace se::tools {

using Run = std::function<void()>;  // one timed call of the kernel(s) of a case

struct Case {
  std::string name;   // "family/direction", matched by --filter
  std::string model;  // where the shape comes from
  std::string shape;
  double flops = 0;  // per run; 0 for memory-bound kernels
  double bytes = 0;  // moved per run (reads + writes), for GB/s
  // Allocates the case's tensors (only for the selected cases) and returns the timed call.
  std::function<Run()> prepare;
};

struct Options {
  std::string filter = ".*";
  std::regex filter_regex{".*"};
  Device device = Device::cpu();
  DType dtype = DType::f32;
  std::string json_path;
  int repeats = 5;
  int warmup = 1;
  bool list = false;

  // Whether --filter selects the case: the regex is searched in "name model".
  bool selects(const std::string& name, const std::string& model) const {
    return std::regex_search(name + " " + model, filter_regex);
  }
};

// Standard normal values of the benchmark's dtype on its device.
inline Tensor random_tensor(const Shape& shape, const Options& o) {
  return randn(shape, {o.dtype, o.device});
}

// Class indices uniform in [0, classes), i64 on the benchmark's device.
inline Tensor random_targets(const Shape& shape, int64_t classes, const Options& o) {
  const Tensor uniform = rand(shape, {DType::f32, o.device});
  return clamp(mul(uniform, static_cast<double>(classes)), 0.0, static_cast<double>(classes - 1)).to(DType::i64);
}

// The dtype of the f32-or-f64 companions of T (norm parameters, saved log-sum-exp, attention's lse):
// f64 for double data, f32 otherwise.
template <typename T>
constexpr DType companion_dtype() {
  return std::is_same_v<T, double> ? DType::f64 : DType::f32;
}

// {64, 512, 512} -> "64x512x512".
inline std::string dims_str(std::initializer_list<int64_t> dims) {
  std::string out;
  for (int64_t d : dims) {
    if (!out.empty()) out += 'x';
    out += std::to_string(d);
  }
  return out;
}

void add_compute_cases(std::vector<Case>& cases, const Options& o);
void add_memory_cases(std::vector<Case>& cases, const Options& o);
void add_loss_cases(std::vector<Case>& cases, const Options& o);

}  // namespace se::tools
