// Engine elementwise ops: forward values, f64 finite-difference gradients on the CPU for every
// differentiable op (inputs kept away from kinks and domain edges), broadcasting backward, in-place
// semantics, dtype/device errors, and the CUDA gradient against the CPU gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"
#include "tests/engine/gradcheck.h"

namespace se {
namespace {

using testing::expect_gradients_match;

// Values in (-2, 2) that stay at least 0.05 away from 0 and from +-0.5 (the clamp bounds below).
Tensor off_kink(const Shape& shape) {
  Tensor x = sub(mul(arange(static_cast<double>(shape_numel(shape)), {DType::f64}), 0.3), 1.95);
  return x.view(shape).requires_grad_(true);
}
Tensor positive(const Shape& shape) {
  return add(rand(shape, {DType::f64}), 0.5).requires_grad_(true);
}
Tensor normal(const Shape& shape) {
  return randn(shape, {DType::f64}).requires_grad_(true);
}

using testing::expect_error;

struct GradCase {
  std::string name;
  testing::TensorFunction f;
  std::vector<Tensor> inputs;
};

// Every differentiable op, broadcasting binary ones over (2, 3, 4) and (3, 1) shapes.
std::vector<GradCase> grad_cases() {
  manual_seed(7);
  using V = const std::vector<Tensor>&;
  return {
      {"neg", [](V x) { return neg(x[0]); }, {normal({3, 4})}},
      {"exp", [](V x) { return exp(x[0]); }, {normal({3, 4})}},
      {"log", [](V x) { return log(x[0]); }, {positive({3, 4})}},
      {"sqrt", [](V x) { return sqrt(x[0]); }, {positive({3, 4})}},
      {"rsqrt", [](V x) { return rsqrt(x[0]); }, {positive({3, 4})}},
      {"abs", [](V x) { return abs(x[0]); }, {off_kink({3, 4})}},
      {"relu", [](V x) { return relu(x[0]); }, {off_kink({3, 4})}},
      {"gelu", [](V x) { return gelu(x[0]); }, {normal({3, 4})}},
      {"gelu_tanh", [](V x) { return gelu(x[0], true); }, {normal({3, 4})}},
      {"sigmoid", [](V x) { return sigmoid(x[0]); }, {normal({3, 4})}},
      {"tanh", [](V x) { return tanh(x[0]); }, {normal({3, 4})}},
      {"pow_scalar", [](V x) { return pow(x[0], 2.5); }, {positive({3, 4})}},
      {"pow_tensor", [](V x) { return pow(x[0], x[1]); }, {positive({2, 3, 4}), normal({3, 1})}},
      {"add", [](V x) { return add(x[0], x[1], 0.5); }, {normal({2, 3, 4}), normal({3, 1})}},
      {"sub", [](V x) { return sub(x[0], x[1], 2.0); }, {normal({3, 1}), normal({2, 3, 4})}},
      {"mul", [](V x) { return mul(x[0], x[1]); }, {normal({2, 3, 4}), normal({3, 1})}},
      {"div", [](V x) { return div(x[0], x[1]); }, {normal({2, 3, 4}), positive({3, 1})}},
      {"maximum", [](V x) { return maximum(x[0], x[1]); }, {normal({2, 3, 4}), normal({4})}},
      {"minimum", [](V x) { return minimum(x[0], x[1]); }, {normal({2, 3, 4}), normal({4})}},
      {"scalar_forms",
       [](V x) { return rdiv(rsub(div(mul(add(sub(x[0], 0.25), 3.0), 2.0), 4.0), 5.0), 2.0); },
       {positive({3, 4})}},
      {"operators",
       [](V x) { return (2.0 - x[0]) * x[1] / 3.0 + (-x[0]) / x[1] - 1.0 / x[1]; },
       {normal({3, 4}), positive({4})}},
      {"where", [](V x) { return where(gt(x[0], 0.0), x[0], x[1]); }, {off_kink({2, 3, 4}), normal({3, 1})}},
      {"clamp", [](V x) { return clamp(x[0], -0.5, 0.5); }, {off_kink({3, 5})}},
      {"clamp_min", [](V x) { return clamp(x[0], -0.5, std::nullopt); }, {off_kink({3, 5})}},
      {"transposed_input", [](V x) { return sigmoid(x[0].t()) * x[1]; }, {normal({4, 3}), normal({3, 4})}},
  };
}

TEST(ElementwiseOps, GradientsMatchFiniteDifferences) {
  for (const GradCase& c : grad_cases()) {
    SCOPED_TRACE(c.name);
    expect_gradients_match(c.f, c.inputs);
  }
}

TEST(ElementwiseOps, ForwardValues) {
  Tensor a = from_vector<float>({1, -2, 3, -4, 5, -6}, {2, 3});
  Tensor b = from_vector<float>({10, 20, 30}, {3});
  EXPECT_EQ((a + b).to_vector<float>(), (std::vector<float>{11, 18, 33, 6, 25, 24}));
  EXPECT_EQ(relu(a).to_vector<float>(), (std::vector<float>{1, 0, 3, 0, 5, 0}));
  EXPECT_EQ(clamp(a, -3.0, 4.0).to_vector<float>(), (std::vector<float>{1, -2, 3, -3, 4, -3}));
  EXPECT_EQ(gt(a, 0.0).to_vector<float>(), (std::vector<float>{1, 0, 1, 0, 1, 0}));
  EXPECT_EQ(gt(a, 0.0).dtype(), DType::boolean);
  EXPECT_EQ(where(lt(a, 0.0), b, a).to_vector<float>(), (std::vector<float>{1, 20, 3, 10, 5, 30}));
  EXPECT_EQ((10.0 - a).to_vector<float>(), (std::vector<float>{9, 12, 7, 14, 5, 16}));
  Tensor i = from_vector<int32_t>({1, 2, 3}, {3}, {DType::i32});
  EXPECT_EQ((i * i + 1.0).to_vector<int32_t>(), (std::vector<int32_t>{2, 5, 10}));
  EXPECT_EQ(maximum(i, from_vector<int32_t>({2}, {1}, {DType::i32})).to_vector<int32_t>(),
            (std::vector<int32_t>{2, 2, 3}));
}

TEST(ElementwiseOps, BroadcastGradientsHaveInputShapes) {
  Tensor a = ones({4, 1, 5}, {DType::f32}).requires_grad_(true);
  Tensor b = ones({3, 1}, {DType::f32}).requires_grad_(true);
  sum(a * b).backward();
  EXPECT_EQ(a.grad().shape(), (Shape{4, 1, 5}));
  EXPECT_EQ(b.grad().shape(), (Shape{3, 1}));
  EXPECT_EQ(a.grad().to_vector<float>(), std::vector<float>(20, 3.0f));  // summed over the 3 rows of b
  EXPECT_EQ(b.grad().to_vector<float>(), std::vector<float>(3, 20.0f));  // summed over 4 x 5
}

// A gradient that arrives as a transposed view (SegFormer's image -> tokens) is made contiguous before the
// fused backward kernel runs: the same values as a gradient that arrives contiguous, for f32 (the vector
// loop) and f64.
TEST(ElementwiseOps, TransposedGradientGivesTheSameUnaryGradient) {
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor x = randn({3, 40, 50}, {dtype});
    const Tensor c = randn({3, 50, 40}, {dtype});
    Tensor a = x.clone().requires_grad_(true), b = x.clone().requires_grad_(true);
    sum(gelu(a).transpose(1, 2) * c).backward();               // grad of gelu's output: c transposed, strided
    sum(gelu(b) * c.transpose(1, 2).contiguous()).backward();  // the same values, contiguous
    EXPECT_EQ(a.grad().to_vector<double>(), b.grad().to_vector<double>()) << dtype;
    Tensor s = x.clone().requires_grad_(true), t = x.clone().requires_grad_(true);
    sum(sigmoid(s).transpose(0, 2) * c.transpose(1, 2).transpose(0, 2)).backward();
    sum(sigmoid(t) * c.transpose(1, 2).contiguous()).backward();
    EXPECT_EQ(s.grad().to_vector<double>(), t.grad().to_vector<double>()) << dtype;
  }
}

// Channels-last in, channels-last out (PyTorch's rule for elementwise ops): unary ops, their
// gradients and same-shape binary ops; the values are the NCHW ones.
TEST(ElementwiseOps, ChannelsLastInputsGiveChannelsLastResults) {
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor x = randn({2, 5, 3, 4}, {dtype}), other = randn({2, 5, 3, 4}, {dtype});
    Tensor xs = x.contiguous(MemoryFormat::channels_last).requires_grad_(true);
    Tensor xc = x.clone().requires_grad_(true);
    const Tensor ys = gelu(xs), yc = gelu(xc);
    EXPECT_TRUE(ys.is_contiguous(MemoryFormat::channels_last) && !ys.is_contiguous()) << dtype;
    EXPECT_EQ(ys.to_vector<double>(), yc.to_vector<double>()) << dtype;
    const Tensor zs = mul(ys, other.contiguous(MemoryFormat::channels_last));
    EXPECT_TRUE(zs.is_contiguous(MemoryFormat::channels_last) && !zs.is_contiguous()) << dtype;
    const Tensor zc = mul(yc, other);
    EXPECT_EQ(zs.to_vector<double>(), zc.to_vector<double>()) << dtype;
    EXPECT_TRUE(add(ys, other).is_contiguous()) << dtype;  // mixed layouts: contiguous
    const Tensor g = randn(x.shape(), {dtype});
    ys.backward(g.contiguous(MemoryFormat::channels_last));
    yc.backward(g);
    EXPECT_EQ(xs.grad().to_vector<double>(), xc.grad().to_vector<double>()) << dtype;
    const Tensor dx = relu_backward(g.contiguous(MemoryFormat::channels_last), ys.detach());
    EXPECT_TRUE(dx.is_contiguous(MemoryFormat::channels_last) && !dx.is_contiguous()) << dtype;
    EXPECT_EQ(dx.to_vector<double>(), relu_backward(g, yc.detach()).to_vector<double>()) << dtype;
  }
}

