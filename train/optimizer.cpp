#include "train/optimizer.h"

#include <algorithm>
#include <map>
#include <set>

#include "core/config.h"
#include "core/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"

namespace se {

// ---- parameter groups

std::vector<ParamGroup> make_param_groups(const NamedTensors& params, const ParamGroupSpec& spec) {
  std::vector<ParamGroup> groups;
  std::map<std::string, size_t> index;  // group name -> position
  for (const auto& [name, param] : params) {
    SE_CHECK(param.defined(), "make_param_groups: parameter '", name, "' is undefined");
    if (!param.requires_grad()) continue;
    const ParamGroupRule* rule = nullptr;
    for (const ParamGroupRule& r : spec.rules) {
      if (name.find(r.key) != std::string::npos && (rule == nullptr || r.key.size() > rule->key.size())) rule = &r;
    }
    const bool no_decay = spec.no_decay_for_1d && param.dim() <= 1;
    std::string group_name = rule != nullptr ? rule->key : "default";
    if (no_decay) group_name += ".no_decay";
    auto [it, inserted] = index.emplace(group_name, groups.size());
    if (inserted) {
      ParamGroup group;
      group.name = group_name;
      if (rule != nullptr) {
        group.lr_mult = rule->lr_mult;
        group.weight_decay = rule->weight_decay;
      }
      if (no_decay) group.weight_decay = 0.0;
      groups.push_back(std::move(group));
    }
    groups[it->second].param_names.push_back(name);
    groups[it->second].params.push_back(param);
  }
  return groups;
}

// ---- types

std::string optimizer_type_name(OptimizerType type) {
  switch (type) {
    case OptimizerType::sgd: return "sgd";
    case OptimizerType::adam: return "adam";
    case OptimizerType::adamw: return "adamw";
  }
  return "?";
}

OptimizerType parse_optimizer_type(const std::string& name) {
  for (OptimizerType type : {OptimizerType::sgd, OptimizerType::adam, OptimizerType::adamw}) {
    if (name == optimizer_type_name(type)) return type;
  }
  SE_THROW("optimizer: unknown type '", name, "' (expected sgd, adam or adamw)");
}

// ---- Optimizer

namespace {

void check_options(const OptimizerOptions& o) {
  SE_CHECK(o.lr >= 0.0, "optimizer: lr = ", o.lr, " (expected >= 0)");
  SE_CHECK(o.weight_decay >= 0.0, "optimizer: weight_decay = ", o.weight_decay, " (expected >= 0)");
  if (o.type == OptimizerType::sgd) {
    SE_CHECK(o.momentum >= 0.0, "optimizer: sgd momentum = ", o.momentum, " (expected >= 0)");
    SE_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
             "optimizer: Nesterov momentum needs momentum > 0 and dampening 0 (got momentum ", o.momentum,
             ", dampening ", o.dampening, ")");
  } else {
    SE_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0 && o.beta2 >= 0.0 && o.beta2 < 1.0, "optimizer: ",
             optimizer_type_name(o.type), " betas (", o.beta1, ", ", o.beta2, ") must lie in [0, 1)");
    SE_CHECK(o.eps >= 0.0, "optimizer: eps = ", o.eps, " (expected >= 0)");
  }
}

}  // namespace

