// The engine's functional ops (torch.nn.functional's counterparts) against PyTorch itself:
// tools/fixtures/make_functional_fixtures.py ran each case below through PyTorch in float64 and saved its
// inputs, output, an upstream gradient and the inputs' gradients to fixtures/functional_parity.safetensors.
// Here every case is restated by name with our ops and compared in float64 on the CPU and (tests named
// Cuda) on the CUDA device, forward and backward, so a difference is one of semantics (coordinates,
// windows, reductions), not of rounding. The kernel tests check the same ops against references written
// from PyTorch's formulas; this checks those readings. (Here, not in tests/engine: nn owns safetensors.)
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/metrics.h"
#include "engine/ops.h"
#include "kernels/optim.h"
#include "nn/safetensors.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

const std::string kFixturePath = std::string(SE_NN_FIXTURES) + "/functional_parity.safetensors";

const std::map<std::string, Tensor>& fixture() {
  static const std::map<std::string, Tensor> tensors = [] {
    std::map<std::string, Tensor> by_name;
    for (auto& [name, tensor] : nn::load_safetensors(kFixturePath).tensors) by_name.emplace(name, tensor);
    return by_name;
  }();
  return tensors;
}

// One case's view of the fixture on a device, and the state its call leaves to compare after it.
class CaseContext {
 public:
  CaseContext(std::string name, Device device) : name_(std::move(name)), device_(device) {}

  bool has(const std::string& key) const { return fixture().contains(name_ + "." + key); }
  // The reference tensor "<case>.<key>" on the device (a copy: calls may update it in place).
  Tensor ref(const std::string& key) const {
    const auto it = fixture().find(name_ + "." + key);
    if (it == fixture().end()) {
      ADD_FAILURE() << kFixturePath << " has no tensor '" << name_ << "." << key
                    << "' (rerun tools/fixtures/make_functional_fixtures.py)";
      return Tensor();
    }
    return it->second.to(device_).clone();
  }
  // After the call, `actual` must equal the reference "<case>.<key>".
  void compare_after(const std::string& key, const Tensor& actual) { after_.emplace_back(key, actual); }
  const std::vector<std::pair<std::string, Tensor>>& after() const { return after_; }

 private:
  std::string name_;
  Device device_;
  std::vector<std::pair<std::string, Tensor>> after_;
};

using CaseFn = std::function<Tensor(const std::vector<Tensor>& in, CaseContext& ctx)>;
using testing::resize_by;
using testing::resize_to;

Pool2dParams pool(std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                  bool ceil_mode = false) {
  Pool2dParams p;
  p.kernel_size = kernel;
  p.stride = stride;
  p.padding = padding;
  p.ceil_mode = ceil_mode;
  return p;
}

