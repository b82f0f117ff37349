// `segengine bench model CONFIG`: per-layer forward and backward times of a model, like `caffe time`,
// plus whole-model inference and training-step throughput and the training step's peak memory.
#pragma once

#include <string_view>
#include <vector>

namespace se::tools {

// Parses the options after "bench model" and runs; returns the exit code. Throws se::Error on bad
// options, unreadable configs, unknown models or unknown model keys.
int bench_model(const std::vector<std::string_view>& args);

}  // namespace se::tools
