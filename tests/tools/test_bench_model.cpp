// `segengine bench model`, run as a program: the table, the JSON report and the error lines.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "models/registry.h"

namespace se {
namespace {

namespace fs = std::filesystem;

constexpr const char* kTinyUnet = R"({"model": {"name": "unet", "num_classes": 3, "base_channels": 8, "depth": 2},
  "optimizer": {"lr": 0.01}})";
constexpr const char* kQuickRun = " --input 32x32 --batch 2 --iterations 1 --warmup 0";

struct ProgramRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

ProgramRun run_segengine(const std::string& args) {
  const std::string command = std::string(SEGENGINE_BINARY) + " " + args + " 2>&1";
  ProgramRun run;
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) run.output.append(buffer, got);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

class BenchModel : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("segengine_bench_model_") + test->name() + "_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    config_ = write("tiny.json", kTinyUnet);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }

  static nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
  }

  // The leaf modules' dotted names, in registration order (the U-Net also runs them in this order).
  static std::vector<std::string> tiny_unet_leaves() {
    auto model = models::build_model_from_json(nlohmann::json::parse(kTinyUnet)["model"].dump());
    std::vector<std::string> leaves;
    for (const auto& [name, module] : model->named_modules()) {
      if (module->named_children().empty()) leaves.push_back(name);
    }
    return leaves;
  }

  fs::path dir_;
  std::string config_;
};

struct TableRow {
  std::string name;
  double forward_ms = -1, backward_ms = -1, percent = -1;
};

// The rows between the header ("layer  type ...") and "(other)": name first, the three numbers last.
std::vector<TableRow> table_rows(const std::string& output) {
  std::istringstream lines(output);
  std::vector<TableRow> rows;
  bool in_table = false;
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("layer ")) {
      in_table = true;
      continue;
    }
    if (!in_table) continue;
    if (line.starts_with("(other)")) break;
    std::istringstream fields(line);
    std::vector<std::string> words;
    for (std::string word; fields >> word;) words.push_back(word);
    if (words.size() < 4) return {};
    const size_t n = words.size();
    rows.push_back({words[0], std::stod(words[n - 3]), std::stod(words[n - 2]), std::stod(words[n - 1])});
  }
  return rows;
}

TEST_F(BenchModel, TableListsEveryLeafLayerInExecutionOrder) {
  const ProgramRun run = run_segengine("bench model " + config_ + kQuickRun);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const std::vector<TableRow> rows = table_rows(run.output);
  const std::vector<std::string> leaves = tiny_unet_leaves();
  ASSERT_EQ(rows.size(), leaves.size()) << run.output;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].name, leaves[i]);
    EXPECT_GE(rows[i].forward_ms, 0);
    EXPECT_GE(rows[i].backward_ms, 0);
    EXPECT_GE(rows[i].percent, 0);
  }
  EXPECT_EQ(rows.front().name, "encoder.inc.double_conv.0");
  EXPECT_EQ(rows.back().name, "decoder.outc.conv");
  EXPECT_NE(run.output.find("inference (eval, no grad):"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find(" images/s"), std::string::npos);
  EXPECT_NE(run.output.find("peak memory of a training step (cpu allocator)"), std::string::npos);
}

TEST_F(BenchModel, JsonReportHasTheTableAndTheSummary) {
  const std::string report_path = (dir_ / "report.json").string();
  const ProgramRun run = run_segengine("bench model " + config_ + kQuickRun + " --json " + report_path);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_FALSE(fs::exists(report_path + ".tmp"));
  const nlohmann::json report = read_json(report_path);
  EXPECT_EQ(report["model"], "unet");
  EXPECT_EQ(report["device"], "cpu");
  EXPECT_EQ(report["input_shape"], nlohmann::json({2, 3, 32, 32}));
  EXPECT_EQ(report["layer_mode"], "eval");
  const std::vector<std::string> leaves = tiny_unet_leaves();
  ASSERT_EQ(report["layers"].size(), leaves.size());
  double percent_sum = report["other"]["percent"].get<double>();
  for (size_t i = 0; i < leaves.size(); ++i) {
    const nlohmann::json& layer = report["layers"][i];
    EXPECT_EQ(layer["name"], leaves[i]);
    for (const char* key : {"type", "output_shape", "calls"}) EXPECT_TRUE(layer.contains(key)) << key;
    EXPECT_GE(layer["forward_ms"].get<double>(), 0);
    EXPECT_GE(layer["backward_ms"].get<double>(), 0);
    percent_sum += layer["percent"].get<double>();
  }
  EXPECT_NEAR(percent_sum, 100.0, 1e-6);
  EXPECT_EQ(report["layers"][0]["output_shape"], nlohmann::json({2, 8, 32, 32}));
  EXPECT_GT(report["inference"]["images_per_second"].get<double>(), 0);
  for (const char* key : {"forward_ms", "backward_ms", "forward_backward_ms", "images_per_second"}) {
    EXPECT_GT(report["training"][key].get<double>(), 0) << key;
  }
  EXPECT_GT(report["memory"]["peak_allocated_bytes"].get<double>(),
            report["memory"]["parameter_bytes"].get<double>());
}