// The cases of make_functional_fixtures.py, in its order, with the same arguments.
const std::vector<std::pair<std::string, CaseFn>>& cases() {
  using Mode = InterpolateMode;
  static const std::vector<std::pair<std::string, CaseFn>> all = [] {
    std::vector<std::pair<std::string, CaseFn>> c;
    auto add = [&](const std::string& name, CaseFn fn) { c.emplace_back(name, std::move(fn)); };
    // resize
    add("interp_bilinear_size", [](auto& in, auto&) { return interpolate(in[0], resize_to({8, 4}, Mode::bilinear)); });
    add("interp_bilinear_size_ac", [](auto& in, auto&) {
      return interpolate(in[0], resize_to({9, 11}, Mode::bilinear, true));
    });
    add("interp_bilinear_scale", [](auto& in, auto&) {
      return interpolate(in[0], resize_by({1.7, 0.6}, Mode::bilinear));
    });
    add("interp_bilinear_scale_ac", [](auto& in, auto&) {
      return interpolate(in[0], resize_by({2.0, 2.5}, Mode::bilinear, true));
    });
    add("interp_nearest_size", [](auto& in, auto&) { return interpolate(in[0], resize_to({11, 4}, Mode::nearest)); });
    add("interp_nearest_scale", [](auto& in, auto&) {
      return interpolate(in[0], resize_by({2.3, 0.5}, Mode::nearest));
    });
    // pooling
    add("max_pool_ceil", [](auto& in, auto&) { return max_pool2d(in[0], pool({3, 3}, {2, 2}, {1, 1}, true)); });
    add("max_pool_dilated", [](auto& in, auto&) {
      Pool2dParams p = pool({2, 2}, {1, 1}, {1, 1});
      p.dilation = {2, 1};
      return max_pool2d(in[0], p);
    });
    add("max_pool_ties", [](auto& in, auto&) { return max_pool2d(in[0], pool({3, 3}, {2, 2}, {1, 1})); });
    add("avg_pool_ceil_exclude_pad", [](auto& in, auto&) {
      Pool2dParams p = pool({3, 3}, {2, 2}, {1, 1}, true);
      p.count_include_pad = false;
      return avg_pool2d(in[0], p);
    });
    add("avg_pool_include_pad", [](auto& in, auto&) { return avg_pool2d(in[0], pool({3, 2}, {2, 1}, {1, 1})); });
    for (int64_t bins : {1, 2, 3, 6}) {
      add("adaptive_avg_pool_" + std::to_string(bins), [bins](auto& in, auto&) {
        return adaptive_avg_pool2d(in[0], {bins, bins});
      });
    }
    add("adaptive_avg_pool_4x13", [](auto& in, auto&) { return adaptive_avg_pool2d(in[0], {4, 13}); });
    // convolution
    add("conv_grouped_dilated_strided", [](auto& in, auto&) {
      Conv2dParams p;
      p.stride_h = 2;
      p.pad_h = 2;
      p.pad_w = 1;
      p.dilation_h = 2;
      p.dilation_w = 3;
      p.groups = 2;
      return conv2d(in[0], in[1], in[2], p);
    });
    add("conv_depthwise", [](auto& in, auto&) {
      Conv2dParams p;
      p.pad_h = p.pad_w = 1;
      p.groups = 4;
      return conv2d(in[0], in[1], Tensor(), p);
    });
    add("conv_transpose_output_padding", [](auto& in, auto&) {
      ConvTranspose2dParams p;
      p.stride_h = p.stride_w = 2;
      p.pad_h = p.pad_w = 1;
      p.output_padding_h = p.output_padding_w = 1;
      return conv_transpose2d(in[0], in[1], in[2], p);
    });
    add("conv_transpose_grouped_dilated", [](auto& in, auto&) {
      ConvTranspose2dParams p;
      p.stride_h = 2;
      p.stride_w = 3;
      p.pad_h = 1;
      p.output_padding_h = 1;
      p.groups = 2;
      p.dilation_h = 2;
      return conv_transpose2d(in[0], in[1], Tensor(), p);
    });
    // normalisation
    add("batch_norm_train", [](auto& in, CaseContext& ctx) {
      Tensor running_mean = ctx.ref("running_mean_before"), running_var = ctx.ref("running_var_before");
      Tensor y = batch_norm(in[0], running_mean, running_var, in[1], in[2], true, 0.1, 1e-5);
      ctx.compare_after("running_mean", running_mean);
      ctx.compare_after("running_var", running_var);
      return y;
    });
    add("batch_norm_eval", [](auto& in, CaseContext& ctx) {
      return batch_norm(in[0], ctx.ref("running_mean"), ctx.ref("running_var"), in[1], in[2], false, 0.1, 1e-5);
    });
    add("layer_norm", [](auto& in, auto&) { return layer_norm(in[0], {8}, in[1], in[2], 1e-6); });
    add("layer_norm_2d", [](auto& in, auto&) { return layer_norm(in[0], {4, 6}, in[1], in[2], 1e-5); });
    add("group_norm", [](auto& in, auto&) { return group_norm(in[0], 3, in[1], in[2], 1e-5); });
    // activations, softmax, attention
    add("gelu_erf", [](auto& in, auto&) { return gelu(in[0]); });
    add("gelu_tanh", [](auto& in, auto&) { return gelu(in[0], true); });
    add("softmax_dim1", [](auto& in, auto&) { return softmax(in[0], 1); });
    add("log_softmax_dim1", [](auto& in, auto&) { return log_softmax(in[0], 1); });
    add("attention_lk_ne_lq", [](auto& in, auto&) { return scaled_dot_product_attention(in[0], in[1], in[2]); });
    // losses
    add("cross_entropy_weighted_smoothed", [](auto& in, CaseContext& ctx) {
      CrossEntropyParams p;
      p.ignore_index = 255;
      p.weight = ctx.ref("weight");
      p.label_smoothing = 0.1;
      return cross_entropy(in[0], ctx.ref("target"), p);
    });
    add("cross_entropy_none", [](auto& in, CaseContext& ctx) {
      CrossEntropyParams p;
      p.ignore_index = 255;
      p.weight = ctx.ref("weight");
      p.reduction = Reduction::none;
      return cross_entropy(in[0], ctx.ref("target"), p);
    });
    add("cross_entropy_sum_smoothed", [](auto& in, CaseContext& ctx) {
      CrossEntropyParams p;
      p.ignore_index = 255;
      p.label_smoothing = 0.2;
      p.reduction = Reduction::sum;
      return cross_entropy(in[0], ctx.ref("target"), p);
    });
    add("bce_with_logits_pos_weight", [](auto& in, CaseContext& ctx) {
      BinaryCrossEntropyParams p;
      p.pos_weight = ctx.ref("pos_weight");
      return binary_cross_entropy_with_logits(in[0], ctx.ref("target"), p);
    });
    add("bce_with_logits_extreme", [](auto& in, CaseContext& ctx) {
      BinaryCrossEntropyParams p;
      p.pos_weight = ctx.ref("pos_weight");
      p.reduction = Reduction::sum;
      return binary_cross_entropy_with_logits(in[0], ctx.ref("target"), p);
    });
    add("cross_entropy_extreme", [](auto& in, CaseContext& ctx) {
      CrossEntropyParams p;
      p.ignore_index = 255;
      p.label_smoothing = 0.05;
      return cross_entropy(in[0], ctx.ref("target"), p);
    });
    add("mse", [](auto& in, auto&) { return mse_loss(in[0], in[1]); });
    add("cosine_distance", [](auto& in, auto&) { return cosine_distance(in[0], in[1], Reduction::mean, 1e-8); });
    // segmentation losses, against the script's transcriptions of AdeelH's FocalLoss, smp's DiceLoss, Berman's
    // lovasz_softmax and mmseg's OHEMPixelSampler + CrossEntropyLoss
    add("focal", [](auto& in, CaseContext& ctx) {
      FocalLossParams p;
      p.gamma = 2.0;
      p.alpha = ctx.ref("alpha");
      p.ignore_index = 255;
      return focal_loss(in[0], ctx.ref("target"), p);
    });
    add("focal_gamma_half", [](auto& in, CaseContext& ctx) {
      FocalLossParams p;
      p.gamma = 0.5;
      p.ignore_index = 255;
      return focal_loss(in[0], ctx.ref("target"), p);
    });
    add("dice", [](auto& in, CaseContext& ctx) {
      DiceLossParams p;
      p.ignore_index = 255;
      return dice_loss(in[0], ctx.ref("target"), p);
    });
    add("dice_log_smooth", [](auto& in, CaseContext& ctx) {
      DiceLossParams p;
      p.smooth = 1.0;
      p.log_loss = true;
      p.ignore_index = 255;
      return dice_loss(in[0], ctx.ref("target"), p);
    });
    add("lovasz_softmax", [](auto& in, CaseContext& ctx) { return lovasz_softmax(in[0], ctx.ref("target"), 255); });
    add("ohem", [](auto& in, CaseContext& ctx) {
      OhemCrossEntropyParams p;
      p.thresh = 0.7;
      p.min_kept = 20;
      p.ignore_index = 255;
      p.weight = ctx.ref("weight");
      return ohem_cross_entropy(in[0], ctx.ref("target"), p);
    });
    add("ohem_min_kept", [](auto& in, CaseContext& ctx) {
      OhemCrossEntropyParams p;
      p.thresh = 0.05;
      p.min_kept = 30;
      p.ignore_index = 255;
      return ohem_cross_entropy(in[0], ctx.ref("target"), p);
    });
    return c;
  }();
  return all;
}

