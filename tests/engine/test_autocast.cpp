// Autocast (engine/autocast.h): which ops compute in f16/bf16, which in f32 and which promote; that
// gradients reach f32 parameters as f32 and agree with an f32 run within half-precision tolerance; the
// parameter-cast cache (reuse, invalidation by an in-place update, none under no_grad for a graph that
// needs one); nesting and disabling; errors outside autocast stay errors; CPU against CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_error;

class AutocastTest : public ::testing::TestWithParam<DType> {};

// Class indices (N, H, W) in [0, classes), a fixed pattern.
Tensor labels(const Shape& shape, int64_t classes) {
  std::vector<int64_t> values(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int64_t>((i * 7 + i / 3) % classes);
  return from_vector(values, shape);
}

TEST_P(AutocastTest, LowPrecisionOpsComputeInTheAutocastDtype) {
  const DType low = GetParam();
  manual_seed(1);
  Tensor x = randn({2, 3, 5, 5});
  Tensor w = randn({4, 3, 3, 3}).requires_grad_(true);
  Tensor b = randn({4}).requires_grad_(true);
  Tensor m = randn({7, 5}), l = randn({6, 5}).requires_grad_(true);
  Tensor q = randn({1, 2, 4, 8}), k = randn({1, 2, 3, 8}), v = randn({1, 2, 3, 8});
  AutocastGuard autocast(low);
  EXPECT_TRUE(autocast_enabled());
  EXPECT_EQ(conv2d(x, w, b).dtype(), low);
  EXPECT_EQ(conv_transpose2d(x, randn({3, 2, 2, 2}), {}, {.stride_h = 2, .stride_w = 2}).dtype(), low);
  EXPECT_EQ(matmul(m, m.t()).dtype(), low);
  EXPECT_EQ(mm(m, m.t()).dtype(), low);
  EXPECT_EQ(bmm(m.unsqueeze(0), m.t().unsqueeze(0)).dtype(), low);
  EXPECT_EQ(linear(m, l, randn({6})).dtype(), low);
  EXPECT_EQ(scaled_dot_product_attention(q, k, v).dtype(), low);
  // Everything else keeps its input's dtype.
  Tensor y = conv2d(x, w, b);
  EXPECT_EQ(relu(y).dtype(), low);
  EXPECT_EQ(batch_norm(y, {}, {}, ones({4}), zeros({4}), true).dtype(), low);
  InterpolateParams resize;
  resize.size = {{6, 6}};
  EXPECT_EQ(interpolate(y, resize).dtype(), low);
}

TEST_P(AutocastTest, SoftmaxAndLossesComputeInF32) {
  const DType low = GetParam();
  manual_seed(2);
  Tensor logits = randn({2, 4, 3, 3}).to(low).requires_grad_(true);
  Tensor target = labels({2, 3, 3}, 4);
  AutocastGuard autocast(low);
  EXPECT_EQ(softmax(logits, 1).dtype(), DType::f32);
  EXPECT_EQ(log_softmax(logits, 1).dtype(), DType::f32);
  CrossEntropyParams ce;
  ce.weight = ones({4}).to(low);  // class weights follow the logits to f32
  EXPECT_EQ(cross_entropy(logits, target, ce).dtype(), DType::f32);
  EXPECT_EQ(focal_loss(logits, target).dtype(), DType::f32);
  OhemCrossEntropyParams ohem;
  ohem.min_kept = 4;
  EXPECT_EQ(ohem_cross_entropy(logits, target, ohem).dtype(), DType::f32);
  EXPECT_EQ(dice_loss(logits, target).dtype(), DType::f32);
  EXPECT_EQ(lovasz_softmax(logits, target).dtype(), DType::f32);
  EXPECT_EQ(mse_loss(logits, logits.detach()).dtype(), DType::f32);
  EXPECT_EQ(cosine_distance(logits, logits.detach()).dtype(), DType::f32);
  EXPECT_EQ(binary_cross_entropy_with_logits(logits, zeros(logits.shape())).dtype(), DType::f32);
  // The gradient returns to the logits in their own dtype.
  Tensor loss = cross_entropy(logits, target, ce);
  loss.backward();
  EXPECT_EQ(logits.grad().dtype(), low);
}

TEST_P(AutocastTest, MixedOperandsPromoteToTheWidest) {
  const DType low = GetParam();
  Tensor half = ones({2, 3}).to(low), single = ones({3}), dbl = ones({3}, {DType::f64});
  {
    AutocastGuard autocast(low);
    EXPECT_EQ(add(half, single).dtype(), DType::f32);
    EXPECT_EQ(mul(half, dbl).dtype(), DType::f64);
    EXPECT_EQ(where(gt(single, 0.0), half, single).dtype(), DType::f32);
    EXPECT_EQ(cat({half, single.expand({2, 3})}, 0).dtype(), DType::f32);
    EXPECT_EQ(add(half, half).dtype(), low);
    const DType other = low == DType::f16 ? DType::bf16 : DType::f16;
    EXPECT_EQ(add(half, ones({3}).to(other)).dtype(), DType::f32);  // neither half type holds the other
  }
  // Outside autocast mixed operands stay an error.
  expect_error([&] { add(half, single); }, "operands have dtypes");
  expect_error([&] { cat({half, single.expand({2, 3})}, 0); }, "cat: tensor 1 is f32");
}

TEST_P(AutocastTest, F64IsNeverCast) {
  Tensor x = randn({1, 2, 4, 4}, {DType::f64}), w = randn({3, 2, 3, 3}, {DType::f64});
  AutocastGuard autocast(GetParam());
  EXPECT_EQ(conv2d(x, w).dtype(), DType::f64);
  EXPECT_EQ(softmax(x, 1).dtype(), DType::f64);
}

// A conv -> batch norm -> relu -> linear -> cross-entropy network (no conv bias: batch norm cancels it): under autocast the parameters' gradients
// are f32 and close to the f32 run's.
TEST_P(AutocastTest, GradientsReachF32ParametersAndMatchF32) {
  const DType low = GetParam();
  manual_seed(3);
  Tensor x = randn({2, 3, 6, 6});
  Tensor target = labels({2, 6, 6}, 5);
  Tensor w = mul(randn({8, 3, 3, 3}), 0.3).requires_grad_(true);
  Tensor gamma = ones({8}).requires_grad_(true), beta = zeros({8}).requires_grad_(true);
  Tensor l = mul(randn({5, 8}), 0.3).requires_grad_(true);
  auto loss_of = [&] {
    Tensor h = relu(batch_norm(conv2d(x, w, {}, {.pad_h = 1, .pad_w = 1}), {}, {}, gamma, beta, true));
    Tensor logits = linear(h.permute({0, 2, 3, 1}), l).permute({0, 3, 1, 2});
    return cross_entropy(logits, target);
  };
  const std::vector<Tensor> params{w, gamma, beta, l};
  Tensor reference = loss_of();
  reference.backward();
  std::vector<std::vector<float>> reference_grads;
  for (Tensor p : params) {
    reference_grads.push_back(p.grad().to_vector<float>());
    p.set_grad(Tensor());
  }
  Tensor loss;
  {
    AutocastGuard autocast(low);
    loss = loss_of();
  }
  EXPECT_EQ(loss.dtype(), DType::f32);
  loss.backward();
  const double tol = low == DType::bf16 ? 3e-2 : 5e-3;
  EXPECT_NEAR(loss.item(), reference.item(), tol * std::abs(reference.item()));
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_EQ(params[i].grad().dtype(), DType::f32) << "parameter " << i;
    const std::vector<float> g = params[i].grad().to_vector<float>();
    double norm = 0, err = 0;
    for (size_t k = 0; k < g.size(); ++k) {
      norm += reference_grads[i][k] * reference_grads[i][k];
      err += (g[k] - reference_grads[i][k]) * (g[k] - reference_grads[i][k]);
    }
    EXPECT_LE(std::sqrt(err), 4 * tol * std::sqrt(norm) + 1e-6) << "parameter " << i;
  }
}

