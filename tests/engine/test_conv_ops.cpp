// conv2d as a differentiable op: forward values on small hand-computed cases, f64 finite-difference
// gradient checks on the CPU for x, weight and bias (stride, padding, dilation, groups, depthwise,
// non-contiguous inputs), which gradients are produced, error messages, and CUDA against the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/gradcheck.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_gradients_match;

Tensor leaf(const Shape& shape) {
  return randn(shape, {DType::f64}).requires_grad_(true);
}

Conv2dParams params(int64_t stride, int64_t pad, int64_t dilation, int64_t groups) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = groups;
  return p;
}

void expect_error(const std::function<void()>& f, const std::string& message) {
  try {
    f();
    FAIL() << "expected se::Error containing '" << message << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
  }
}

// One conv2d configuration: x (N, C_in, H, W), weight (C_out, C_in / groups, KH, KW), with or without bias.
struct ConvCase {
  std::string name;
  Shape x, w;
  bool bias;
  Conv2dParams p;
};

std::vector<ConvCase> conv_cases() {
  Conv2dParams asymmetric = params(1, 0, 1, 1);
  asymmetric.stride_h = 2;
  asymmetric.pad_w = 2;
  asymmetric.dilation_w = 2;
  return {
      {"stride 2, padding 1, bias", {2, 3, 6, 5}, {4, 3, 3, 3}, true, params(2, 1, 1, 1)},
      {"dilation 2, padding 2, groups 2", {1, 4, 7, 6}, {6, 2, 3, 3}, false, params(1, 2, 2, 2)},
      {"stride 2, dilation 2, groups 2, bias", {2, 4, 8, 7}, {4, 2, 2, 3}, true, params(2, 1, 2, 2)},
      {"depthwise 3x3, bias", {2, 3, 5, 5}, {3, 1, 3, 3}, true, params(1, 1, 1, 3)},
      {"depthwise, multiplier 2, stride 2", {1, 3, 6, 6}, {6, 1, 3, 3}, true, params(2, 1, 1, 3)},
      {"pointwise 1x1, bias", {2, 5, 3, 4}, {3, 5, 1, 1}, true, params(1, 0, 1, 1)},
      {"asymmetric stride, padding, dilation", {1, 2, 7, 5}, {3, 2, 2, 2}, true, asymmetric},
  };
}

std::vector<Tensor> case_inputs(const ConvCase& c) {
  std::vector<Tensor> inputs = {leaf(c.x), leaf(c.w)};
  if (c.bias) inputs.push_back(leaf({c.w[0]}));
  return inputs;
}

Tensor run_case(const ConvCase& c, const std::vector<Tensor>& in) {
  return conv2d(in[0], in[1], c.bias ? in[2] : Tensor(), c.p);
}

TEST(Conv2dOp, ForwardMatchesHandComputedValues) {
  // x = 1..9 as a 3x3 image, w = [[1, 2], [3, 4]], bias 0.5.
  const Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  const Tensor w = from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  const Tensor b = from_vector<double>({0.5}, {1});
  const Tensor y = conv2d(x, w, b);
  EXPECT_EQ(y.shape(), Shape({1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<double>(), std::vector<double>({37.5, 47.5, 67.5, 77.5}));

  // Padding 1, stride 2: the corner windows see one or two pixels of the image.
  const Tensor y2 = conv2d(x, w, Tensor(), params(2, 1, 1, 1));
  EXPECT_EQ(y2.shape(), Shape({1, 1, 2, 2}));
  EXPECT_EQ(y2.to_vector<double>(), std::vector<double>({4, 18, 36, 77}));

  // Dilation 2 on the 3x3 image: one window over the four corners.
  const Tensor y3 = conv2d(x, w, Tensor(), params(1, 0, 2, 1));
  EXPECT_EQ(y3.to_vector<double>(), std::vector<double>({1 * 1 + 2 * 3 + 3 * 7 + 4 * 9}));

  // Groups 2, 1x1: each output channel scales its own input channel.
  const Tensor x2 = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8}, {1, 2, 2, 2});
  const Tensor w2 = from_vector<float>({2, -1}, {2, 1, 1, 1});
  EXPECT_EQ(conv2d(x2, w2, Tensor(), params(1, 0, 1, 2)).to_vector<float>(),
            std::vector<float>({2, 4, 6, 8, -5, -6, -7, -8}));
}