// |actual - expected| <= rel_tol * (1 + |expected|) everywhere (NaN where PyTorch has NaN), shapes equal;
// names the first miss.
void expect_matches(const Tensor& actual, const Tensor& expected, double rel_tol, const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << " is undefined";
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  int64_t misses = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    if (std::abs(a[k] - e[k]) <= rel_tol * (1 + std::abs(e[k])) || (std::isnan(a[k]) && std::isnan(e[k]))) continue;
    if (misses++ == 0) ADD_FAILURE() << what << "[" << k << "] = " << a[k] << ", PyTorch " << e[k];
  }
  EXPECT_EQ(misses, 0) << what << ": values differing from PyTorch's";
}

void expect_cases_match_pytorch(Device device, double rel_tol) {
  ASSERT_EQ(fixture().count("ohem_min_kept.out"), 1u) << kFixturePath << " lacks the last case";
  for (const auto& [name, run] : cases()) {
    SCOPED_TRACE(name);
    CaseContext ctx(name, device);
    std::vector<Tensor> inputs;
    for (int k = 0; ctx.has("in" + std::to_string(k)); ++k) {
      inputs.push_back(ctx.ref("in" + std::to_string(k)).requires_grad_(true));
    }
    ASSERT_FALSE(inputs.empty()) << kFixturePath << " has no inputs for " << name;
    Tensor out = run(inputs, ctx);
    expect_matches(out, ctx.ref("out"), rel_tol, name + " output");
    for (const auto& [key, actual] : ctx.after()) expect_matches(actual, ctx.ref(key), rel_tol, name + " " + key);
    out.backward(ctx.ref("gout"));
    for (size_t k = 0; k < inputs.size(); ++k) {
      expect_matches(inputs[k].grad(), ctx.ref("grad" + std::to_string(k)), rel_tol,
                     name + " gradient of input " + std::to_string(k));
    }
  }
}

