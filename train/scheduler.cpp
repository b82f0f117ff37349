#include "train/scheduler.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/config.h"
#include "core/error.h"
#include "train/optimizer.h"

namespace se {

namespace {

constexpr LrPolicy kPolicies[] = {LrPolicy::constant,  LrPolicy::poly,        LrPolicy::cosine,   LrPolicy::step,
                                  LrPolicy::multistep, LrPolicy::exponential, LrPolicy::one_cycle};

double anneal(double start, double end, double pct, bool cosine) {
  if (cosine) return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1.0);
  return (end - start) * pct + start;
}

}  // namespace

std::string lr_policy_name(LrPolicy policy) {
  switch (policy) {
    case LrPolicy::constant: return "constant";
    case LrPolicy::poly: return "poly";
    case LrPolicy::cosine: return "cosine";
    case LrPolicy::step: return "step";
    case LrPolicy::multistep: return "multistep";
    case LrPolicy::exponential: return "exponential";
    case LrPolicy::one_cycle: return "one_cycle";
  }
  return "?";
}

LrPolicy parse_lr_policy(const std::string& name) {
  for (LrPolicy policy : kPolicies) {
    if (name == lr_policy_name(policy)) return policy;
  }
  SE_THROW("scheduler: unknown policy '", name,
           "' (expected constant, poly, cosine, step, multistep, exponential or one_cycle)");
}

LrScheduler::LrScheduler(const SchedulerOptions& options) : options_(options) {
  const SchedulerOptions& o = options_;
  const std::string name = lr_policy_name(o.policy);
  SE_CHECK(o.base_lr >= 0.0, "scheduler ", name, ": base_lr = ", o.base_lr, " (expected >= 0)");
  SE_CHECK(o.min_lr >= 0.0, "scheduler ", name, ": min_lr = ", o.min_lr, " (expected >= 0)");
  SE_CHECK(!o.by_epoch || o.iters_per_epoch > 0, "scheduler ", name, ": by_epoch needs iters_per_epoch > 0 (got ",
           o.iters_per_epoch, ")");
  SE_CHECK(o.warmup_iters >= 0, "scheduler ", name, ": warmup_iters = ", o.warmup_iters, " (expected >= 0)");
  SE_CHECK(o.warmup_ratio > 0.0 && o.warmup_ratio <= 1.0, "scheduler ", name, ": warmup_ratio = ", o.warmup_ratio,
           " (expected in (0, 1])");
  const bool needs_total =
      o.policy == LrPolicy::poly || o.policy == LrPolicy::cosine || o.policy == LrPolicy::one_cycle;
  SE_CHECK(!needs_total || o.total > 0, "scheduler ", name, ": total = ", o.total, " (expected the number of ",
           o.by_epoch ? "epochs" : "iterations", ", > 0)");
  SE_CHECK(o.power > 0.0, "scheduler ", name, ": power = ", o.power, " (expected > 0)");
  SE_CHECK(o.gamma > 0.0, "scheduler ", name, ": gamma = ", o.gamma, " (expected > 0)");
  if (o.policy == LrPolicy::step)
    SE_CHECK(o.step_size > 0, "scheduler step: step_size = ", o.step_size, " (expected > 0)");
  if (o.policy == LrPolicy::multistep) {
    SE_CHECK(!o.milestones.empty() && std::is_sorted(o.milestones.begin(), o.milestones.end()),
             "scheduler multistep: milestones must be a non-empty increasing list");
  }
  if (o.policy == LrPolicy::one_cycle) {
    SE_CHECK(o.warmup_iters == 0, "scheduler one_cycle: has its own warm-up (pct_start); warmup_iters must be 0, got ",
             o.warmup_iters);
    SE_CHECK(o.pct_start > 0.0 && o.pct_start < 1.0, "scheduler one_cycle: pct_start = ", o.pct_start,
             " (expected in (0, 1))");
    SE_CHECK(o.div_factor > 0.0 && o.final_div_factor > 0.0,
             "scheduler one_cycle: div_factor and final_div_factor "
             "must be > 0 (got ",
             o.div_factor, ", ", o.final_div_factor, ")");
    // PyTorch's phase ends must be increasing, else the interpolation divides by zero.
    const double first_end = o.pct_start * static_cast<double>(o.total) - 1.0;
    SE_CHECK(first_end > 0.0 && (o.three_phase ? 2.0 * first_end : first_end) < static_cast<double>(o.total) - 1.0,
             "scheduler one_cycle: total = ", o.total, " is too short for pct_start ", o.pct_start);
  }
}

