// `segengine info`: the module tree, parameter count, MACs and activation memory of a model config.
#pragma once

#include <string_view>
#include <vector>

namespace se::tools {

// Parses the options after "info" and prints the report; returns the exit code. Throws se::Error on
// bad options, unknown models or unknown config keys.
int model_info(const std::vector<std::string_view>& args);

}  // namespace se::tools