Optimizer::Optimizer(std::vector<ParamGroup> groups, const OptimizerOptions& options)
    : groups_(std::move(groups)), options_(options) {
  check_options(options_);
  std::set<std::string> names;
  std::set<const TensorImpl*> tensors;
  for (const ParamGroup& group : groups_) {
    SE_CHECK(group.param_names.size() == group.params.size(), "optimizer: group '", group.name, "' has ",
             group.param_names.size(), " names for ", group.params.size(), " parameters");
    SE_CHECK(group.lr_mult >= 0.0, "optimizer: group '", group.name, "' lr_mult = ", group.lr_mult,
             " (expected >= 0)");
    SE_CHECK(!group.weight_decay || *group.weight_decay >= 0.0, "optimizer: group '", group.name,
             "' weight_decay = ", group.weight_decay.value_or(0.0), " (expected >= 0)");
    for (size_t i = 0; i < group.params.size(); ++i) {
      const std::string& name = group.param_names[i];
      const Tensor& p = group.params[i];
      SE_CHECK(p.defined(), "optimizer: parameter '", name, "' is undefined");
      SE_CHECK(p.dtype() == DType::f32, "optimizer: parameter '", name, "' has dtype ", p.dtype(),
               " (expected f32 master weights)");
      SE_CHECK(p.is_leaf() && p.requires_grad(), "optimizer: parameter '", name,
               "' must be a leaf tensor that requires grad");
      SE_CHECK(p.is_contiguous(), "optimizer: parameter '", name, "' is not contiguous");
      SE_CHECK(names.insert(name).second, "optimizer: parameter name '", name, "' appears twice");
      SE_CHECK(tensors.insert(p.impl()).second, "optimizer: parameter '", name,
               "' is the same tensor as an earlier parameter");
    }
  }
  for (const ParamGroup& group : groups_) state_.emplace_back(group.params.size());
}

double Optimizer::group_weight_decay(size_t group) const {
  return groups_[group].weight_decay.value_or(options_.weight_decay);
}

void Optimizer::set_lr(double lr) {
  SE_CHECK(lr >= 0.0, "optimizer: set_lr(", lr, ") (expected >= 0)");
  options_.lr = lr;
}

void Optimizer::set_momentum(double momentum) {
  if (options_.type == OptimizerType::sgd) {
    options_.momentum = momentum;
  } else {
    options_.beta1 = momentum;
  }
  check_options(options_);
}

double Optimizer::momentum() const {
  return options_.type == OptimizerType::sgd ? options_.momentum : options_.beta1;
}

std::vector<Tensor> Optimizer::params() const {
  std::vector<Tensor> all;
  for (const ParamGroup& group : groups_) all.insert(all.end(), group.params.begin(), group.params.end());
  return all;
}

void Optimizer::zero_grad() {
  for (const ParamGroup& group : groups_) {
    for (const Tensor& p : group.params) p.set_grad(Tensor());
  }
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    std::vector<size_t> ready;  // the parameters of the group that have a gradient
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const Tensor& p = groups_[g].params[i];
      const Tensor grad = p.grad();
      if (!grad.defined()) continue;
      SE_CHECK(grad.shape() == p.shape() && grad.dtype() == DType::f32 && grad.device() == p.device(),
               "optimizer: the gradient of '", groups_[g].param_names[i], "' is ", grad.dtype(), " ",
               shape_str(grad.shape()), " on ", grad.device(), ", expected f32 ", shape_str(p.shape()), " on ",
               p.device());
      ready.push_back(i);
    }
    if (ready.empty()) continue;
    if (options_.type == OptimizerType::sgd) {
      step_sgd(g, ready);
    } else {
      step_adam(g, ready);
    }
  }
  ++step_count_;
}

void Optimizer::step_sgd(size_t g, const std::vector<size_t>& ready) {
  const ParamGroup& group = groups_[g];
  kernels::SgdDesc desc;
  desc.lr = static_cast<float>(group_lr(g));
  desc.momentum = static_cast<float>(options_.momentum);
  desc.dampening = static_cast<float>(options_.dampening);
  desc.weight_decay = static_cast<float>(group_weight_decay(g));
  desc.nesterov = options_.nesterov;
  // Parameters whose momentum buffer already exists, and those without one yet (the buffer starts
  // as the gradient, as in PyTorch): one kernel call for each kind.
  for (bool first : {false, true}) {
    std::vector<Tensor> params, grads, buffers;
    for (size_t i : ready) {
      ParamState& s = state_[g][i];
      if (desc.momentum != 0.0f && s.buf1.defined() == first) continue;
      if (desc.momentum == 0.0f && first) continue;
      params.push_back(group.params[i]);
      grads.push_back(group.params[i].grad().contiguous());
      if (desc.momentum != 0.0f) {
        if (first) s.buf1 = zeros(group.params[i].shape(), {.device = group.params[i].device()});
        buffers.push_back(s.buf1);
      }
    }
    if (params.empty()) continue;
    desc.first_step = first;
    sgd_step_(params, grads, buffers, desc);
  }
  for (size_t i : ready) ++state_[g][i].step;
}

