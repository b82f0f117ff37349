// Helpers shared by the CNN model tests (ResNet, VGG, FCN, DeepLab, PSPNet).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "models/model.h"
#include "nn/safetensors.h"
#include "tests/models/parity_util.h"

namespace se::testing {

inline std::set<std::string> state_names(const nn::Module& module) {
  std::set<std::string> names;
  for (const auto& [name, tensor] : module.state_dict()) names.insert(name);
  return names;
}

// After a backward through every output: each parameter has a gradient of its own shape.
inline void expect_every_parameter_has_a_gradient(const nn::Module& module) {
  for (const auto& [name, p] : module.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name << " got no gradient";
    EXPECT_EQ(p.grad().shape(), p.shape()) << name;
  }
}

// max |a - b| / (max |b| + tiny): one number for "equal within rel" that does not blow up near zeros.
inline double max_relative_error(const Tensor& actual, const Tensor& expected) {
  EXPECT_EQ(actual.shape(), expected.shape());
  if (actual.shape() != expected.shape()) return INFINITY;
  const std::vector<float> a = actual.to_vector<float>(), b = expected.to_vector<float>();
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, double(std::abs(a[i] - b[i])));
    max_ref = std::max(max_ref, double(std::abs(b[i])));
  }
  return max_diff / (max_ref + 1e-30);
}

// A model on the CPU and its copy on cuda:0 (the emulator in build-emu) give the same logits and the
// same gradients of the first and last parameters for one input: the whole network runs on the device.
// The first conv's gradient passes back through every training-mode BN, whose backward cancels
// (g - mean(g) - x_hat * mean(g * x_hat)); in f32 it is only good to ~2e-3 relative even on the CPU
// (measured against f64 for DeepLabV3+ on ResNet-18), hence grad_rel.
inline void expect_cuda_model_matches_cpu(const std::function<std::shared_ptr<models::SegmentationModel>()>& make,
                                          const Shape& input_shape, bool training, double rel = 2e-4,
                                          double grad_rel = 1e-2) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(7);
  auto cpu_model = make();
  auto cuda_model = make();
  cuda_model->load_state_dict(cpu_model->state_dict());
  cuda_model->to(Device::cuda());
  cpu_model->train(training);
  cuda_model->train(training);
  const Tensor x = randn(input_shape);
  // Dropout masks come from the global counter-based generator, equal on both devices from one state.
  manual_seed(8);
  const models::SegmentationOutput a = cpu_model->forward(x);
  manual_seed(8);
  const models::SegmentationOutput b = cuda_model->forward(x.to(Device::cuda()));
  EXPECT_EQ(b.logits.device(), Device::cuda());
  EXPECT_LT(max_relative_error(b.logits.to(Device::cpu()), a.logits), rel);
  if (!training) return;
  ASSERT_EQ(a.aux_logits.defined(), b.aux_logits.defined());
  if (a.aux_logits.defined()) {
    EXPECT_LT(max_relative_error(b.aux_logits.to(Device::cpu()), a.aux_logits), rel);
  }
  const Tensor w = randn(a.logits.shape());
  auto objective = [&](const models::SegmentationOutput& out) {
    const Tensor wd = w.to(out.logits.device());
    Tensor total = sum(mul(out.logits, wd));
    return out.aux_logits.defined() ? add(total, sum(mul(out.aux_logits, wd))) : total;
  };
  objective(a).backward();
  objective(b).backward();
  const auto pa = cpu_model->named_parameters(), pb = cuda_model->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i : {size_t{0}, pa.size() - 1}) {  // the first conv and the last head's bias
    ASSERT_TRUE(pa[i].second.grad().defined()) << pa[i].first;
    EXPECT_LT(max_relative_error(pb[i].second.grad().to(Device::cpu()), pa[i].second.grad()), grad_rel) << pa[i].first;
  }
}

// Plain SGD (no momentum) on one fixed batch for `steps` steps, in training mode: the cross-entropy
// of the logits (plus 0.4 x the auxiliary head's, when there is one) must fall.
inline void expect_training_reduces_loss(models::SegmentationModel& model, const Shape& input_shape, int steps = 4,
                                         double lr = 0.01) {
  manual_seed(3);
  model.train();
  const Tensor x = randn(input_shape);
  const int64_t classes = model.num_classes();
  // A target with spatial structure: the class is a band index, so the task is learnable.
  const int64_t n = input_shape[0], h = input_shape[2], w = input_shape[3];
  std::vector<int64_t> labels(static_cast<size_t>(n * h * w));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = (int64_t(i) / w % h) * classes / h;
  const Tensor target = from_vector<int64_t>(labels, {n, h, w});
  auto loss_of = [&]() {
    const models::SegmentationOutput out = model.forward(x);
    Tensor loss = cross_entropy(out.logits, target);
    if (out.aux_logits.defined()) loss = add(loss, cross_entropy(out.aux_logits, target), 0.4);
    return loss;
  };
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    model.zero_grad();
    Tensor loss = loss_of();
    losses.push_back(loss.item());
    loss.backward();
    NoGradGuard no_grad;
    for (Tensor& p : model.parameters()) {
      if (p.grad().defined()) sub_(p, p.grad(), lr);
    }
  }
  {
    NoGradGuard no_grad;
    losses.push_back(loss_of().item());
  }
  for (double l : losses) ASSERT_TRUE(std::isfinite(l));
  std::string trajectory;
  for (double l : losses) trajectory += std::to_string(l) + " ";
  EXPECT_LT(losses.back(), 0.9 * losses.front()) << "losses: " << trajectory;
}

#ifdef SE_MODEL_FIXTURES
inline Tensor fixture_tensor(const std::string& file, const std::string& key) {
  const nn::SafetensorsContents contents = nn::load_safetensors(std::string(SE_MODEL_FIXTURES) + "/" + file);
  for (const auto& [name, tensor] : contents.tensors) {
    if (name == key) return tensor;
  }
  ADD_FAILURE() << file << " has no tensor '" << key << "'";
  return Tensor();
}

// One float64 training-mode step against tools/fixtures/make_cnn_fixtures.py's training_steps (`file`):
// hashed weights (fill_hashed), dropout off (its masks are random: every Dropout/Dropout2d module set to eval),
// two (40, 56) images, cross-entropy of the logits plus 0.4 times that of the auxiliary logits over the
// fixed target; the loss, every parameter's gradient sum and sum of squares and the running statistics
// match within 1e-9 (expect_training_step_matches).
template <typename Model>
void expect_cnn_training_step_matches(Model& model, const std::string& file, Device device) {
  const std::string path = std::string(SE_MODEL_FIXTURES) + "/" + file;
  const nn::SafetensorsContents contents = nn::load_safetensors(path);
  const std::map<std::string, Tensor> reference(contents.tensors.begin(), contents.tensors.end());
  fill_hashed(model);
  model.to(device, DType::f64);
  model.train();
  for (auto& [name, module] : model.named_modules()) {
    if (module->type_name() == "Dropout" || module->type_name() == "Dropout2d") module->eval();
  }
  CrossEntropyParams ce;
  ce.ignore_index = 255;
  const Tensor target = training_target({2, 40, 56}, model.num_classes(), device);
  const models::SegmentationOutput out =
      model.forward(deterministic_input({2, 3, 40, 56}).to(device, DType::f64), /*with_aux=*/true);
  const Tensor loss = add(cross_entropy(out.logits, target, ce), mul(cross_entropy(out.aux_logits, target, ce), 0.4));
  loss.backward();
  expect_training_step_matches(
      model, loss, reference, "", [](const std::string& name) { return name; }, path);
}
#endif

}  // namespace se::testing
