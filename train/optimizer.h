// Optimizers over named parameters in groups: SGD (momentum, dampening, Nesterov, weight decay),
// Adam and AdamW with PyTorch's update rules, on the fused multi-tensor ops of engine/ops.h (one
// launch per group and step). Parameters are f32 leaf tensors that require grad (f32 master
// weights in mixed precision); a parameter without a gradient is skipped, as in PyTorch.
//
//   auto groups = make_param_groups(model.named_parameters(), {.rules = {{"backbone.", 0.1}}});
//   Optimizer opt(groups, {.type = OptimizerType::sgd, .lr = 0.01, .weight_decay = 5e-4, .momentum = 0.9});
//   loss.backward(); opt.step(); opt.zero_grad();
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace se {

class Config;


// Tensors plus JSON: what a component saves into a checkpoint and loads back.
struct NamedState {
  NamedTensors tensors;
  nlohmann::json meta = nlohmann::json::object();
};

struct ParamGroup {
  std::string name;
  std::vector<std::string> param_names;
  std::vector<Tensor> params;           // f32 leaves that require grad, any shape
  double lr_mult = 1.0;                 // this group's lr = the optimizer's lr * lr_mult
  std::optional<double> weight_decay;   // overrides the optimizer's weight decay
};

// How make_param_groups sorts parameters, like mmseg's paramwise_cfg.custom_keys.
struct ParamGroupRule {
  std::string key = {};  // matches parameter names containing it; the longest match wins
  double lr_mult = 1.0;
  std::optional<double> weight_decay;
};

struct ParamGroupSpec {
  std::vector<ParamGroupRule> rules = {};
  // Parameters with at most one dim (norm weights and biases, all biases) go to a "<group>.no_decay"
  // group with weight decay 0, the usual recipe for SegFormer/AdamW and for SGD on ResNets.
  bool no_decay_for_1d = true;
};

// Groups named after their rule's key ("default" when none matches), split by no_decay_for_1d, in
// the order their first parameter appears. Parameters that do not require grad are left out (frozen).
std::vector<ParamGroup> make_param_groups(const NamedTensors& params, const ParamGroupSpec& spec = {});

enum class OptimizerType { sgd, adam, adamw };
std::string optimizer_type_name(OptimizerType type);
OptimizerType parse_optimizer_type(const std::string& name);  // "sgd", "adam", "adamw"

struct OptimizerOptions {
  OptimizerType type = OptimizerType::sgd;
  double lr = 0.01;
  double weight_decay = 0.0;  // SGD and Adam: L2 added to the gradient; AdamW: decoupled
  // SGD
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening 0, as in PyTorch
  // Adam / AdamW
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

class Optimizer {
 public:
  Optimizer(std::vector<ParamGroup> groups, const OptimizerOptions& options);

  // One update of every parameter that has a gradient, with the groups' current learning rates.
  void step();
  // Drops the gradients (set to undefined, PyTorch's set_to_none).
  void zero_grad();

  // The base learning rate (schedulers call this); each group uses lr * lr_mult.
  void set_lr(double lr);
  double lr() const { return options_.lr; }
  double group_lr(size_t group) const { return options_.lr * groups_.at(group).lr_mult; }
  // SGD momentum or Adam beta1 (the one-cycle policy cycles it).
  void set_momentum(double momentum);
  double momentum() const;

  const std::vector<ParamGroup>& groups() const { return groups_; }
  const OptimizerOptions& options() const { return options_; }
  std::vector<Tensor> params() const;  // every parameter, group by group
  int64_t step_count() const { return step_count_; }

  // State tensors named "<param>.momentum_buffer" (SGD with momentum) or "<param>.exp_avg" and
  // "<param>.exp_avg_sq" (Adam); the JSON holds the type, hyper-parameters, groups and per-parameter
  // step counts. The tensors are the live state (copy them to keep a snapshot).
  NamedState state_dict() const;
  // Restores a state saved by an optimizer of the same type over parameters of the same names and
  // shapes; the tensors are copied to the parameters' devices. The groups' lr_mult and weight decay
  // stay as constructed (they come from the config); the base lr and momentum are restored.
  void load_state_dict(const NamedState& state);

 private:
  struct ParamState {
    Tensor buf1;  // SGD momentum buffer or Adam exp_avg
    Tensor buf2;  // Adam exp_avg_sq
    int64_t step = 0;
  };
  void step_sgd(size_t group, const std::vector<size_t>& ready);
  void step_adam(size_t group, const std::vector<size_t>& ready);
  double group_weight_decay(size_t group) const;

  std::vector<ParamGroup> groups_;
  OptimizerOptions options_;
  std::vector<std::vector<ParamState>> state_;  // [group][param]
  int64_t step_count_ = 0;
};

// Builds the groups and the optimizer from a config section, e.g.
//   {"type": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": false,
//    "no_decay_for_1d": true, "param_groups": [{"key": "backbone.", "lr_mult": 0.1}]}
// Adam/AdamW read "betas": [b1, b2] and "eps"; AdamW's weight decay defaults to 0.01 as in PyTorch.
Optimizer make_optimizer(const NamedTensors& params, const Config& config);

}  // namespace se
