#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "core/config.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"
#include "train/optimizer.h"

namespace se {
namespace {

using testing::expect_error;

// Shapes of a tiny "model": a conv weight, a norm weight and bias, a head weight, a head bias.
const std::vector<std::pair<std::string, Shape>> kParams = {{"backbone.conv.weight", {4, 3, 3, 3}},
                                                            {"backbone.bn.weight", {4}},
                                                            {"backbone.bn.bias", {4}},
                                                            {"head.weight", {5, 4}},
                                                            {"head.bias", {5}}};

NamedTensors make_params(Device device, uint64_t seed) {
  manual_seed(seed);
  NamedTensors params;
  for (const auto& [name, shape] : kParams) {
    params.emplace_back(name, randn(shape).to(device).requires_grad_(true));
  }
  return params;
}

// Double-precision mirror of the parameters, updated by the reference rules in the tests.
using Mirror = std::map<std::string, std::vector<double>>;

Mirror mirror_of(const NamedTensors& params) {
  Mirror m;
  for (const auto& [name, p] : params) m[name] = p.to_vector<double>();
  return m;
}

void expect_matches(const NamedTensors& params, const Mirror& expected, double tol) {
  for (const auto& [name, p] : params) {
    std::vector<double> actual = p.to_vector<double>();
    const std::vector<double>& e = expected.at(name);
    ASSERT_EQ(actual.size(), e.size()) << name;
    for (size_t i = 0; i < e.size(); ++i) ASSERT_NEAR(actual[i], e[i], tol * (1 + std::abs(e[i]))) << name << "[" << i << "]";
  }
}

// Gives each parameter a random gradient (except those in `skip`), returns them in double.
Mirror set_random_grads(const NamedTensors& params, const std::set<std::string>& skip = {}) {
  Mirror grads;
  for (const auto& [name, p] : params) {
    if (skip.count(name) != 0) {
      p.set_grad(Tensor());
      continue;
    }
    Tensor g = randn(p.shape()).to(p.device());
    grads[name] = g.to_vector<double>();
    p.set_grad(g);
  }
  return grads;
}

// Group settings of the tests: the backbone at 0.1x the lr, 1-d parameters without weight decay.
ParamGroupSpec test_spec() { return {.rules = {{"backbone.", 0.1, std::nullopt}}, .no_decay_for_1d = true}; }

double lr_mult_of(const std::string& name) { return name.rfind("backbone.", 0) == 0 ? 0.1 : 1.0; }
bool is_1d(const std::string& name) { return name.find(".bn.") != std::string::npos || name == "head.bias"; }

// SGD over 4 steps with a learning rate that changes every step and one parameter that misses a
// gradient on step 2, against torch.optim.SGD's documented update in double.
void check_sgd(Device device, double momentum, double dampening, bool nesterov) {
  NamedTensors params = make_params(device, 11);
  const double wd = 0.05;
  Optimizer opt(make_param_groups(params, test_spec()),
                {.type = OptimizerType::sgd, .lr = 0.1, .weight_decay = wd, .momentum = momentum,
                 .dampening = dampening, .nesterov = nesterov});
  Mirror p = mirror_of(params), buf;
  for (int step = 0; step < 4; ++step) {
    const double base_lr = 0.1 / (step + 1);
    opt.set_lr(base_lr);
    std::set<std::string> skip;
    if (step == 1) skip.insert("head.weight");
    Mirror g = set_random_grads(params, skip);
    opt.step();
    for (auto& [name, values] : g) {
      const double lr = base_lr * lr_mult_of(name);
      const double decay = is_1d(name) ? 0.0 : wd;
      std::vector<double>& b = buf[name];
      const bool first = b.empty();
      if (first) b.assign(values.size(), 0.0);
      for (size_t i = 0; i < values.size(); ++i) {
        double d = values[i] + decay * p[name][i];
        if (momentum != 0.0) {
          b[i] = first ? d : momentum * b[i] + (1 - dampening) * d;
          d = nesterov ? d + momentum * b[i] : b[i];
        }
        p[name][i] -= lr * d;
      }
    }
  }
  expect_matches(params, p, 2e-6);
  EXPECT_EQ(opt.step_count(), 4);
}

TEST(Optimizer, SgdPlain) { check_sgd(Device::cpu(), 0.0, 0.0, false); }
TEST(Optimizer, SgdMomentumDampening) { check_sgd(Device::cpu(), 0.9, 0.2, false); }
TEST(Optimizer, SgdNesterov) { check_sgd(Device::cpu(), 0.9, 0.0, true); }
TEST(Optimizer, CudaSgdNesterov) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  check_sgd(Device::cuda(), 0.9, 0.0, true);
}

// Adam/AdamW over 4 steps, one parameter missing its gradient on step 2 (so its own step count,
// and bias correction, lag behind), against torch.optim.Adam/AdamW's documented update in double.
void check_adam(Device device, OptimizerType type) {
  NamedTensors params = make_params(device, 12);
  const double wd = 0.1, b1 = 0.8, b2 = 0.95, eps = 1e-6;
  Optimizer opt(make_param_groups(params, test_spec()),
                {.type = type, .lr = 0.01, .weight_decay = wd, .beta1 = b1, .beta2 = b2, .eps = eps});
  Mirror p = mirror_of(params), m, v;
  std::map<std::string, int> steps;
  for (int step = 0; step < 4; ++step) {
    const double base_lr = 0.01 * (step + 1);
    opt.set_lr(base_lr);
    std::set<std::string> skip;
    if (step == 1) skip.insert("backbone.bn.bias");
    Mirror g = set_random_grads(params, skip);
    opt.step();
    for (auto& [name, values] : g) {
      const double lr = base_lr * lr_mult_of(name);
      const double decay = is_1d(name) ? 0.0 : wd;
      const int t = ++steps[name];
      if (m[name].empty()) m[name].assign(values.size(), 0.0), v[name].assign(values.size(), 0.0);
      for (size_t i = 0; i < values.size(); ++i) {
        double grad = values[i];
        double& x = p[name][i];
        if (type == OptimizerType::adamw) {
          x *= 1 - lr * decay;
        } else {
          grad += decay * x;
        }
        m[name][i] = b1 * m[name][i] + (1 - b1) * grad;
        v[name][i] = b2 * v[name][i] + (1 - b2) * grad * grad;
        const double m_hat = m[name][i] / (1 - std::pow(b1, t));
        const double v_hat = v[name][i] / (1 - std::pow(b2, t));
        x -= lr * m_hat / (std::sqrt(v_hat) + eps);
      }
    }
  }
  expect_matches(params, p, 2e-5);
}

TEST(Optimizer, Adam) { check_adam(Device::cpu(), OptimizerType::adam); }
TEST(Optimizer, AdamW) { check_adam(Device::cpu(), OptimizerType::adamw); }
TEST(Optimizer, CudaAdamW) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  check_adam(Device::cuda(), OptimizerType::adamw);
}