TEST(ElementwiseOps, MaximumSplitsTiedGradient) {
  Tensor a = from_vector<double>({1, 2, 3}, {3}, {DType::f64}).requires_grad_(true);
  Tensor b = from_vector<double>({2, 2, 2}, {3}, {DType::f64}).requires_grad_(true);
  sum(maximum(a, b)).backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{0, 0.5, 1}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{1, 0.5, 0}));
}

TEST(ElementwiseOps, InPlaceOpsBumpVersionAndHandleStridedSelf) {
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  const uint64_t version = x.storage()->version();
  add_(x, from_vector<float>({1, 1, 1}, {3}));
  mul_(x, 2.0);
  EXPECT_EQ(x.storage()->version(), version + 2);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{4, 6, 8, 10, 12, 14}));
  Tensor xt = x.t();  // non-contiguous destination
  sub_(xt, from_vector<float>({4, 8}, {2}), 0.5);
  div_(xt, full({3, 2}, 2.0));
  clamp_(xt, std::nullopt, 4.0);
  add_(xt, 1.0);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{2, 3, 4, 4, 5, 5}));
  Tensor i = from_vector<int32_t>({5, -5}, {2}, {DType::i32});
  mul_(i, from_vector<int32_t>({3, 3}, {2}, {DType::i32}));
  EXPECT_EQ(i.to_vector<int32_t>(), (std::vector<int32_t>{15, -15}));
}

