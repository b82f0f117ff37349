#include "models/registry.h"

#include <algorithm>

#include "core/error.h"

namespace se::models {
namespace {

std::vector<ModelEntry>& registry() {
  static std::vector<ModelEntry> entries;
  return entries;
}

std::string names_list() {
  std::string out;
  for (const auto& entry : registered_models()) {
    if (!out.empty()) out += ", ";
    out += entry.name;
  }
  return out;
}

}  // namespace

void register_model(ModelEntry entry) {
  auto& entries = registry();
  for (const auto& existing : entries) {
    SE_CHECK(existing.name != entry.name, "register_model: model '", entry.name, "' is registered twice");
  }
  entries.push_back(std::move(entry));
  std::sort(entries.begin(), entries.end(), [](const ModelEntry& a, const ModelEntry& b) { return a.name < b.name; });
}

const std::vector<ModelEntry>& registered_models() { return registry(); }

std::shared_ptr<SegmentationModel> build_model(const Config& model_config) {
  const std::string name = model_config.get<std::string>("name");
  for (const auto& entry : registered_models()) {
    if (entry.name == name) return entry.factory(model_config);
  }
  std::string closest;
  size_t best = std::string::npos;
  for (const auto& entry : registered_models()) {
    const size_t d = edit_distance(name, entry.name);
    if (d < best) best = d, closest = entry.name;
  }
  SE_THROW("model: unknown name '", name, "'", closest.empty() ? "" : " (did you mean '" + closest + "'?)",
           "; registered models: ", names_list());
}

std::shared_ptr<SegmentationModel> build_model_from_json(const std::string& json_text) {
  Config config = Config::parse(json_text, "<model>");
  auto model = build_model(config);
  config.finish();
  return model;
}

}  // namespace se::models
