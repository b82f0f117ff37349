#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "engine/ops.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "tests/engine/test_util.h"

namespace se::nn {
namespace {

using testing::error_of;

struct Stats {
  double mean = 0, std = 0, min = 0, max = 0;
};
Stats stats_of(const Tensor& t) {
  const std::vector<double> v = t.to_vector<double>();
  Stats s{0, 0, v[0], v[0]};
  for (double x : v) {
    s.mean += x;
    s.min = std::min(s.min, x);
    s.max = std::max(s.max, x);
  }
  s.mean /= double(v.size());
  for (double x : v) s.std += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(s.std / double(v.size()));
  return s;
}

TEST(Init, FansAndGainsMatchTorch) {
  const init::Fans fans = init::calculate_fans(zeros({64, 32, 3, 3}));
  EXPECT_EQ(fans.fan_in, 32 * 9);
  EXPECT_EQ(fans.fan_out, 64 * 9);
  EXPECT_DOUBLE_EQ(init::calculate_gain("relu"), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu", std::sqrt(5.0)), std::sqrt(2.0 / 6.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("tanh"), 5.0 / 3.0);
  EXPECT_NE(error_of([] { init::calculate_gain("swish"); }).find("unknown nonlinearity 'swish'"), std::string::npos);
  EXPECT_NE(error_of([] { init::calculate_fans(zeros({3})); }).find("at least 2 dims"), std::string::npos);
}

TEST(Init, ConvAndLinearDefaultsAreTorchsUniformBounds) {
  manual_seed(11);
  Conv2d conv(16, 32, 3);  // fan_in 144: weight and bias within 1/12
  const double bound = 1.0 / 12.0;
  for (const Tensor& t : {conv.weight, conv.bias}) {
    const Stats s = stats_of(t);
    EXPECT_GE(s.min, -bound);
    EXPECT_LE(s.max, bound);
  }
  const Stats w = stats_of(conv.weight);  // 4608 samples of U(-b, b): std b / sqrt(3)
  EXPECT_NEAR(w.std, bound / std::sqrt(3.0), 0.05 * bound);
  EXPECT_GT(w.max, 0.95 * bound);
  Linear linear(100, 50);
  const Stats l = stats_of(linear.weight);
  EXPECT_LE(l.max, 0.1);
  EXPECT_NEAR(l.std, 0.1 / std::sqrt(3.0), 0.005);
  // The same seed gives the same model.
  manual_seed(11);
  Conv2d again(16, 32, 3);
  EXPECT_EQ(again.weight.to_vector<float>(), conv.weight.to_vector<float>());
}

TEST(Init, KaimingXavierAndTruncatedNormalHaveTheirMoments) {
  manual_seed(5);
  Tensor w = empty({256, 128, 3, 3});
  init::kaiming_normal_(w, 0.0, init::FanMode::fan_out, "relu");
  EXPECT_NEAR(stats_of(w).std, std::sqrt(2.0 / (256 * 9)), 0.01 * std::sqrt(2.0 / (256 * 9)));
  init::xavier_uniform_(w);
  const double xavier_bound = std::sqrt(6.0 / double(128 * 9 + 256 * 9));
  EXPECT_LE(stats_of(w).max, xavier_bound);
  EXPECT_GT(stats_of(w).max, 0.99 * xavier_bound);
  // trunc_normal_(std 0.02) as SegFormer uses it: bounds are absolute, so it is an ordinary N(0, 0.02).
  Tensor t = empty({100000});
  init::trunc_normal_(t, 0.0, 0.02);
  Stats s = stats_of(t);
  EXPECT_NEAR(s.std, 0.02, 0.0005);
  EXPECT_NEAR(s.mean, 0.0, 0.0005);
  // Truncated at +-1 std: the standard deviation of N(0, 1) cut to [-1, 1] is 0.53956.
  init::trunc_normal_(t, 1.0, 2.0, -1.0, 3.0);
  s = stats_of(t);
  EXPECT_GE(s.min, -1.0);
  EXPECT_LE(s.max, 3.0);
  EXPECT_NEAR(s.std, 2.0 * 0.53956, 0.02);
  EXPECT_NEAR(s.mean, 1.0, 0.02);
}

TEST(Init, ErfinvInvertsErf) {
  for (double x : {-3.5, -2.0, -0.7, -1e-3, 0.0, 0.25, 1.0, 2.5, 4.0}) {
    EXPECT_NEAR(init::erfinv(std::erf(x)), x, 1e-9 * std::max(1.0, std::abs(x))) << x;
  }
  EXPECT_TRUE(std::isinf(init::erfinv(1.0)));
}

TEST(Layers, Conv2dAndLinearComputeTheirOps) {
  manual_seed(2);
  Conv2d conv(4, 6, 3, {.stride = 2, .padding = 1, .dilation = 1, .groups = 2});
  EXPECT_EQ(conv.weight.shape(), (Shape{6, 2, 3, 3}));
  Tensor x = randn({2, 4, 7, 7});
  Conv2dParams p;
  p.stride_h = p.stride_w = 2;
  p.pad_h = p.pad_w = 1;
  p.groups = 2;
  Tensor expected = conv2d(x, conv.weight, conv.bias, p);
  EXPECT_EQ(conv.forward(x).to_vector<float>(), expected.to_vector<float>());
  EXPECT_EQ(conv.forward(x).shape(), (Shape{2, 6, 4, 4}));

  Linear linear(5, 3);
  Tensor seq = randn({2, 4, 5});  // (B, L, C) as transformers use it
  Tensor y = linear.forward(seq);
  EXPECT_EQ(y.shape(), (Shape{2, 4, 3}));
  const std::vector<float> got = y.to_vector<float>();
  const std::vector<float> xs = seq.to_vector<float>(), ws = linear.weight.to_vector<float>(),
                           bs = linear.bias.to_vector<float>();
  for (int r = 0; r < 8; ++r) {
    for (int o = 0; o < 3; ++o) {
      double acc = bs[o];
      for (int i = 0; i < 5; ++i) acc += double(xs[r * 5 + i]) * ws[o * 5 + i];
      EXPECT_NEAR(got[r * 3 + o], acc, 1e-5);
    }
  }
  EXPECT_NE(error_of([&] { linear.forward(randn({2, 4})); }).find("does not end in in_features = 5"),
            std::string::npos);
  EXPECT_NE(error_of([] { Conv2d(3, 4, 3, {.groups = 2}); }).find("groups 2 must divide"), std::string::npos);
}

TEST(Layers, ConvTranspose2dUpsamplesWithTorchsShapesAndInit) {
  manual_seed(4);
  ConvTranspose2d up(8, 4, 2, {.stride = 2});  // U-Net's upsampling
  EXPECT_EQ(up.weight.shape(), (Shape{8, 4, 2, 2}));
  // PyTorch's fan_in for this weight is size(1) * k * k = 16: bound 1/4.
  EXPECT_LE(stats_of(up.weight).max, 0.25);
  EXPECT_GT(stats_of(up.weight).max, 0.2);
  Tensor x = randn({2, 8, 5, 7});
  Tensor y = up.forward(x);
  EXPECT_EQ(y.shape(), (Shape{2, 4, 10, 14}));
  ConvTranspose2dParams p;
  p.stride_h = p.stride_w = 2;
  EXPECT_EQ(y.to_vector<float>(), conv_transpose2d(x, up.weight, up.bias, p).to_vector<float>());
  EXPECT_EQ(up.extra_repr(), "8, 4, kernel_size=(2, 2), stride=(2, 2)");
  ConvTranspose2d odd(4, 4, 3, {.stride = 2, .padding = 1, .output_padding = 1, .groups = 2, .bias = false});
  EXPECT_EQ(odd.forward(randn({1, 4, 5, 5})).shape(), (Shape{1, 4, 10, 10}));
  EXPECT_NE(error_of([] { ConvTranspose2d(4, 4, 3, {.stride = 2, .output_padding = 2}); }).find("output_padding 2"),
            std::string::npos);
}

TEST(Layers, BatchNormTracksRunningStatsLikeTorch) {
  BatchNorm2d bn(3);
  Tensor x = add(mul(randn({4, 3, 5, 5}), 2.0), 1.0);
  Tensor y = bn.forward(x);
  // Training: normalised with the batch statistics.
  Tensor channel_mean = mean(y, {0, 2, 3});
  for (float m : channel_mean.to_vector<float>()) EXPECT_NEAR(m, 0.0f, 1e-5f);
  EXPECT_EQ(bn.num_batches_tracked.item(), 1.0);
  // running = 0.9 * initial + 0.1 * batch statistic (unbiased variance).
  const std::vector<float> batch_mean = mean(x, {0, 2, 3}).to_vector<float>();
  const std::vector<float> batch_var = var(x, {0, 2, 3}).to_vector<float>();
  const std::vector<float> rm = bn.running_mean.to_vector<float>(), rv = bn.running_var.to_vector<float>();
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(rm[c], 0.1f * batch_mean[c], 1e-5f);
    EXPECT_NEAR(rv[c], 0.9f + 0.1f * batch_var[c], 1e-5f);
  }
  // Eval: the running statistics, nothing updated.
  bn.eval();
  Tensor z = bn.forward(x);
  const std::vector<float> xs = x.to_vector<float>(), zs = z.to_vector<float>();
  for (size_t i = 0; i < xs.size(); i += 7) {
    const size_t c = (i / 25) % 3;
    EXPECT_NEAR(zs[i], (xs[i] - rm[c]) / std::sqrt(rv[c] + 1e-5f), 1e-4f);
  }
  EXPECT_EQ(bn.num_batches_tracked.item(), 1.0);

  // momentum = None: the cumulative average over the batches seen.
  BatchNorm2d cumulative(3, {.momentum = std::nullopt});
  Tensor x2 = randn({4, 3, 5, 5});
  cumulative.forward(x);
  cumulative.forward(x2);
  const std::vector<float> m1 = mean(x, {0, 2, 3}).to_vector<float>(), m2 = mean(x2, {0, 2, 3}).to_vector<float>();
  const std::vector<float> cm = cumulative.running_mean.to_vector<float>();
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(cm[c], 0.5f * (m1[c] + m2[c]), 1e-5f);
  EXPECT_NE(error_of([&] { bn.forward(randn({2, 4, 3, 3})); }).find("expected input (N, 3, H, W)"),
            std::string::npos);
}

TEST(Layers, NormsActivationsAndPoolsDelegateToTheirOps) {
  Tensor x = randn({2, 4, 6, 6});
  GroupNorm gn(2, 4);
  EXPECT_EQ(gn.forward(x).to_vector<float>(), group_norm(x, 2, gn.weight, gn.bias).to_vector<float>());
  LayerNorm ln({6});
  EXPECT_EQ(ln.forward(x).to_vector<float>(), layer_norm(x, {6}, ln.weight, ln.bias).to_vector<float>());
  EXPECT_EQ(ln.extra_repr(), "(6,), eps=1e-05, elementwise_affine=True");
  EXPECT_EQ(ReLU().forward(x).to_vector<float>(), relu(x).to_vector<float>());
  EXPECT_EQ(GELU(true).forward(x).to_vector<float>(), gelu(x, true).to_vector<float>());
  MaxPool2d pool(3, 2, 1);
  EXPECT_EQ(pool.forward(x).shape(), (Shape{2, 4, 3, 3}));
  EXPECT_EQ(pool.extra_repr(), "kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False");
  EXPECT_EQ(AvgPool2d(2).forward(x).shape(), (Shape{2, 4, 3, 3}));
  const std::vector<float> pooled = AdaptiveAvgPool2d(1).forward(x).to_vector<float>();
  const std::vector<float> means = mean(x, {2, 3}, true).to_vector<float>();
  ASSERT_EQ(pooled.size(), means.size());
  for (size_t i = 0; i < means.size(); ++i) EXPECT_NEAR(pooled[i], means[i], 1e-6f);
  InterpolateParams up;
  up.scale_factor = std::array<double, 2>{2.0, 2.0};
  up.mode = InterpolateMode::bilinear;
  Upsample upsample(up);
  EXPECT_EQ(upsample.forward(x).shape(), (Shape{2, 4, 12, 12}));
  EXPECT_EQ(upsample.extra_repr(), "scale_factor=2.0, mode='bilinear'");
}

TEST(Layers, DropoutAndDropPathFollowTheMode) {
  Tensor x = ones({8, 16});
  Dropout drop(0.5);
  Tensor y = drop.forward(x);
  const std::vector<float> ys = y.to_vector<float>();
  EXPECT_TRUE(std::any_of(ys.begin(), ys.end(), [](float v) { return v == 0.0f; }));
  EXPECT_TRUE(std::all_of(ys.begin(), ys.end(), [](float v) { return v == 0.0f || v == 2.0f; }));
  drop.eval();
  EXPECT_EQ(drop.forward(x).to_vector<float>(), x.to_vector<float>());
  DropPath path(0.5);
  path.eval();
  EXPECT_EQ(path.forward(x).to_vector<float>(), x.to_vector<float>());
}

TEST(LayersCuda, LayersMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(9);
  Sequential net({std::make_shared<Conv2d>(3, 8, 3, Conv2dOptions{.padding = 1}), std::make_shared<BatchNorm2d>(8),
                  std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2), std::make_shared<GroupNorm>(2, 8)});
  Tensor x = randn({2, 3, 8, 8});
  Tensor cpu_y = net.forward(x);
  sum(mul(cpu_y, cpu_y)).backward();
  const std::vector<float> cpu_grad = net[0]->named_parameters()[0].second.grad().to_vector<float>();
  const std::vector<float> cpu_running = net.state_dict()[4].second.to_vector<float>();
  // A second model with the same initial state, moved to the device.
  manual_seed(9);
  Sequential gpu_net({std::make_shared<Conv2d>(3, 8, 3, Conv2dOptions{.padding = 1}),
                      std::make_shared<BatchNorm2d>(8), std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2),
                      std::make_shared<GroupNorm>(2, 8)});
  gpu_net.to(Device::cuda());
  Tensor gpu_y = gpu_net.forward(x.to(Device::cuda()));
  sum(mul(gpu_y, gpu_y)).backward();
  auto near = [](const std::vector<float>& a, const std::vector<float>& b, const char* what) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-3f * (1 + std::abs(a[i]))) << what << " " << i;
  };
  near(cpu_y.to_vector<float>(), gpu_y.to_vector<float>(), "output");
  near(cpu_grad, gpu_net[0]->named_parameters()[0].second.grad().to_vector<float>(), "weight grad");
  near(cpu_running, gpu_net.state_dict()[4].second.to_vector<float>(), "running_mean");
}

}  // namespace
}  // namespace se::nn
