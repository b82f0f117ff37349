// `segengine train | eval | predict`: the trainer, evaluation and inference behind the CLI.
#pragma once

#include <string_view>
#include <vector>

namespace se::tools {

// Each parses the arguments after its command name, runs, and returns the exit code; bad arguments,
// configs and data throw se::Error (main prints one line and exits non-zero).
int train_command(const std::vector<std::string_view>& args);
int eval_command(const std::vector<std::string_view>& args);
int predict_command(const std::vector<std::string_view>& args);

}  // namespace se::tools
