// conv_transpose2d as a differentiable op: a hand-computed case, the adjoint identity with conv2d
// (<conv2d(a, w), b> = <a, conv_transpose2d(b, w)>), f64 finite-difference gradient checks (stride, padding,
// output_padding below and above the stride, dilation, groups), error messages, and CUDA against the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/gradcheck.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_error;
using testing::expect_gradients_match;

Tensor leaf(const Shape& shape) { return randn(shape, {DType::f64}).requires_grad_(true); }

ConvTranspose2dParams params(int64_t stride, int64_t pad, int64_t output_padding, int64_t dilation, int64_t groups) {
  ConvTranspose2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.output_padding_h = p.output_padding_w = output_padding;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = groups;
  return p;
}

struct Case {
  std::string name;
  Shape x, w;  // x (N, C_in, H, W), w (C_in, C_out / groups, KH, KW)
  bool bias;
  ConvTranspose2dParams p;
};

std::vector<Case> cases() {
  ConvTranspose2dParams asymmetric = params(1, 0, 0, 1, 1);
  asymmetric.stride_h = 2;
  asymmetric.output_padding_h = 1;
  asymmetric.pad_w = 1;
  asymmetric.dilation_w = 2;
  return {
      {"U-Net up: k2 s2, bias", {2, 4, 3, 3}, {4, 3, 2, 2}, true, params(2, 0, 0, 1, 1)},
      {"k3 s2 pad1 output_padding1", {1, 3, 3, 4}, {3, 2, 3, 3}, true, params(2, 1, 1, 1, 1)},
      {"groups 2, dilation 2", {2, 4, 3, 3}, {4, 1, 3, 2}, false, params(1, 1, 0, 2, 2)},
      {"output_padding 2 >= stride 1 (dilation 3)", {1, 2, 3, 3}, {2, 2, 2, 2}, true, params(1, 0, 2, 3, 1)},
      {"output_padding 3 >= stride 2 (dilation 4)", {1, 2, 2, 3}, {2, 1, 2, 2}, false, params(2, 1, 3, 4, 1)},
      {"asymmetric", {1, 2, 3, 4}, {2, 3, 2, 3}, true, asymmetric},
  };
}

std::vector<Tensor> inputs_of(const Case& c) {
  std::vector<Tensor> in = {leaf(c.x), leaf(c.w)};
  if (c.bias) in.push_back(leaf({c.w[1] * c.p.groups}));
  return in;
}

Tensor run(const Case& c, const std::vector<Tensor>& in) {
  return conv_transpose2d(in[0], in[1], c.bias ? in[2] : Tensor(), c.p);
}

TEST(ConvTranspose2dOp, ForwardMatchesHandComputedValues) {
  // k2 s2 (no overlap): each input pixel becomes a 2x2 block x * w; bias 0.5.
  const Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  const Tensor w = from_vector<double>({1, 10, 100, 1000}, {1, 1, 2, 2});
  const Tensor y = conv_transpose2d(x, w, from_vector<double>({0.5}, {1}), params(2, 0, 0, 1, 1));
  ASSERT_EQ(y.shape(), Shape({1, 1, 4, 4}));
  EXPECT_EQ(y.to_vector<double>(), std::vector<double>({1.5, 10.5, 2.5, 20.5,          //
                                                        100.5, 1000.5, 200.5, 2000.5,  //
                                                        3.5, 30.5, 4.5, 40.5,          //
                                                        300.5, 3000.5, 400.5, 4000.5}));
  // k2 s1: overlapping windows add; output_padding 0, size 3.
  const Tensor y1 = conv_transpose2d(from_vector<double>({1, 2}, {1, 1, 1, 2}), w);
  ASSERT_EQ(y1.shape(), Shape({1, 1, 2, 3}));
  EXPECT_EQ(y1.to_vector<double>(), std::vector<double>({1, 12, 20, 100, 1200, 2000}));
}

