#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"
#include "train/grad_tools.h"

namespace se {
namespace {

using testing::expect_error;

std::vector<Tensor> params_with_grads(Device device, double grad_scale) {
  std::vector<Tensor> params;
  for (const Shape& shape : std::vector<Shape>{{3, 4}, {kernels::kMultiTensorChunk + 5}, {2}}) {
    Tensor p = randn(shape).to(device).requires_grad_(true);
    p.set_grad(mul(randn(shape), grad_scale).to(device));
    params.push_back(p);
  }
  params.push_back(randn({3}).to(device).requires_grad_(true));  // no gradient: ignored
  return params;
}

double norm_of(const std::vector<std::vector<double>>& grads) {
  double s = 0.0;
  for (const auto& g : grads) {
    for (double x : g) s += x * x;
  }
  return std::sqrt(s);
}

std::vector<std::vector<double>> grads_of(const std::vector<Tensor>& params) {
  std::vector<std::vector<double>> out;
  for (const Tensor& p : params) {
    if (p.grad().defined()) out.push_back(p.grad().to_vector<double>());
  }
  return out;
}

void check_clip(Device device) {
  manual_seed(3);
  std::vector<Tensor> params = params_with_grads(device, 0.01);
  const auto before = grads_of(params);
  const double norm = norm_of(before);
  ASSERT_GT(norm, 1.0);
  // max_norm above the norm: nothing changes.
  Tensor returned = clip_grad_norm_(params, norm * 2);
  EXPECT_EQ(returned.device(), device);
  EXPECT_NEAR(returned.item(), norm, 1e-5 * norm);
  EXPECT_EQ(grads_of(params), before);
  // max_norm below it: every gradient scaled by max_norm / (norm + 1e-6).
  const double max_norm = norm / 4;
  returned = clip_grad_norm_(params, max_norm);
  EXPECT_NEAR(returned.item(), norm, 1e-5 * norm);
  const auto after = grads_of(params);
  const double coefficient = max_norm / (norm + 1e-6);
  for (size_t t = 0; t < after.size(); ++t) {
    for (size_t i = 0; i < after[t].size(); ++i) ASSERT_NEAR(after[t][i], before[t][i] * coefficient, 1e-6);
  }
  EXPECT_NEAR(norm_of(after), max_norm, 1e-5 * max_norm);
}

TEST(ClipGradNorm, ScalesOnlyAboveMaxNorm) { check_clip(Device::cpu()); }
TEST(ClipGradNorm, CudaScalesOnlyAboveMaxNorm) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  check_clip(Device::cuda());
}

TEST(ClipGradNorm, NoGradientsAndBadMaxNorm) {
  Tensor p = randn({3}).requires_grad_(true);
  EXPECT_EQ(clip_grad_norm_({p}, 1.0).item(), 0.0);
  expect_error([&] { clip_grad_norm_({p}, 0.0); }, "clip_grad_norm_: max_norm = 0 (expected a positive finite number)");
}

// One parameter, SGD lr 1: p -= grad, so the parameter shows exactly which steps happened.
struct ScalerRig {
  Tensor p = zeros({4}).requires_grad_(true);
  Optimizer opt{{{"g", {"p"}, {p}, 1.0, std::nullopt}}, {.lr = 1.0}};
  void backward_with(double value, GradScaler& scaler) {
    // loss = value * sum(p), so d loss / d p = value, times the scale.
    Tensor loss = mul(sum(p), value);
    opt.zero_grad();
    scaler.scale(loss).backward();
  }
};

TEST(GradScaler, GrowsAfterIntervalBacksOffAndSkipsOnInf) {
  ScalerRig rig;
  GradScaler scaler({.init_scale = 8.0, .growth_factor = 2.0, .backoff_factor = 0.25, .growth_interval = 2});
  double expected_p = 0.0, expected_scale = 8.0;
  const double inf = std::numeric_limits<double>::infinity();
  // (gradient value, whether the step must happen): two finite steps grow the scale, inf backs off.
  const std::vector<std::pair<double, bool>> script = {{1.0, true}, {0.5, true}, {inf, false}, {2.0, true},
                                                       {-1.0, true}, {std::nan(""), false}};
  int64_t tracker = 0;
  for (const auto& [value, steps] : script) {
    rig.backward_with(value, scaler);
    if (std::isfinite(value)) {
      EXPECT_DOUBLE_EQ(rig.p.grad().to_vector<double>()[0], value * expected_scale);
    }
    EXPECT_EQ(scaler.step(rig.opt), steps);
    EXPECT_EQ(scaler.found_inf(), !steps);
    if (steps) expected_p -= value;
    scaler.update();
    if (!steps) {
      expected_scale *= 0.25;
      tracker = 0;
    } else if (++tracker == 2) {
      expected_scale *= 2.0;
      tracker = 0;
    }
    EXPECT_DOUBLE_EQ(scaler.get_scale(), expected_scale) << "after gradient " << value;
    EXPECT_EQ(scaler.growth_tracker(), tracker);
    for (double x : rig.p.to_vector<double>()) ASSERT_DOUBLE_EQ(x, expected_p);
  }
}

TEST(GradScaler, ExplicitUnscaleBeforeClippingAndStageErrors) {
  ScalerRig rig;
  GradScaler scaler({.init_scale = 1024.0});
  rig.backward_with(3.0, scaler);
  scaler.unscale_(rig.opt);
  EXPECT_DOUBLE_EQ(rig.p.grad().to_vector<double>()[0], 3.0);  // true gradient, ready for clipping
  expect_error([&] { scaler.unscale_(rig.opt); }, "unscale_ was already called since the last update()");
  EXPECT_TRUE(scaler.step(rig.opt));  // does not unscale a second time
  EXPECT_DOUBLE_EQ(rig.p.to_vector<double>()[0], -3.0);
  expect_error([&] { scaler.step(rig.opt); }, "step was already called since the last update()");
  scaler.update();
  expect_error([&] { scaler.update(); }, "update() without unscale_ or step");
  expect_error([] { GradScaler({.backoff_factor = 1.5}); }, "backoff_factor = 1.5 (expected in (0, 1))");
}

TEST(GradScaler, ScalesF16LossInF32) {
  GradScaler scaler({.init_scale = 65536.0});
  Tensor loss = full({}, 2.0, {.dtype = DType::f16});
  Tensor scaled = scaler.scale(loss);
  EXPECT_EQ(scaled.dtype(), DType::f32);
  EXPECT_DOUBLE_EQ(scaled.item(), 131072.0);  // beyond f16's range
}

TEST(GradScaler, DisabledIsAPassThrough) {
  ScalerRig rig;
  GradScaler scaler({.enabled = false});
  rig.backward_with(2.0, scaler);
  EXPECT_DOUBLE_EQ(rig.p.grad().to_vector<double>()[0], 2.0);
  EXPECT_TRUE(scaler.step(rig.opt));
  scaler.update();
  EXPECT_DOUBLE_EQ(rig.p.to_vector<double>()[0], -2.0);
}

TEST(GradScaler, StateRoundTrip) {
  ScalerRig rig;
  GradScaler scaler({.init_scale = 16.0, .growth_interval = 5});
  for (int i = 0; i < 3; ++i) {
    rig.backward_with(1.0, scaler);
    scaler.step(rig.opt);
    scaler.update();
  }
  GradScaler restored({.init_scale = 2.0, .growth_interval = 5});
  restored.load_state_dict(scaler.state_dict());
  EXPECT_DOUBLE_EQ(restored.get_scale(), 16.0);
  EXPECT_EQ(restored.growth_tracker(), 3);
  expect_error([&] { restored.load_state_dict({{"scale", -1.0}, {"growth_tracker", 0}}); }, "scale -1");
  expect_error([&] { restored.load_state_dict({{"scale", 1.0}}); }, "malformed state JSON");
  EXPECT_DOUBLE_EQ(restored.get_scale(), 16.0);
}

void check_ema(Device device, bool warmup) {
  manual_seed(4);
  NamedTensors model = {{"w", randn({5, 3}).to(device).requires_grad_(true)},
                        {"steps", zeros({}, {.dtype = DType::i64, .device = device})}};
  ModelEma ema(model, {.decay = 0.9, .warmup = warmup});
  std::vector<double> avg = model[0].second.to_vector<double>();
  for (int n = 1; n <= 4; ++n) {
    Tensor next = randn({5, 3}).to(device);
    {
      NoGradGuard no_grad;
      model[0].second.copy_(next);
      model[1].second.fill_(n);
    }
    ema.update({model[1], model[0]});  // any order
    const double d = warmup ? std::min(0.9, (1.0 + n) / (10.0 + n)) : 0.9;
    EXPECT_DOUBLE_EQ(ema.decay_at(n), d);
    std::vector<double> w = model[0].second.to_vector<double>();
    for (size_t i = 0; i < avg.size(); ++i) avg[i] = d * avg[i] + (1 - d) * w[i];
  }
  EXPECT_EQ(ema.updates(), 4);
  std::vector<double> got = ema.averaged()[0].second.to_vector<double>();
  for (size_t i = 0; i < avg.size(); ++i) ASSERT_NEAR(got[i], avg[i], 1e-5) << i;
  EXPECT_EQ(ema.averaged()[1].second.item(), 4.0);  // integers are copied
  // copy_to writes the averages into an evaluation copy.
  NamedTensors eval = {{"w", zeros({5, 3}, {.device = device})},
                       {"steps", zeros({}, {.dtype = DType::i64, .device = device})}};
  ema.copy_to(eval);
  EXPECT_EQ(eval[0].second.to_vector<float>(), ema.averaged()[0].second.to_vector<float>());
}

TEST(ModelEma, AveragesFloatsCopiesIntegers) { check_ema(Device::cpu(), false); }
TEST(ModelEma, WarmupDecay) { check_ema(Device::cpu(), true); }
TEST(ModelEma, CudaAveragesFloatsCopiesIntegers) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  check_ema(Device::cuda(), true);
}