TEST(Conv2dOp, GradientsMatchFiniteDifferences) {
  manual_seed(11);
  for (const ConvCase& c : conv_cases()) {
    SCOPED_TRACE(c.name);
    expect_gradients_match([&](const std::vector<Tensor>& in) { return run_case(c, in); }, case_inputs(c));
  }
}

TEST(Conv2dOp, NonContiguousInputsGiveTheSameValuesAndGradients) {
  manual_seed(12);
  const Conv2dParams p = params(1, 1, 1, 1);
  // x as channels-last memory, weight as a transposed view of a (C_in, C_out, KH, KW) tensor.
  const Tensor x = randn({2, 3, 4, 5}, {DType::f64});
  const Tensor w = randn({3, 4, 3, 3}, {DType::f64});
  Tensor xs = x.contiguous(MemoryFormat::channels_last).requires_grad_(true);
  const Tensor ws = w.transpose(0, 1);
  ASSERT_FALSE(xs.is_contiguous());
  ASSERT_FALSE(ws.is_contiguous());
  Tensor xc = x.clone().requires_grad_(true);
  const Tensor yc = conv2d(xc, w.transpose(0, 1).contiguous(), Tensor(), p);
  const Tensor ys = conv2d(xs, ws, Tensor(), p);
  EXPECT_EQ(ys.to_vector<double>(), yc.to_vector<double>());
  const Tensor weights = randn(yc.shape(), {DType::f64});
  sum(mul(yc, weights)).backward();
  sum(mul(ys, weights)).backward();
  EXPECT_EQ(xs.grad().to_vector<double>(), xc.grad().to_vector<double>());

  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        return conv2d(in[0].contiguous(MemoryFormat::channels_last), in[1].transpose(0, 1), in[2], p);
      },
      {leaf({1, 3, 4, 4}), leaf({3, 2, 3, 3}), leaf({2})});
}

// On CUDA, channels-last inputs (PyTorch's memory-format rule: x or the weight) run the kernels' nhwc layout
// and give a channels-last y; the CPU makes them NCHW contiguous (its kernels' layout).
Tensor channels_last_leaf(const Tensor& t) {
  return t.detach().contiguous(MemoryFormat::channels_last).requires_grad_(true);
}

TEST(Conv2dOp, ChannelsLastInputsRunNchwOnTheCpu) {
  manual_seed(13);
  const ConvCase c = conv_cases()[1];  // groups 2, dilation 2
  const Tensor x = channels_last_leaf(randn(c.x, {DType::f64})), w = randn(c.w, {DType::f64});
  ASSERT_FALSE(x.is_contiguous());
  const Tensor y = conv2d(x, w, Tensor(), c.p);
  EXPECT_TRUE(y.is_contiguous());
  EXPECT_EQ(y.to_vector<double>(), conv2d(x.detach().contiguous(), w, Tensor(), c.p).to_vector<double>());
}

