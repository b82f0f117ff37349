#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "core/config.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"
#include "train/optimizer.h"
#include "train/scheduler.h"

namespace se {
namespace {

using testing::expect_error;
constexpr double kPi = std::numbers::pi;

TEST(Scheduler, PolyMmsegSemantics) {
  LrScheduler s({.policy = LrPolicy::poly, .base_lr = 0.01, .total = 100, .min_lr = 1e-4, .power = 0.9});
  for (int64_t t : {0, 1, 37, 50, 99, 100}) {
    EXPECT_DOUBLE_EQ(s.lr_at(t), (0.01 - 1e-4) * std::pow(1.0 - t / 100.0, 0.9) + 1e-4) << t;
  }
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.01);
  EXPECT_DOUBLE_EQ(s.lr_at(100), 1e-4);
  EXPECT_DOUBLE_EQ(s.lr_at(150), 1e-4);  // past the end: clamped
  LrScheduler linear({.policy = LrPolicy::poly, .base_lr = 0.01, .total = 100, .power = 1.0});
  EXPECT_DOUBLE_EQ(linear.lr_at(50), 0.005);
}

TEST(Scheduler, Cosine) {
  LrScheduler s({.policy = LrPolicy::cosine, .base_lr = 0.1, .total = 40, .min_lr = 0.001});
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.1);
  EXPECT_NEAR(s.lr_at(20), (0.1 + 0.001) / 2, 1e-15);
  EXPECT_NEAR(s.lr_at(40), 0.001, 1e-15);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 0.001 + (0.1 - 0.001) * (1 + std::cos(kPi * 10 / 40)) / 2);
}

TEST(Scheduler, StepMultistepExponentialWithFloor) {
  LrScheduler step({.policy = LrPolicy::step, .base_lr = 1.0, .step_size = 30, .gamma = 0.1});
  EXPECT_DOUBLE_EQ(step.lr_at(29), 1.0);
  EXPECT_DOUBLE_EQ(step.lr_at(30), 0.1);
  EXPECT_NEAR(step.lr_at(65), 0.01, 1e-17);
  LrScheduler floored({.policy = LrPolicy::step, .base_lr = 1.0, .min_lr = 0.05, .step_size = 30, .gamma = 0.1});
  EXPECT_DOUBLE_EQ(floored.lr_at(65), 0.05);

  LrScheduler multi({.policy = LrPolicy::multistep, .base_lr = 0.2, .milestones = {10, 25}, .gamma = 0.5});
  EXPECT_DOUBLE_EQ(multi.lr_at(9), 0.2);
  EXPECT_DOUBLE_EQ(multi.lr_at(10), 0.1);
  EXPECT_DOUBLE_EQ(multi.lr_at(24), 0.1);
  EXPECT_DOUBLE_EQ(multi.lr_at(25), 0.05);
  EXPECT_DOUBLE_EQ(multi.lr_at(1000), 0.05);

  LrScheduler exp({.policy = LrPolicy::exponential, .base_lr = 0.5, .min_lr = 0.1, .gamma = 0.9});
  EXPECT_DOUBLE_EQ(exp.lr_at(3), 0.5 * 0.9 * 0.9 * 0.9);
  EXPECT_DOUBLE_EQ(exp.lr_at(100), 0.1);
  LrScheduler constant({.policy = LrPolicy::constant, .base_lr = 0.3});
  EXPECT_DOUBLE_EQ(constant.lr_at(12345), 0.3);
}

TEST(Scheduler, LinearWarmupMmcvSemantics) {
  const double ratio = 1e-2;
  LrScheduler s({.policy = LrPolicy::poly,
                 .base_lr = 0.01,
                 .total = 1000,
                 .power = 0.9,
                 .warmup_iters = 100,
                 .warmup_ratio = ratio});
  LrScheduler plain({.policy = LrPolicy::poly, .base_lr = 0.01, .total = 1000, .power = 0.9});
  EXPECT_NEAR(s.lr_at(0), ratio * plain.lr_at(0), 1e-18);
  EXPECT_NEAR(s.lr_at(50), plain.lr_at(50) * (1 - 0.5 * (1 - ratio)), 1e-18);
  EXPECT_DOUBLE_EQ(s.lr_at(100), plain.lr_at(100));
  EXPECT_DOUBLE_EQ(s.lr_at(500), plain.lr_at(500));
  for (int64_t t = 1; t < 100; ++t) EXPECT_GT(s.lr_at(t), s.lr_at(t - 1)) << t;  // rises through warm-up
}