// An operand overlapping the destination otherwise than element for element is read whole before the
// destination is written (a forward loop would carry x[0] along the row); the very same elements need no
// copy. A destination with several elements at one location (an expanded view) is refused.
TEST(ElementwiseOps, InPlaceOpsReadOverlappingOperandsFirst) {
  Tensor x = arange(6);
  Tensor tail = x.slice(0, 1, 6);
  add_(tail, x.slice(0, 0, 5));
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{0, 1, 3, 5, 7, 9}));
  Tensor square = arange(9).reshape({3, 3});
  mul_(square, square.t());
  EXPECT_EQ(square.to_vector<float>(), (std::vector<float>{0, 3, 12, 3, 16, 35, 12, 35, 64}));
  Tensor same = arange(4);
  add_(same, same);
  EXPECT_EQ(same.to_vector<float>(), (std::vector<float>{0, 2, 4, 6}));
  Tensor expanded = zeros({1, 3}).expand({4, 3});
  expect_error([&] { add_(expanded, 1.0); },
               "add_: the written-to tensor of shape (4, 3) and strides (0, 1) has several elements");
  expect_error([&] { mul_(expanded, ones({4, 3})); }, "mul_: the written-to tensor");
  expect_error([&] { expanded.copy_(ones({4, 3})); }, "copy_: the destination of shape (4, 3)");
}

