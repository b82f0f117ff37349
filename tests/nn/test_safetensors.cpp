#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "core/atomic_file.h"
#include "engine/ops.h"
#include "nn/layers.h"
#include "nn/safetensors.h"
#include "tests/engine/test_util.h"

namespace se::nn {
namespace {

using testing::error_of;
namespace fs = std::filesystem;

// The tensors tools/fixtures/make_safetensors_fixture.py writes, built here from the same formulas.
std::string file_text(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  return std::string(bytes.begin(), bytes.end());
}

NamedTensors fixture_tensors() {
  std::vector<float> conv(24);
  for (int i = 0; i < 24; ++i) conv[i] = i * 0.25f - 1.5f;
  std::vector<float> half(5);
  for (int i = 0; i < 5; ++i) half[i] = (i - 2) * 0.5f;
  return {
      {"encoder.conv.weight", from_vector<float>(conv, {2, 3, 2, 2})},
      {"encoder.bn.num_batches_tracked", from_vector<int64_t>({7}, {})},
      {"head.bias", from_vector<double>({0.0, 1.0 / 3.0, 2.0 / 3.0}, {3})},
      {"half", from_vector<float>(half, {5}, {DType::f16})},
      {"ids", from_vector<int32_t>({-1, 0, 1, 2}, {2, 2})},
      {"mask", from_vector<bool>({true, false, true}, {3})},
      {"bytes", from_vector<uint8_t>({0, 40, 80, 120, 160, 200}, {6})},
      {"empty", zeros({0, 3})},
  };
}

const Tensor& find(const NamedTensors& tensors, const std::string& name) {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  ADD_FAILURE() << "no tensor " << name;
  static Tensor none;
  return none;
}

void expect_same_tensors(const NamedTensors& expected, const NamedTensors& actual) {
  ASSERT_EQ(expected.size(), actual.size());
  for (const auto& [name, tensor] : expected) {
    const Tensor& got = find(actual, name);
    ASSERT_TRUE(got.defined()) << name;
    EXPECT_EQ(got.dtype(), tensor.dtype()) << name;
    EXPECT_EQ(got.shape(), tensor.shape()) << name;
    EXPECT_EQ(got.to_vector<double>(), tensor.to_vector<double>()) << name;
  }
}

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("segengine_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

TEST(Safetensors, ReadsWhatPythonWroteAndWritesTheSameBytes) {
  const std::string path = std::string(SE_NN_FIXTURES) + "/python_written.safetensors";
  const SafetensorsContents contents = load_safetensors(path);
  expect_same_tensors(fixture_tensors(), contents.tensors);
  EXPECT_EQ(contents.metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_EQ(serialize_safetensors(fixture_tensors(), {{"format", "pt"}}), file_text(path));
}

TEST(Safetensors, RoundTripsEveryDtypeAndLayout) {
  NamedTensors tensors = fixture_tensors();
  tensors.emplace_back("bf16", from_vector<float>({1.5f, -2.0f, 3.25f}, {3}, {DType::bf16}));
  tensors.emplace_back("transposed", arange(6.0).view({2, 3}).t());  // non-contiguous: written row-major
  const std::string path = temp_path("roundtrip.safetensors");
  save_safetensors(path, tensors, {{"epoch", "3"}});
  const SafetensorsContents back = load_safetensors(path);
  expect_same_tensors(tensors, back.tensors);
  EXPECT_EQ(back.metadata.at("epoch"), "3");
  const std::string bytes = file_text(path);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  EXPECT_EQ(header % 8, 0u);  // padded so the data section is 8-byte aligned
  fs::remove(path);
}

TEST(Safetensors, ModuleStateRoundTrips) {
  manual_seed(1);
  Sequential saved({std::make_shared<Conv2d>(3, 4, 3), std::make_shared<BatchNorm2d>(4)});
  saved.forward(randn({2, 3, 5, 5}));  // moves the running statistics away from their defaults
  const std::string path = temp_path("module.safetensors");
  save_module(saved, path);
  manual_seed(2);
  Sequential loaded({std::make_shared<Conv2d>(3, 4, 3), std::make_shared<BatchNorm2d>(4)});
  load_module(loaded, path);
  expect_same_tensors(saved.state_dict(), loaded.state_dict());
  // A checkpoint for another architecture names the file and the keys.
  Sequential other({std::make_shared<Conv2d>(3, 5, 3)});
  const std::string error = error_of([&] { load_module(other, path); });
  EXPECT_NE(error.find(path), std::string::npos) << error;
  EXPECT_NE(error.find("0.weight: checkpoint (4, 3, 3, 3), model (5, 3, 3, 3)"), std::string::npos) << error;
  EXPECT_NE(error.find("unexpected: 1.bias, 1.num_batches_tracked"), std::string::npos) << error;
  fs::remove(path);
}

TEST(Safetensors, CorruptFilesGiveClearErrors) {
  const std::string good = serialize_safetensors({{"w", ones({2})}});
  auto error_for = [](const std::string& bytes) { return error_of([&] { parse_safetensors(bytes, "f.safetensors"); }); };
  EXPECT_NE(error_for("abc").find("f.safetensors: not a safetensors file"), std::string::npos);
  std::string huge = good;
  const uint64_t too_big = 1u << 30;
  std::memcpy(huge.data(), &too_big, 8);
  EXPECT_NE(error_for(huge).find("does not fit"), std::string::npos);
  EXPECT_NE(error_for(good.substr(0, good.size() - 1)).find("'w': data_offsets [0, 8] fall outside the 7-byte"),
            std::string::npos);
  std::string short_offsets = good;
  short_offsets.replace(short_offsets.find("[0,8]"), 5, "[0,4]");
  EXPECT_NE(error_for(short_offsets).find("'w' of shape (2,) and dtype F32 needs 8 bytes, data_offsets give 4"),
            std::string::npos);
  std::string bad_dtype = good;
  bad_dtype.replace(bad_dtype.find("F32"), 3, "I16");
  EXPECT_NE(error_for(bad_dtype).find("'w' has dtype I16, which segengine does not support"), std::string::npos);
  std::string bad_json = good;
  bad_json[9] = '[';
  EXPECT_NE(error_for(bad_json).find("not valid JSON"), std::string::npos);
  std::string trailing = good + std::string(4, '\0');
  EXPECT_NE(error_for(trailing).find("data section has 12 bytes but the tensors cover 8"), std::string::npos);
  EXPECT_NE(error_of([] { serialize_safetensors({{"a", ones({1})}, {"a", ones({1})}}); }).find("'a' appears twice"),
            std::string::npos);
}

TEST(Safetensors, FailedSaveKeepsTheExistingFile) {
  const std::string path = temp_path("keep.safetensors");
  save_safetensors(path, {{"w", ones({3})}});
  const std::string before = file_text(path);
  EXPECT_FALSE(error_of([&] { save_safetensors(path, {{"w", ones({1})}, {"w", ones({1})}}); }).empty());
  EXPECT_EQ(file_text(path), before);
  for (const auto& entry : fs::directory_iterator(fs::path(path).parent_path())) {
    EXPECT_EQ(entry.path().string().find(path + ".tmp"), std::string::npos) << "left behind: " << entry.path();
  }
  fs::remove(path);
}

TEST(SafetensorsCuda, SavesAndLoadsDeviceTensors) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Tensor w = randn({3, 4}).to(Device::cuda());
  const SafetensorsContents back = parse_safetensors(serialize_safetensors({{"w", w}}), "mem", Device::cuda());
  EXPECT_EQ(back.tensors[0].second.device(), Device::cuda());
  EXPECT_EQ(back.tensors[0].second.to_vector<float>(), w.to_vector<float>());
}

}  // namespace
}  // namespace se::nn
