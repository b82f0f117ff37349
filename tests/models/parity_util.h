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

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// deterministic_weights.py's hashed_values: deterministic_values, except that weights of two or more dims
// are uniform in +-sqrt(6 / fan_in) from splitmix64((crc32(name) << 32) + index), filters as uncorrelated
// as a random init (the sine waves' correlated filters make a deep net's training step too ill-conditioned
// to compare in float64).
inline std::vector<float> hashed_values(const std::string& name, const Shape& shape) {
  if (shape.size() <= 1 || name.ends_with("running_mean") || name.ends_with("running_var")) {
    return deterministic_values(name, shape);
  }
  const int64_t numel = shape_numel(shape);
  const uint64_t seed = uint64_t(crc32_of(name)) << 32;
  const double bound = std::sqrt(6.0 / double(numel / shape[0]));
  std::vector<float> out(static_cast<size_t>(numel));
  for (int64_t i = 0; i < numel; ++i) {
    const double u = double(splitmix64(seed + uint64_t(i)) >> 11) * 0x1p-52 - 1.0;  // [-1, 1), 53 bits
    out[static_cast<size_t>(i)] = static_cast<float>(bound * u);
  }
  return out;
}

inline void fill_hashed(nn::Module& module) {
  NoGradGuard no_grad;
  for (auto& [name, tensor] : module.state_dict()) {
    if (!is_floating(tensor.dtype())) continue;
    tensor.copy_(from_vector<float>(hashed_values(name, tensor.shape()), tensor.shape()));
  }
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

// After one training step of `model` whose loss was `loss`: the loss and the sum and sum of squares of each
// parameter's gradient and of every BatchNorm's running statistics against training_step_summary's
// "<prefix>..." tensors in `reference` (read from `path`), within rel_tol; reference_name maps our names to
// the fixture's. Every parameter on either side must be on the other. A sum's tolerance is relative to the
// magnitude of what it adds, sqrt(numel * sum of squares), not to the sum: the gradient of a conv feeding a
// softmax sums to about 0, and rounding alone moves such a sum by more than rel_tol of itself.
inline void expect_training_step_matches(const nn::Module& model, const Tensor& loss,
                                         const std::map<std::string, Tensor>& reference, const std::string& prefix,
                                         const std::function<std::string(const std::string&)>& reference_name,
                                         const std::string& path, double rel_tol = 1e-9) {
  auto reference_value = [&](const std::string& key) {
    const auto it = reference.find(prefix + key);
    if (it == reference.end()) {
      ADD_FAILURE() << path << " has no tensor '" << prefix << key << "'";
      return std::nan("");
    }
    return it->second.item();
  };
  auto expect_near = [&](double actual, double expected, double scale, const std::string& key) {
    EXPECT_NEAR(actual, expected, rel_tol * (1 + scale)) << key;
  };
  // sum and sum of squares of `values`, whose reference keys are "<kind>sum." and "<kind>sumsq." + name.
  auto expect_sums = [&](const Tensor& values, const std::string& kind, const std::string& name) {
    const double sumsq = reference_value(kind + "sumsq." + name);
    expect_near(sum(mul(values, values)).item(), sumsq, std::abs(sumsq), kind + "sumsq." + name);
    expect_near(sum(values).item(), reference_value(kind + "sum." + name),
                std::sqrt(double(values.numel()) * std::abs(sumsq)), kind + "sum." + name);
  };
  const double expected_loss = reference_value("loss");
  expect_near(loss.item(), expected_loss, std::abs(expected_loss), "loss");
  int checked = 0;
  for (const auto& [name, parameter] : model.named_parameters()) {
    ASSERT_TRUE(parameter.grad().defined()) << name;
    expect_sums(parameter.grad(), "grad_", reference_name(name));
    ++checked;
  }
  int reference_parameters = 0;
  for (const auto& [key, tensor] : reference) reference_parameters += key.starts_with(prefix + "grad_sum.") ? 1 : 0;
  EXPECT_EQ(checked, reference_parameters) << "parameters here and in " << path;
  for (const auto& [name, buffer] : model.named_buffers()) {
    if (name.ends_with("running_mean") || name.ends_with("running_var")) expect_sums(buffer, "", reference_name(name));
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
