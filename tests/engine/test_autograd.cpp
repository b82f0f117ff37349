#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"
#include "tests/engine/gradcheck.h"

namespace se {
namespace {

using testing::error_of;

TEST(Autograd, DiamondGraphSumsBothPaths) {
  // y = a*x + exp(x) through two branches that meet again: dy/dx = a + exp(x)
  Tensor x = from_vector<double>({0.5, -1.0}, {2}, {DType::f64, Device::cpu(), true});
  Tensor a = from_vector<double>({2.0, 3.0}, {2}, {DType::f64});
  Tensor y = sum(add(mul(x, a), exp(x)));
  y.backward();
  std::vector<double> g = x.grad().to_vector<double>();
  EXPECT_NEAR(g[0], 2.0 + std::exp(0.5), 1e-12);
  EXPECT_NEAR(g[1], 3.0 + std::exp(-1.0), 1e-12);
  EXPECT_FALSE(a.grad().defined());
}

// Records what a backward pass ran, for BackwardObserverRunsEveryNodeInReverseCreationOrder.
class NodeLog : public BackwardObserver {
 public:
  void before_node(const Node& node) override { started.push_back(node.sequence_nr()); }
  void after_node(const Node& node) override { finished.push_back(node.sequence_nr()); }
  std::vector<uint64_t> started, finished;
};

TEST(Autograd, BackwardObserverSeesEveryNodeOnceOnItsThread) {
  Tensor x = from_vector<double>({0.5, -1.0}, {2}, {DType::f64, Device::cpu(), true});
  const uint64_t first = Node::next_sequence_nr();
  Tensor y = sum(exp(mul(x, x)));  // mul, AccumulateGrad(x), exp, sum
  const uint64_t end = Node::next_sequence_nr();
  EXPECT_EQ(end - first, 4u);
  NodeLog log;
  {
    BackwardObserverScope scope(&log);
    y.backward();
  }
  // The loss first; the leaf's accumulator after the mul that feeds it.
  EXPECT_EQ(log.started, (std::vector<uint64_t>{first + 3, first + 2, first, first + 1}));
  EXPECT_EQ(log.finished, log.started);
  Tensor z = sum(mul(x, x));  // the scope has ended: nothing is observed
  z.backward();
  EXPECT_EQ(log.started.size(), 4u);
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor w = ones({3}, {.requires_grad = true});
  sum(mul(w, 2.0)).backward();
  sum(mul(w, 3.0)).backward();
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{5, 5, 5}));
  w.set_grad(Tensor());
  sum(w).backward();
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{1, 1, 1}));
}

TEST(Autograd, LeafGradientNeverAliasesTheCallersGradient) {
  // The leaf takes over an incoming gradient only when nothing else refers to its memory.
  Tensor x = zeros({3}, {.requires_grad = true});
  Tensor g = ones({3});
  x.clone().backward(g);  // clone's backward passes g itself through
  g.fill_(5);
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{1, 1, 1}));
  Tensor w = zeros({2}, {.requires_grad = true});
  Tensor saved = mul(w, 3.0);
  sum(saved).backward();
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{3, 3}));
}

TEST(Autograd, SetDataSwapsTheValueBehindEveryHandle) {
  Tensor w = ones({2}, {.requires_grad = true});
  Tensor alias = w;  // e.g. a module's member and its parameter list
  sum(mul(w, 2.0)).backward();
  w.set_data(from_vector<double>({3.0, 4.0, 5.0}, {3}, {DType::f64}));
  EXPECT_EQ(alias.dtype(), DType::f64);
  EXPECT_EQ(alias.shape(), (Shape{3}));
  EXPECT_TRUE(alias.requires_grad());
  EXPECT_FALSE(alias.grad().defined());  // the old gradient no longer matches
  sum(mul(alias, alias)).backward();
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{6, 8, 10}));
  EXPECT_NE(error_of([&] { w.set_data(zeros({2}, {DType::i64})); }).find("cannot take i64"), std::string::npos);
  EXPECT_NE(error_of([&] { mul(w, 2.0).set_data(w); }).find("only leaf"), std::string::npos);
}