// A stride-1 depthwise conv of a channels-last x (SegFormer's token maps) runs channels-last on the CPU
// too (kernels/cpu/conv_depthwise_nhwc.cpp): a channels-last y, the NCHW run's values and x gradient
// bit for bit, its weight and bias gradients up to the summation order; and with a GELU after it, the
// GELU keeps the layout, so no pass transposes anything.
TEST(Conv2dOp, ChannelsLastDepthwiseRunsChannelsLastOnTheCpu) {
  manual_seed(14);
  for (DType dtype : {DType::f32, DType::f64}) {
    const Conv2dParams p = params(1, 1, 1, 24);
    const Tensor x = randn({2, 24, 7, 9}, {dtype}), w = randn({24, 1, 3, 3}, {dtype}), b = randn({24}, {dtype});
    const Tensor xs = channels_last_leaf(x), ws = w.detach().requires_grad_(true), bs = b.detach().requires_grad_(true);
    const Tensor xc = x.detach().requires_grad_(true), wc = w.detach().requires_grad_(true),
                 bc = b.detach().requires_grad_(true);
    const Tensor ys = gelu(conv2d(xs, ws, bs, p)), yc = gelu(conv2d(xc, wc, bc, p));
    EXPECT_FALSE(ys.is_contiguous()) << dtype;
    EXPECT_TRUE(ys.is_contiguous(MemoryFormat::channels_last)) << dtype;
    EXPECT_EQ(ys.to_vector<double>(), yc.to_vector<double>()) << dtype;
    const Tensor weights = randn(yc.shape(), {dtype});
    sum(mul(ys, weights.contiguous(MemoryFormat::channels_last))).backward();
    sum(mul(yc, weights)).backward();
    EXPECT_EQ(xs.grad().to_vector<double>(), xc.grad().to_vector<double>()) << dtype;
    const double tol = dtype == DType::f32 ? 1e-5 : 1e-12;
    const std::vector<double> dws = ws.grad().to_vector<double>(), dwc = wc.grad().to_vector<double>();
    for (size_t i = 0; i < dwc.size(); ++i) EXPECT_NEAR(dws[i], dwc[i], tol * (1 + std::abs(dwc[i]))) << dtype;
    const std::vector<double> dbs = bs.grad().to_vector<double>(), dbc = bc.grad().to_vector<double>();
    for (size_t i = 0; i < dbc.size(); ++i) EXPECT_NEAR(dbs[i], dbc[i], tol * (1 + std::abs(dbc[i]))) << dtype;
  }
  const Conv2dParams p = params(1, 1, 1, 3);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        return gelu(conv2d(in[0].contiguous(MemoryFormat::channels_last), in[1], in[2], p));
      },
      {leaf({2, 3, 4, 5}), leaf({3, 1, 3, 3}), leaf({3})});
}

// The fused epilogue equals the activation op applied to conv2d, in values and in gradients (ReLU stays
// fused under autograd and masks the gradient with its output; GELU with gradients runs unfused).
TEST(Conv2dOp, FusedActivationsEqualConvThenActivation) {
  manual_seed(13);
  for (const ConvCase& c : conv_cases()) {
    SCOPED_TRACE(c.name);
    for (kernels::ConvActivation activation : {kernels::ConvActivation::relu, kernels::ConvActivation::gelu}) {
      ConvCase fused = c;
      fused.p.activation = activation;
      auto separate = [&](const std::vector<Tensor>& in) {
        const Tensor y = run_case(c, in);
        return activation == kernels::ConvActivation::relu ? relu(y) : gelu(y);
      };
      const std::vector<Tensor> inputs = case_inputs(c);
      std::vector<Tensor> a, b;
      for (const Tensor& input : inputs) {
        a.push_back(input.detach().clone().requires_grad_(true));
        b.push_back(input.detach().clone().requires_grad_(true));
      }
      const Tensor want = separate(a), got = run_case(fused, b);
      EXPECT_EQ(got.grad_fn()->name(), activation == kernels::ConvActivation::relu ? "conv2d_relu" : "gelu");
      const Tensor weights = randn(want.shape(), {DType::f64});
      sum(mul(want, weights)).backward();
      sum(mul(got, weights)).backward();
      EXPECT_LE(max(abs(sub(got, want))).item(), 1e-12);
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_LE(max(abs(sub(b[i].grad(), a[i].grad()))).item(), 1e-12) << "input " << i;
      }
      {
        NoGradGuard no_grad;  // inference: both activations fused
        EXPECT_LE(max(abs(sub(run_case(fused, inputs), separate(inputs)))).item(), 1e-12);
      }
      expect_gradients_match([&](const std::vector<Tensor>& in) { return run_case(fused, in); }, inputs);
    }
  }  // The fused ReLU's backward is the relu op's kernel, from the output.
  EXPECT_EQ(relu_backward(from_vector<float>({1, 2, 3}, {3}), from_vector<float>({0, 0.5, -1}, {3})).to_vector<float>(),
            std::vector<float>({0, 2, 0}));
  expect_error([] { relu_backward(ones({2}), ones({3})); }, "relu_backward: grad (2,) and saved (3,) differ in shape");
}

