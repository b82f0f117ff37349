// The per-element update rules of the optimizers, shared by the CPU and CUDA kernels so both
// backends compute the same values.
#pragma once

#include <cmath>

#include "core/half.h"
#include "kernels/optim.h"

namespace se::kernels {

// Bias corrections and step size of one Adam step, computed once per call on the host.
struct AdamScalars {
  float step_size;         // lr / (1 - beta1^step)
  float bias_correction2_sqrt;  // sqrt(1 - beta2^step)
};

inline AdamScalars adam_scalars(const AdamDesc& d) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(d.beta1), static_cast<double>(d.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(d.beta2), static_cast<double>(d.step));
  return {static_cast<float>(d.lr / bc1), static_cast<float>(std::sqrt(bc2))};
}

SE_HOST_DEVICE inline void sgd_update(const SgdDesc& d, float& p, float g, float* buf) {
  if (d.weight_decay != 0.0f) g += d.weight_decay * p;
  if (d.momentum != 0.0f) {
    float b = d.first_step ? g : d.momentum * *buf + (1.0f - d.dampening) * g;
    *buf = b;
    g = d.nesterov ? g + d.momentum * b : b;
  }
  p -= d.lr * g;
}

SE_HOST_DEVICE inline void adam_update(const AdamDesc& d, const AdamScalars& s, float& p, float g, float& m,
                                       float& v) {
  if (d.weight_decay != 0.0f) {
    if (d.decoupled_weight_decay) {
      p *= 1.0f - d.lr * d.weight_decay;
    } else {
      g += d.weight_decay * p;
    }
  }
  m = d.beta1 * m + (1.0f - d.beta1) * g;
  v = d.beta2 * v + (1.0f - d.beta2) * g * g;
  const float denom = sqrtf(v) / s.bias_correction2_sqrt + d.eps;
  p -= s.step_size * m / denom;
}

}  // namespace se::kernels
