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
//
// A case whose work cuDNN or cuBLAS can do as well describes it as a VendorWork; on a GPU, in builds with
// the vendor references, bench_vendor.cpp runs that work there on the same inputs, checks the vendor's
// outputs against ours and times it beside ours.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <regex>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "engine/ops.h"
#include "kernels/conv.h"
#include "kernels/gemm.h"
#include "kernels/norm.h"
#include "kernels/pool.h"
#include "kernels/softmax.h"

namespace se::tools {

using Run = std::function<void()>;  // one timed call of the kernel(s) of a case

// The vendor call that does a case's work, with the case's tensors in the order listed here: inputs, then
// our outputs (the vendor writes into copies of them, compared with ours after one run of each).
enum class VendorOp {
  conv2d_forward,                    // Conv2dDesc; inputs x, w, bias; outputs y
  conv2d_backward_data,              // Conv2dDesc; inputs dy, w; outputs dx
  conv2d_backward_weight,            // Conv2dDesc; inputs x, dy; outputs dw, db
  conv_transpose2d_forward,          // ConvTranspose2dDesc; inputs x, w, bias; outputs y
  conv_transpose2d_backward_data,    // ConvTranspose2dDesc; inputs dy, w; outputs dx
  conv_transpose2d_backward_weight,  // ConvTranspose2dDesc; inputs x, dy; outputs dw, db
  gemm,                              // GemmDesc; inputs a, b; outputs c
  batch_norm_forward_training,       // BatchNormWork; inputs x, weight, bias;
                                     //   outputs y, mean, invstd, running_mean, running_var (updated in place)
  batch_norm_forward_inference,      // BatchNormWork; inputs x, weight, bias, mean, var (running); outputs y
  batch_norm_backward,               // BatchNormWork; inputs x, dy, weight, mean, invstd; outputs dx, sum_dy
  max_pool2d_forward,                // Pool2dDesc; inputs x; outputs y
  max_pool2d_backward,               // Pool2dDesc; inputs x, y, dy; outputs dx
  avg_pool2d_forward,                // Pool2dDesc or AdaptivePool2dDesc; inputs x; outputs y
  avg_pool2d_backward,               // Pool2dDesc or AdaptivePool2dDesc; inputs dy; outputs dx
  softmax_forward,                   // SoftmaxDesc; inputs x; outputs y
  softmax_backward,                  // SoftmaxDesc; inputs y, dy; outputs dx
};

// BatchNorm's descriptor with the constants its calls take.
struct BatchNormWork {
  kernels::BatchNormDesc desc;
  double momentum = 0.1, eps = 1e-5;
};

using VendorDesc = std::variant<kernels::Conv2dDesc, kernels::ConvTranspose2dDesc, kernels::GemmDesc, BatchNormWork,
                                kernels::Pool2dDesc, kernels::AdaptivePool2dDesc, kernels::SoftmaxDesc>;

struct VendorWork {
  VendorOp op;
  VendorDesc desc;
  std::vector<Tensor> inputs;   // in the order of `op`
  std::vector<Tensor> outputs;  // ours, in the order of `op`
};

// A case ready to run: the timed call, and the work a vendor library can do alike, if any.
struct Prepared {
  Prepared(Run run) : run(std::move(run)) {}  // implicit: a case without a vendor equivalent returns its Run
  Prepared(Run run, VendorWork vendor) : run(std::move(run)), vendor(std::move(vendor)) {}
  Run run;
  std::optional<VendorWork> vendor;
};

struct Case {
  std::string name;   // "family/direction", matched by --filter
  std::string model;  // where the shape comes from
  std::string shape;
  double flops = 0;  // per run; 0 for memory-bound kernels
  double bytes = 0;  // moved per run (reads + writes), for GB/s
  // Allocates the case's tensors (only for the selected cases) and returns the timed call.
  std::function<Prepared()> prepare;
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
  // Time and check the cuDNN/cuBLAS equivalents too: a real GPU, in a build with the vendor references.
  bool vendor = false;

  // Whether --filter selects the case: the regex is searched in "name model shape" (as `--list` prints the
  // three, separated by one space here).
  bool selects(const std::string& name, const std::string& model, const std::string& shape) const {
    return std::regex_search(name + " " + model + " " + shape, filter_regex);
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