void Optimizer::step_adam(size_t g, const std::vector<size_t>& ready) {
  const ParamGroup& group = groups_[g];
  kernels::AdamDesc desc;
  desc.lr = static_cast<float>(group_lr(g));
  desc.beta1 = static_cast<float>(options_.beta1);
  desc.beta2 = static_cast<float>(options_.beta2);
  desc.eps = static_cast<float>(options_.eps);
  desc.weight_decay = static_cast<float>(group_weight_decay(g));
  desc.decoupled_weight_decay = options_.type == OptimizerType::adamw;
  // Bias correction uses each parameter's own step count (PyTorch keeps one per parameter): one
  // kernel call per distinct count, normally exactly one.
  std::map<int64_t, std::vector<size_t>> by_step;
  for (size_t i : ready) {
    ParamState& s = state_[g][i];
    if (!s.buf1.defined()) {
      s.buf1 = zeros(group.params[i].shape(), {.device = group.params[i].device()});
      s.buf2 = zeros(group.params[i].shape(), {.device = group.params[i].device()});
    }
    by_step[++s.step].push_back(i);
  }
  for (const auto& [step, indices] : by_step) {
    std::vector<Tensor> params, grads, exp_avgs, exp_avg_sqs;
    for (size_t i : indices) {
      params.push_back(group.params[i]);
      grads.push_back(group.params[i].grad().contiguous());
      exp_avgs.push_back(state_[g][i].buf1);
      exp_avg_sqs.push_back(state_[g][i].buf2);
    }
    desc.step = step;
    adam_step_(params, grads, exp_avgs, exp_avg_sqs, desc);
  }
}

// ---- state

NamedState Optimizer::state_dict() const {
  NamedState state;
  nlohmann::json groups = nlohmann::json::array();
  nlohmann::json steps = nlohmann::json::object();
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& group = groups_[g];
    groups.push_back({{"name", group.name}, {"params", group.param_names}});
    for (size_t i = 0; i < group.params.size(); ++i) {
      const std::string& name = group.param_names[i];
      const ParamState& s = state_[g][i];
      steps[name] = s.step;
      if (!s.buf1.defined()) continue;
      if (options_.type == OptimizerType::sgd) {
        state.tensors.emplace_back(name + ".momentum_buffer", s.buf1);
      } else {
        state.tensors.emplace_back(name + ".exp_avg", s.buf1);
        state.tensors.emplace_back(name + ".exp_avg_sq", s.buf2);
      }
    }
  }
  state.meta = {{"type", optimizer_type_name(options_.type)},
                {"lr", options_.lr},
                {"momentum", momentum()},
                {"step_count", step_count_},
                {"groups", groups},
                {"param_steps", steps}};
  return state;
}