// torch.optim's optimizers of the script (lr, betas, eps, weight decay, momentum as there), restated as our
// fused steps; the step number and the momentum buffer's first step are set per step below.
struct OptimizerCase {
  std::string name;
  std::optional<kernels::AdamDesc> adam;
  std::optional<kernels::SgdDesc> sgd;
};

const std::vector<OptimizerCase>& optimizer_cases() {
  static const std::vector<OptimizerCase> all = [] {
    kernels::AdamDesc adamw{.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.05f};
    kernels::AdamDesc adam_l2{.lr = 0.01f, .beta1 = 0.8f, .beta2 = 0.999f, .eps = 1e-6f, .weight_decay = 0.1f};
    adam_l2.decoupled_weight_decay = false;
    kernels::SgdDesc nesterov{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-3f, .nesterov = true};
    kernels::SgdDesc dampening{.lr = 0.05f, .momentum = 0.8f, .dampening = 0.3f, .weight_decay = 0.01f};
    return std::vector<OptimizerCase>{{"adamw", adamw, std::nullopt},
                                      {"adam_l2", adam_l2, std::nullopt},
                                      {"sgd_nesterov", std::nullopt, nesterov},
                                      {"sgd_dampening", std::nullopt, dampening}};
  }();
  return all;
}

constexpr int kOptimizerTensors = 3, kOptimizerSteps = 3;

// Three steps of each optimizer from the script's parameters and gradients (f32, as torch.optim ran them)
// end at its parameters, within f32 rounding; and global_norm is clip_grad_norm_'s total norm.
void expect_optimizers_match_pytorch(Device device) {
  for (const OptimizerCase& oc : optimizer_cases()) {
    SCOPED_TRACE(oc.name);
    CaseContext ctx(oc.name, device);
    std::vector<Tensor> params, state_a, state_b;
    for (int k = 0; k < kOptimizerTensors; ++k) {
      params.push_back(ctx.ref("param" + std::to_string(k)));
      state_a.push_back(zeros_like(params.back()));
      state_b.push_back(zeros_like(params.back()));
    }
    for (int t = 1; t <= kOptimizerSteps; ++t) {
      std::vector<Tensor> grads;
      for (int k = 0; k < kOptimizerTensors; ++k) {
        grads.push_back(ctx.ref("grad" + std::to_string(k) + ".step" + std::to_string(t)));
      }
      if (oc.adam) {
        kernels::AdamDesc desc = *oc.adam;
        desc.step = t;
        adam_step_(params, grads, state_a, state_b, desc);
      } else {
        kernels::SgdDesc desc = *oc.sgd;
        desc.first_step = t == 1;
        sgd_step_(params, grads, state_a, desc);
      }
    }
    for (int k = 0; k < kOptimizerTensors; ++k) {
      expect_matches(
          params[k], ctx.ref("result" + std::to_string(k)), 1e-6,
          oc.name + " parameter " + std::to_string(k) + " after " + std::to_string(kOptimizerSteps) + " steps");
    }
  }
  CaseContext clip("clip", device);
  std::vector<Tensor> grads;
  for (int k = 0; k < kOptimizerTensors; ++k) grads.push_back(clip.ref("grad" + std::to_string(k)).to(DType::f32));
  expect_matches(global_norm(grads).reshape({1}), clip.ref("norm"), 1e-6, "global_norm");
}

