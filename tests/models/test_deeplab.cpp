#include <gtest/gtest.h>

#include "models/deeplab.h"
#include "models/heads/torchvision_heads.h"
#include "models/registry.h"
#include "tests/engine/test_util.h"
#include "tests/models/cnn_test_util.h"
#include "tests/models/parity_util.h"

namespace se::models {
namespace {

using testing::expect_error;
using testing::state_names;

// The dilations of ASPP's 3x3 branches (convs.1 .. convs.R) of a torchvision-style DeepLabV3.
std::vector<int64_t> aspp_dilations(const DeepLabV3& model) {
  auto aspp = std::dynamic_pointer_cast<torchvision::Aspp>((*model.classifier)[0]);
  std::vector<int64_t> rates;
  for (size_t i = 1; i + 1 < aspp->convs->size(); ++i) {
    auto branch = aspp->convs->at<nn::Sequential>(i);
    rates.push_back(std::dynamic_pointer_cast<nn::Conv2d>((*branch)[0])->options().dilation);
  }
  return rates;
}

// ---- DeepLabV3 (torchvision)

TEST(DeepLabV3, ParameterCountsAndNamesMatchTorchvision) {
  // Printed by tools/fixtures/make_cnn_fixtures.py from torchvision deeplabv3_resnet50/101(num_classes=21).
  DeepLabV3 r50({.num_classes = 21, .backbone = {.depth = 50, .output_stride = 8}, .aux_head = true});
  EXPECT_EQ(r50.num_parameters(), 42004074);
  EXPECT_EQ(r50.num_parameters() - r50.aux_classifier->num_parameters(), 39638869);
  DeepLabV3 r101({.num_classes = 21, .backbone = {.depth = 101, .output_stride = 8}, .aux_head = true});
  EXPECT_EQ(r101.num_parameters(), 60996202);
  EXPECT_EQ(r101.num_parameters() - r101.aux_classifier->num_parameters(), 58630997);
  const auto names = state_names(r50);
  for (const char* key :
       {"classifier.0.convs.0.0.weight", "classifier.0.convs.3.1.running_var", "classifier.0.convs.4.1.weight",
        "classifier.0.convs.4.2.bias", "classifier.0.project.0.weight", "classifier.1.weight",
        "classifier.2.running_mean", "classifier.4.bias", "aux_classifier.4.weight"}) {
    EXPECT_TRUE(names.contains(key)) << key;
  }
  EXPECT_EQ(aspp_dilations(r50), (std::vector<int64_t>{12, 24, 36}));
}

TEST(DeepLabV3, LogitsMatchTorchvisionDeeplabv3Resnet50) {
  // tools/fixtures/make_cnn_fixtures.py: deeplabv3_resnet50(num_classes=3, aux_loss=True), eval,
  // deterministic weights, deterministic_input(1, 3, 40, 56).
  DeepLabV3 model({.num_classes = 3, .backbone = {.depth = 50, .output_stride = 8}, .aux_head = true});
  testing::fill_deterministic(model);
  model.eval();
  NoGradGuard no_grad;
  const SegmentationOutput out = model.forward(testing::deterministic_input({1, 3, 40, 56}), /*with_aux=*/true);
  const char* file = "deeplabv3_resnet50.safetensors";
  EXPECT_LT(testing::max_relative_error(out.logits, testing::fixture_tensor(file, "out")), 1e-4);
  EXPECT_LT(testing::max_relative_error(out.aux_logits, testing::fixture_tensor(file, "aux")), 1e-4);
}

TEST(DeepLabV3, TrainingStepMatchesTorchvisionDeeplabv3Resnet50) {
  DeepLabV3 model({.num_classes = 3, .backbone = {.depth = 50, .output_stride = 8}, .aux_head = true});
  testing::expect_cnn_training_step_matches(model, "deeplabv3_resnet50_train.safetensors", Device::cpu());
}

TEST(DeepLabV3, RatesFollowTheOutputStrideUnlessGiven) {
  EXPECT_EQ(aspp_dilations(DeepLabV3({.num_classes = 2, .backbone = {.depth = 18, .output_stride = 16}})),
            (std::vector<int64_t>{6, 12, 18}));
  EXPECT_EQ(aspp_dilations(DeepLabV3({.num_classes = 2, .backbone = {.depth = 18}, .atrous_rates = {2, 4}})),
            (std::vector<int64_t>{2, 4}));
}

TEST(DeepLabV3, ForwardBackwardShapes) {
  for (const auto& [depth, os] : {std::pair{18, 8}, std::pair{18, 16}, std::pair{50, 16}}) {
    manual_seed(2);
    DeepLabV3 model({.num_classes = 4, .backbone = {.depth = depth, .output_stride = os}, .aux_head = true});
    const SegmentationOutput out = model.forward(randn({2, 3, 30, 42}));
    EXPECT_EQ(out.logits.shape(), (Shape{2, 4, 30, 42})) << depth << " os " << os;
    EXPECT_EQ(out.aux_logits.shape(), (Shape{2, 4, 30, 42}));
    add(sum(out.logits), sum(out.aux_logits)).backward();
    testing::expect_every_parameter_has_a_gradient(model);
  }
}

TEST(DeepLabV3, TrainingStepsReduceTheLoss) {
  manual_seed(13);
  DeepLabV3 model({.num_classes = 3, .backbone = {.depth = 18, .output_stride = 16}, .aux_head = true});
  testing::expect_training_reduces_loss(model, {2, 3, 32, 32});
}

// ---- DeepLabV3+ (mmseg DepthwiseSeparableASPPHead)

TEST(DeepLabV3Plus, MmsegNamesAndParameterCount) {
  DeepLabV3Plus model(
      {.num_classes = 3, .backbone = {.depth = 50, .output_stride = 16, .deep_stem = true}, .aux_head = true});
  // tools/fixtures/make_cnn_fixtures.py's transcription of mmseg's head on ResNet-50 V1c, 3 classes.
  EXPECT_EQ(model.num_parameters(), 43577558);
  const auto names = state_names(model);
  for (const char* key :
       {"backbone.stem.0.weight", "decode_head.image_pool.1.conv.weight", "decode_head.image_pool.1.bn.running_var",
        "decode_head.aspp_modules.0.conv.weight", "decode_head.aspp_modules.1.depthwise_conv.conv.weight",
        "decode_head.aspp_modules.3.pointwise_conv.bn.bias", "decode_head.bottleneck.conv.weight",
        "decode_head.c1_bottleneck.conv.weight", "decode_head.sep_bottleneck.1.pointwise_conv.conv.weight",
        "decode_head.conv_seg.weight", "decode_head.conv_seg.bias", "auxiliary_head.convs.0.conv.weight",
        "auxiliary_head.conv_seg.bias"}) {
    EXPECT_TRUE(names.contains(key)) << key;
  }
  EXPECT_EQ(model.decode_head->c1_bottleneck->conv->weight.shape(), (Shape{48, 256, 1, 1}));
  // Dilation 1 is the 1x1 branch; the others are separable 3x3 at the output stride's rates.
  auto branch = model.decode_head->aspp_modules->at<mmseg::DepthwiseSeparableConvModule>(3);
  EXPECT_EQ(branch->depthwise_conv->conv->options().dilation, 18);
  EXPECT_EQ(branch->depthwise_conv->conv->options().groups, 2048);
}

TEST(DeepLabV3Plus, LogitsMatchTheMmsegTranscription) {
  // tools/fixtures/make_cnn_fixtures.py: ResNet-50 V1c at output stride 16, dilations (1, 6, 12, 18),
  // 512 channels, 48-channel c1, aux FCNHead; eval, deterministic weights and input (1, 3, 40, 56).
  DeepLabV3Plus model(
      {.num_classes = 3, .backbone = {.depth = 50, .output_stride = 16, .deep_stem = true}, .aux_head = true});
  testing::fill_deterministic(model);
  model.eval();
  NoGradGuard no_grad;
  const SegmentationOutput out = model.forward(testing::deterministic_input({1, 3, 40, 56}), /*with_aux=*/true);
  EXPECT_LT(testing::max_relative_error(out.logits, testing::fixture_tensor("deeplabv3plus.safetensors", "out")), 1e-4);
  EXPECT_LT(testing::max_relative_error(out.aux_logits, testing::fixture_tensor("deeplabv3plus.safetensors", "aux")),
            1e-4);
}

TEST(DeepLabV3Plus, ForwardBackwardShapes) {
  for (const auto& [depth, os] : {std::pair{18, 8}, std::pair{34, 16}}) {
    manual_seed(2);
    DeepLabV3Plus model(
        {.num_classes = 4, .backbone = {.depth = depth, .output_stride = os}, .aux_head = true, .channels = 32});
    const SegmentationOutput out = model.forward(randn({2, 3, 30, 42}));
    EXPECT_EQ(out.logits.shape(), (Shape{2, 4, 30, 42})) << depth << " os " << os;
    EXPECT_EQ(out.aux_logits.shape(), (Shape{2, 4, 30, 42}));
    add(sum(out.logits), sum(out.aux_logits)).backward();
    testing::expect_every_parameter_has_a_gradient(model);
  }
}

TEST(DeepLabV3Plus, TrainingStepsReduceTheLoss) {
  manual_seed(14);
  DeepLabV3Plus model(
      {.num_classes = 3, .backbone = {.depth = 18, .output_stride = 16}, .aux_head = true, .channels = 64});
  testing::expect_training_reduces_loss(model, {2, 3, 32, 32}, 6, 0.05);
}

TEST(DeepLabRegistry, BuildsFromConfigs) {
  auto v3 = build_model_from_json(
      R"({"name": "deeplabv3", "backbone": "resnet18", "output_stride": 16, "num_classes": 5, "atrous_rates": [3, 5]})");
  EXPECT_EQ(aspp_dilations(dynamic_cast<DeepLabV3&>(*v3)), (std::vector<int64_t>{3, 5}));
  auto plus = build_model_from_json(R"({"name": "deeplabv3plus", "backbone": "resnet18", "output_stride": 8,
      "num_classes": 5, "aux_head": true, "deep_stem": true, "channels": 64, "c1_channels": 16})");
  auto& typed = dynamic_cast<DeepLabV3Plus&>(*plus);
  EXPECT_EQ(typed.decode_head->c1_bottleneck->conv->weight.shape(), (Shape{16, 64, 1, 1}));
  EXPECT_NE(typed.auxiliary_head, nullptr);
  EXPECT_NE(typed.backbone->stem, nullptr);
  expect_error(
      [] {
        build_model_from_json(R"({"name": "deeplabv3", "backbone": "resnet18", "num_classes": 5, "output_stide": 8})");
      },
      "output_stride");
  expect_error([] { build_model_from_json(R"({"name": "deeplabv3", "num_classes": 5, "output_stride": 4})"); },
               "output_stride must be 8, 16 or 32, got 4");
}

// ---- emulated CUDA: the smallest variants at a tiny size (batch 2: ASPP's pooled BN needs it in training)

TEST(DeepLabCuda, DeepLabV3Resnet18MatchesCpu) {
  testing::expect_cuda_model_matches_cpu(
      [] {
        return std::make_shared<DeepLabV3>(
            DeepLabV3Options{.num_classes = 3, .backbone = {.depth = 18, .output_stride = 16}, .aux_head = true});
      },
      {2, 3, 32, 32}, /*training=*/true);
}

TEST(DeepLabCuda, DeepLabV3PlusResnet18MatchesCpu) {
  testing::expect_cuda_model_matches_cpu(
      [] {
        return std::make_shared<DeepLabV3Plus>(DeepLabV3PlusOptions{
            .num_classes = 3, .backbone = {.depth = 18, .output_stride = 16}, .aux_head = true, .channels = 32});
      },
      {2, 3, 32, 32}, /*training=*/true);
}

}  // namespace
}  // namespace se::models
