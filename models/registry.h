// Builds any model of the zoo from a config object, e.g.
//   {"name": "deeplabv3plus", "backbone": "resnet50", "output_stride": 16, "num_classes": 19, "aux_head": true}
// Each model family registers its names from its own file (SE_REGISTER_MODEL); a factory reads the
// keys it understands from the Config view, so unknown keys become errors listing the valid ones.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "models/model.h"

namespace se::models {

using ModelFactory = std::function<std::shared_ptr<SegmentationModel>(const Config& model_config)>;

struct ModelEntry {
  std::string name;
  std::string description;  // one line for `segengine info --list` and error messages
  ModelFactory factory;
};

void register_model(ModelEntry entry);
const std::vector<ModelEntry>& registered_models();  // sorted by name

// Reads "name" and lets that model's factory read the rest; an unknown name is an error listing the
// registered ones. Does not call finish(): the caller owns the whole config.
std::shared_ptr<SegmentationModel> build_model(const Config& model_config);
// For a standalone JSON object: builds and then rejects any key the model did not read.
std::shared_ptr<SegmentationModel> build_model_from_json(const std::string& json_text);

namespace detail {
struct Registrar {
  explicit Registrar(ModelEntry entry) { register_model(std::move(entry)); }
};
}  // namespace detail

}  // namespace se::models

// At namespace scope in a model's .cpp: SE_REGISTER_MODEL(unet, "U-Net (Ronneberger et al.)", factory).
// The models library is linked as a whole archive so these registrations are never dropped.
#define SE_REGISTER_MODEL(id, description, factory) \
  static const ::se::models::detail::Registrar se_model_registrar_##id({#id, description, factory})
