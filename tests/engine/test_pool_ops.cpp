// Engine pooling and resize ops: forward values, f64 finite-difference gradients on the CPU, error
// messages, and CUDA against CPU (forward and gradient) when a device is present.
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
using testing::resize_by;
using testing::resize_to;

Tensor random_f64(const Shape& shape) {
  return randn(shape, {DType::f64}).requires_grad_(true);
}

Pool2dParams pool(int64_t kernel, int64_t stride, int64_t padding, bool ceil_mode = false) {
  Pool2dParams p;
  p.kernel_size = {kernel, kernel};
  p.stride = {stride, stride};
  p.padding = {padding, padding};
  p.ceil_mode = ceil_mode;
  return p;
}

TEST(PoolOps, Values) {
  Tensor x = from_vector<float>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {1, 1, 4, 4});
  EXPECT_EQ(max_pool2d(x, pool(2, 0, 0)).to_vector<float>(), (std::vector<float>{5, 7, 13, 15}));
  EXPECT_EQ(avg_pool2d(x, pool(2, 2, 0)).to_vector<float>(), (std::vector<float>{2.5f, 4.5f, 10.5f, 12.5f}));
  EXPECT_EQ(max_pool2d(x, pool(3, 2, 1)).shape(), (Shape{1, 1, 2, 2}));        // floor(3 / 2) + 1
  EXPECT_EQ(max_pool2d(x, pool(3, 2, 1, true)).shape(), (Shape{1, 1, 3, 3}));  // ceil(3 / 2) + 1; start 4 < 4 + 1
  EXPECT_EQ(adaptive_avg_pool2d(x, {1, 1}).to_vector<float>(), (std::vector<float>{7.5f}));
  EXPECT_EQ(adaptive_avg_pool2d(x, {3, 6}).shape(), (Shape{1, 1, 3, 6}));
  // A non-contiguous (transposed) input is made contiguous first.
  EXPECT_EQ(max_pool2d(x.transpose(2, 3), pool(2, 2, 0)).to_vector<float>(), (std::vector<float>{5, 13, 7, 15}));
}

TEST(PoolOps, GradientsMatchFiniteDifferences) {
  // Random normal values: max ties (kinks) have probability zero.
  for (bool ceil_mode : {false, true}) {
    expect_gradients_match([&](const std::vector<Tensor>& in) { return max_pool2d(in[0], pool(3, 2, 1, ceil_mode)); },
                           {random_f64({2, 2, 7, 6})});
    for (bool include_pad : {false, true}) {
      Pool2dParams p = pool(3, 2, 1, ceil_mode);
      p.count_include_pad = include_pad;
      expect_gradients_match([&](const std::vector<Tensor>& in) { return avg_pool2d(in[0], p); },
                             {random_f64({2, 2, 7, 6})});
    }
  }
  Pool2dParams dilated = pool(2, 1, 1);
  dilated.dilation = {2, 1};
  expect_gradients_match([&](const std::vector<Tensor>& in) { return max_pool2d(in[0], dilated); },
                         {random_f64({1, 2, 5, 4})});
  for (std::array<int64_t, 2> bins : {std::array<int64_t, 2>{1, 1}, {2, 2}, {3, 3}, {6, 6}, {2, 5}}) {
    expect_gradients_match([&](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0], bins); },
                           {random_f64({1, 2, 7, 5})});
  }
}

TEST(PoolOps, BadArgumentsAreErrors) {
  Tensor x = zeros({1, 1, 4, 4});
  expect_error(
      [&] {
        max_pool2d(zeros({4, 4}), pool(2, 2, 0));
      },
      "max_pool2d: expected a 4-d (N, C, H, W) input, got shape (4, 4)");
  expect_error([&] { max_pool2d(x, pool(2, 2, 2)); },
               "max_pool2d: padding (2, 2) must be non-negative and at most half");
  expect_error([&] { avg_pool2d(x, pool(0, 1, 0)); }, "avg_pool2d: kernel_size must be positive");
  expect_error([&] { max_pool2d(x, pool(2, -1, 0)); }, "max_pool2d: stride must be positive");
  expect_error([&] { max_pool2d(zeros({1, 1, 2, 2}), pool(3, 1, 0)); }, "which is too small");
  Pool2dParams dilated = pool(2, 1, 0);
  dilated.dilation = {2, 2};
  expect_error([&] { avg_pool2d(x, dilated); }, "avg_pool2d: dilation is not supported");
  expect_error([&] { adaptive_avg_pool2d(x, {0, 2}); }, "adaptive_avg_pool2d: output_size must be positive");
  expect_error(
      [&] {
        max_pool2d(zeros({1, 1, 4, 4}, {DType::i32}), pool(2, 2, 0));
      },
      "max_pool2d: dtype i32 is not supported");
}