TEST_P(AutocastTest, ParameterCastsAreCachedWithinTheOutermostGuard) {
  const DType low = GetParam();
  Tensor x = randn({1, 2, 5, 5});
  Tensor w = randn({2, 2, 3, 3}).requires_grad_(true);
  Tensor loss;
  {
    AutocastGuard autocast(low);
    Tensor y = conv2d(conv2d(x, w), w);  // the weight is used twice, cast once
    EXPECT_EQ(autocast::cached_casts(), 1u);
    {
      AutocastGuard inner(low);
      conv2d(x, w);
      EXPECT_EQ(autocast::cached_casts(), 1u);
    }
    EXPECT_EQ(autocast::cached_casts(), 1u);  // an inner guard keeps the outer cache
    conv2d(x, randn({2, 2, 3, 3}));           // not a parameter: not cached
    EXPECT_EQ(autocast::cached_casts(), 1u);
    loss = sum(y);
  }
  EXPECT_EQ(autocast::cached_casts(), 0u);
  loss.backward();
  // Both uses sent their gradient through the one cached cast.
  Tensor w_ref = w.detach().requires_grad_(true);
  {
    AutocastGuard autocast(low);
    Tensor y = conv2d(conv2d(x, w_ref), w_ref);
    loss = sum(y);
  }
  loss.backward();
  EXPECT_EQ(w.grad().to_vector<float>(), w_ref.grad().to_vector<float>());
}

