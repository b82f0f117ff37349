// The C++ twin of tools/fixtures/deterministic_weights.py: fills a module's state from a formula of
// each tensor's name so a full-size model can be compared with PyTorch through tiny committed
// fixtures (input and reference outputs only). Keep the two files in step.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "nn/module.h"

namespace se::testing {

inline uint32_t crc32_of(const std::string& text) {  // zlib's crc32
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : text) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xFFFFFFFFu;
}

inline std::vector<float> deterministic_values(const std::string& name, const Shape& shape) {
  const int64_t numel = shape_numel(shape);
  const double phase = double(crc32_of(name) % 10000) / 10000.0 * 2.0 * M_PI;
  std::vector<float> out(static_cast<size_t>(numel));
  auto ends_with = [&](const char* suffix) { return name.ends_with(suffix); };
  for (int64_t i = 0; i < numel; ++i) {
    const double wave = std::sin(0.618 * double(i) + phase);
    double v;
    if (ends_with("running_var")) {
      v = 1.0 + 0.5 * wave * wave;
    } else if (ends_with("running_mean")) {
      v = 0.1 * wave;
    } else if (shape.size() <= 1) {
      v = ends_with("weight") ? 1.0 + 0.1 * wave : 0.05 * wave;
    } else {
      const double fan_in = double(numel / shape[0]);
      v = std::sqrt(3.0 / fan_in) * wave;
    }
    out[static_cast<size_t>(i)] = static_cast<float>(v);
  }
  return out;
}

inline void fill_deterministic(nn::Module& module) {
  NoGradGuard no_grad;
  for (auto& [name, tensor] : module.state_dict()) {
    if (!is_floating(tensor.dtype())) continue;
    tensor.copy_(from_vector<float>(deterministic_values(name, tensor.shape()), tensor.shape()));
  }
}

inline Tensor deterministic_input(const Shape& shape) {
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(2.0 * std::sin(0.05 * double(i) + 0.3));
  return from_vector<float>(values, shape);
}

// After one training step of `model` whose loss was `loss`: the loss, each parameter's gradient sum and sum of
// squares and every BatchNorm's running statistics against training_step_summary's "<prefix>..." tensors in
// `reference` (read from `path`), within rel_tol; reference_name maps our names to the fixture's. Every
// parameter on either side must be on the other.
inline void expect_training_step_matches(const nn::Module& model, const Tensor& loss,
                                         const std::map<std::string, Tensor>& reference, const std::string& prefix,
                                         const std::function<std::string(const std::string&)>& reference_name,
                                         const std::string& path, double rel_tol = 1e-9) {
  auto expect_near_reference = [&](double actual, const std::string& key) {
    const auto it = reference.find(prefix + key);
    ASSERT_NE(it, reference.end()) << path << " has no tensor '" << prefix << key << "'";
    const double expected = it->second.item();
    EXPECT_NEAR(actual, expected, rel_tol * (1 + std::abs(expected))) << key;
  };
  expect_near_reference(loss.item(), "loss");
  int checked = 0;
  for (const auto& [name, parameter] : model.named_parameters()) {
    ASSERT_TRUE(parameter.grad().defined()) << name;
    const std::string ref = reference_name(name);
    expect_near_reference(sum(parameter.grad()).item(), "grad_sum." + ref);
    expect_near_reference(sum(mul(parameter.grad(), parameter.grad())).item(), "grad_sumsq." + ref);
    ++checked;
  }
  int reference_parameters = 0;
  for (const auto& [key, tensor] : reference) reference_parameters += key.starts_with(prefix + "grad_sum.") ? 1 : 0;
  EXPECT_EQ(checked, reference_parameters) << "parameters here and in " << path;
  for (const auto& [name, buffer] : model.named_buffers()) {
    if (!name.ends_with("running_mean") && !name.ends_with("running_var")) continue;
    const auto it = reference.find(prefix + reference_name(name));
    ASSERT_NE(it, reference.end()) << path << " has no running statistics for " << name;
    const std::vector<double> actual = buffer.to_vector<double>(), expected = it->second.to_vector<double>();
    ASSERT_EQ(actual.size(), expected.size()) << name;
    for (size_t k = 0; k < actual.size(); ++k) {
      EXPECT_NEAR(actual[k], expected[k], rel_tol * (1 + std::abs(expected[k]))) << name << "[" << k << "]";
    }
  }
}

// Labels (i * 7 + i // 13) % (classes + 1) by flat index i, `classes` meaning ignored (255): the fixed
// target of the training-step fixtures.
inline Tensor training_target(const Shape& shape, int64_t classes, Device device) {
  std::vector<int64_t> labels(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < labels.size(); ++i) {
    const int64_t label = static_cast<int64_t>((i * 7 + i / 13) % static_cast<size_t>(classes + 1));
    labels[i] = label == classes ? 255 : label;
  }
  return from_vector<int64_t>(labels, shape, {DType::i64}).to(device);
}

}  // namespace se::testing
