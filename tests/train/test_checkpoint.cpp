#include <gtest/gtest.h>

#include <filesystem>

#include "nn/layers.h"
#include "nn/safetensors.h"
#include "tests/data/data_test_util.h"
#include "train/checkpoint.h"

namespace se {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;
using testing::TempDir;

Checkpoint sample_checkpoint(const nn::Module& model, bool with_ema) {
  Checkpoint ckpt;
  ckpt.model = model.state_dict();
  if (with_ema) {
    NamedTensors averaged;
    for (const auto& [name, t] : model.state_dict()) averaged.emplace_back(name, full_like(t, 7.0));
    ckpt.ema = NamedState{averaged, {{"updates", 3}}};
  }
  ckpt.optimizer = NamedState{{{"weight.momentum_buffer", full({4, 3}, 0.5)}}, {{"type", "sgd"}}};
  ckpt.trainer = {{"iteration", 12}, {"loader", {{"epoch", 1}, {"batch", 2}}}};
  return ckpt;
}

TEST(Checkpoint, RoundTripsEveryPartAndLeavesNoTemporaryFile) {
  TempDir dir;
  manual_seed(1);
  nn::Linear model(3, 4);
  save_checkpoint(dir / "ckpt.safetensors", sample_checkpoint(model, true));
  Checkpoint back = load_checkpoint(dir / "ckpt.safetensors");
  ASSERT_EQ(back.model.size(), 2u);
  for (const auto& [name, tensor] : model.state_dict()) {
    bool found = false;
    for (const auto& [back_name, back_tensor] : back.model) {
      if (back_name != name) continue;
      found = true;
      EXPECT_EQ(back_tensor.to_vector<float>(), tensor.to_vector<float>()) << name;
    }
    EXPECT_TRUE(found) << name;
  }
  ASSERT_TRUE(back.ema.has_value());
  EXPECT_EQ(back.ema->meta.at("updates"), 3);
  EXPECT_EQ(back.ema->tensors.size(), 2u);
  EXPECT_EQ(back.optimizer.tensors.at(0).first, "weight.momentum_buffer");
  EXPECT_EQ(back.optimizer.meta.at("type"), "sgd");
  EXPECT_EQ(back.trainer.at("iteration"), 12);
  for (const auto& entry : fs::directory_iterator(dir.path()))
    EXPECT_EQ(entry.path().filename(), "ckpt.safetensors") << "left behind: " << entry.path();

  // The file is ordinary safetensors with prefixed names (what Python's safetensors shows).
  nn::SafetensorsContents raw = nn::load_safetensors(dir / "ckpt.safetensors");
  EXPECT_EQ(raw.metadata.at("format"), kCheckpointFormat);
  bool has_prefixed = false;
  for (const auto& [name, t] : raw.tensors) has_prefixed = has_prefixed || name == "model.weight";
  EXPECT_TRUE(has_prefixed);
}

TEST(Checkpoint, ModelWeightsComeFromTheEmaTheModelOrAPlainStateDict) {
  TempDir dir;
  manual_seed(2);
  nn::Linear trained(3, 4);
  save_checkpoint(dir / "ema.safetensors", sample_checkpoint(trained, true));
  save_checkpoint(dir / "plain_ckpt.safetensors", sample_checkpoint(trained, false));
  nn::save_module(trained, dir / "state_dict.safetensors");

  nn::Linear model(3, 4);
  EXPECT_EQ(load_model_weights(model, dir / "ema.safetensors"), "ema");
  for (float v : model.state_dict()[0].second.to_vector<float>()) EXPECT_EQ(v, 7.0f);
  EXPECT_EQ(load_model_weights(model, dir / "ema.safetensors", WeightSource::model), "model");
  EXPECT_EQ(model.state_dict()[0].second.to_vector<float>(), trained.state_dict()[0].second.to_vector<float>());
  EXPECT_EQ(load_model_weights(model, dir / "plain_ckpt.safetensors"), "model");
  EXPECT_EQ(load_model_weights(model, dir / "state_dict.safetensors"), "state_dict");
  expect_error([&] { load_model_weights(model, dir / "plain_ckpt.safetensors", WeightSource::ema); },
               "has no EMA weights");

  nn::Linear other(3, 5);
  expect_error([&] { load_model_weights(other, dir / "ema.safetensors"); }, "do not fit the model");
  expect_error([&] { load_checkpoint(dir / "state_dict.safetensors"); }, "not a segengine training checkpoint");
  expect_error([&] { load_checkpoint(dir / "missing.safetensors"); }, "missing.safetensors");
}

// A failed save leaves the previous checkpoint as it was.
TEST(Checkpoint, AFailedSaveKeepsThePreviousFile) {
  TempDir dir;
  manual_seed(3);
  nn::Linear model(3, 4);
  save_checkpoint(dir / "ckpt.safetensors", sample_checkpoint(model, false));
  const auto before = fs::file_size(dir / "ckpt.safetensors");
  Checkpoint bad = sample_checkpoint(model, false);
  bad.model.emplace_back("weight", zeros({1}));  // a duplicate name: the writer refuses
  EXPECT_THROW(save_checkpoint(dir / "ckpt.safetensors", bad), Error);
  EXPECT_EQ(fs::file_size(dir / "ckpt.safetensors"), before);
  EXPECT_NO_THROW(load_checkpoint(dir / "ckpt.safetensors"));
}

}  // namespace
}  // namespace se