TEST(ResizeOps, ValuesAndShapes) {
  Tensor x = from_vector<float>({0, 1, 2, 3, 4}, {1, 1, 1, 5});
  // scale_factor 1.7: out floor(8.5) = 8, mapped with 1 / 1.7 (dst 5 -> floor(2.94) = 2); size 8 maps
  // with 5 / 8 (dst 5 -> floor(3.125) = 3).
  EXPECT_EQ(interpolate(x, resize_by({1.0, 1.7}, InterpolateMode::nearest)).to_vector<float>(),
            (std::vector<float>{0, 0, 1, 1, 2, 2, 3, 4}));
  EXPECT_EQ(interpolate(x, resize_to({1, 8}, InterpolateMode::nearest)).to_vector<float>(),
            (std::vector<float>{0, 0, 1, 1, 2, 3, 3, 4}));
  EXPECT_EQ(interpolate(x, resize_to({1, 9}, InterpolateMode::bilinear, true)).to_vector<float>(),
            (std::vector<float>{0, 0.5f, 1, 1.5f, 2, 2.5f, 3, 3.5f, 4}));
  EXPECT_EQ(interpolate(zeros({2, 3, 10, 7}), resize_by({0.3, 2.5}, InterpolateMode::bilinear)).shape(),
            (Shape{2, 3, 3, 17}));
}

TEST(ResizeOps, GradientsMatchFiniteDifferences) {
  for (bool align_corners : {false, true}) {
    expect_gradients_match(
        [&](const std::vector<Tensor>& in) {
          return interpolate(in[0], resize_to({7, 3}, InterpolateMode::bilinear, align_corners));
        },
        {random_f64({2, 2, 4, 5})});
    expect_gradients_match(
        [&](const std::vector<Tensor>& in) {
          return interpolate(in[0], resize_by({1.7, 2.0}, InterpolateMode::bilinear, align_corners));
        },
        {random_f64({1, 2, 5, 3})});
  }
  expect_gradients_match(
      [](const std::vector<Tensor>& in) {
        return interpolate(in[0], resize_to({7, 3}, InterpolateMode::nearest));
      },
      {random_f64({2, 2, 4, 5})});
  expect_gradients_match(
      [](const std::vector<Tensor>& in) {
        return interpolate(in[0], resize_by({2.5, 0.5}, InterpolateMode::nearest));
      },
      {random_f64({1, 2, 3, 6})});
}

TEST(ResizeOps, BadArgumentsAreErrors) {
  Tensor x = zeros({1, 1, 4, 4});
  InterpolateParams both = resize_to({2, 2}, InterpolateMode::bilinear);
  both.scale_factor = std::array<double, 2>{2.0, 2.0};
  expect_error([&] { interpolate(x, both); }, "interpolate: give exactly one of size and scale_factor");
  expect_error([&] { interpolate(x, InterpolateParams{}); }, "interpolate: give exactly one of size and scale_factor");
  expect_error(
      [&] {
        interpolate(x, resize_to({2, 2}, InterpolateMode::nearest, true));
      },
      "align_corners needs mode bilinear");
  expect_error(
      [&] {
        interpolate(x, resize_by({-1.0, 2.0}, InterpolateMode::nearest));
      },
      "scale_factor must be positive");
  expect_error(
      [&] {
        interpolate(x, resize_by({0.2, 2.0}, InterpolateMode::nearest));
      },
      "output size (0, 8) must be non-empty");
  expect_error(
      [&] {
        interpolate(zeros({4, 4}), resize_to({2, 2}, InterpolateMode::nearest));
      },
      "interpolate: expected a 4-d");
}

#ifdef SEGENGINE_HAS_CUDA
using testing::expect_cuda_matches_cpu;

TEST(PoolOpsCuda, MatchCpu) {
  expect_cuda_matches_cpu([](const Tensor& x) { return max_pool2d(x, pool(3, 2, 1, true)); }, {2, 3, 9, 7});
  expect_cuda_matches_cpu([](const Tensor& x) { return avg_pool2d(x, pool(3, 2, 1, true)); }, {2, 3, 9, 7});
  expect_cuda_matches_cpu([](const Tensor& x) { return adaptive_avg_pool2d(x, {6, 6}); }, {1, 3, 13, 11});
  expect_cuda_matches_cpu([](const Tensor& x) { return adaptive_avg_pool2d(x, {1, 1}); }, {2, 3, 5, 7});
}

TEST(ResizeOpsCuda, MatchCpu) {
  expect_cuda_matches_cpu(
      [](const Tensor& x) {
        return interpolate(x, resize_to({13, 6}, InterpolateMode::bilinear));
      },
      {2, 3, 5, 7});
  expect_cuda_matches_cpu(
      [](const Tensor& x) {
        return interpolate(x, resize_by({1.7, 2.0}, InterpolateMode::bilinear, true));
      },
      {1, 3, 5, 4});
  expect_cuda_matches_cpu(
      [](const Tensor& x) {
        return interpolate(x, resize_by({2.5, 0.5}, InterpolateMode::nearest));
      },
      {2, 2, 3, 8});
}
#endif

}  // namespace
}  // namespace se