TEST(ElementwiseOps, InPlaceErrors) {
  Tensor leaf = ones({3}).requires_grad_(true);
  expect_error([&] { add_(leaf, 1.0); }, "in-place operation on a leaf tensor that requires grad");
  Tensor x = ones({3});
  expect_error([&] { mul_(x, ones({3}).requires_grad_(true)); }, "mul_: the other operand requires grad");
  expect_error([&] { add_(x, ones({2, 3})); }, "does not broadcast to the destination shape (3,)");
  // A tensor saved for backward and then modified in place makes backward fail, not silently wrong.
  Tensor y = ones({3}).requires_grad_(true);
  Tensor e = exp(y);
  {
    NoGradGuard no_grad;
    Tensor alias = e.detach();
    add_(alias, 1.0);
  }
  EXPECT_THROW(sum(e).backward(), Error);
}

TEST(ElementwiseOps, DTypeAndShapeErrorsNameTheOp) {
  Tensor i = from_vector<int32_t>({1, 2}, {2}, {DType::i32});
  expect_error([&] { exp(i); }, "exp: dtype i32 is not supported on cpu");
  expect_error([&] { div(i, i); }, "div: dtype i32 is not supported on cpu");
  expect_error([&] { div(i, 2.0); }, "div: dtype i32 is not supported on cpu");
  expect_error([&] { add(ones({2}), ones({2}, {DType::f16})); }, "add: operands have dtypes f32 and f16");
  expect_error([&] { mul(ones({2, 3}), ones({4})); }, "mul");
  expect_error([&] { where(ones({2}), ones({2}), ones({2})); }, "where: condition has dtype f32, expected bool");
  expect_error([&] { clamp(ones({2}), std::nullopt, std::nullopt); }, "clamp: at least one of min and max");
  expect_error([&] { lt(i, 1.5); }, "lt: scalar 1.5 is not representable in dtype i32");
  expect_error([&] { neg(from_vector<uint8_t>({1}, {1}, {DType::u8})); }, "neg: dtype u8 is not supported on cpu");
}

TEST(ElementwiseOpsCuda, GradientsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (const GradCase& c : grad_cases()) {
    SCOPED_TRACE(c.name);
    std::vector<Tensor> cpu_leaves, cuda_leaves;
    for (const Tensor& input : c.inputs) {
      cpu_leaves.push_back(input.detach().clone().requires_grad_(true));
      cuda_leaves.push_back(input.detach().to(Device::cuda()).requires_grad_(true));
    }
    Tensor cpu_out = c.f(cpu_leaves);
    Tensor cuda_out = c.f(cuda_leaves);
    const Tensor weights = randn(cpu_out.shape(), {DType::f64});
    sum(mul(cpu_out, weights)).backward();
    sum(mul(cuda_out, weights.to(Device::cuda()))).backward();
    const std::vector<double> want_out = cpu_out.to_vector<double>(), got_out = cuda_out.to_vector<double>();
    for (size_t j = 0; j < want_out.size(); ++j) {
      EXPECT_NEAR(got_out[j], want_out[j], 1e-10 + 1e-12 * std::abs(want_out[j])) << "output element " << j;
    }
    for (size_t i = 0; i < cpu_leaves.size(); ++i) {
      const std::vector<double> want = cpu_leaves[i].grad().to_vector<double>();
      const std::vector<double> got = cuda_leaves[i].grad().to_vector<double>();
      ASSERT_EQ(got.size(), want.size());
      for (size_t j = 0; j < want.size(); ++j) {
        EXPECT_NEAR(got[j], want[j], 1e-10 + 1e-12 * std::abs(want[j])) << "input " << i << " element " << j;
      }
    }
  }
}

TEST(ElementwiseOpsCuda, F32ForwardMatchesCpuAndErrorsNameDevice) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(3);
  Tensor a = randn({4, 1, 5});
  Tensor b = randn({3, 1});
  const std::vector<float> want = gelu(a * b + sigmoid(b)).to_vector<float>();
  const std::vector<float> got =
      gelu(a.to(Device::cuda()) * b.to(Device::cuda()) + sigmoid(b.to(Device::cuda()))).to_vector<float>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t j = 0; j < want.size(); ++j) EXPECT_NEAR(got[j], want[j], 1e-6 + 1e-5 * std::abs(want[j]));
  Tensor i = from_vector<int32_t>({1}, {1}, {DType::i32, Device::cuda()});
  expect_error([&] { exp(i); }, "exp: dtype i32 is not supported on cuda:0");
  expect_error([&] { add(a, b.to(Device::cuda())); }, "add: operands are on cpu and cuda:0");
}

}  // namespace
}  // namespace se
