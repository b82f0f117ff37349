// Engine reductions, softmax and index ops: forward values, f64 finite-difference gradients on the
// CPU, error messages, and CUDA against CPU (forward and gradient) when a device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"
#include "tests/engine/gradcheck.h"

namespace se {
namespace {

using testing::expect_gradients_match;

Tensor random_f64(const Shape& shape) { return randn(shape, {DType::f64}).requires_grad_(true); }

using testing::expect_error;

TEST(ReduceOps, ValuesOverDimListsWithKeepdim) {
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {2, 3, 2});
  EXPECT_EQ(sum(x).item(), 78.0);
  EXPECT_EQ(sum(x, {1}).to_vector<float>(), (std::vector<float>{9, 12, 27, 30}));
  EXPECT_EQ(sum(x, {0, 2}).to_vector<float>(), (std::vector<float>{18, 26, 34}));  // non-adjacent: permuted
  EXPECT_EQ(sum(x, {-1}, true).shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(mean(x, {0, 2}).shape(), (Shape{3}));
  EXPECT_EQ(max(x, {0, 2}).to_vector<float>(), (std::vector<float>{8, 10, 12}));
  EXPECT_EQ(min(x, {1}).to_vector<float>(), (std::vector<float>{1, 2, 7, 8}));
  EXPECT_NEAR(var(x, {1}).to_vector<float>()[0], 4.0f, 1e-6);
  EXPECT_NEAR(var(x, {1}, 0).to_vector<float>()[0], 8.0f / 3, 1e-6);
  EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(argmin(x, -1, true).shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(sum_to(x, {3, 1}).to_vector<float>(), (std::vector<float>{1 + 2 + 7 + 8, 3 + 4 + 9 + 10, 5 + 6 + 11 + 12}));
}

TEST(ReduceOps, GradientsMatchFiniteDifferences) {
  for (Shape dims : {Shape{}, Shape{1}, Shape{0, 2}, Shape{-1}, Shape{0, 1}}) {
    for (bool keepdim : {false, true}) {
      expect_gradients_match([&](const std::vector<Tensor>& in) { return sum(in[0], dims, keepdim); }, {random_f64({3, 4, 5})});
      expect_gradients_match([&](const std::vector<Tensor>& in) { return mean(in[0], dims, keepdim); }, {random_f64({3, 4, 5})});
      expect_gradients_match([&](const std::vector<Tensor>& in) { return var(in[0], dims, 1, keepdim); }, {random_f64({3, 4, 5})});
      // Random normal values: ties (kinks) have probability zero.
      expect_gradients_match([&](const std::vector<Tensor>& in) { return max(in[0], dims, keepdim); }, {random_f64({3, 4, 5})});
      expect_gradients_match([&](const std::vector<Tensor>& in) { return min(in[0], dims, keepdim); }, {random_f64({3, 4, 5})});
    }
  }
}

TEST(ReduceOps, MaxRoutesTheGradientToTheFirstMaximum) {
  Tensor x = from_vector<double>({1, 3, 3, 2}, {4}, {DType::f64}).requires_grad_(true);
  max(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 1, 0, 0}));
}

TEST(ReduceOps, BadDimsAreErrors) {
  Tensor x = zeros({2, 3});
  expect_error([&] { sum(x, {2}); }, "sum");
  expect_error([&] { mean(x, {1, -1}); }, "mean: dim -1 appears more than once");
  expect_error([&] { max(zeros({2, 0}), {1}); }, "max: cannot reduce over an empty dim");
  expect_error([&] { mean(zeros({2}, {DType::i32})); }, "mean");
  expect_error([&] { argmax(x, 5); }, "argmax");
}

TEST(SoftmaxOps, ValuesAndGradients) {
  Tensor x = from_vector<float>({1, 2, 3, 1, 1, 1}, {2, 3});
  std::vector<float> y = softmax(x, 1).to_vector<float>();
  EXPECT_NEAR(y[3], 1.0f / 3, 1e-6);
  EXPECT_NEAR(y[0] + y[1] + y[2], 1.0f, 1e-6);
  EXPECT_NEAR(log_softmax(x, -1).to_vector<float>()[5], -std::log(3.0f), 1e-6);
  for (int64_t dim : {0, 1, 2, -1}) {
    expect_gradients_match([&](const std::vector<Tensor>& in) { return softmax(in[0], dim); }, {random_f64({3, 4, 5})});
    expect_gradients_match([&](const std::vector<Tensor>& in) { return log_softmax(in[0], dim); }, {random_f64({3, 4, 5})});
  }
  expect_error([&] { softmax(x, 2); }, "softmax");
}

TEST(IndexOps, ValuesAndGradients) {
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor index = from_vector<int64_t>({2, 0, 1, 1}, {2, 2}, {DType::i64});
  EXPECT_EQ(gather(x, 1, index).to_vector<float>(), (std::vector<float>{3, 1, 5, 5}));
  Tensor rows = from_vector<int64_t>({1, 1, 0}, {3}, {DType::i64});
  EXPECT_EQ(index_select(x, 0, rows).to_vector<float>(), (std::vector<float>{4, 5, 6, 4, 5, 6, 1, 2, 3}));
  EXPECT_EQ(cat({x, x}, 1).shape(), (Shape{2, 6}));
  EXPECT_EQ(stack({x, x, x}, 1).shape(), (Shape{2, 3, 3}));
  std::vector<Tensor> parts = split(x, 2, 1);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1].to_vector<float>(), (std::vector<float>{3, 6}));
  EXPECT_EQ(pad(x, {1, -1}, 9.0).to_vector<float>(), (std::vector<float>{9, 1, 2, 9, 4, 5}));
  EXPECT_EQ(pad(x, {0, 0, 1, 0}).shape(), (Shape{3, 3}));

  Tensor gather_index = from_vector<int64_t>({0, 2, 2, 1, 0, 0, 3, 1}, {2, 4, 1}, {DType::i64});
  expect_gradients_match([&](const std::vector<Tensor>& in) { return gather(in[0], 1, gather_index); }, {random_f64({2, 5, 3})});
  expect_gradients_match([&](const std::vector<Tensor>& in) { return index_select(in[0], 1, rows); }, {random_f64({2, 4, 3})});
  expect_gradients_match([](const std::vector<Tensor>& in) { return cat({in[0], in[1]}, 1); },
                         {random_f64({2, 3}), random_f64({2, 2})});
  expect_gradients_match([](const std::vector<Tensor>& in) { return stack({in[0], in[1]}, 0); },
                         {random_f64({2, 3}), random_f64({2, 3})});
  expect_gradients_match([](const std::vector<Tensor>& in) { return split(in[0], {1, 3}, 1)[1]; }, {random_f64({2, 4})});
  expect_gradients_match([](const std::vector<Tensor>& in) { return pad(in[0], {2, -1, -1, 1}, 0.5); }, {random_f64({3, 4})});
}

