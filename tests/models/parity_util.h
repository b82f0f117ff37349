// The C++ twin of tools/fixtures/deterministic_weights.py: fills a module's state from a formula of
// each tensor's name so a full-size model can be compared with PyTorch through tiny committed
// fixtures (input and reference outputs only). Keep the two files in step.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/autograd.h"
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

}  // namespace se::testing
