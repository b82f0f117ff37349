// Engine losses (cross-entropy, binary cross-entropy with logits, MSE and cosine distance): values against
// hand-computed PyTorch results, f64 finite-difference gradients on the CPU, error messages, and CUDA
// against CPU (forward and gradient).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/gradcheck.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_error;
using testing::expect_gradients_match;

Tensor random_f64(const Shape& shape) {
  return randn(shape, {DType::f64}).requires_grad_(true);
}

Tensor targets(const std::vector<int64_t>& values, const Shape& shape, Device device = Device::cpu()) {
  return from_vector<int64_t>(values, shape, {DType::i64, device});
}

TEST(CrossEntropyOps, ReductionsMatchPyTorchFormulas) {
  // Rows [1, 2, 3], [0, 0, 0], [5, -5, 0]; targets [2, 0, ignored]; weight [1, 2, 3]; smoothing 0.1.
  Tensor logits = from_vector<double>({1, 2, 3, 0, 0, 0, 5, -5, 0}, {3, 3}, {DType::f64});
  Tensor target = targets({2, 0, 255}, {3});
  CrossEntropyParams p{255, from_vector<double>({1, 2, 3}, {3}, {DType::f64}), 0.1, Reduction::mean};
  const double lse_a = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)), lse_b = std::log(3.0);
  const double loss_a = 0.9 * 3 * (lse_a - 3) + 0.1 / 3 * ((lse_a - 1) + 2 * (lse_a - 2) + 3 * (lse_a - 3));
  const double loss_b = 0.9 * lse_b + 0.1 / 3 * 6 * lse_b;
  EXPECT_NEAR(cross_entropy(logits, target, p).item(), 0.6309660369392391, 1e-14);
  p.reduction = Reduction::sum;
  EXPECT_NEAR(cross_entropy(logits, target, p).item(), loss_a + loss_b, 1e-14);
  p.reduction = Reduction::none;
  Tensor none = cross_entropy(logits, target, p);
  EXPECT_EQ(none.shape(), (Shape{3}));
  std::vector<double> v = none.to_vector<double>();
  EXPECT_NEAR(v[0], loss_a, 1e-14);
  EXPECT_NEAR(v[1], loss_b, 1e-14);
  EXPECT_EQ(v[2], 0.0);
  // Defaults: ignore_index -100, no weights, mean over the pixels: F.cross_entropy([[1, 2, 3]], [2]).
  EXPECT_NEAR(cross_entropy(from_vector<float>({1, 2, 3}, {1, 3}), targets({2}, {1})).item(), lse_a - 3, 1e-6);
}

TEST(CrossEntropyOps, NchwMeanSkipsIgnoredPixelsAndAllIgnoredIsNan) {
  Tensor logits = zeros({1, 4, 2, 2});
  Tensor target = targets({0, 255, 3, 255}, {1, 2, 2});
  CrossEntropyParams p;
  p.ignore_index = 255;
  EXPECT_NEAR(cross_entropy(logits, target, p).item(), std::log(4.0), 1e-6);
  p.reduction = Reduction::none;
  EXPECT_EQ(cross_entropy(logits, target, p).shape(), (Shape{1, 2, 2}));
  p.reduction = Reduction::mean;
  EXPECT_TRUE(std::isnan(cross_entropy(logits, targets({255, 255, 255, 255}, {1, 2, 2}), p).item()));
}

TEST(CrossEntropyOps, GradientsMatchFiniteDifferences) {
  Tensor target = targets({0, 2, 255, 1, 1, 255, 2, 0, 2, 1, 0, 0}, {2, 2, 3});
  Tensor weight = from_vector<double>({0.5, 2.0, 1.25}, {3}, {DType::f64});
  for (Reduction reduction : {Reduction::mean, Reduction::sum, Reduction::none}) {
    for (double smoothing : {0.0, 0.3}) {
      for (bool weighted : {false, true}) {
        CrossEntropyParams p{255, weighted ? weight : Tensor(), smoothing, reduction};
        expect_gradients_match([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], target, p); },
                               {random_f64({2, 3, 2, 3})});
      }
    }
  }
  // (N, C) logits, non-contiguous input.
  CrossEntropyParams p{-100, weight, 0.2, Reduction::mean};
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        return cross_entropy(in[0].t(), targets({1, -100, 2, 0}, {4}), p);
      },
      {random_f64({3, 4})});
}