// The confusion matrix of two batches of class maps (with ignored pixels, a class never in the target and
// one in neither) gives mmsegmentation's IoUMetric values: per-class IoU, Acc and Dice with NaN for 0 / 0,
// aAcc, and their nanmeans.
void expect_metrics_match_mmseg(Device device) {
  constexpr int64_t kClasses = 6;
  CaseContext ctx("metrics", device);
  Tensor confusion = zeros({kClasses, kClasses}, {DType::i64, device});
  for (int b = 0; b < 2; ++b) {
    confusion_matrix_update(confusion, ctx.ref("pred" + std::to_string(b)), ctx.ref("target" + std::to_string(b)), 255);
  }
  const SegmentationMetrics m = segmentation_metrics(confusion.to_vector<int64_t>(), kClasses);
  auto host = [](const std::vector<double>& values) {
    return from_vector<double>(values, {static_cast<int64_t>(values.size())}, {DType::f64});
  };
  const Device cpu = Device::cpu();
  expect_matches(host(m.iou), ctx.ref("IoU").to(cpu), 1e-12, "per-class IoU");
  expect_matches(host(m.accuracy), ctx.ref("Acc").to(cpu), 1e-12, "per-class accuracy");
  expect_matches(host(m.dice), ctx.ref("Dice").to(cpu), 1e-12, "per-class Dice");
  expect_matches(host({m.pixel_accuracy}), ctx.ref("aAcc").to(cpu), 1e-12, "aAcc");
  expect_matches(host({m.mean_iou}), ctx.ref("mIoU").to(cpu), 1e-12, "mIoU");
  expect_matches(host({m.mean_accuracy}), ctx.ref("mAcc").to(cpu), 1e-12, "mAcc");
  expect_matches(host({m.mean_dice}), ctx.ref("mDice").to(cpu), 1e-12, "mDice");
}

// Every case of the fixture has its restatement here, and the other way round.
TEST(TorchReference, EveryFixtureCaseIsRestated) {
  std::map<std::string, bool> restated{{"clip", true}, {"metrics", true}};
  for (const auto& oc : optimizer_cases()) restated[oc.name] = true;
  for (const auto& [name, run] : cases()) restated[name] = true;
  for (const auto& [key, tensor] : fixture()) {
    const std::string name = key.substr(0, key.find('.'));
    EXPECT_TRUE(restated.contains(name)) << kFixturePath << " case '" << name << "' has no restatement here";
  }
  for (const auto& [name, run] : cases()) {
    EXPECT_EQ(fixture().count(name + ".out"), 1u) << "case '" << name << "' is missing from " << kFixturePath;
  }
}

TEST(TorchReference, CpuOpsMatchPyTorch) {
  expect_cases_match_pytorch(Device::cpu(), 1e-10);
}

TEST(TorchReferenceCuda, OpsMatchPyTorch) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  expect_cases_match_pytorch(Device::cuda(), 1e-10);
}

TEST(TorchReference, CpuMetricsMatchMmsegmentation) {
  expect_metrics_match_mmseg(Device::cpu());
}

TEST(TorchReferenceCuda, MetricsMatchMmsegmentation) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  expect_metrics_match_mmseg(Device::cuda());
}

TEST(TorchReference, CpuOptimizersMatchPyTorch) {
  expect_optimizers_match_pytorch(Device::cpu());
}

TEST(TorchReferenceCuda, OptimizersMatchPyTorch) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  expect_optimizers_match_pytorch(Device::cuda());
}

}  // namespace
}  // namespace se
