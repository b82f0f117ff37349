// What `segengine info` and `segengine bench model` share: reading a model from a config file and the
// size flags (--input HxW, --batch N).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/config.h"
#include "models/model.h"

namespace se::tools {

struct ConfiguredModel {
  std::string name;  // the registry name, e.g. "unet"
  std::shared_ptr<models::SegmentationModel> model;
};

// `file` is a model object ({"name": "unet", ...}) or a training config whose "model" key holds one.
// Builds the model and rejects any key of the model object the model did not read; the other sections
// (data, optimizer, ...) are left to their own readers. `command` ("info") and `origin` (the file)
// name the error.
ConfiguredModel build_configured_model(const Config& file, const std::string& origin, std::string_view command);

// The image channels a model takes: every model of the zoo starts with a conv on the images, whose
// weight (C_out, C_in, k, k) says C_in. 3 when no conv weight is found.
int64_t model_input_channels(const models::SegmentationModel& model);

// "512" -> 512; anything but a whole number in [1, 100000] is an error naming `command`, `what` and the text.
int64_t parse_positive(const std::string& text, std::string_view command, std::string_view what);

struct InputSize {
  int64_t height = 0, width = 0;
};
// "512x384" -> {512, 384}; errors name `command`, the flag and the text.
InputSize parse_input_size(const std::string& text, std::string_view command, std::string_view flag = "--input");

}  // namespace se::tools