TEST(ModelEma, StateRoundTripAndErrors) {
  NamedTensors model = {{"a", randn({2, 2})}, {"b", randn({3})}};
  ModelEma ema(model, {.decay = 0.5});
  ema.update({{"a", ones({2, 2})}, {"b", ones({3})}});
  ModelEma restored(model, {.decay = 0.5});
  restored.load_state_dict(ema.state_dict());
  EXPECT_EQ(restored.updates(), 1);
  EXPECT_EQ(restored.averaged()[0].second.to_vector<float>(), ema.averaged()[0].second.to_vector<float>());
  expect_error([&] { ema.update({{"a", ones({2, 2})}, {"c", ones({3})}}); }, "no average for tensor 'c'");
  expect_error([&] { ema.update({{"a", ones({2, 2})}}); }, "got 1 tensors, expected 2");
  expect_error([&] { ema.update({{"a", ones({2, 3})}, {"b", ones({3})}}); },
               "'a' is f32 (2, 3) on cpu, the average is f32 (2, 2) on cpu");
  expect_error([&] { ModelEma(model, {.decay = 1.5}); }, "decay = 1.5 (expected in [0, 1])");
  NamedState bad = ema.state_dict();
  bad.tensors[1].second = zeros({4});
  expect_error([&] { restored.load_state_dict(bad); }, "'b' has shape (4,), expected (3,)");
}

}  // namespace
}  // namespace se