TEST(CrossEntropyOps, BadArgumentsAreErrors) {
  Tensor logits = zeros({2, 3, 2, 2});
  CrossEntropyParams p;
  p.ignore_index = 255;
  expect_error(
      [&] {
        cross_entropy(logits, targets({0, 1, 7, 255, 0, 0, 0, 0}, {2, 2, 2}), p);
      },
      "cross_entropy: target value 7 is out of range for 3 classes");
  expect_error(
      [&] {
        cross_entropy(logits, targets({0, 1, -1, 255, 0, 0, 0, 0}, {2, 2, 2}), p);
      },
      "target value -1 is out of range");
  expect_error(
      [&] {
        cross_entropy(logits, targets({0, 1, 2, 0}, {2, 2}), p);
      },
      "cross_entropy: target shape (2, 2) does not match logits (2, 3, 2, 2) "
      "(expected (2, 2, 2))");
  expect_error([&] { cross_entropy(logits, zeros({2, 2, 2}), p); }, "cross_entropy: target must be i64");
  expect_error([&] { cross_entropy(zeros({3}), targets({0, 1, 2}, {3}), p); }, "logits must be (N, C)");
  p.weight = ones({4});
  expect_error([&] { cross_entropy(logits, zeros({2, 2, 2}, {DType::i64}), p); }, "weight must be (3,), got (4,)");
  p.weight = ones({3}, {DType::f64});
  expect_error([&] { cross_entropy(logits, zeros({2, 2, 2}, {DType::i64}), p); }, "weight must have the logits' dtype");
  p.weight = Tensor();
  p.label_smoothing = 1.5;
  expect_error([&] { cross_entropy(logits, zeros({2, 2, 2}, {DType::i64}), p); }, "label_smoothing must be in [0, 1]");
}

TEST(BinaryCrossEntropyOps, ValuesAndGradients) {
  // F.binary_cross_entropy_with_logits([0, 2], [1, 0.25], pos_weight=[3]) by hand.
  Tensor x = from_vector<double>({0, 2}, {2}, {DType::f64}), y = from_vector<double>({1, 0.25}, {2}, {DType::f64});
  const double a = 3 * std::log(2.0), b = 0.75 * 2 + 1.5 * std::log1p(std::exp(-2.0));
  BinaryCrossEntropyParams p{from_vector<double>({3}, {1}, {DType::f64}), Reduction::none};
  std::vector<double> v = binary_cross_entropy_with_logits(x, y, p).to_vector<double>();
  EXPECT_NEAR(v[0], a, 1e-14);
  EXPECT_NEAR(v[1], b, 1e-14);
  p.reduction = Reduction::mean;
  EXPECT_NEAR(binary_cross_entropy_with_logits(x, y, p).item(), (a + b) / 2, 1e-14);

  Tensor target = rand({2, 3, 2, 2}, {DType::f64});
  Tensor pos_weight = from_vector<double>({0.5, 2, 4}, {3, 1, 1}, {DType::f64});
  for (Reduction reduction : {Reduction::mean, Reduction::sum, Reduction::none}) {
    for (bool weighted : {false, true}) {
      BinaryCrossEntropyParams params{weighted ? pos_weight : Tensor(), reduction};
      expect_gradients_match(
          [&](const std::vector<Tensor>& in) { return binary_cross_entropy_with_logits(in[0], target, params); },
          {random_f64({2, 3, 2, 2})});
    }
  }
}

TEST(ConsistencyLossOps, ValuesAndGradients) {
  Tensor a = from_vector<double>({1, 2, 0, 2}, {1, 2, 1, 2}, {DType::f64});  // pixels (1, 0) and (2, 2)
  Tensor b = from_vector<double>({0, 3, 1, 4}, {1, 2, 1, 2}, {DType::f64});  // pixels (0, 1) and (3, 4)
  EXPECT_NEAR(mse_loss(a, b).item(), (1 + 1 + 1 + 4) / 4.0, 1e-14);
  EXPECT_NEAR(mse_loss(a, b, Reduction::sum).item(), 7.0, 1e-14);
  // cos((1, 0), (0, 1)) = 0; cos((2, 2), (3, 4)) = 14 / (sqrt(8) * 5)
  std::vector<double> d = cosine_distance(a, b, Reduction::none).to_vector<double>();
  ASSERT_EQ(d.size(), 2u);
  EXPECT_NEAR(d[0], 1.0, 1e-14);
  EXPECT_NEAR(d[1], 1 - 14 / (std::sqrt(8.0) * 5), 1e-14);
  EXPECT_NEAR(cosine_distance(a, b).item(), (d[0] + d[1]) / 2, 1e-14);
  for (Reduction reduction : {Reduction::mean, Reduction::none}) {
    expect_gradients_match([&](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1], reduction); },
                           {random_f64({2, 3, 2, 2}), random_f64({2, 3, 2, 2})});
    expect_gradients_match([&](const std::vector<Tensor>& in) { return cosine_distance(in[0], in[1], reduction); },
                           {random_f64({2, 3, 2, 2}), random_f64({2, 3, 2, 2})});
  }
}