TEST(Optimizer, ParamGroupsByLongestKeyAndNoDecayFor1d) {
  NamedTensors params = make_params(Device::cpu(), 1);
  params.emplace_back("backbone.stem.weight", randn({2, 2}).requires_grad_(true));
  params.emplace_back("frozen.weight", randn({2, 2}));  // no grad: left out
  ParamGroupSpec spec{.rules = {{"backbone.", 0.1, std::nullopt}, {"backbone.stem", 0.5, 1e-3}},
                      .no_decay_for_1d = true};
  std::vector<ParamGroup> groups = make_param_groups(params, spec);
  std::map<std::string, const ParamGroup*> by_name;
  for (const ParamGroup& g : groups) by_name[g.name] = &g;
  ASSERT_EQ(groups.size(), 5u);
  EXPECT_EQ(groups[0].name, "backbone.");  // order of first appearance
  EXPECT_EQ(by_name.at("backbone.")->param_names, std::vector<std::string>{"backbone.conv.weight"});
  EXPECT_DOUBLE_EQ(by_name.at("backbone.")->lr_mult, 0.1);
  EXPECT_FALSE(by_name.at("backbone.")->weight_decay.has_value());
  EXPECT_EQ(by_name.at("backbone..no_decay")->param_names,
            (std::vector<std::string>{"backbone.bn.weight", "backbone.bn.bias"}));
  EXPECT_DOUBLE_EQ(by_name.at("backbone..no_decay")->lr_mult, 0.1);
  EXPECT_EQ(by_name.at("backbone..no_decay")->weight_decay, 0.0);
  EXPECT_EQ(by_name.at("default")->param_names, std::vector<std::string>{"head.weight"});
  EXPECT_EQ(by_name.at("default.no_decay")->param_names, std::vector<std::string>{"head.bias"});
  EXPECT_EQ(by_name.at("backbone.stem")->param_names, std::vector<std::string>{"backbone.stem.weight"});
  EXPECT_DOUBLE_EQ(by_name.at("backbone.stem")->lr_mult, 0.5);
  EXPECT_EQ(by_name.at("backbone.stem")->weight_decay, 1e-3);
  Optimizer opt(groups, {.lr = 0.2});
  EXPECT_DOUBLE_EQ(opt.group_lr(0), 0.02);
  EXPECT_EQ(opt.params().size(), 6u);
  // Without the 1-d rule everything of a key stays in one group.
  EXPECT_EQ(make_param_groups(params, {.rules = {}, .no_decay_for_1d = false}).size(), 1u);
}

