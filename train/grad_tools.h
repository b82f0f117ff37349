// What sits between backward() and Optimizer::step(): clipping by the global gradient norm and the
// dynamic loss scaler of f16 training; and the exponential moving average of the weights that is
// updated after each step.
//
//   Tensor loss = ...;                       // f32 (or f16: scale() computes in f32)
//   scaler.scale(loss).backward();
//   scaler.unscale_(optimizer);              // before clipping, so the norm is the true one
//   clip_grad_norm_(optimizer.params(), 1.0);
//   scaler.step(optimizer);                  // skipped when a gradient is inf or NaN
//   scaler.update();
//   ema.update(model.named_parameters());
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "engine/tensor.h"
#include "train/optimizer.h"

namespace se {

// torch.nn.utils.clip_grad_norm_: scales every gradient by min(1, max_norm / (norm + 1e-6)) where
// norm is the L2 norm of all gradients together (parameters without a gradient are ignored; all on
// one device). Returns that norm before clipping, a 0-d f32 tensor on the gradients' device: the
// clipping itself never synchronises with the device, reading the norm does.
Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // steps without inf/NaN before the scale grows
  bool enabled = true;             // false: every call is a pass-through (f32 and bf16 training)
};

// torch.cuda.amp.GradScaler semantics: the loss is multiplied by the scale before backward; the
// gradients are divided by it before the step, which is skipped when any of them is inf or NaN;
// update() then multiplies the scale by backoff_factor after a skipped step, or by growth_factor
// after growth_interval successful steps in a row.
class GradScaler {
 public:
  explicit GradScaler(const GradScalerOptions& options = {});

  // loss * scale in f32 (an f16 or bf16 loss is converted first, so the product cannot overflow).
  Tensor scale(const Tensor& loss) const;  // () or any shape
  // Divides the gradients of the optimizer's parameters by the scale and records whether any was
  // inf or NaN (reads one flag from the device). At most once between two update() calls.
  void unscale_(Optimizer& optimizer);
  // Unscales when unscale_ was not called, then steps unless inf/NaN was found. True when it stepped.
  bool step(Optimizer& optimizer);
  // Adjusts the scale after this iteration's step.
  void update();

  double get_scale() const { return scale_; }
  bool enabled() const { return options_.enabled; }
  bool found_inf() const { return found_inf_; }  // of the last unscale_
  int64_t growth_tracker() const { return growth_tracker_; }

  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& state);

 private:
  GradScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
  enum class Stage { ready, unscaled, stepped } stage_ = Stage::ready;
  bool found_inf_ = false;
};

struct EmaOptions {
  double decay = 0.9999;
  // timm's warm-up: the decay of update n (1-based) is min(decay, (1 + n) / (10 + n)), so early
  // averages follow the weights closely instead of remembering the random initialisation.
  bool warmup = false;
};

// Exponential moving average of weights (and buffers): avg = decay * avg + (1 - decay) * value for
// floating tensors; integer tensors (e.g. a norm's num_batches_tracked) are copied.
class ModelEma {
 public:
  // Starts from copies of `tensors` on their devices.
  ModelEma(const NamedTensors& tensors, const EmaOptions& options = {});

  // `tensors` must have the names, shapes and dtypes given at construction, in any order.
  void update(const NamedTensors& tensors);
  // Writes the averages into `targets` (e.g. a model evaluated with EMA weights), matched by name.
  void copy_to(const NamedTensors& targets) const;

  const NamedTensors& averaged() const { return averaged_; }
  int64_t updates() const { return updates_; }
  double decay_at(int64_t update) const;  // the decay of the given 1-based update

  NamedState state_dict() const;  // the averages (live tensors) and {"updates", "decay", "warmup"}
  void load_state_dict(const NamedState& state);

 private:
  const Tensor& find(const std::string& name, const char* op) const;

  EmaOptions options_;
  NamedTensors averaged_;
  int64_t updates_ = 0;
};

}  // namespace se