// PyTorch's OneCycleLR phases at t (schedule units): start -> peak, then peak -> end (or, three-phase,
// peak -> initial -> end). The lr runs initial -> max -> min; the momentum max -> base -> max.
double LrScheduler::one_cycle(double t, double start, double peak, double initial, double end) const {
  const SchedulerOptions& o = options_;
  const double total = static_cast<double>(o.total);
  struct Phase {
    double end_step, from, to;
  };
  std::vector<Phase> phases;
  if (o.three_phase) {
    phases = {{o.pct_start * total - 1, start, peak},
              {2 * o.pct_start * total - 2, peak, initial},
              {total - 1, initial, end}};
  } else {
    phases = {{o.pct_start * total - 1, start, peak}, {total - 1, peak, end}};
  }
  double start_step = 0.0;
  for (size_t i = 0; i < phases.size(); ++i) {
    if (t <= phases[i].end_step || i + 1 == phases.size()) {
      const double pct = (t - start_step) / (phases[i].end_step - start_step);
      return anneal(phases[i].from, phases[i].to, pct, o.anneal_cos);
    }
    start_step = phases[i].end_step;
  }
  return end;  // unreachable: the last phase always answers
}

double LrScheduler::regular_lr(int64_t iter) const {
  const SchedulerOptions& o = options_;
  int64_t t = o.by_epoch ? iter / o.iters_per_epoch : iter;
  if (o.total > 0) t = std::min(t, o.policy == LrPolicy::one_cycle ? o.total - 1 : o.total);
  const double td = static_cast<double>(t), total = static_cast<double>(o.total);
  switch (o.policy) {
    case LrPolicy::constant: return o.base_lr;
    case LrPolicy::poly: return (o.base_lr - o.min_lr) * std::pow(1.0 - td / total, o.power) + o.min_lr;
    case LrPolicy::cosine: return anneal(o.base_lr, o.min_lr, td / total, true);
    case LrPolicy::step: return std::max(o.min_lr, o.base_lr * std::pow(o.gamma, static_cast<double>(t / o.step_size)));
    case LrPolicy::multistep: {
      const auto passed = std::upper_bound(o.milestones.begin(), o.milestones.end(), t) - o.milestones.begin();
      return std::max(o.min_lr, o.base_lr * std::pow(o.gamma, static_cast<double>(passed)));
    }
    case LrPolicy::exponential: return std::max(o.min_lr, o.base_lr * std::pow(o.gamma, td));
    case LrPolicy::one_cycle: {
      const double initial = o.base_lr / o.div_factor;
      return one_cycle(td, initial, o.base_lr, initial, initial / o.final_div_factor);
    }
  }
  return o.base_lr;
}

double LrScheduler::lr_at(int64_t iter) const {
  SE_CHECK(iter >= 0, "scheduler: lr_at(", iter, ") (expected an iteration >= 0)");
  const double regular = regular_lr(iter);
  const SchedulerOptions& o = options_;
  if (iter >= o.warmup_iters) return regular;
  const double k = (1.0 - static_cast<double>(iter) / static_cast<double>(o.warmup_iters)) * (1.0 - o.warmup_ratio);
  return regular * (1.0 - k);
}

std::optional<double> LrScheduler::momentum_at(int64_t iter) const {
  const SchedulerOptions& o = options_;
  if (o.policy != LrPolicy::one_cycle || !o.cycle_momentum) return std::nullopt;
  int64_t t = o.by_epoch ? iter / o.iters_per_epoch : iter;
  t = std::min(t, o.total - 1);
  // Momentum runs opposite to the lr: max -> base while the lr rises, then back.
  return one_cycle(static_cast<double>(t), o.max_momentum, o.base_momentum, o.max_momentum, o.max_momentum);
}

