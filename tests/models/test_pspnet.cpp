#include <gtest/gtest.h>

#include "models/pspnet.h"
#include "models/registry.h"
#include "tests/engine/test_util.h"
#include "tests/models/cnn_test_util.h"
#include "tests/models/parity_util.h"

namespace se::models {
namespace {

using testing::expect_error;
using testing::state_names;

PspNetOptions parity_options() {
  return {.num_classes = 3, .backbone = {.depth = 50, .output_stride = 8, .deep_stem = true}, .aux_head = true};
}

TEST(PspNet, MmsegNamesAndParameterCount) {
  PspNet model(parity_options());
  // tools/fixtures/make_cnn_fixtures.py's transcription of mmseg's PSPHead + FCNHead on ResNet-50 V1c.
  EXPECT_EQ(model.num_parameters(), 48963174);
  const auto names = state_names(model);
  for (const char* key :
       {"backbone.stem.7.running_var", "decode_head.psp_modules.0.1.conv.weight",
        "decode_head.psp_modules.3.1.bn.weight", "decode_head.bottleneck.conv.weight", "decode_head.conv_seg.bias",
        "auxiliary_head.convs.0.bn.running_mean", "auxiliary_head.conv_seg.weight"}) {
    EXPECT_TRUE(names.contains(key)) << key;
  }
  EXPECT_FALSE(names.contains("decode_head.psp_modules.4.1.conv.weight"));
  // The bottleneck sees layer4 (2048) and four 512-channel pooled maps.
  EXPECT_EQ(model.decode_head->bottleneck->conv->weight.shape(), (Shape{512, 2048 + 4 * 512, 3, 3}));
}

TEST(PspNet, LogitsMatchTheMmsegTranscription) {
  // tools/fixtures/make_cnn_fixtures.py: ResNet-50 V1c at output stride 8, bins 1/2/3/6, 512 channels,
  // aux FCNHead; eval, deterministic weights and input (1, 3, 40, 56).
  PspNet model(parity_options());
  testing::fill_deterministic(model);
  model.eval();
  NoGradGuard no_grad;
  const SegmentationOutput out = model.forward(testing::deterministic_input({1, 3, 40, 56}), /*with_aux=*/true);
  EXPECT_LT(testing::max_relative_error(out.logits, testing::fixture_tensor("pspnet.safetensors", "out")), 1e-4);
  EXPECT_LT(testing::max_relative_error(out.aux_logits, testing::fixture_tensor("pspnet.safetensors", "aux")), 1e-4);
}

TEST(PspNet, TrainingStepMatchesTheMmsegTranscription) {
  PspNet model(parity_options());
  testing::expect_cnn_training_step_matches(model, "pspnet_train.safetensors", Device::cpu());
}

TEST(PspNet, ForwardBackwardShapes) {
  for (const auto& [depth, os] : {std::pair{18, 8}, std::pair{50, 16}}) {
    manual_seed(2);
    PspNet model(
        {.num_classes = 4, .backbone = {.depth = depth, .output_stride = os}, .aux_head = true, .channels = 32});
    const SegmentationOutput out = model.forward(randn({2, 3, 30, 42}));
    EXPECT_EQ(out.logits.shape(), (Shape{2, 4, 30, 42})) << depth << " os " << os;
    EXPECT_EQ(out.aux_logits.shape(), (Shape{2, 4, 30, 42}));
    EXPECT_EQ(out.features.size(), 4u);
    add(sum(out.logits), sum(out.aux_logits)).backward();
    testing::expect_every_parameter_has_a_gradient(model);
  }
}

TEST(PspNet, TrainingStepsReduceTheLoss) {
  manual_seed(15);
  PspNet model({.num_classes = 3, .backbone = {.depth = 18, .output_stride = 8}, .aux_head = true, .channels = 64});
  testing::expect_training_reduces_loss(model, {2, 3, 32, 32}, 4, 0.05);
}

TEST(PspNet, Dropout2dDropsWholeChannels) {
  mmseg::Dropout2d dropout(0.5);
  manual_seed(1);
  const Tensor y = dropout.forward(ones({4, 16, 3, 3}));
  const std::vector<float> v = y.to_vector<float>();
  int dropped = 0;
  for (size_t c = 0; c < 64; ++c) {
    for (size_t i = 1; i < 9; ++i) ASSERT_EQ(v[c * 9 + i], v[c * 9]) << "channel " << c;  // one draw per plane
    EXPECT_TRUE(v[c * 9] == 0.0f || v[c * 9] == 2.0f);
    dropped += v[c * 9] == 0.0f;
  }
  EXPECT_GT(dropped, 10);
  EXPECT_LT(dropped, 54);
  dropout.eval();
  EXPECT_EQ(sum(dropout.forward(ones({1, 2, 2, 2}))).item(), 8.0);
}

TEST(PspNetRegistry, BuildsFromConfigs) {
  auto model = build_model_from_json(R"({"name": "pspnet", "backbone": "resnet18", "output_stride": 16,
      "num_classes": 6, "aux_head": true, "channels": 16, "pool_scales": [1, 2, 4]})");
  auto& typed = dynamic_cast<PspNet&>(*model);
  EXPECT_EQ(typed.decode_head->psp_modules->size(), 3u);
  EXPECT_EQ(typed.backbone->options().output_stride, 16);
  EXPECT_EQ(model->num_classes(), 6);
  expect_error(
      [] {
        build_model_from_json(R"({"name": "pspnet", "backbone": "resnet18", "num_classes": 6, "pool_scales": [1, 0]})");
      },
      "pool scales must be positive, got 0");
  expect_error(
      [] {
        build_model_from_json(R"({"name": "pspnet", "backbone": "resnet18", "num_classes": 6, "atrous_rates": [1]})");
      },
      "atrous_rates");
}

TEST(PspNetCuda, PspnetResnet18MatchesCpu) {
  testing::expect_cuda_model_matches_cpu(
      [] {
        return std::make_shared<PspNet>(PspNetOptions{
            .num_classes = 3, .backbone = {.depth = 18, .output_stride = 8}, .aux_head = true, .channels = 32});
      },
      {2, 3, 32, 32}, /*training=*/true);
}

}  // namespace
}  // namespace se::models