TEST(Optimizer, RejectsBadParametersAndOptions) {
  Tensor a = randn({3}).requires_grad_(true);
  auto group = [](std::vector<std::string> names, std::vector<Tensor> params) {
    return std::vector<ParamGroup>{{"g", std::move(names), std::move(params), 1.0, std::nullopt}};
  };
  expect_error([&] { Optimizer(group({"a", "a"}, {a, randn({3}).requires_grad_(true)}), {}); },
               "parameter name 'a' appears twice");
  expect_error([&] { Optimizer(group({"a", "b"}, {a, a}), {}); }, "'b' is the same tensor as an earlier parameter");
  expect_error([&] { Optimizer(group({"h"}, {randn({3}).to(DType::f64).requires_grad_(true)}), {}); },
               "parameter 'h' has dtype f64 (expected f32 master weights)");
  expect_error([&] { Optimizer(group({"x"}, {mul(a, 2.0)}), {}); }, "'x' must be a leaf tensor that requires grad");
  expect_error([&] { Optimizer(group({"a"}, {a}), {.momentum = 0.9, .dampening = 0.1, .nesterov = true}); },
               "Nesterov momentum needs momentum > 0 and dampening 0");
  expect_error([&] { Optimizer(group({"a"}, {a}), {.type = OptimizerType::adam, .beta2 = 1.0}); },
               "adam betas (0.9, 1) must lie in [0, 1)");
  expect_error([&] { parse_optimizer_type("lamb"); }, "unknown type 'lamb' (expected sgd, adam or adamw)");
  Optimizer opt(group({"a"}, {a}), {});
  a.set_grad(randn({3}).to(DType::f64));
  expect_error([&] { opt.step(); }, "the gradient of 'a' is f64 (3,) on cpu, expected f32 (3,) on cpu");
}

TEST(Optimizer, ZeroGradDropsGradients) {
  NamedTensors params = make_params(Device::cpu(), 3);
  Optimizer opt(make_param_groups(params), {});
  set_random_grads(params);
  opt.zero_grad();
  for (const auto& [name, p] : params) EXPECT_FALSE(p.grad().defined()) << name;
  opt.step();  // nothing to do
  for (const auto& [name, p] : params) EXPECT_FALSE(p.grad().defined()) << name;
}

// Saving after 2 steps and loading into a fresh optimizer over copies of the parameters continues
// exactly like the original.
void check_state_round_trip(OptimizerType type) {
  NamedTensors params = make_params(Device::cpu(), 5);
  const OptimizerOptions options{.type = type, .lr = 0.05, .weight_decay = 0.01, .momentum = 0.9};
  Optimizer opt(make_param_groups(params, test_spec()), options);
  for (int step = 0; step < 2; ++step) {
    set_random_grads(params, step == 1 ? std::set<std::string>{"head.bias"} : std::set<std::string>{});
    opt.step();
  }
  opt.set_lr(0.02);
  NamedState state = opt.state_dict();
  EXPECT_EQ(state.meta.at("type"), optimizer_type_name(type));
  EXPECT_EQ(state.meta.at("param_steps").at("head.bias"), 1);
  EXPECT_EQ(state.tensors.size(), type == OptimizerType::sgd ? 5u : 10u);

  NamedTensors copies;
  for (const auto& [name, p] : params) copies.emplace_back(name, p.detach().clone().requires_grad_(true));
  // Weight decay comes from the config; lr and momentum (beta1) from the state.
  Optimizer restored(make_param_groups(copies, test_spec()),
                     {.type = type, .lr = 1.0, .weight_decay = 0.01, .momentum = 0.5, .beta1 = 0.5});
  restored.load_state_dict(state);
  EXPECT_DOUBLE_EQ(restored.lr(), 0.02);
  EXPECT_DOUBLE_EQ(restored.momentum(), 0.9);
  EXPECT_EQ(restored.step_count(), 2);

  Mirror g = set_random_grads(params);
  for (auto& [name, p] : copies) {
    p.set_grad(from_vector(g.at(name), p.shape(), {.dtype = DType::f32}));
  }
  opt.step();
  restored.step();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params[i].second.to_vector<float>(), copies[i].second.to_vector<float>()) << params[i].first;
  }
}

