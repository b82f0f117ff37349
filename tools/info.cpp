#include "tools/info.h"

#include <cstdio>
#include <iostream>
#include <string>

#include "core/config.h"
#include "core/error.h"
#include "engine/device.h"
#include "models/model_stats.h"
#include "tools/model_config.h"

namespace se::tools {

namespace {

constexpr const char* kUsage =
    "usage: segengine info --config FILE [--input HxW] [--batch N] [--device cpu|cuda[:N]] [--no-tree]\n"
    "  FILE: a model object ({\"name\": \"unet\", ...}) or a config whose \"model\" key holds one\n";

struct Options {
  std::string config_path;
  int64_t height = 512, width = 512, batch = 1;
  Device device = Device::cpu();
  bool tree = true;
};

Options parse_options(const std::vector<std::string_view>& args) {
  Options options;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&](std::string_view flag) -> std::string {
      SE_CHECK(i + 1 < args.size(), "info: ", flag, " needs a value\n", kUsage);
      return std::string(args[++i]);
    };
    if (args[i] == "--config") {
      options.config_path = value("--config");
    } else if (args[i] == "--input") {
      const InputSize size = parse_input_size(value("--input"), "info");
      options.height = size.height;
      options.width = size.width;
    } else if (args[i] == "--batch") {
      options.batch = parse_positive(value("--batch"), "info", "--batch");
    } else if (args[i] == "--device") {
      options.device = Device::parse(value("--device"));
    } else if (args[i] == "--no-tree") {
      options.tree = false;
    } else {
      SE_THROW("info: unknown option '", args[i], "'\n", kUsage);
    }
  }
  SE_CHECK(!options.config_path.empty(), "info: --config FILE is required\n", kUsage);
  check_device(options.device, "info");
  return options;
}

// 31037698 -> "31,037,698"
std::string with_commas(int64_t value) {
  std::string digits = std::to_string(value), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string scaled(double value, const char* unit) {  // 54.6e9 -> "54.60 G<unit>"
  const char* prefixes[] = {"", "K", "M", "G", "T"};
  int k = 0;
  while (value >= 1000 && k < 4) value /= 1000, ++k;
  char text[64];
  std::snprintf(text, sizeof(text), "%.2f %s%s", value, prefixes[k], unit);
  return text;
}

std::string mebibytes(int64_t bytes) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.1f MiB", double(bytes) / (1 << 20));
  return text;
}

}  // namespace

int model_info(const std::vector<std::string_view>& args) {
  const Options options = parse_options(args);
  const ConfiguredModel configured =
      build_configured_model(Config::load(options.config_path), options.config_path, "info");
  const auto& model = configured.model;
  const Shape input{options.batch, model_input_channels(*model), options.height, options.width};
  const models::ModelStats stats = models::measure_model(*model, input, options.device);

  if (options.tree) std::cout << model->str() << "\n";
  std::cout << "model: " << configured.name << " (" << model->type_name() << "), "
            << model->num_classes() << " classes\n";
  std::cout << "parameters: " << with_commas(stats.parameters) << " (" << scaled(double(stats.parameters), "") << ", "
            << mebibytes(stats.parameter_bytes) << "), trainable " << with_commas(stats.trainable_parameters) << "\n";
  std::cout << "input: " << shape_str(stats.input_shape) << " -> logits " << shape_str(stats.logits_shape) << "\n";
  std::cout << "MACs: " << scaled(stats.macs, "") << " (" << scaled(2 * stats.macs, "FLOP") << ")";
  std::string sep = "; ";
  for (const auto& [type, macs] : stats.macs_by_type) {
    std::cout << sep << type << " " << scaled(macs, "");
    sep = ", ";
  }
  std::cout << "\n";
  std::cout << "activation memory: " << mebibytes(stats.activation_bytes) << " (outputs of " << stats.leaf_calls
            << " layer calls kept for backward, f32)\n";
  return 0;
}

}  // namespace se::tools