TEST(Scheduler, EpochBasedChangesAtEpochBoundariesWithIterationWarmup) {
  LrScheduler s({.policy = LrPolicy::multistep,
                 .base_lr = 0.1,
                 .by_epoch = true,
                 .iters_per_epoch = 10,
                 .milestones = {2, 4},
                 .gamma = 0.1,
                 .warmup_iters = 5,
                 .warmup_ratio = 0.5});
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.05);  // warm-up is in iterations
  EXPECT_DOUBLE_EQ(s.lr_at(4), 0.1 * (1 - 0.2 * 0.5));
  EXPECT_DOUBLE_EQ(s.lr_at(5), 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(19), 0.1);     // epoch 1
  EXPECT_NEAR(s.lr_at(20), 0.01, 1e-17);  // epoch 2: first milestone
  EXPECT_NEAR(s.lr_at(39), 0.01, 1e-17);
  EXPECT_NEAR(s.lr_at(40), 0.001, 1e-17);
  LrScheduler poly({.policy = LrPolicy::poly, .base_lr = 1.0, .total = 4, .by_epoch = true, .iters_per_epoch = 3});
  EXPECT_DOUBLE_EQ(poly.lr_at(5), 0.75);  // epoch 1 of 4
  EXPECT_DOUBLE_EQ(poly.lr_at(6), 0.5);
}

TEST(Scheduler, OneCycleKeyPoints) {
  // PyTorch OneCycleLR(max_lr=0.1, total_steps=100): starts at max_lr / 25, peaks at step
  // pct_start * 100 - 1 = 29, ends at step 99 at max_lr / 25 / 1e4.
  const double initial = 0.1 / 25, final_lr = initial / 1e4;
  LrScheduler s({.policy = LrPolicy::one_cycle, .base_lr = 0.1, .total = 100, .cycle_momentum = true});
  EXPECT_DOUBLE_EQ(s.lr_at(0), initial);
  EXPECT_NEAR(s.lr_at(29), 0.1, 1e-15);
  EXPECT_NEAR(s.lr_at(99), final_lr, 1e-15);
  // Cosine interpolation: the middle of a phase is the mean of its ends.
  EXPECT_NEAR(s.lr_at(64), (0.1 + final_lr) / 2, 1e-15);  // (29 + 99) / 2
  const double pct = 10.0 / 29.0;
  EXPECT_NEAR(s.lr_at(10), 0.1 + (initial - 0.1) / 2 * (std::cos(kPi * pct) + 1), 1e-15);
  // Momentum runs opposite: 0.95 -> 0.85 at the peak -> 0.95.
  EXPECT_DOUBLE_EQ(*s.momentum_at(0), 0.95);
  EXPECT_NEAR(*s.momentum_at(29), 0.85, 1e-15);
  EXPECT_NEAR(*s.momentum_at(99), 0.95, 1e-15);

  LrScheduler three({.policy = LrPolicy::one_cycle,
                     .base_lr = 0.1,
                     .total = 100,
                     .pct_start = 0.25,
                     .anneal_cos = false,
                     .three_phase = true});
  EXPECT_NEAR(three.lr_at(24), 0.1, 1e-15);      // pct_start * 100 - 1
  EXPECT_NEAR(three.lr_at(48), initial, 1e-15);  // 2 * pct_start * 100 - 2: back to the initial lr
  EXPECT_NEAR(three.lr_at(12), initial + (0.1 - initial) * 12.0 / 24.0, 1e-15);  // linear
  EXPECT_NEAR(three.lr_at(99), final_lr, 1e-15);
  EXPECT_FALSE(three.momentum_at(5).has_value());
}

TEST(Scheduler, AppliesLrAndMomentumToTheOptimizer) {
  Tensor p = zeros({2}).requires_grad_(true);
  Optimizer sgd({{"g", {"p"}, {p}, 0.5, std::nullopt}}, {.lr = 1.0, .momentum = 0.9});
  LrScheduler s({.policy = LrPolicy::one_cycle, .base_lr = 0.1, .total = 20, .cycle_momentum = true});
  for (int i = 0; i < 7; ++i) s.step();
  EXPECT_DOUBLE_EQ(s.apply(sgd), s.lr_at(7));
  EXPECT_DOUBLE_EQ(sgd.lr(), s.lr_at(7));
  EXPECT_DOUBLE_EQ(sgd.group_lr(0), 0.5 * s.lr_at(7));
  EXPECT_DOUBLE_EQ(sgd.momentum(), *s.momentum_at(7));
  Optimizer adam({{"g", {"p"}, {p}, 1.0, std::nullopt}}, {.type = OptimizerType::adam});
  s.apply(adam);
  EXPECT_DOUBLE_EQ(adam.options().beta1, *s.momentum_at(7));
}

