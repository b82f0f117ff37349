// Helpers of the U-Net and Siamese U-Net tests.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "nn/module.h"

namespace se::testing {

// Labels with structure a small network can learn from `images` (N, C, H, W): class 0, 1 or 2 by
// thresholds on the first two channels. -> (N, H, W) i64
inline Tensor labels_from(const Tensor& images) {
  Tensor first = gt(images.select(1, 0), 0.0).to(DType::i64);
  Tensor second = gt(images.select(1, 1), 0.5).to(DType::i64);
  return add(first, second);
}

// Adam (lr 1e-2) on every parameter for `steps` steps of `loss_fn`; returns the loss before each step.
inline std::vector<double> adam_losses(nn::Module& model, const std::function<Tensor()>& loss_fn, int steps) {
  std::vector<Tensor> params = model.parameters(), exp_avg, exp_avg_sq;
  for (const Tensor& p : params) {
    exp_avg.push_back(zeros_like(p));
    exp_avg_sq.push_back(zeros_like(p));
  }
  std::vector<double> losses;
  for (int step = 1; step <= steps; ++step) {
    model.zero_grad();
    Tensor loss = loss_fn();
    losses.push_back(loss.item());
    loss.backward();
    std::vector<Tensor> grads;
    for (const Tensor& p : params) grads.push_back(p.grad().defined() ? p.grad() : zeros_like(p));
    NoGradGuard no_grad;
    kernels::AdamDesc desc;
    desc.lr = 1e-2f;
    desc.step = step;
    adam_step_(params, grads, exp_avg, exp_avg_sq, desc);
  }
  return losses;
}

// Every parameter received a gradient of its own shape, and at least one element of it is non-zero.
inline void expect_all_parameters_have_gradients(const nn::Module& model) {
  for (const auto& [name, p] : model.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_EQ(p.grad().shape(), p.shape()) << name;
    EXPECT_GT(max(abs(p.grad())).item(), 0.0) << name;
  }
}

// |actual - expected| <= rel_tol * (|expected| + floor * max|expected|): relative, with a floor for
// elements near zero, where a relative error means nothing (sums that cancel, BN-normalised maps).
inline void expect_close(const Tensor& actual, const Tensor& expected, double rel_tol, const std::string& what,
                         double floor = 1e-3) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  const std::vector<float> a = actual.to_vector<float>(), e = expected.to_vector<float>();
  double scale = 0.0;
  for (float v : e) scale = std::max(scale, double(std::abs(v)));
  int reported = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::abs(a[i] - e[i]) > rel_tol * (std::abs(e[i]) + floor * scale) && reported++ < 5) {
      ADD_FAILURE() << what << "[" << i << "]: " << a[i] << " vs " << e[i] << " (largest |expected| " << scale << ")";
    }
  }
}

}  // namespace se::testing
