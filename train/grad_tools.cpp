#include "train/grad_tools.h"

#include <cmath>
#include <map>

#include "core/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"

namespace se {

// ---- clipping

Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  SE_CHECK(max_norm > 0.0 && std::isfinite(max_norm), "clip_grad_norm_: max_norm = ", max_norm,
           " (expected a positive finite number)");
  NoGradGuard no_grad;
  std::vector<Tensor> grads, contiguous;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    SE_CHECK(g.dtype() == DType::f32, "clip_grad_norm_: a gradient has dtype ", g.dtype(), " (expected f32)");
    grads.push_back(g);
    contiguous.push_back(g.contiguous());
  }
  if (grads.empty()) return zeros({});
  Tensor norm = global_norm(contiguous);
  // min(1, max_norm / (norm + eps)) stays on the device: no synchronisation here.
  Tensor coefficient = clamp(rdiv(add(norm, 1e-6), max_norm), std::nullopt, 1.0);
  for (Tensor& g : grads) mul_(g, coefficient);
  return norm;
}

// ---- GradScaler

namespace {

void check_scaler_options(const GradScalerOptions& o) {
  SE_CHECK(o.init_scale > 0.0 && std::isfinite(o.init_scale), "GradScaler: init_scale = ", o.init_scale,
           " (expected a positive finite number)");
  SE_CHECK(o.growth_factor > 1.0, "GradScaler: growth_factor = ", o.growth_factor, " (expected > 1)");
  SE_CHECK(o.backoff_factor > 0.0 && o.backoff_factor < 1.0, "GradScaler: backoff_factor = ", o.backoff_factor,
           " (expected in (0, 1))");
  SE_CHECK(o.growth_interval >= 1, "GradScaler: growth_interval = ", o.growth_interval, " (expected >= 1)");
}

}  // namespace

GradScaler::GradScaler(const GradScalerOptions& options) : options_(options), scale_(options.init_scale) {
  check_scaler_options(options_);
}

Tensor GradScaler::scale(const Tensor& loss) const {
  if (!options_.enabled) return loss;
  const Tensor wide = loss.dtype() == DType::f32 ? loss : loss.to(DType::f32);
  return mul(wide, scale_);
}

void GradScaler::unscale_(Optimizer& optimizer) {
  if (!options_.enabled) return;
  SE_CHECK(stage_ == Stage::ready, "GradScaler: unscale_ was already called ",
           stage_ == Stage::stepped ? "(and step) " : "", "since the last update()");
  // One multi-tensor call per device (normally one), each flag read back once.
  std::map<std::string, std::vector<Tensor>> by_device;
  for (const Tensor& p : optimizer.params()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    SE_CHECK(g.is_contiguous(), "GradScaler: unscale_: a gradient is not contiguous");
    by_device[g.device().str()].push_back(g);
  }
  found_inf_ = false;
  for (auto& [device, grads] : by_device) {
    if (unscale_and_check_(grads, 1.0 / scale_).item() != 0.0) found_inf_ = true;
  }
  stage_ = Stage::unscaled;
}

bool GradScaler::step(Optimizer& optimizer) {
  if (!options_.enabled) {
    optimizer.step();
    return true;
  }
  SE_CHECK(stage_ != Stage::stepped, "GradScaler: step was already called since the last update()");
  if (stage_ == Stage::ready) unscale_(optimizer);
  stage_ = Stage::stepped;
  if (found_inf_) return false;
  optimizer.step();
  return true;
}

void GradScaler::update() {
  if (!options_.enabled) return;
  SE_CHECK(stage_ != Stage::ready, "GradScaler: update() without unscale_ or step since the last update()");
  if (found_inf_) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ == options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
  stage_ = Stage::ready;
}

nlohmann::json GradScaler::state_dict() const {
  return {{"scale", scale_},
          {"growth_tracker", growth_tracker_},
          {"growth_factor", options_.growth_factor},
          {"backoff_factor", options_.backoff_factor},
          {"growth_interval", options_.growth_interval},
          {"enabled", options_.enabled}};
}

