// Bandwidth of the training loop's kernels around the model, f32: softmax forward and backward on
// SegFormer-B0's stage-1 attention scores (16384 x 256), softmax cross-entropy forward and backward on
// Cityscapes-sized logits (19 x 512 x 512, ignore index 255), the confusion matrix from the logits' argmax
// and from given predictions, and the multi-tensor optimizer steps over SegFormer-B0's parameters (SGD with
// momentum, AdamW, the global gradient norm's sum of squares, loss-scaling unscale-and-check).
// Counter GB/s: what each kernel call reads and writes at least (every input once, every output once).
// Softmax also runs cuDNN's (softmax/.../cudnn) on a real GPU in builds with the vendor references.
// Run: build/bench/bench_loss_metrics_optim --benchmark_counters_tabular=true
#include <omp.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/kernel_harness.h"
#include "kernels/loss.h"
#include "kernels/metrics.h"
#include "kernels/optim.h"
#include "kernels/softmax.h"
#include "models/registry.h"

namespace se::kernels::bench {
namespace {

constexpr double kF32 = sizeof(float);

// SegFormer-B0 stage-1 attention: 16384 queries x 256 keys, softmax over the keys. Forward reads the
// scores and writes the probabilities; backward reads grad_y and y and writes grad_x.
void bm_softmax(benchmark::State& state, Backend backend, bool backward_pass) {
  const SoftmaxDesc d{16384, 256, 1};
  const int64_t n = d.outer * d.size;
  Buffer<float> x(backend, random_values(n)), y(backend, n);  // (16384, 256) each
  Buffer<float> grad_y(backend, random_values(n)), grad_x(backend, n);
  auto forward = [&] { SE_BENCH_CALL(backend, softmax_forward<float>, y.data(), x.data(), d); };
  if (!backward_pass) {
    time_calls(state, backend, forward, "GB/s", 2 * kF32 * n);
    return;
  }
  forward();
  time_calls(
      state, backend,
      [&] { SE_BENCH_CALL(backend, softmax_backward<float>, grad_x.data(), grad_y.data(), y.data(), d); }, "GB/s",
      3 * kF32 * n);
}

#ifdef SEGENGINE_VENDOR_BENCH
// cuDNN's softmax over the same scores (CUDNN_SOFTMAX_ACCURATE over the channels of (16384, 256, 1, 1)).
void bm_cudnn_softmax(benchmark::State& state, bool backward_pass) {
  const SoftmaxDesc d{16384, 256, 1};
  const int64_t n = d.outer * d.size;
  const vendor::Dims4 dims = *vendor::cudnn_softmax_dims(d);
  Buffer<float> x(Backend::cuda, random_values(n)), y(Backend::cuda, n);  // (16384, 256) each
  Buffer<float> grad_y(Backend::cuda, random_values(n)), grad_x(Backend::cuda, n);
  const vendor::Call forward = vendor::softmax_forward(dims, DType::f32, x.data(), y.data(), nullptr);
  if (!backward_pass) {
    time_calls(state, Backend::cuda, forward, "GB/s", 2 * kF32 * n);
    return;
  }
  forward();
  time_calls(state, Backend::cuda,
             vendor::softmax_backward(dims, DType::f32, y.data(), grad_y.data(), grad_x.data(), nullptr), "GB/s",
             3 * kF32 * n);
}
#endif

constexpr int64_t kClasses = 19, kPixels = 512 * 512;

// Cross-entropy, or focal loss (gamma 2, the usual setting), of 512x512 pixels, 19 classes. Forward reads
// logits and targets and writes the per-pixel loss, weight (or validity) and log-sum-exp; backward (one
// gradient for all pixels, as the mean gives) reads logits, log-sum-exp and targets and writes the gradient.
void bm_pixel_loss(benchmark::State& state, Backend backend, bool backward_pass, bool focal) {
  CrossEntropyDesc d;
  d.classes = kClasses;
  d.spatial = kPixels;
  d.ignore_index = 255;
  FocalLossDesc focal_desc;
  focal_desc.classes = kClasses;
  focal_desc.spatial = kPixels;
  focal_desc.ignore_index = 255;
  focal_desc.gamma = 2.0;
  Buffer<float> logits(backend, random_values(kClasses * kPixels, -4.0f, 4.0f));          // (1, C, S)
  Buffer<float> grad_logits(backend, kClasses * kPixels);                                 // (1, C, S)
  Buffer<int64_t> target(backend, class_indices(kPixels, kClasses));                      // (1, S)
  Buffer<float> loss(backend, kPixels), weight(backend, kPixels), lse(backend, kPixels);  // (1, S) each
  Buffer<int64_t> bad_target(backend, std::vector<int64_t>{d.ignore_index});              // (1)
  Buffer<float> one(backend, std::vector<float>{1.0f});                                   // (1)
  auto forward = [&] {
    if (focal) {
      SE_BENCH_CALL(backend, focal_loss_forward<float>, loss.data(), weight.data(), lse.data(), bad_target.data(),
                    logits.data(), target.data(), nullptr, focal_desc);
    } else {
      SE_BENCH_CALL(backend, cross_entropy_forward<float>, loss.data(), weight.data(), lse.data(), bad_target.data(),
                    logits.data(), target.data(), nullptr, d);
    }
  };
  const double logits_bytes = kF32 * kClasses * kPixels;
  if (!backward_pass) {
    time_calls(state, backend, forward, "GB/s", logits_bytes + (8 + 3 * kF32) * kPixels);
    return;
  }
  forward();
  time_calls(
      state, backend,
      [&] {
        if (focal) {
          SE_BENCH_CALL(backend, focal_loss_backward<float>, grad_logits.data(), one.data(), 0, logits.data(),
                        lse.data(), target.data(), nullptr, focal_desc);
        } else {
          SE_BENCH_CALL(backend, cross_entropy_backward<float>, grad_logits.data(), one.data(), 0, logits.data(),
                        lse.data(), target.data(), nullptr, d);
        }
      },
      "GB/s", 2 * logits_bytes + (8 + kF32) * kPixels);
}

// The confusion matrix of 512x512 pixels, 19 classes: from the logits' argmax (reads the logits and
// targets) or from given i64 predictions (reads predictions and targets); both read and write the matrix.
void bm_confusion(benchmark::State& state, Backend backend, bool from_logits) {
  const ConfusionDesc d{1, kClasses, kPixels, 255};
  Buffer<float> logits(backend, random_values(kClasses * kPixels));          // (1, C, S)
  Buffer<int64_t> prediction(backend, class_indices(kPixels, kClasses, 5));  // (1, S)
  Buffer<int64_t> target(backend, class_indices(kPixels, kClasses));         // (1, S)
  Buffer<int64_t> confusion(backend, kClasses * kClasses);                   // (C, C)
  Buffer<int64_t> bad_value(backend, std::vector<int64_t>{d.ignore_index});  // (1)
  const double matrix_bytes = 16.0 * kClasses * kClasses;
  if (from_logits) {
    time_calls(
        state, backend,
        [&] {
          SE_BENCH_CALL(backend, argmax_confusion_update<float>, confusion.data(), bad_value.data(), logits.data(),
                        target.data(), d);
        },
        "GB/s", kF32 * kClasses * kPixels + 8.0 * kPixels + matrix_bytes);
  } else {
    time_calls(
        state, backend,
        [&] {
          SE_BENCH_CALL(backend, confusion_update, confusion.data(), bad_value.data(), prediction.data(), target.data(),
                        d);
        },
        "GB/s", 16.0 * kPixels + matrix_bytes);
  }
}

// The sizes of SegFormer-B0's parameter tensors (19 classes), from the model itself, built once.
const std::vector<int64_t>& segformer_b0_parameter_numels() {
  static const std::vector<int64_t> numels = [] {
    std::vector<int64_t> out;
    const auto model = models::build_model_from_json(R"({"name": "segformer", "variant": "b0", "num_classes": 19})");
    for (const Tensor& p : model->parameters()) out.push_back(p.numel());
    return out;
  }();
  return numels;
}

// `lists` lists of one f32 tensor per parameter (parameters, gradients, optimizer state), as the optimizer
// kernels see them. Each list is one allocation holding its tensors at 64-byte aligned offsets; lists 0 and
// 1 hold random values, the state lists start at zero.
class TensorLists {
 public:
  TensorLists(Backend backend, const std::vector<int64_t>& numels, int lists) : numels_(numels) {
    std::vector<int64_t> offsets;
    int64_t total = 0;
    for (int64_t n : numels_) {
      offsets.push_back(total);
      total += (n + 15) / 16 * 16;
    }
    for (int l = 0; l < lists; ++l) {
      storage_.push_back(
          std::make_unique<Buffer<float>>(backend, l < 2 ? random_values(total) : std::vector<float>(total)));
      for (int64_t offset : offsets) pointers_[l].push_back(storage_.back()->data() + offset);
      list_.lists[l] = pointers_[l].data();
    }
    list_.count = static_cast<int64_t>(numels_.size());
    list_.numels = numels_.data();
    if (backend == Backend::cuda) {
      workspace_ =
          std::make_unique<Buffer<uint8_t>>(backend, static_cast<int64_t>(multi_tensor_workspace_bytes(list_)));
    }
  }
  const MultiTensorList& list() const { return list_; }
  void* workspace() const { return workspace_ ? workspace_->data() : nullptr; }