TEST(Conv2dOp, GradientsOnlyForInputsThatRequireThem) {
  manual_seed(13);
  const Conv2dParams p = params(1, 1, 1, 1);
  {
    Tensor x = leaf({1, 2, 4, 4});
    const Tensor w = randn({3, 2, 3, 3}, {DType::f64});
    const Tensor b = randn({3}, {DType::f64});
    sum(conv2d(x, w, b, p)).backward();
    EXPECT_TRUE(x.grad().defined());
    EXPECT_FALSE(w.grad().defined());
    EXPECT_FALSE(b.grad().defined());
  }
  {
    const Tensor x = randn({2, 2, 4, 4}, {DType::f64});
    const Tensor w = randn({3, 2, 3, 3}, {DType::f64});
    Tensor b = leaf({3});
    Tensor y = conv2d(x, w, b, p);
    sum(y).backward();
    // d sum(y) / d b[c] = N * OH * OW.
    EXPECT_EQ(b.grad().to_vector<double>(), std::vector<double>(3, 2.0 * 4 * 4));
  }
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(conv2d(leaf({1, 2, 4, 4}), leaf({3, 2, 3, 3}), leaf({3}), p).requires_grad());
  }
}

TEST(Conv2dOp, ErrorsNameTheOpShapesAndExpectation) {
  const Tensor x = randn({1, 3, 5, 5});
  expect_error(
      [&] {
        conv2d(x, randn({4, 2, 3, 3}), Tensor(), params(1, 0, 1, 1));
      },
      "conv2d: weight (4, 2, 3, 3) does not fit x (1, 3, 5, 5) with groups = 1 (expected weight.size(1) = "
      "C_in / groups = 3)");
  expect_error(
      [&] {
        conv2d(x, randn({4, 1, 3, 3}), Tensor(), params(1, 0, 1, 2));
      },
      "conv2d: groups = 2 does not divide the 3 input channels of x (1, 3, 5, 5)");
  expect_error(
      [&] {
        conv2d(randn({1, 4, 5, 5}), randn({3, 2, 3, 3}), Tensor(), params(1, 0, 1, 2));
      },
      "conv2d: groups = 2 does not divide the 3 output channels of weight (3, 2, 3, 3)");
  expect_error(
      [&] {
        conv2d(x.to(DType::i32), randn({4, 3, 3, 3}).to(DType::i32));
      },
      "conv2d: dtype i32 is not supported on cpu (expected f32, f64, f16 or bf16)");
  expect_error(
      [&] {
        conv2d(x, randn({4, 3, 3, 3}, {DType::f64}));
      },
      "conv2d: x has dtype f32 but weight has dtype f64");
  expect_error(
      [&] {
        conv2d(x, randn({4, 3, 3, 3}), randn({4}, {DType::f16}));
      },
      "conv2d: x has dtype f32 but bias has dtype f16");
  expect_error(
      [&] {
        conv2d(x, randn({4, 3, 3, 3}), randn({3}));
      },
      "conv2d: bias has shape (3,), expected (4) to match weight (4, 3, 3, 3)");
  expect_error(
      [&] {
        conv2d(randn({3, 5, 5}), randn({4, 3, 3, 3}));
      },
      "conv2d: x has shape (3, 5, 5), expected 4-d (N, C_in, H, W)");
  expect_error([&] { conv2d(x, randn({4, 3, 7, 3})); }, "conv2d: output height");
  expect_error([&] { conv2d(x, randn({4, 3, 3, 3}), Tensor(), params(0, 0, 1, 1)); }, "conv2d: stride_h = 0");
}

// ---- CUDA against the CPU

