// Training checkpoints: one safetensors file per checkpoint, so that it is written atomically (a
// temporary file renamed into place: a crash never leaves a half-written checkpoint or loses the
// previous one) and opens in Python's safetensors as well.
//
//   tensors   "model.<name>"      the model's state_dict (parameters and persistent buffers)
//             "ema.<name>"        the EMA weights, when the run keeps an EMA
//             "optimizer.<name>"  the optimizer's state tensors (momentum buffers, Adam moments)
//   metadata  "format"            "segengine.checkpoint.v1"
//             "optimizer"         the optimizer's JSON state
//             "ema"               the EMA's JSON state (when present)
//             "trainer"           the trainer's JSON state: iteration, scheduler, loss scaler, random
//                                 generator, loader position, best metric, history, config
#pragma once

#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/tensor.h"
#include "nn/module.h"
#include "train/optimizer.h"

namespace se {

inline constexpr const char* kCheckpointFormat = "segengine.checkpoint.v1";

struct Checkpoint {
  NamedTensors model;              // state_dict names (loaded in file order: match by name)
  std::optional<NamedState> ema;   // averaged weights and the EMA's JSON
  NamedState optimizer;            // empty tensors and null meta when not saved (e.g. weights only)
  nlohmann::json trainer = nlohmann::json::object();
};

// Writes `checkpoint` to `path` atomically (the directory must exist). Tensors of any device.
void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);

// Reads a checkpoint written by save_checkpoint, tensors onto `device`. Errors name the file: not a
// safetensors file, not a segengine checkpoint (e.g. a plain state dict), a malformed JSON part.
Checkpoint load_checkpoint(const std::string& path, Device device = Device::cpu());

enum class WeightSource {
  automatic,  // a checkpoint's EMA weights when it has them, else its model weights
  model,      // a checkpoint's model weights
  ema,        // a checkpoint's EMA weights (an error when it has none)
};

// Loads weights for evaluation or inference into `model` (strict: every key must match): either a
// segengine checkpoint (the weights picked by `source`) or a plain state dict in safetensors with
// PyTorch's names (e.g. exported from PyTorch, or `segengine export`). Returns which one was used:
// "model", "ema" or "state_dict".
std::string load_model_weights(nn::Module& model, const std::string& path, WeightSource source = WeightSource::automatic);

}  // namespace se