TEST(Scheduler, StateRoundTripAndMismatch) {
  const SchedulerOptions options{.policy = LrPolicy::cosine, .base_lr = 0.1, .total = 50, .warmup_iters = 5};
  LrScheduler s(options);
  for (int i = 0; i < 37; ++i) s.step();
  LrScheduler restored(options);
  restored.load_state_dict(s.state_dict());
  EXPECT_EQ(restored.iter(), 37);
  Tensor p = zeros({1}).requires_grad_(true);
  Optimizer a({{"g", {"p"}, {p}, 1.0, std::nullopt}}, {}), b({{"g", {"p"}, {p}, 1.0, std::nullopt}}, {});
  EXPECT_DOUBLE_EQ(s.apply(a), restored.apply(b));
  LrScheduler other({.policy = LrPolicy::poly, .base_lr = 0.1, .total = 50});
  expect_error([&] { other.load_state_dict(s.state_dict()); },
               "the state is of a 'cosine' schedule with base_lr 0.1 over 50, this one is 'poly'");
  expect_error([&] { other.load_state_dict({{"iter", 3}}); }, "malformed state JSON");
  EXPECT_EQ(other.iter(), 0);
}

TEST(Scheduler, RejectsBadOptions) {
  expect_error([] { LrScheduler({.policy = LrPolicy::poly, .total = 0}); },
               "scheduler poly: total = 0 (expected the number of iterations, > 0)");
  expect_error([] { LrScheduler({.policy = LrPolicy::cosine, .total = 5, .by_epoch = true}); },
               "by_epoch needs iters_per_epoch > 0");
  expect_error(
      [] {
        LrScheduler({.policy = LrPolicy::multistep, .milestones = {5, 3}});
      },
      "milestones must be a non-empty increasing list");
  expect_error([] { LrScheduler({.policy = LrPolicy::one_cycle, .total = 100, .warmup_iters = 10}); },
               "has its own warm-up");
  expect_error([] { LrScheduler({.policy = LrPolicy::one_cycle, .total = 3}); },
               "total = 3 is too short for pct_start 0.3");
  expect_error([] { LrScheduler({.policy = LrPolicy::poly, .total = 9, .warmup_ratio = 0.0}); },
               "warmup_ratio = 0 (expected in (0, 1])");
  expect_error([] { parse_lr_policy("linear"); }, "unknown policy 'linear'");
}

TEST(Scheduler, FromConfig) {
  Config cfg = Config::parse(R"({"scheduler": {"policy": "poly", "power": 0.9, "min_lr": 1e-4,
                                                "warmup_iters": 10, "warmup_ratio": 1e-6}})",
                             "cfg.json");
  LrScheduler s = make_scheduler(cfg.sub("scheduler"), 0.01, 1000, 100);
  cfg.finish();
  LrScheduler expected({.policy = LrPolicy::poly,
                        .base_lr = 0.01,
                        .total = 1000,
                        .min_lr = 1e-4,
                        .power = 0.9,
                        .warmup_iters = 10,
                        .warmup_ratio = 1e-6});
  for (int64_t t : {0, 5, 10, 999}) EXPECT_DOUBLE_EQ(s.lr_at(t), expected.lr_at(t)) << t;

  Config epochs = Config::parse(R"({"policy": "step", "step_size": 2, "gamma": 0.5, "by_epoch": true})");
  LrScheduler e = make_scheduler(epochs, 1.0, 95, 10);
  EXPECT_EQ(e.options().total, 10);  // ceil(95 / 10) epochs
  EXPECT_DOUBLE_EQ(e.lr_at(19), 1.0);
  EXPECT_DOUBLE_EQ(e.lr_at(20), 0.5);
  epochs.finish();

  // A key of another policy is not read, so finish() reports it.
  Config stray = Config::parse(R"({"policy": "cosine", "power": 0.9})", "stray.json");
  make_scheduler(stray, 0.1, 100, 10);
  expect_error([&] { stray.finish(); }, "unknown key 'power' (stray.json)");
  Config missing = Config::parse(R"({"policy": "multistep"})", "m.json");
  expect_error([&] { make_scheduler(missing, 0.1, 100, 10); },
               "missing key 'milestones' (expected a list of integers)");
}

}  // namespace
}  // namespace se
