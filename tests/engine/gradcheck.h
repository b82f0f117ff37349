// Finite-difference gradient checks (Caffe's GradientChecker, torch.autograd.gradcheck): in f64 on
// the CPU, the analytic gradient of sum(f(inputs) * w) for a random weighting w is compared with
// central differences. Choose inputs away from kinks (relu at 0, max ties, abs at 0).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace se::testing {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-5;
};

using TensorFunction = std::function<Tensor(const std::vector<Tensor>&)>;

// `inputs` must be f64 CPU tensors; each one that requires grad is checked.
inline void expect_gradients_match(const TensorFunction& f, const std::vector<Tensor>& inputs,
                                   GradcheckOptions options = {}) {
  std::vector<Tensor> leaves;
  for (const Tensor& input : inputs) {
    ASSERT_EQ(input.dtype(), DType::f64) << "gradcheck needs f64 inputs";
    ASSERT_TRUE(input.device().is_cpu()) << "gradcheck runs on the CPU";
    Tensor leaf = input.detach().clone(MemoryFormat::contiguous);
    if (input.requires_grad()) leaf.requires_grad_(true);
    leaves.push_back(leaf);
  }
  Tensor out = f(leaves);
  const Tensor weights = randn(out.shape(), {DType::f64});
  sum(mul(out, weights)).backward();

  auto objective = [&]() {
    NoGradGuard no_grad;
    return sum(mul(f(leaves), weights)).item();
  };
  for (size_t i = 0; i < leaves.size(); ++i) {
    if (!leaves[i].requires_grad()) continue;
    Tensor analytic = leaves[i].grad();
    ASSERT_TRUE(analytic.defined()) << "input " << i << " received no gradient";
    std::vector<double> expected = analytic.to_vector<double>();
    double* x = leaves[i].data<double>();
    for (int64_t j = 0; j < leaves[i].numel(); ++j) {
      const double saved = x[j];
      x[j] = saved + options.eps;
      const double plus = objective();
      x[j] = saved - options.eps;
      const double minus = objective();
      x[j] = saved;
      const double numeric = (plus - minus) / (2 * options.eps);
      EXPECT_NEAR(expected[j], numeric, options.atol + options.rtol * std::abs(numeric))
          << "input " << i << " element " << j;
    }
  }
}

}  // namespace se::testing
