#include "tools/model_config.h"

#include <exception>

#include "core/error.h"
#include "models/registry.h"

namespace se::tools {

ConfiguredModel build_configured_model(const Config& file, const std::string& origin, std::string_view command) {
  // Take the model object on its own so that finish() judges only the model's keys.
  const bool nested = file.has("model");
  Config model_config = nested ? Config::from_json(file.sub("model").document(), origin + ": model") : file;
  SE_CHECK(model_config.has("name"), command, ": ", origin, " has neither a \"model\" object nor a model \"name\"");
  ConfiguredModel configured;
  configured.name = model_config.get<std::string>("name");
  configured.model = models::build_model(model_config);
  model_config.finish();
  return configured;
}

int64_t model_input_channels(const models::SegmentationModel& model) {
  for (const auto& [name, p] : model.named_parameters()) {
    if (p.dim() == 4) return p.size(1);
  }
  return 3;
}

int64_t parse_positive(const std::string& text, std::string_view command, std::string_view what) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  SE_CHECK(used == text.size() && value > 0 && value <= 100000, command, ": ", what, " '", text,
           "' (expected a positive whole number)");
  return value;
}

InputSize parse_input_size(const std::string& text, std::string_view command, std::string_view flag) {
  const size_t x = text.find('x');
  SE_CHECK(x != std::string::npos, command, ": ", flag, " '", text, "' (expected HxW, e.g. 512x512)");
  const std::string height_flag = std::string(flag) + " height", width_flag = std::string(flag) + " width";
  return {parse_positive(text.substr(0, x), command, height_flag),
          parse_positive(text.substr(x + 1), command, width_flag)};
}

}  // namespace se::tools
