#include "tools/info.h"

#include <cstdio>
#include <iostream>
#include <string>

#include "core/config.h"
#include "core/error.h"
#include "engine/device.h"
#include "models/model_stats.h"
#include "models/registry.h"

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

int64_t parse_positive(const std::string& text, const char* what) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  SE_CHECK(used == text.size() && value > 0 && value <= 100000, "info: ", what, " '", text,
           "' (expected a positive whole number)");
  return value;
}

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
      const std::string text = value("--input");
      const size_t x = text.find('x');
      SE_CHECK(x != std::string::npos, "info: --input '", text, "' (expected HxW, e.g. 512x512)");
      options.height = parse_positive(text.substr(0, x), "--input height");
      options.width = parse_positive(text.substr(x + 1), "--input width");
    } else if (args[i] == "--batch") {
      options.batch = parse_positive(value("--batch"), "--batch");
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
  Config file = Config::load(options.config_path);
  // A training config carries trainer keys too: take its model object on its own so that finish()
  // judges only the model's keys.
  const bool nested = file.has("model");
  Config model_config =
      nested ? Config::from_json(file.sub("model").document(), options.config_path + ": model") : file;
  SE_CHECK(model_config.has("name"), "info: ", options.config_path,
           " has neither a \"model\" object nor a model \"name\"");
  auto model = models::build_model(model_config);
  model_config.finish();

  // Every model of the zoo starts with a conv on the images: its weight (C_out, C_in, k, k) says C_in.
  const int64_t in_channels = [&] {
    for (const auto& [name, p] : model->named_parameters()) {
      if (p.dim() == 4) return p.size(1);
    }
    return int64_t{3};
  }();
  const Shape input{options.batch, in_channels, options.height, options.width};
  const models::ModelStats stats = models::measure_model(*model, input, options.device);

  if (options.tree) std::cout << model->str() << "\n";
  std::cout << "model: " << model_config.get<std::string>("name") << " (" << model->type_name() << "), "
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