TEST_P(AutocastTest, CacheFollowsInPlaceUpdatesAndGradMode) {
  const DType low = GetParam();
  Tensor x = ones({1, 1, 3, 3});
  Tensor w = ones({1, 1, 1, 1}).requires_grad_(true);
  AutocastGuard autocast(low);
  {
    NoGradGuard no_grad;
    EXPECT_EQ(conv2d(x, w).to(DType::f32).to_vector<float>()[0], 1.0f);
    NoGradGuard still;
    mul_(w, 2.0);  // an in-place update (as an optimizer step) invalidates the cast
    EXPECT_EQ(conv2d(x, w).to(DType::f32).to_vector<float>()[0], 2.0f);
  }
  // A cast made under no_grad has no history; with grad on the weight gets its gradient.
  Tensor y = sum(conv2d(x, w));
  y.backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().to_vector<float>()[0], 9.0f);
}

TEST_P(AutocastTest, DisabledGuardRunsInF32) {
  const DType low = GetParam();
  Tensor x = randn({1, 2, 4, 4}), w = randn({3, 2, 3, 3});
  AutocastGuard autocast(low);
  {
    AutocastGuard off(low, /*enabled=*/false);
    EXPECT_FALSE(autocast_enabled());
    EXPECT_EQ(conv2d(x, w).dtype(), DType::f32);
  }
  EXPECT_TRUE(autocast_enabled());
  EXPECT_EQ(autocast_dtype(), low);
}

TEST_P(AutocastTest, CudaMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const DType low = GetParam();
  manual_seed(4);
  Tensor x = randn({2, 3, 7, 7}), w = randn({4, 3, 3, 3}), l = randn({6, 4});
  auto run = [&](Device device) {
    Tensor wd = w.to(device).detach().requires_grad_(true), ld = l.to(device).detach().requires_grad_(true);
    Tensor loss;
    {
      AutocastGuard autocast(low);
      Tensor h = gelu(conv2d(x.to(device), wd, {}, {.pad_h = 1, .pad_w = 1}));
      loss = mean(linear(h.permute({0, 2, 3, 1}), ld));
    }
    loss.backward();
    return std::vector<std::vector<float>>{loss.to(Device::cpu()).to_vector<float>(),
                                           wd.grad().to(Device::cpu()).to_vector<float>(),
                                           ld.grad().to(Device::cpu()).to_vector<float>()};
  };
  const auto cpu = run(Device::cpu()), cuda = run(Device::cuda());
  const double tol = low == DType::bf16 ? 2e-2 : 2e-3;
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_EQ(cpu[i].size(), cuda[i].size());
    for (size_t k = 0; k < cpu[i].size(); ++k) EXPECT_NEAR(cpu[i][k], cuda[i][k], tol * (1 + std::abs(cpu[i][k])));
  }
}

TEST(Autocast, RejectsNonHalfDtypes) {
  expect_error([] { AutocastGuard guard(DType::f32); }, "autocast: dtype f32 is not supported (expected f16 or bf16)");
  EXPECT_FALSE(autocast_enabled());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, AutocastTest, ::testing::Values(DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace se
