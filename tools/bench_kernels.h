// `segengine bench kernels`: times every kernel family on the layer shapes of the model zoo.
#pragma once

#include <string_view>
#include <vector>

namespace se::tools {

// Parses the options after "bench kernels" and runs; returns the exit code. Throws se::Error on
// bad options.
int bench_kernels(const std::vector<std::string_view>& args);

}  // namespace se::tools