// Runs a case on the CPU (NCHW) and on the device, with x channels-last there when asked, and compares the
// outputs and the gradients.
void expect_cuda_case_matches_cpu(const ConvCase& c, bool channels_last_x) {
  SCOPED_TRACE(c.name);
  const std::vector<Tensor> inputs = case_inputs(c);
  std::vector<Tensor> cpu_leaves, cuda_leaves;
  for (const Tensor& input : inputs) {
    cpu_leaves.push_back(input.detach().clone().requires_grad_(true));
    cuda_leaves.push_back(input.detach().to(Device::cuda()).requires_grad_(true));
  }
  if (channels_last_x) cuda_leaves[0] = channels_last_leaf(cuda_leaves[0]);
  const Tensor cpu_out = run_case(c, cpu_leaves);
  const Tensor cuda_out = run_case(c, cuda_leaves);
  ASSERT_EQ(cuda_out.device(), Device::cuda());
  EXPECT_EQ(cuda_out.is_contiguous(MemoryFormat::channels_last), channels_last_x);
  const Tensor weights = randn(cpu_out.shape(), {DType::f64});
  sum(mul(cpu_out, weights)).backward();
  sum(mul(cuda_out, weights.to(Device::cuda()))).backward();
  const std::vector<double> want_out = cpu_out.to_vector<double>(), got_out = cuda_out.to_vector<double>();
  ASSERT_EQ(got_out.size(), want_out.size());
  for (size_t j = 0; j < want_out.size(); ++j) {
    EXPECT_NEAR(got_out[j], want_out[j], 1e-10 + 1e-12 * std::abs(want_out[j])) << "output element " << j;
  }
  for (size_t i = 0; i < cpu_leaves.size(); ++i) {
    ASSERT_TRUE(cuda_leaves[i].grad().defined()) << "input " << i;
    EXPECT_EQ(cuda_leaves[i].grad().device(), Device::cuda());
    const std::vector<double> want = cpu_leaves[i].grad().to_vector<double>();
    const std::vector<double> got = cuda_leaves[i].grad().to_vector<double>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t j = 0; j < want.size(); ++j) {
      EXPECT_NEAR(got[j], want[j], 1e-10 + 1e-12 * std::abs(want[j])) << "input " << i << " element " << j;
    }
  }
}

TEST(Conv2dOpCuda, GradientsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(21);
  for (const ConvCase& c : conv_cases()) expect_cuda_case_matches_cpu(c, false);
}

// The device's nhwc kernels (implicit GEMM, 1x1 GEMM, depthwise, channel-tiled reductions) in f64 against
// the CPU's NCHW run.
TEST(Conv2dOpCuda, ChannelsLastMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(23);
  for (const ConvCase& c : conv_cases()) expect_cuda_case_matches_cpu(c, true);
}

TEST(Conv2dOpCuda, FusedReluGradientsMatchCpu) {
  Conv2dParams p = params(1, 1, 1, 1);
  p.activation = kernels::ConvActivation::relu;
  testing::expect_cuda_matches_cpu(
      [&](const Tensor& x) { return conv2d(x, ones({4, 3, 3, 3}, {DType::f32, x.device()}), Tensor(), p); },
      {2, 3, 6, 5});
}

TEST(Conv2dOpCuda, F32ForwardMatchesCpuAndErrorsNameDevice) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(22);
  for (const ConvCase& c : conv_cases()) {
    SCOPED_TRACE(c.name);
    const Tensor x = randn(c.x), w = randn(c.w), b = c.bias ? randn({c.w[0]}) : Tensor();
    const std::vector<float> want = conv2d(x, w, b, c.p).to_vector<float>();
    const Tensor b_cuda = c.bias ? b.to(Device::cuda()) : Tensor();
    const std::vector<float> got = conv2d(x.to(Device::cuda()), w.to(Device::cuda()), b_cuda, c.p).to_vector<float>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t j = 0; j < want.size(); ++j) EXPECT_NEAR(got[j], want[j], 1e-5 + 1e-5 * std::abs(want[j]));
  }
  const Tensor x = randn({1, 3, 5, 5}), w = randn({4, 3, 3, 3});
  expect_error([&] { conv2d(x, w.to(Device::cuda())); }, "conv2d: x is on cpu but weight is on cuda:0");
  expect_error([&] { conv2d(x.to(Device::cuda()), w.to(Device::cuda()), randn({4})); },
               "conv2d: x is on cuda:0 but bias is on cpu");
  expect_error([&] { conv2d(x.to(Device::cuda(), DType::i32), w.to(Device::cuda(), DType::i32)); },
               "conv2d: dtype i32 is not supported on cuda:0");
}

}  // namespace
}  // namespace se