double LrScheduler::apply(Optimizer& optimizer) const {
  const double lr = lr_at(iter_);
  optimizer.set_lr(lr);
  if (std::optional<double> m = momentum_at(iter_)) optimizer.set_momentum(*m);
  return lr;
}

nlohmann::json LrScheduler::state_dict() const {
  return {{"iter", iter_},
          {"policy", lr_policy_name(options_.policy)},
          {"base_lr", options_.base_lr},
          {"total", options_.total}};
}

void LrScheduler::load_state_dict(const nlohmann::json& state) {
  try {
    const std::string policy = state.at("policy").get<std::string>();
    const double base_lr = state.at("base_lr").get<double>();
    const int64_t total = state.at("total").get<int64_t>();
    const int64_t iter = state.at("iter").get<int64_t>();
    SE_CHECK(policy == lr_policy_name(options_.policy) && base_lr == options_.base_lr && total == options_.total,
             "scheduler: load_state_dict: the state is of a '", policy, "' schedule with base_lr ", base_lr, " over ",
             total, ", this one is '", lr_policy_name(options_.policy), "' with base_lr ", options_.base_lr, " over ",
             options_.total);
    SE_CHECK(iter >= 0, "scheduler: load_state_dict: iter = ", iter, " (expected >= 0)");
    iter_ = iter;
  } catch (const nlohmann::json::exception& e) {
    SE_THROW("scheduler: load_state_dict: malformed state JSON: ", e.what());
  }
}

LrScheduler make_scheduler(const Config& config, double base_lr, int64_t max_iters, int64_t iters_per_epoch) {
  SchedulerOptions o;
  o.policy = parse_lr_policy(config.get<std::string>("policy", "poly"));
  o.base_lr = base_lr;
  o.by_epoch = config.get<bool>("by_epoch", false);
  o.iters_per_epoch = iters_per_epoch;
  if (o.by_epoch) {
    SE_CHECK(iters_per_epoch > 0, "scheduler: by_epoch needs the number of iterations per epoch (got ", iters_per_epoch,
             ")");
    o.total = (max_iters + iters_per_epoch - 1) / iters_per_epoch;
  } else {
    o.total = max_iters;
  }
  o.min_lr = config.get<double>("min_lr", 0.0);
  o.warmup_iters = config.get<int64_t>("warmup_iters", 0);
  o.warmup_ratio = config.get<double>("warmup_ratio", 0.1);
  switch (o.policy) {
    case LrPolicy::poly: o.power = config.get<double>("power", 1.0); break;
    case LrPolicy::step:
      o.step_size = config.get<int64_t>("step_size");
      o.gamma = config.get<double>("gamma", 0.1);
      break;
    case LrPolicy::multistep:
      o.milestones = config.get<std::vector<int64_t>>("milestones");
      o.gamma = config.get<double>("gamma", 0.1);
      break;
    case LrPolicy::exponential: o.gamma = config.get<double>("gamma"); break;
    case LrPolicy::one_cycle:
      o.pct_start = config.get<double>("pct_start", o.pct_start);
      {
        const std::string strategy = config.get<std::string>("anneal_strategy", "cos");
        SE_CHECK(strategy == "cos" || strategy == "linear", "scheduler one_cycle: anneal_strategy '", strategy,
                 "' (expected cos or linear)");
        o.anneal_cos = strategy == "cos";
      }
      o.div_factor = config.get<double>("div_factor", o.div_factor);
      o.final_div_factor = config.get<double>("final_div_factor", o.final_div_factor);
      o.three_phase = config.get<bool>("three_phase", false);
      o.cycle_momentum = config.get<bool>("cycle_momentum", false);
      o.base_momentum = config.get<double>("base_momentum", o.base_momentum);
      o.max_momentum = config.get<double>("max_momentum", o.max_momentum);
      break;
    case LrPolicy::constant:
    case LrPolicy::cosine: break;
  }
  return LrScheduler(o);
}

}  // namespace se