TEST(IndexOps, BadArgumentsAreErrors) {
  Tensor x = zeros({2, 3});
  expect_error([&] { gather(x, 1, from_vector<int64_t>({3}, {1, 1}, {DType::i64})); }, "gather: index 3 is out of range");
  expect_error([&] { gather(x, 1, zeros({2, 3})); }, "gather: index must be i64");
  expect_error([&] { index_select(x, 2, from_vector<int64_t>({0}, {1}, {DType::i64})); }, "index_select");
  expect_error([&] { cat({x, zeros({3, 3})}, 1); }, "cat: tensor 1 has shape (3, 3)");
  expect_error([&] { split(x, {1, 1}, 1); }, "split: sizes sum to 2");
  expect_error([&] { pad(x, {1}); }, "pad: 1 pad amounts");
  expect_error([&] { pad(x, {-2, -2}); }, "gives a negative size");
}

#ifdef SEGENGINE_HAS_CUDA
using testing::expect_cuda_matches_cpu;

TEST(ReduceOpsCuda, MatchCpu) {
  expect_cuda_matches_cpu([](const Tensor& x) { return sum(x, {0, 2}); }, {3, 5, 7}, 1e-4);
  expect_cuda_matches_cpu([](const Tensor& x) { return mean(x, {1}, true); }, {3, 5, 7}, 1e-4);
  expect_cuda_matches_cpu([](const Tensor& x) { return var(x, {-1}); }, {3, 5, 70}, 1e-4);
  expect_cuda_matches_cpu([](const Tensor& x) { return max(x, {1}); }, {3, 50, 7}, 1e-4);
  expect_cuda_matches_cpu([](const Tensor& x) { return min(x); }, {3, 5, 7}, 1e-4);
}

TEST(SoftmaxOpsCuda, MatchCpu) {
  expect_cuda_matches_cpu([](const Tensor& x) { return softmax(x, 1); }, {3, 50, 7}, 1e-4);
  expect_cuda_matches_cpu([](const Tensor& x) { return log_softmax(x, -1); }, {3, 5, 1500}, 1e-4);
}

TEST(IndexOpsCuda, MatchCpu) {
  expect_cuda_matches_cpu([](const Tensor& x) {
    return gather(x, 1, from_vector<int64_t>({0, 4, 4, 1, 2, 3}, {2, 3, 1}, {DType::i64, x.device()}));
  }, {2, 5, 3}, 1e-4);
  expect_cuda_matches_cpu([](const Tensor& x) {
    return index_select(x, 0, from_vector<int64_t>({1, 1, 0}, {3}, {DType::i64, x.device()}));
  }, {2, 5}, 1e-4);
  expect_cuda_matches_cpu([](const Tensor& x) { return pad(cat({x, x}, 0), {1, 2, -1, 0}); }, {3, 4}, 1e-4);
}
#endif

}  // namespace
}  // namespace se