TEST(ConvTranspose2dOp, IsTheAdjointOfConv2d) {
  manual_seed(31);
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const Tensor x = randn(c.x, {DType::f64}), w = randn(c.w, {DType::f64});
    const Tensor y = conv_transpose2d(x, w, Tensor(), c.p);
    Conv2dParams cp;
    cp.stride_h = c.p.stride_h;
    cp.stride_w = c.p.stride_w;
    cp.pad_h = c.p.pad_h;
    cp.pad_w = c.p.pad_w;
    cp.dilation_h = c.p.dilation_h;
    cp.dilation_w = c.p.dilation_w;
    cp.groups = c.p.groups;
    const Tensor b = randn(y.shape(), {DType::f64});
    const Tensor conv_b = conv2d(b, w, Tensor(), cp);  // conv2d's output may be longer than x: crop it
    const Tensor cropped = conv_b.slice(2, 0, c.x[2]).slice(3, 0, c.x[3]);
    ASSERT_EQ(cropped.shape(), x.shape());
    EXPECT_NEAR(sum(mul(y, b)).item(), sum(mul(x, cropped)).item(), 1e-10);
  }
}

TEST(ConvTranspose2dOp, GradientsMatchFiniteDifferences) {
  manual_seed(32);
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    expect_gradients_match([&](const std::vector<Tensor>& in) { return run(c, in); }, inputs_of(c));
  }
}

TEST(ConvTranspose2dOp, NonContiguousInputs) {
  manual_seed(33);
  const ConvTranspose2dParams p = params(2, 1, 1, 1, 1);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        return conv_transpose2d(in[0].contiguous(MemoryFormat::channels_last), in[1].transpose(0, 1), in[2], p);
      },
      {leaf({1, 3, 3, 2}), leaf({2, 3, 3, 3}), leaf({2})});
}

TEST(ConvTranspose2dOp, ErrorsNameTheOpShapesAndExpectation) {
  const Tensor x = randn({1, 4, 5, 5});
  expect_error([&] { conv_transpose2d(x, randn({3, 2, 2, 2})); },
               "conv_transpose2d: x (1, 4, 5, 5) has 4 channels but weight (3, 2, 2, 2) expects 3");
  expect_error([&] { conv_transpose2d(x, randn({4, 2, 2, 2}), Tensor(), params(2, 0, 2, 1, 1)); },
               "conv_transpose2d: output_padding_h = 2 (expected >= 0 and smaller than the stride 2 or the dilation 1)");
  expect_error([&] { conv_transpose2d(x, randn({4, 2, 2, 2}), randn({3}), params(1, 0, 0, 1, 2)); },
               "conv_transpose2d: bias has shape (3,), expected (4) = (weight.size(1) * groups)");
  expect_error([&] { conv_transpose2d(x, randn({4, 2, 2, 2}), Tensor(), params(1, 0, 0, 1, 3)); },
               "conv_transpose2d: groups = 3 does not divide C_in = 4");
  expect_error([&] { conv_transpose2d(x, randn({4, 2, 2, 2}, {DType::f64})); },
               "conv_transpose2d: weight (f64 on cpu) must have x's dtype and device (f32 on cpu)");
  expect_error([&] { conv_transpose2d(randn({1, 1, 1, 1}), randn({1, 1, 1, 1}), Tensor(), params(1, 1, 0, 1, 1)); },
               "conv_transpose2d: output size (-1, -1) is empty");
}

TEST(ConvTranspose2dOpCuda, GradientsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(41);
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const std::vector<Tensor> in = inputs_of(c);
    std::vector<Tensor> cpu_in, cuda_in;
    for (const Tensor& t : in) {
      cpu_in.push_back(t.detach().to(DType::f32).requires_grad_(true));
      cuda_in.push_back(t.detach().to(Device::cuda(), DType::f32).requires_grad_(true));
    }
    const Tensor cpu_y = run(c, cpu_in), cuda_y = run(c, cuda_in);
    ASSERT_EQ(cuda_y.device(), Device::cuda());
    const Tensor weights = randn(cpu_y.shape());
    sum(mul(cpu_y, weights)).backward();
    sum(mul(cuda_y, weights.to(Device::cuda()))).backward();
    auto expect_close = [](const Tensor& got, const Tensor& want, const std::string& what) {
      const std::vector<float> g = got.to_vector<float>(), w = want.to_vector<float>();
      ASSERT_EQ(g.size(), w.size()) << what;
      for (size_t j = 0; j < w.size(); ++j) EXPECT_NEAR(g[j], w[j], 1e-5 * (1 + std::abs(w[j]))) << what << " " << j;
    };
    expect_close(cuda_y, cpu_y, "output");
    for (size_t i = 0; i < in.size(); ++i) expect_close(cuda_in[i].grad(), cpu_in[i].grad(), "grad " + std::to_string(i));
  }
}

}  // namespace
}  // namespace se