TEST(Autograd, NoGradGuardAndDetachStopHistory) {
  Tensor w = ones({2}, {.requires_grad = true});
  {
    NoGradGuard no_grad;
    Tensor y = mul(w, 2.0);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  EXPECT_TRUE(grad_mode_enabled());
  Tensor d = mul(w, 2.0).detach();
  EXPECT_FALSE(d.requires_grad());
  Tensor y = mul(w, 2.0);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_FALSE(y.is_leaf());
  EXPECT_NE(error_of([&] { d.backward(); }).find("does not require grad"), std::string::npos);
}

TEST(Autograd, BackwardWithAnOutputGradient) {
  Tensor x = from_vector<float>({1, 2, 3}, {3}, {.requires_grad = true});
  Tensor y = mul(x, x);
  EXPECT_NE(error_of([&] { y.backward(); }).find("non-scalar output of shape (3,)"), std::string::npos);
  y.backward(from_vector<float>({1, 0.5f, 0}, {3}));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{2, 2, 0}));
}

TEST(Autograd, GradReadyHooksFireOncePerBackward) {
  Tensor w = ones({2}, {.requires_grad = true});
  int calls = 0;
  std::vector<float> seen;
  w.register_grad_ready_hook([&](const Tensor& grad) {
    ++calls;
    seen = grad.to_vector<float>();
  });
  // w reaches the loss through two paths; the hook must see the full sum, once.
  Tensor y = sum(add(mul(w, 2.0), mul(w, 3.0)));
  y.backward();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, (std::vector<float>{5, 5}));
}

TEST(Autograd, GraphIsFreedAfterBackward) {
  Tensor x = ones({2}, {.requires_grad = true});
  Tensor y = sum(exp(x));
  y.backward();
  EXPECT_NE(error_of([&] { y.backward(); }).find("a second time"), std::string::npos);
}

TEST(Autograd, InPlaceModificationOfASavedTensorIsAnError) {
  Tensor x = ones({3}, {.requires_grad = true});
  Tensor c = full({3}, 2.0);
  Tensor y = sum(mul(x, c));  // mul saves c for x's gradient
  mul_(c, 5.0);
  std::string message = error_of([&] { y.backward(); });
  EXPECT_NE(message.find("saved for backward was modified in place"), std::string::npos) << message;
  Tensor e = exp(x);
  EXPECT_NE(error_of([&] { add_(e, 1.0); }).find("computed by 'exp'"), std::string::npos);
  EXPECT_NE(error_of([&] { x.fill_(0); }).find("leaf tensor that requires grad"), std::string::npos);
  NoGradGuard no_grad;  // an optimizer step
  x.fill_(0);
}

TEST(Autograd, ViewsPropagateGradients) {
  Tensor x = arange(12, {DType::f64}).reshape({3, 4});
  x.requires_grad_(true);
  testing::expect_gradients_match(
      [](const std::vector<Tensor>& in) {
        Tensor v = in[0].t().slice(0, 1, 4, 2).unsqueeze(0).expand({2, 2, 3});
        return v.reshape({12}).narrow(0, 2, 9).view({3, 3}).select(1, 1).flatten();
      },
      {x});
}

TEST(Autograd, CopiesPropagateGradients) {
  Tensor x = randn({2, 3, 2, 2}, {DType::f64});
  x.requires_grad_(true);
  testing::expect_gradients_match(
      [](const std::vector<Tensor>& in) {
        return mul(in[0].contiguous(MemoryFormat::channels_last), in[0].clone());
      },
      {x});
  // Through a dtype conversion the gradient comes back in the input's dtype.
  Tensor y = sum(mul(x.to(DType::f32), 2.0));
  y.backward();
  EXPECT_EQ(x.grad().dtype(), DType::f64);
  EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(24, 2.0));
}