 private:
  std::vector<int64_t> numels_;
  std::vector<std::unique_ptr<Buffer<float>>> storage_;
  std::vector<float*> pointers_[kMaxListsPerStep];
  MultiTensorList list_;
  std::unique_ptr<Buffer<uint8_t>> workspace_;
};

enum class OptimStep { sgd_momentum, adamw, sum_of_squares, unscale_and_check };

struct OptimCase {
  OptimStep step;
  const char* name;
  int lists;    // tensor lists read
  int written;  // of them written back
};

// One multi-tensor call over SegFormer-B0's parameters. Bytes: every list read once, the updated ones
// written once. unscale_and_check uses scale 1 so the repeats leave the gradients as they are.
void bm_optim(benchmark::State& state, Backend backend, OptimCase c) {
  const std::vector<int64_t>& numels = segformer_b0_parameter_numels();
  int64_t total = 0;
  for (int64_t n : numels) total += n;
  TensorLists t(backend, numels, c.lists);
  Buffer<float> scalar(backend, 1);  // () the sum of squares, or the found-inf flag
  SgdDesc sgd;
  sgd.momentum = 0.9f;
  sgd.weight_decay = 5e-4f;
  AdamDesc adamw;
  adamw.lr = 6e-5f;
  adamw.weight_decay = 0.01f;
  time_calls(
      state, backend,
      [&] {
        switch (c.step) {
          case OptimStep::sgd_momentum: SE_BENCH_CALL(backend, sgd_step, sgd, t.list(), t.workspace()); break;
          case OptimStep::adamw: SE_BENCH_CALL(backend, adam_step, adamw, t.list(), t.workspace()); break;
          case OptimStep::sum_of_squares:
            SE_BENCH_CALL(backend, sum_of_squares, t.list(), scalar.data(), t.workspace());
            break;
          case OptimStep::unscale_and_check:
            SE_BENCH_CALL(backend, unscale_and_check, t.list(), 1.0f, scalar.data(), t.workspace());
            break;
        }
      },
      "GB/s", kF32 * double(c.lists + c.written) * double(total));
  state.SetLabel(std::to_string(numels.size()) + " tensors, " + std::to_string(total) + " parameters");
}

void register_benchmarks() {
  benchmark::AddCustomContext("threads (OpenMP)", std::to_string(omp_get_max_threads()));
  register_directions("softmax", "16384x256", bm_softmax);
#ifdef SEGENGINE_VENDOR_BENCH
  for (bool backward : {false, true}) {
    register_vendor(backward ? "softmax/backward/16384x256" : "softmax/forward/16384x256", "cudnn",
                    [backward](benchmark::State& s) { bm_cudnn_softmax(s, backward); });
  }
#endif
  register_directions("cross_entropy", "19x512x512", [](benchmark::State& s, Backend b, bool backward_pass) {
    bm_pixel_loss(s, b, backward_pass, false);
  });
  register_directions("focal_loss", "19x512x512", [](benchmark::State& s, Backend b, bool backward_pass) {
    bm_pixel_loss(s, b, backward_pass, true);
  });
  register_on_backends("metrics/argmax_confusion/19x512x512",
                       [](benchmark::State& s, Backend b) { bm_confusion(s, b, true); });
  register_on_backends("metrics/confusion/19x512x512",
                       [](benchmark::State& s, Backend b) { bm_confusion(s, b, false); });
  const OptimCase steps[] = {{OptimStep::sgd_momentum, "sgd_momentum", 3, 2},
                             {OptimStep::adamw, "adamw", 4, 3},
                             {OptimStep::sum_of_squares, "sum_of_squares", 1, 0},
                             {OptimStep::unscale_and_check, "unscale_and_check", 1, 1}};
  for (const OptimCase& c : steps) {
    register_on_backends(std::string("optim/") + c.name + "/segformer_b0",
                         [c](benchmark::State& s, Backend b) { bm_optim(s, b, c); });
  }
}

}  // namespace
}  // namespace se::kernels::bench

int main(int argc, char** argv) {
  return se::kernels::bench::run_benchmarks(argc, argv, se::kernels::bench::register_benchmarks);
}