TEST(Optimizer, SgdStateRoundTrip) { check_state_round_trip(OptimizerType::sgd); }
TEST(Optimizer, AdamWStateRoundTrip) { check_state_round_trip(OptimizerType::adamw); }

TEST(Optimizer, LoadStateErrorsLeaveTheStateUnchanged) {
  NamedTensors params = make_params(Device::cpu(), 6);
  Optimizer opt(make_param_groups(params), {.lr = 0.1, .momentum = 0.9});
  set_random_grads(params);
  opt.step();
  const NamedState good = opt.state_dict();

  Optimizer adam(make_param_groups(params), {.type = OptimizerType::adam});
  expect_error([&] { adam.load_state_dict(good); }, "the state is of a 'sgd' optimizer, this one is 'adam'");

  NamedState bad_shape = good;
  bad_shape.tensors[0].second = zeros({2});
  Optimizer fresh(make_param_groups(params), {.lr = 0.3, .momentum = 0.9});
  expect_error([&] { fresh.load_state_dict(bad_shape); },
               "'backbone.conv.weight.momentum_buffer' has shape (2,), the parameter has (4, 3, 3, 3)");
  EXPECT_DOUBLE_EQ(fresh.lr(), 0.3);
  EXPECT_EQ(fresh.step_count(), 0);

  NamedState extra = good;
  extra.meta["param_steps"]["ghost.weight"] = 1;
  expect_error([&] { fresh.load_state_dict(extra); }, "the state has parameter 'ghost.weight'");
  NamedState missing = good;
  missing.meta["param_steps"].erase("head.bias");
  expect_error([&] { fresh.load_state_dict(missing); }, "no state for parameter 'head.bias'");
  NamedState no_buffer = good;
  no_buffer.tensors.pop_back();
  expect_error([&] { fresh.load_state_dict(no_buffer); }, "took 1 steps but has no momentum buffer");
  NamedState stray = good;
  stray.tensors.emplace_back("head.bias.exp_avg", zeros({5}));
  expect_error([&] { fresh.load_state_dict(stray); }, "unexpected state tensor 'head.bias.exp_avg'");
  NamedState broken = good;
  broken.meta.erase("lr");
  expect_error([&] { fresh.load_state_dict(broken); }, "malformed state JSON");
  EXPECT_DOUBLE_EQ(fresh.lr(), 0.3);
}

TEST(Optimizer, FromConfig) {
  NamedTensors params = make_params(Device::cpu(), 7);
  Config cfg = Config::parse(R"({"optimizer": {"type": "adamw", "lr": 6e-5, "betas": [0.9, 0.99],
      "param_groups": [{"key": "head.", "lr_mult": 10.0}]}})",
                             "segformer.json");
  Optimizer opt = make_optimizer(params, cfg.sub("optimizer"));
  cfg.finish();
  EXPECT_EQ(opt.options().type, OptimizerType::adamw);
  EXPECT_DOUBLE_EQ(opt.options().weight_decay, 0.01);  // PyTorch's AdamW default
  EXPECT_DOUBLE_EQ(opt.options().beta2, 0.99);
  ASSERT_EQ(opt.groups().size(), 4u);
  for (size_t g = 0; g < opt.groups().size(); ++g) {
    const bool head = opt.groups()[g].name.rfind("head.", 0) == 0;
    EXPECT_DOUBLE_EQ(opt.group_lr(g), head ? 6e-4 : 6e-5) << opt.groups()[g].name;
  }
  Config typo = Config::parse(R"({"optimizer": {"type": "sgd", "momentun": 0.9}})", "typo.json");
  make_optimizer(params, typo.sub("optimizer"));
  expect_error([&] { typo.finish(); }, "unknown key 'optimizer.momentun' (typo.json): did you mean 'optimizer.momentum'?");
  Config betas = Config::parse(R"({"type": "adam", "betas": [0.9]})", "b.json");
  expect_error([&] { make_optimizer(params, betas); }, "key 'betas' has 1 numbers (expected 2: [beta1, beta2])");
}

}  // namespace
}  // namespace se