TEST(Autograd, MatmulGradients) {
  Tensor a = randn({2, 3, 4}, {DType::f64});
  Tensor b = randn({4, 5}, {DType::f64});
  Tensor v = randn({4}, {DType::f64});
  a.requires_grad_(true);
  b.requires_grad_(true);
  v.requires_grad_(true);
  testing::expect_gradients_match([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, b});
  testing::expect_gradients_match([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, v});
  testing::expect_gradients_match([](const std::vector<Tensor>& in) { return matmul(in[1], in[0].transpose(1, 2)); },
                                  {a, b.t().contiguous().detach().requires_grad_(true)});
}

TEST(Matmul, MatchesTorchSemantics) {
  Tensor a = arange(6).reshape({2, 3});
  Tensor b = arange(12).reshape({3, 4});
  EXPECT_EQ(matmul(a, b).to_vector<float>(), (std::vector<float>{20, 23, 26, 29, 56, 68, 80, 92}));
  EXPECT_EQ(matmul(a.t().contiguous().t(), b).to_vector<float>(), matmul(a, b).to_vector<float>());
  EXPECT_EQ(matmul(arange(3), arange(3)).shape(), Shape{});
  EXPECT_EQ(matmul(arange(3), arange(3)).item(), 5.0);
  EXPECT_EQ(matmul(ones({5, 1, 2, 3}), ones({4, 3, 7})).shape(), (Shape{5, 4, 2, 7}));
  EXPECT_EQ(matmul(ones({3}), ones({2, 3, 4})).shape(), (Shape{2, 4}));
  std::string message = error_of([] { matmul(ones({2, 3}), ones({4, 5})); });
  EXPECT_NE(message.find("shapes (2, 3) and (4, 5) do not multiply"), std::string::npos) << message;
  EXPECT_NE(error_of([] { mm(ones({2, 3}), ones({3, 2}, {DType::f64})); }).find("different dtypes"), std::string::npos);
}

TEST(Autograd, LinearGradients) {
  Tensor x = randn({2, 3, 4}, {DType::f64}).requires_grad_(true);
  Tensor w = randn({5, 4}, {DType::f64}).requires_grad_(true);
  Tensor bias = randn({5}, {DType::f64}).requires_grad_(true);
  auto with_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
  testing::expect_gradients_match(with_bias, {x, w, bias});
  // x a permuted (not row-viewable) input, a vector input, no bias, and only some inputs needing grad.
  testing::expect_gradients_match(
      [](const std::vector<Tensor>& in) { return linear(in[0].permute({1, 0, 2}), in[1], in[2]); }, {x, w, bias});
  testing::expect_gradients_match(with_bias, {randn({4}, {DType::f64}).requires_grad_(true), w, bias});
  testing::expect_gradients_match([](const std::vector<Tensor>& in) { return linear(in[0], in[1]); }, {x, w});
  testing::expect_gradients_match(with_bias, {x.detach(), w, bias.detach()});
  testing::expect_gradients_match(with_bias, {x, w.detach(), bias.detach()});
}

TEST(Linear, IsMatmulWithTheTransposedWeightPlusTheBias) {
  Tensor x = randn({3, 7, 40});
  Tensor w = randn({9, 40}), bias = randn({9});
  const std::vector<float> fused = linear(x, w, bias).to_vector<float>();
  const std::vector<float> reference = add(matmul(x, w.t()), bias).to_vector<float>();
  ASSERT_EQ(fused.size(), reference.size());
  for (size_t i = 0; i < fused.size(); ++i) EXPECT_NEAR(fused[i], reference[i], 1e-5 * (1 + std::abs(reference[i])));
  EXPECT_EQ(linear(x, w).to_vector<float>(), matmul(x, w.t()).to_vector<float>());
  EXPECT_EQ(linear(x, w, bias).shape(), (Shape{3, 7, 9}));
  EXPECT_EQ(linear(randn({40}), w, bias).shape(), Shape{9});
  // Empty inputs: no rows, and no input features (the output is the bias).
  EXPECT_EQ(linear(randn({0, 40}), w, bias).shape(), (Shape{0, 9}));
  Tensor no_features = linear(randn({2, 0}), randn({9, 0}), bias);
  EXPECT_EQ(no_features.shape(), (Shape{2, 9}));
  EXPECT_EQ(no_features.select(0, 1).to_vector<float>(), bias.to_vector<float>());
  EXPECT_EQ(linear(randn({2, 0}), randn({9, 0})).to_vector<float>(), std::vector<float>(18, 0.0f));
  testing::expect_error([&] { linear(x, w, randn({8})); }, "linear: bias has shape (8,), expected (9,)");
  testing::expect_error([&] { linear(x, w, randn({9}, {DType::f64})); }, "different dtypes");
  testing::expect_error([&] { linear(x, randn({9, 41})); }, "do not fit");
}

