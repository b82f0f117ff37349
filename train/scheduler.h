// Learning-rate schedules in closed form, with mmcv/mmseg semantics (and PyTorch's OneCycleLR):
// the lr of iteration i is a pure function of i, so resuming only needs the iteration count.
//
// Position: with by_epoch the schedule advances once per epoch (t = iter / iters_per_epoch, the
// schedule spans `total` epochs); otherwise once per iteration over `total` iterations. Warm-up is
// always counted in iterations, as in mmcv. With T = total and base = base_lr:
//   constant     base
//   poly         (base - min_lr) * (1 - t / T)^power + min_lr            (mmseg: power 0.9)
//   cosine       min_lr + (base - min_lr) * (1 + cos(pi * t / T)) / 2
//   step         max(min_lr, base * gamma^floor(t / step_size))
//   multistep    max(min_lr, base * gamma^(number of milestones <= t))
//   exponential  max(min_lr, base * gamma^t)
//   one_cycle    torch.optim.lr_scheduler.OneCycleLR with max_lr = base over T steps (its own warm-up)
// Linear warm-up (mmcv "linear"): for iter < warmup_iters the lr is
//   regular_lr * (1 - (1 - iter / warmup_iters) * (1 - warmup_ratio)),
// so it starts at warmup_ratio * regular_lr and joins the schedule at warmup_iters. t is clamped to T.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace se {

class Config;
class Optimizer;

enum class LrPolicy { constant, poly, cosine, step, multistep, exponential, one_cycle };
std::string lr_policy_name(LrPolicy policy);
LrPolicy parse_lr_policy(const std::string& name);

struct SchedulerOptions {
  LrPolicy policy = LrPolicy::poly;
  double base_lr = 0.01;  // one_cycle: the maximum lr
  int64_t total = 0;      // length of the schedule: iterations, or epochs when by_epoch
  bool by_epoch = false;
  int64_t iters_per_epoch = 0;  // needed when by_epoch
  double min_lr = 0.0;
  double power = 1.0;                    // poly
  int64_t step_size = 1;                 // step
  std::vector<int64_t> milestones = {};  // multistep, increasing
  double gamma = 0.1;                    // step, multistep, exponential
  // one_cycle, PyTorch's defaults
  double pct_start = 0.3;
  bool anneal_cos = true;  // false: linear
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  bool three_phase = false;
  bool cycle_momentum = false;  // also sets the optimizer's momentum (SGD) or beta1 (Adam)
  double base_momentum = 0.85;
  double max_momentum = 0.95;
  // linear warm-up (not with one_cycle)
  int64_t warmup_iters = 0;
  double warmup_ratio = 0.1;
};

class LrScheduler {
 public:
  explicit LrScheduler(const SchedulerOptions& options);

  double lr_at(int64_t iter) const;                       // iter: 0-based global iteration
  std::optional<double> momentum_at(int64_t iter) const;  // one_cycle with cycle_momentum, else none

  // Sets the optimizer's lr (and momentum) for the current iteration; call before its step().
  // Returns the lr.
  double apply(Optimizer& optimizer) const;
  void step() { ++iter_; }  // after the iteration
  int64_t iter() const { return iter_; }
  const SchedulerOptions& options() const { return options_; }

  // {"iter", "policy", "base_lr", "total"}; loading checks that the schedule is the same one.
  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& state);

 private:
  double regular_lr(int64_t iter) const;
  double one_cycle(double t, double start, double peak, double initial, double end) const;

  SchedulerOptions options_;
  int64_t iter_ = 0;
};

// From a config section, e.g. {"policy": "poly", "power": 0.9, "min_lr": 1e-4, "warmup_iters": 1500,
// "warmup_ratio": 1e-6, "by_epoch": false}. The trainer supplies base_lr (the optimizer's lr) and
// the run length in iterations; with "by_epoch" the schedule spans ceil(max_iters / iters_per_epoch)
// epochs and step_size/milestones count epochs.
LrScheduler make_scheduler(const Config& config, double base_lr, int64_t max_iters, int64_t iters_per_epoch);

}  // namespace se