TEST_F(BenchModel, BenchSectionGivesDefaultsThatFlagsOverride) {
  const std::string config = write("sized.json", R"({"model": {"name": "unet", "num_classes": 2, "base_channels": 4,
    "depth": 2}, "bench": {"input_size": [16, 24], "batch_size": 3}, "data": {"root": "elsewhere"}})");
  const std::string report_path = (dir_ / "report.json").string();
  ProgramRun run = run_segengine("bench model " + config + " --iterations 1 --warmup 0 --json " + report_path);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(read_json(report_path)["input_shape"], nlohmann::json({3, 3, 16, 24}));
  run = run_segengine("bench model " + config + " --iterations 1 --warmup 0 --batch 1 --input 8x8 --train " +
                      "--set model.num_classes=5 --json " + report_path);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json report = read_json(report_path);
  EXPECT_EQ(report["input_shape"], nlohmann::json({1, 3, 8, 8}));
  EXPECT_EQ(report["num_classes"], 5);
  EXPECT_EQ(report["layer_mode"], "train");
}

// Each bad input: a non-zero exit and exactly one line naming the culprit.
TEST_F(BenchModel, BadInputsFailWithOneLineNamingTheValue) {
  const std::string bad_bench = write("bad_bench.json", R"({"model": {"name": "unet", "num_classes": 2},
    "bench": {"batchsize": 2}})");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bench model " + (dir_ / "missing.json").string(), "missing.json"},
      {"bench model " + config_ + " --bogus", "unknown option '--bogus'"},
      {"bench model " + config_ + " --input 32", "--input '32' (expected HxW"},
      {"bench model " + config_ + " --input 0x32", "--input height '0'"},
      {"bench model " + config_ + " --batch many", "--batch 'many'"},
      {"bench model " + config_ + " --iterations", "--iterations needs a value"},
      {"bench model " + config_ + " --set model.dept=2", "unknown key 'dept'"},
      {"bench model " + bad_bench, "unknown key 'batchsize'"},
      {"bench model", "CONFIG is required"},
  };
  for (const auto& [args, expected] : cases) {
    const ProgramRun run = run_segengine(args);
    EXPECT_NE(run.exit_code, 0) << args;
    EXPECT_NE(run.output.find(expected), std::string::npos) << args << " -> " << run.output;
    EXPECT_EQ(std::count(run.output.begin(), run.output.end(), '\n'), 1) << args << " -> " << run.output;
  }
}

TEST_F(BenchModel, CudaDeviceTimesLayersAndReportsTheCachingAllocator) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const std::string report_path = (dir_ / "report.json").string();
  const ProgramRun run = run_segengine("bench model " + config_ + kQuickRun + " --device cuda --json " + report_path);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("cuda:0 caching allocator"), std::string::npos) << run.output;
  const nlohmann::json report = read_json(report_path);
  EXPECT_EQ(report["device"], "cuda:0");
  EXPECT_EQ(report["layers"].size(), tiny_unet_leaves().size());
  for (const nlohmann::json& layer : report["layers"]) EXPECT_GE(layer["backward_ms"].get<double>(), 0);
  EXPECT_GT(report["memory"]["peak_allocated_bytes"].get<double>(), 0);
}

}  // namespace
}  // namespace se