void GradScaler::load_state_dict(const nlohmann::json& state) {
  try {
    const double scale = state.at("scale").get<double>();
    const int64_t tracker = state.at("growth_tracker").get<int64_t>();
    SE_CHECK(scale > 0.0 && std::isfinite(scale) && tracker >= 0, "GradScaler: load_state_dict: scale ", scale,
             ", growth_tracker ", tracker, " (expected a positive scale and a tracker >= 0)");
    scale_ = scale;
    growth_tracker_ = tracker;
    stage_ = Stage::ready;
  } catch (const nlohmann::json::exception& e) {
    SE_THROW("GradScaler: load_state_dict: malformed state JSON: ", e.what());
  }
}

// ---- EMA

ModelEma::ModelEma(const NamedTensors& tensors, const EmaOptions& options) : options_(options) {
  SE_CHECK(options_.decay >= 0.0 && options_.decay <= 1.0, "ModelEma: decay = ", options_.decay,
           " (expected in [0, 1])");
  NoGradGuard no_grad;
  for (const auto& [name, t] : tensors) {
    SE_CHECK(t.defined(), "ModelEma: tensor '", name, "' is undefined");
    for (const auto& [seen, _] : averaged_) SE_CHECK(seen != name, "ModelEma: tensor name '", name, "' appears twice");
    averaged_.emplace_back(name, t.detach().clone(MemoryFormat::contiguous));
  }
}

double ModelEma::decay_at(int64_t update) const {
  if (!options_.warmup) return options_.decay;
  return std::min(options_.decay, (1.0 + static_cast<double>(update)) / (10.0 + static_cast<double>(update)));
}

const Tensor& ModelEma::find(const std::string& name, const char* op) const {
  for (const auto& [n, t] : averaged_) {
    if (n == name) return t;
  }
  SE_THROW("ModelEma: ", op, ": no average for tensor '", name, "'");
}

void ModelEma::update(const NamedTensors& tensors) {
  SE_CHECK(tensors.size() == averaged_.size(), "ModelEma: update: got ", tensors.size(), " tensors, expected ",
           averaged_.size());
  NoGradGuard no_grad;
  const double decay = decay_at(updates_ + 1);
  for (const auto& [name, value] : tensors) {
    Tensor avg = find(name, "update");
    SE_CHECK(value.shape() == avg.shape() && value.dtype() == avg.dtype() && value.device() == avg.device(),
             "ModelEma: update: '", name, "' is ", value.dtype(), " ", shape_str(value.shape()), " on ",
             value.device(), ", the average is ", avg.dtype(), " ", shape_str(avg.shape()), " on ", avg.device());
    if (is_floating(value.dtype())) {
      mul_(avg, decay);
      add_(avg, value.detach(), 1.0 - decay);
    } else {
      avg.copy_(value);
    }
  }
  ++updates_;
}

void ModelEma::copy_to(const NamedTensors& targets) const {
  NoGradGuard no_grad;
  for (const auto& [name, target] : targets) {
    const Tensor& avg = find(name, "copy_to");
    SE_CHECK(target.shape() == avg.shape(), "ModelEma: copy_to: '", name, "' has shape ", shape_str(target.shape()),
             ", the average has ", shape_str(avg.shape()));
    Tensor t = target;
    t.copy_(avg);
  }
}

NamedState ModelEma::state_dict() const {
  return {averaged_, {{"updates", updates_}, {"decay", options_.decay}, {"warmup", options_.warmup}}};
}

void ModelEma::load_state_dict(const NamedState& state) {
  SE_CHECK(state.tensors.size() == averaged_.size(), "ModelEma: load_state_dict: the state has ",
           state.tensors.size(), " tensors, expected ", averaged_.size());
  int64_t updates = 0;
  try {
    updates = state.meta.at("updates").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    SE_THROW("ModelEma: load_state_dict: malformed state JSON: ", e.what());
  }
  for (const auto& [name, t] : state.tensors) {
    const Tensor& avg = find(name, "load_state_dict");
    SE_CHECK(t.shape() == avg.shape(), "ModelEma: load_state_dict: '", name, "' has shape ", shape_str(t.shape()),
             ", expected ", shape_str(avg.shape()));
  }
  NoGradGuard no_grad;
  for (const auto& [name, t] : state.tensors) {
    Tensor avg = find(name, "load_state_dict");
    avg.copy_(t);
  }
  updates_ = updates;
}

}  // namespace se