void Optimizer::load_state_dict(const NamedState& state) {
  const nlohmann::json& meta = state.meta;
  try {
    const std::string type = meta.at("type").get<std::string>();
    SE_CHECK(type == optimizer_type_name(options_.type), "optimizer: load_state_dict: the state is of a '", type,
             "' optimizer, this one is '", optimizer_type_name(options_.type), "'");
    std::map<std::string, Tensor> tensors(state.tensors.begin(), state.tensors.end());
    const nlohmann::json& steps = meta.at("param_steps");
    std::set<std::string> known;
    // Build the new state completely before replacing the current one: a failed load changes nothing.
    std::vector<std::vector<ParamState>> loaded;
    for (size_t g = 0; g < groups_.size(); ++g) {
      loaded.emplace_back(groups_[g].params.size());
      for (size_t i = 0; i < groups_[g].params.size(); ++i) {
        const std::string& name = groups_[g].param_names[i];
        const Tensor& p = groups_[g].params[i];
        known.insert(name);
        SE_CHECK(steps.contains(name), "optimizer: load_state_dict: no state for parameter '", name, "'");
        ParamState& s = loaded[g][i];
        s.step = steps.at(name).get<int64_t>();
        auto take = [&](const std::string& suffix) -> Tensor {
          auto it = tensors.find(name + suffix);
          if (it == tensors.end()) return Tensor();
          const Tensor& t = it->second;
          SE_CHECK(t.shape() == p.shape(), "optimizer: load_state_dict: '", name + suffix, "' has shape ",
                   shape_str(t.shape()), ", the parameter has ", shape_str(p.shape()));
          known.insert(name + suffix);
          NoGradGuard no_grad;
          return t.to(p.device(), DType::f32).clone(MemoryFormat::contiguous);
        };
        if (options_.type == OptimizerType::sgd) {
          s.buf1 = take(".momentum_buffer");
          SE_CHECK(s.buf1.defined() || s.step == 0 || options_.momentum == 0.0,
                   "optimizer: load_state_dict: parameter '", name, "' took ", s.step,
                   " steps but has no momentum buffer");
        } else {
          s.buf1 = take(".exp_avg");
          s.buf2 = take(".exp_avg_sq");
          SE_CHECK(s.buf1.defined() == s.buf2.defined() && (s.buf1.defined() || s.step == 0),
                   "optimizer: load_state_dict: parameter '", name, "' took ", s.step,
                   " steps but lacks exp_avg or exp_avg_sq");
        }
      }
    }
    for (auto it = steps.begin(); it != steps.end(); ++it) {
      SE_CHECK(known.count(it.key()) != 0, "optimizer: load_state_dict: the state has parameter '", it.key(),
               "', which this optimizer does not have");
    }
    for (const auto& [name, t] : state.tensors) {
      SE_CHECK(known.count(name) != 0, "optimizer: load_state_dict: unexpected state tensor '", name, "'");
    }
    const double lr = meta.at("lr").get<double>();
    const double momentum = meta.at("momentum").get<double>();
    const int64_t step_count = meta.at("step_count").get<int64_t>();
    state_ = std::move(loaded);
    options_.lr = lr;
    set_momentum(momentum);
    step_count_ = step_count;
  } catch (const nlohmann::json::exception& e) {
    SE_THROW("optimizer: load_state_dict: malformed state JSON: ", e.what());
  }
}

// ---- from a config

Optimizer make_optimizer(const NamedTensors& params, const Config& config) {
  OptimizerOptions o;
  o.type = parse_optimizer_type(config.get<std::string>("type", "sgd"));
  o.lr = config.get<double>("lr", o.lr);
  o.weight_decay = config.get<double>("weight_decay", o.type == OptimizerType::adamw ? 0.01 : 0.0);
  if (o.type == OptimizerType::sgd) {
    o.momentum = config.get<double>("momentum", 0.0);
    o.dampening = config.get<double>("dampening", 0.0);
    o.nesterov = config.get<bool>("nesterov", false);
  } else {
    const std::vector<double> betas = config.get<std::vector<double>>("betas", {0.9, 0.999});
    SE_CHECK(betas.size() == 2, "optimizer: key '", config.path().empty() ? "" : config.path() + ".", "betas' has ", betas.size(),
             " numbers (expected 2: [beta1, beta2])");
    o.beta1 = betas[0];
    o.beta2 = betas[1];
    o.eps = config.get<double>("eps", 1e-8);
  }
  ParamGroupSpec spec;
  spec.no_decay_for_1d = config.get<bool>("no_decay_for_1d", true);
  for (const Config& rule : config.sub_list("param_groups")) {
    ParamGroupRule r;
    r.key = rule.get<std::string>("key");
    r.lr_mult = rule.get<double>("lr_mult", 1.0);
    if (rule.has("weight_decay")) r.weight_decay = rule.get<double>("weight_decay");
    spec.rules.push_back(r);
  }
  return Optimizer(make_param_groups(params, spec), o);
}

}  // namespace se
