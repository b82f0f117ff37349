// Helpers shared by the engine tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"

namespace se::testing {

// interpolate() to a size, or by a scale factor.
inline InterpolateParams resize_to(std::array<int64_t, 2> size, InterpolateMode mode, bool align_corners = false) {
  InterpolateParams p;
  p.size = size;
  p.mode = mode;
  p.align_corners = align_corners;
  return p;
}

inline InterpolateParams resize_by(std::array<double, 2> scale, InterpolateMode mode, bool align_corners = false) {
  InterpolateParams p;
  p.scale_factor = scale;
  p.mode = mode;
  p.align_corners = align_corners;
  return p;
}

// The message of the se::Error that `f` throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Expects `f` to throw se::Error whose message contains `message`.
inline void expect_error(const std::function<void()>& f, const std::string& message) {
  std::string actual = error_of(f);
  EXPECT_NE(actual.find(message), std::string::npos) << "expected an se::Error containing '" << message
                                                     << "', got: " << actual;
}

// Runs f in f32 on the CPU and on cuda:0 from the same random input and compares the outputs and
// the input gradients (for a random output weighting) within rel_tol. Skips without a device.
inline void expect_cuda_matches_cpu(const std::function<Tensor(const Tensor&)>& f, const Shape& shape,
                                    double rel_tol = 1e-5) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Tensor cpu_x = randn(shape).requires_grad_(true);
  Tensor cuda_x = cpu_x.detach().to(Device::cuda()).requires_grad_(true);
  Tensor cpu_y = f(cpu_x), cuda_y = f(cuda_x);
  Tensor w = randn(cpu_y.shape());
  cpu_y.backward(w);
  cuda_y.backward(w.to(Device::cuda()));
  std::vector<float> a = cpu_y.to_vector<float>(), b = cuda_y.to_vector<float>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], rel_tol * (1 + std::abs(a[k]))) << "output " << k;
  a = cpu_x.grad().to_vector<float>();
  b = cuda_x.grad().to_vector<float>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], rel_tol * (1 + std::abs(a[k]))) << "grad " << k;
}

}  // namespace se::testing