// f16/bf16: the GEMM starts from the 16-bit bias (beta = 1 over it), accumulates in f32 and rounds once.
void expect_half_linear_matches_f32(Device device) {
  Tensor x = randn({3, 5, 300}), w = randn({7, 300}), bias = mul(randn({7}), 10.0);
  for (DType dtype : {DType::f16, DType::bf16}) {
    const Tensor xh = x.to(dtype), wh = w.to(dtype), bh = bias.to(dtype);
    const std::vector<float> got = linear(xh.to(device), wh.to(device), bh.to(device)).to(DType::f32).to_vector<float>();
    const std::vector<float> want =
        add(matmul(xh.to(DType::f32), wh.to(DType::f32).t()), bh.to(DType::f32)).to_vector<float>();
    const double unit = dtype == DType::f16 ? 1.0 / 1024 : 1.0 / 128;
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], unit * (1 + std::abs(want[i]))) << dtype;
  }
}

TEST(Linear, HalfPrecisionMatchesF32WithinItsRounding) { expect_half_linear_matches_f32(Device::cpu()); }

TEST(CudaAutograd, HalfPrecisionLinearMatchesF32WithinItsRounding) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  expect_half_linear_matches_f32(Device::cuda());
}

TEST(CudaAutograd, LinearMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Tensor x = randn({2, 33, 20}), w = randn({17, 20}), bias = randn({17});
  auto run = [&](Device device) {
    Tensor dx = x.to(device).detach().requires_grad_(true);
    Tensor dw = w.to(device).detach().requires_grad_(true);
    Tensor db = bias.to(device).detach().requires_grad_(true);
    Tensor y = linear(dx.transpose(0, 1), dw, db);
    sum(mul(y, y)).backward();
    return std::vector<std::vector<float>>{y.to_vector<float>(), dx.grad().to_vector<float>(),
                                           dw.grad().to_vector<float>(), db.grad().to_vector<float>()};
  };
  auto cpu = run(Device::cpu());
  auto cuda = run(Device::cuda());
  for (size_t t = 0; t < cpu.size(); ++t) {
    ASSERT_EQ(cpu[t].size(), cuda[t].size());
    for (size_t i = 0; i < cpu[t].size(); ++i) EXPECT_NEAR(cpu[t][i], cuda[t][i], 1e-4 * (1 + std::abs(cpu[t][i])));
  }
}

TEST(CudaAutograd, MatmulAndViewsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Tensor a = randn({3, 5, 7});
  Tensor b = randn({7, 6});
  auto run = [&](Device device) {
    Tensor da = a.to(device).detach().requires_grad_(true);
    Tensor db = b.to(device).detach().requires_grad_(true);
    Tensor y = matmul(da.transpose(1, 2).contiguous().transpose(1, 2), db);
    sum(mul(y, y)).backward();
    return std::vector<std::vector<float>>{y.to_vector<float>(), da.grad().to_vector<float>(),
                                           db.grad().to_vector<float>()};
  };
  auto cpu = run(Device::cpu());
  auto cuda = run(Device::cuda());
  for (size_t t = 0; t < cpu.size(); ++t) {
    ASSERT_EQ(cpu[t].size(), cuda[t].size());
    for (size_t i = 0; i < cpu[t].size(); ++i) EXPECT_NEAR(cpu[t][i], cuda[t][i], 1e-4 * (1 + std::abs(cpu[t][i])));
  }
}

}  // namespace
}  // namespace se