TEST(ConsistencyLossOps, BadArgumentsAreErrors) {
  expect_error([] { mse_loss(zeros({2, 3}), zeros({3, 2})); }, "mse_loss: shapes (2, 3) and (3, 2) differ");
  expect_error([] { cosine_distance(zeros({4}), zeros({4})); }, "cosine_distance: inputs must be (N, C, ...)");
  expect_error([] { mse_loss(zeros({2}), zeros({2}, {DType::f64})); }, "mse_loss: inputs must share dtype");
  expect_error(
      [] {
        binary_cross_entropy_with_logits(zeros({2, 3}), zeros({2, 2}));
      },
      "binary_cross_entropy_with_logits: target shape (2, 2) does not match "
      "logits (2, 3)");
  expect_error(
      [] {
        binary_cross_entropy_with_logits(zeros({2, 3}), zeros({2, 3}), {ones({2, 3}), Reduction::mean});
      },
      "may be longer than 1 along one dim only");
}

#ifdef SEGENGINE_HAS_CUDA
// Runs loss(x) in f32 on the CPU and on cuda:0 and compares the value and the gradient of x.
void expect_cuda_matches_cpu(const std::function<Tensor(const Tensor&, Device)>& loss, const Shape& shape) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Tensor cpu_x = randn(shape).requires_grad_(true);
  Tensor cuda_x = cpu_x.detach().to(Device::cuda()).requires_grad_(true);
  Tensor cpu_y = loss(cpu_x, Device::cpu()), cuda_y = loss(cuda_x, Device::cuda());
  Tensor w = randn(cpu_y.shape());
  cpu_y.backward(w);
  cuda_y.backward(w.to(Device::cuda()));
  std::vector<float> a = cpu_y.to_vector<float>(), b = cuda_y.to_vector<float>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-5 * (1 + std::abs(a[k]))) << "loss " << k;
  a = cpu_x.grad().to_vector<float>();
  b = cuda_x.grad().to_vector<float>();
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-5 * (1 + std::abs(a[k]))) << "grad " << k;
}

TEST(CrossEntropyOpsCuda, MatchesCpu) {
  std::vector<int64_t> t = {0, 2, 255, 1, 4, 255, 3, 0, 2, 1, 0, 4, 1, 1, 255, 2, 3, 3};
  for (Reduction reduction : {Reduction::mean, Reduction::sum, Reduction::none}) {
    expect_cuda_matches_cpu(
        [&](const Tensor& x, Device device) {
          CrossEntropyParams p{255, from_vector<float>({1, 2, 0.5f, 1, 3}, {5}, {DType::f32, device}), 0.1, reduction};
          return cross_entropy(x, targets(t, {2, 3, 3}, device), p);
        },
        {2, 5, 3, 3});
  }
}

TEST(BinaryCrossEntropyOpsCuda, MatchesCpu) {
  Tensor target = rand({2, 3, 5, 4});
  expect_cuda_matches_cpu(
      [&](const Tensor& x, Device device) {
        BinaryCrossEntropyParams p{from_vector<float>({0.5f, 2, 4}, {3, 1, 1}, {DType::f32, device}), Reduction::mean};
        return binary_cross_entropy_with_logits(x, target.to(device), p);
      },
      {2, 3, 5, 4});
}

TEST(ConsistencyLossOpsCuda, MatchesCpu) {
  Tensor other = randn({2, 4, 3, 5});
  expect_cuda_matches_cpu([&](const Tensor& x, Device device) { return mse_loss(x, other.to(device)); }, {2, 4, 3, 5});
  expect_cuda_matches_cpu(
      [&](const Tensor& x, Device device) { return cosine_distance(other.to(device), x, Reduction::none); },
      {2, 4, 3, 5});
}

TEST(CrossEntropyOpsCuda, BadTargetIsAnErrorNamingTheValue) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  CrossEntropyParams p;
  p.ignore_index = 255;
  expect_error(
      [&] {
        cross_entropy(zeros({1, 3, 2, 2}, {DType::f32, Device::cuda()}),
                      targets({0, 1, 254, 255}, {1, 2, 2}, Device::cuda()), p);
      },
      "cross_entropy: target value 254 is out of range for 3 classes");
}
#endif

}  // namespace
}  // namespace se
