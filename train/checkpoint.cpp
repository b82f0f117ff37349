#include "train/checkpoint.h"

#include <set>
#include <string_view>

#include "core/error.h"
#include "nn/safetensors.h"

namespace se {
namespace {

constexpr std::string_view kModelPrefix = "model.";
constexpr std::string_view kEmaPrefix = "ema.";
constexpr std::string_view kOptimizerPrefix = "optimizer.";

void add_prefixed(NamedTensors& out, std::string_view prefix, const NamedTensors& tensors) {
  for (const auto& [name, tensor] : tensors) out.emplace_back(std::string(prefix) + name, tensor);
}

nlohmann::json parse_meta(const std::map<std::string, std::string>& metadata, const std::string& key,
                          const std::string& path) {
  auto it = metadata.find(key);
  if (it == metadata.end()) return nullptr;
  try {
    return nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    SE_THROW("checkpoint ", path, ": metadata \"", key, "\" is not valid JSON (", e.what(), ")");
  }
}

bool is_checkpoint(const nn::SafetensorsContents& contents) {
  auto it = contents.metadata.find("format");
  return it != contents.metadata.end() && it->second == kCheckpointFormat;
}

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  NamedTensors tensors;
  add_prefixed(tensors, kModelPrefix, checkpoint.model);
  if (checkpoint.ema) add_prefixed(tensors, kEmaPrefix, checkpoint.ema->tensors);
  add_prefixed(tensors, kOptimizerPrefix, checkpoint.optimizer.tensors);
  std::map<std::string, std::string> metadata{{"format", kCheckpointFormat},
                                              {"trainer", checkpoint.trainer.dump()},
                                              {"optimizer", checkpoint.optimizer.meta.dump()}};
  if (checkpoint.ema) metadata["ema"] = checkpoint.ema->meta.dump();
  nn::save_safetensors(path, tensors, metadata);  // temporary file + rename
}

Checkpoint load_checkpoint(const std::string& path, Device device) {
  nn::SafetensorsContents contents = nn::load_safetensors(path, device);
  SE_CHECK(is_checkpoint(contents), "checkpoint ", path,
           ": not a segengine training checkpoint (no metadata format=", kCheckpointFormat,
           "); a plain state dict can be evaluated, not resumed");
  Checkpoint checkpoint;
  checkpoint.trainer = parse_meta(contents.metadata, "trainer", path);
  SE_CHECK(checkpoint.trainer.is_object(), "checkpoint ", path, ": metadata \"trainer\" is missing or not an object");
  checkpoint.optimizer.meta = parse_meta(contents.metadata, "optimizer", path);
  nlohmann::json ema_meta = parse_meta(contents.metadata, "ema", path);
  if (!ema_meta.is_null()) checkpoint.ema = NamedState{{}, ema_meta};
  for (auto& [name, tensor] : contents.tensors) {
    std::string_view view = name;
    if (view.starts_with(kModelPrefix)) {
      checkpoint.model.emplace_back(name.substr(kModelPrefix.size()), std::move(tensor));
    } else if (view.starts_with(kEmaPrefix) && checkpoint.ema) {
      checkpoint.ema->tensors.emplace_back(name.substr(kEmaPrefix.size()), std::move(tensor));
    } else if (view.starts_with(kOptimizerPrefix)) {
      checkpoint.optimizer.tensors.emplace_back(name.substr(kOptimizerPrefix.size()), std::move(tensor));
    } else {
      SE_THROW("checkpoint ", path, ": tensor \"", name, "\" belongs to no part (expected the prefixes model., ema., ",
               "optimizer.)");
    }
  }
  return checkpoint;
}

std::string load_model_weights(nn::Module& model, const std::string& path, WeightSource source) {
  Device device = Device::cpu();
  if (auto params = model.named_parameters(); !params.empty()) device = params.front().second.device();
  nn::SafetensorsContents contents = nn::load_safetensors(path, device);
  NamedTensors weights;
  std::string used;
  if (!is_checkpoint(contents)) {
    SE_CHECK(source == WeightSource::automatic, "weights ", path,
             ": a plain state dict has no separate model and EMA weights (pick neither)");
    weights = std::move(contents.tensors);
    used = "state_dict";
  } else {
    const bool has_ema = contents.metadata.count("ema") > 0;
    SE_CHECK(source != WeightSource::ema || has_ema, "checkpoint ", path, ": has no EMA weights (the run kept none)");
    const bool use_ema = source == WeightSource::ema || (source == WeightSource::automatic && has_ema);
    const std::string_view prefix = use_ema ? kEmaPrefix : kModelPrefix;
    used = use_ema ? "ema" : "model";
    for (auto& [name, tensor] : contents.tensors)
      if (std::string_view(name).starts_with(prefix)) weights.emplace_back(name.substr(prefix.size()), std::move(tensor));
    if (use_ema) {
      // The EMA averages parameters and buffers alike; buffers it lacks come from the model part.
      std::set<std::string> averaged;
      for (const auto& w : weights) averaged.insert(w.first);
      for (auto& [name, tensor] : contents.tensors) {
        if (!std::string_view(name).starts_with(kModelPrefix)) continue;
        std::string key = name.substr(kModelPrefix.size());
        if (!averaged.count(key)) weights.emplace_back(std::move(key), std::move(tensor));
      }
    }
  }
  try {
    model.load_state_dict(weights, /*strict=*/true);
  } catch (const Error& e) {
    SE_THROW("weights ", path, " (", used, ") do not fit the model built from the config: ", e.what());
  }
  return used;
}

}  // namespace se
