#include <gtest/gtest.h>

#include "models/fcn.h"
#include "models/registry.h"
#include "tests/engine/test_util.h"
#include "tests/models/cnn_test_util.h"
#include "tests/models/parity_util.h"

namespace se::models {
namespace {

using testing::expect_error;
using testing::state_names;

// ---- FCN on ResNet (torchvision)

TEST(FcnResNet, ParameterCountsMatchTorchvision) {
  // Printed by tools/fixtures/make_cnn_fixtures.py from torchvision fcn_resnet50/101(num_classes=21).
  FcnResNet r50_aux({.num_classes = 21, .backbone = {.depth = 50, .output_stride = 8}, .aux_head = true});
  FcnResNet r50({.num_classes = 21, .backbone = {.depth = 50, .output_stride = 8}, .aux_head = false});
  EXPECT_EQ(r50_aux.num_parameters(), 35322218);
  EXPECT_EQ(r50.num_parameters(), 32957013);
  FcnResNet r101_aux({.num_classes = 21, .backbone = {.depth = 101, .output_stride = 8}, .aux_head = true});
  EXPECT_EQ(r101_aux.num_parameters(), 54314346);
  EXPECT_EQ(r101_aux.num_parameters() - r101_aux.aux_classifier->num_parameters(), 51949141);
  const auto names = state_names(r50_aux);
  for (const char* key : {"backbone.conv1.weight", "backbone.layer4.2.bn3.running_mean", "classifier.0.weight",
                          "classifier.1.running_var", "classifier.4.weight", "classifier.4.bias",
                          "aux_classifier.0.weight", "aux_classifier.4.bias"}) {
    EXPECT_TRUE(names.contains(key)) << key;
  }
}

TEST(FcnResNet, LogitsMatchTorchvisionFcnResnet50) {
  // tools/fixtures/make_cnn_fixtures.py: fcn_resnet50(num_classes=3, aux_loss=True), eval, deterministic
  // weights, deterministic_input(1, 3, 40, 56); torchvision returns "aux" in eval mode too.
  FcnResNet model({.num_classes = 3, .backbone = {.depth = 50, .output_stride = 8}, .aux_head = true});
  testing::fill_deterministic(model);
  model.eval();
  NoGradGuard no_grad;
  const SegmentationOutput out = model.forward(testing::deterministic_input({1, 3, 40, 56}), /*with_aux=*/true);
  EXPECT_LT(testing::max_relative_error(out.logits, testing::fixture_tensor("fcn_resnet50.safetensors", "out")), 1e-4);
  EXPECT_LT(testing::max_relative_error(out.aux_logits, testing::fixture_tensor("fcn_resnet50.safetensors", "aux")),
            1e-4);
}

TEST(FcnResNet, ForwardBackwardShapes) {
  for (const auto& [depth, os] : {std::pair{18, 8}, std::pair{18, 16}, std::pair{18, 32}, std::pair{50, 8}}) {
    manual_seed(2);
    FcnResNet model({.num_classes = 5, .backbone = {.depth = depth, .output_stride = os}, .aux_head = true});
    const SegmentationOutput out = model.forward(randn({2, 3, 36, 44}));
    EXPECT_EQ(out.logits.shape(), (Shape{2, 5, 36, 44})) << depth << " os " << os;
    ASSERT_TRUE(out.aux_logits.defined());
    EXPECT_EQ(out.aux_logits.shape(), (Shape{2, 5, 36, 44}));
    EXPECT_EQ(out.features.size(), 4u);
    EXPECT_EQ(out.features[3].size(2), (36 + os - 1) / os) << depth << " os " << os;
    add(sum(out.logits), sum(out.aux_logits)).backward();
    testing::expect_every_parameter_has_a_gradient(model);
    // No auxiliary logits in eval mode unless asked for.
    model.eval();
    NoGradGuard no_grad;
    EXPECT_FALSE(model.forward(randn({1, 3, 36, 44})).aux_logits.defined());
  }
}

TEST(FcnResNet, TrainingStepsReduceTheLoss) {
  manual_seed(11);
  FcnResNet model({.num_classes = 3, .backbone = {.depth = 18, .output_stride = 8}, .aux_head = true});
  testing::expect_training_reduces_loss(model, {2, 3, 32, 32});
}

// ---- FCN-32s/16s/8s on VGG (Long et al.)

TEST(FcnVgg, VggFeaturesMatchTorchvisionCountsAndNames) {
  // torchvision vgg*.features parameter counts (printed by tools/fixtures/make_cnn_fixtures.py).
  const std::pair<const char*, int64_t> expected[] = {
      {"vgg16", 14714688}, {"vgg16_bn", 14723136}, {"vgg19", 20024384}, {"vgg19_bn", 20035392}};
  for (const auto& [name, count] : expected) {
    Vgg vgg(vgg_options_from_name(name));
    EXPECT_EQ(vgg.num_parameters(), count) << name;
  }
  const auto names = state_names(Vgg({.depth = 16}));
  EXPECT_TRUE(names.contains("features.0.weight"));
  EXPECT_TRUE(names.contains("features.28.bias"));  // the last conv of vgg16
  EXPECT_FALSE(names.contains("features.29.weight"));
  const auto bn_names = state_names(Vgg({.depth = 16, .batch_norm = true}));
  EXPECT_TRUE(bn_names.contains("features.1.running_var"));
  EXPECT_TRUE(bn_names.contains("features.41.weight"));  // the last BN of vgg16_bn
  expect_error([] { vgg_options_from_name("vgg11"); }, "unknown backbone 'vgg11'");
}

TEST(FcnVgg, PoolOutputsHaveVggStrides) {
  Vgg vgg({.depth = 19, .width = 4});
  const std::vector<Tensor> pools = vgg.forward(randn({1, 3, 64, 96}));
  ASSERT_EQ(pools.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(pools[i].size(2), 64 >> (i + 1));
    EXPECT_EQ(pools[i].size(3), 96 >> (i + 1));
    EXPECT_EQ(pools[i].size(1), vgg.stage_channels()[i]);
  }
}

TEST(FcnVgg, BilinearUpsamplingKernels) {
  // pytorch-fcn's get_upsampling_weight(k=4): the outer product of (0.25, 0.75, 0.75, 0.25), on the diagonal.
  Tensor w = zeros({2, 2, 4, 4});
  fill_bilinear_upsampling_(w);
  const std::vector<float> v = w.to_vector<float>();
  const float profile[4] = {0.25f, 0.75f, 0.75f, 0.25f};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      EXPECT_FLOAT_EQ(v[(0 * 2 + 0) * 16 + i * 4 + j], profile[i] * profile[j]);
      EXPECT_FLOAT_EQ(v[(1 * 2 + 1) * 16 + i * 4 + j], profile[i] * profile[j]);
      EXPECT_EQ(v[(0 * 2 + 1) * 16 + i * 4 + j], 0.0f);
    }
  }
  // An odd kernel peaks at its centre: k = 3 gives (0.5, 1, 0.5).
  Tensor w3 = zeros({1, 1, 3, 3});
  fill_bilinear_upsampling_(w3);
  EXPECT_FLOAT_EQ(w3.to_vector<float>()[4], 1.0f);
  EXPECT_FLOAT_EQ(w3.to_vector<float>()[0], 0.25f);
}

FcnVggOptions small_fcn(FcnVariant variant, int64_t classes = 4) {
  return {.variant = variant, .num_classes = classes, .backbone = {.depth = 16, .width = 4}, .fc_channels = 16};
}

TEST(FcnVgg, LogitsMatchTheCaffeReferenceTranscription) {
  // tools/fixtures/make_cnn_fixtures.py: FcnReference(variant, 3 classes, width 4, fc 16), eval,
  // deterministic weights (the deconvolutions too), deterministic_input(1, 3, 30, 38).
  for (FcnVariant variant : {FcnVariant::fcn32s, FcnVariant::fcn16s, FcnVariant::fcn8s}) {
    FcnVgg model(small_fcn(variant, 3));
    testing::fill_deterministic(model);
    model.eval();
    NoGradGuard no_grad;
    const Tensor logits = model.forward(testing::deterministic_input({1, 3, 30, 38})).logits;
    const char* key = variant == FcnVariant::fcn32s ? "fcn32s" : variant == FcnVariant::fcn16s ? "fcn16s" : "fcn8s";
    EXPECT_LT(testing::max_relative_error(logits, testing::fixture_tensor("fcn_vgg.safetensors", key)), 1e-4) << key;
  }
}

TEST(FcnVgg, ForwardBackwardShapesForEveryVariantAndOddSizes) {
  for (FcnVariant variant : {FcnVariant::fcn32s, FcnVariant::fcn16s, FcnVariant::fcn8s}) {
    manual_seed(4);
    FcnVgg model(small_fcn(variant));
    for (const Shape& shape : {Shape{2, 3, 32, 32}, Shape{1, 3, 37, 45}}) {
      model.zero_grad();
      const SegmentationOutput out = model.forward(randn(shape));
      EXPECT_EQ(out.logits.shape(), (Shape{shape[0], 4, shape[2], shape[3]}));
      EXPECT_FALSE(out.aux_logits.defined());
      sum(out.logits).backward();
      testing::expect_every_parameter_has_a_gradient(model);
    }
  }
}

TEST(FcnVgg, Pool3SkipCarriesSignal) {
  // The reference's zero-initialised score layers give zero logits; with only score_pool3 non-zero,
  // the logits still respond to the input, so the pool3 skip is wired through to the output.
  FcnVgg fcn8(small_fcn(FcnVariant::fcn8s));
  EXPECT_EQ(sum(abs(fcn8.forward(randn({1, 3, 32, 32})).logits)).item(), 0.0);
  {
    NoGradGuard no_grad;
    fcn8.score_pool3->weight.fill_(0.1);
  }
  fcn8.eval();
  Tensor x = randn({1, 3, 32, 32});
  const Tensor a = fcn8.forward(x).logits;
  Tensor y = x.clone();
  {
    NoGradGuard no_grad;
    y.narrow(2, 16, 1).narrow(3, 16, 1).fill_(5.0);
  }
  const Tensor b = fcn8.forward(y).logits;
  EXPECT_GT(sum(abs(sub(a, b))).item(), 0.0);
}

TEST(FcnVgg, TrainingStepsReduceTheLoss) {
  manual_seed(12);
  FcnVgg model(small_fcn(FcnVariant::fcn8s, 3));
  testing::expect_training_reduces_loss(model, {2, 3, 32, 32}, 6, 0.2);
}

// ---- registry

TEST(FcnRegistry, BuildsFromConfigs) {
  auto fcn = build_model_from_json(
      R"({"name": "fcn", "backbone": "resnet18", "output_stride": 16, "num_classes": 4, "aux_head": true})");
  auto* typed = dynamic_cast<FcnResNet*>(fcn.get());
  ASSERT_NE(typed, nullptr);
  EXPECT_EQ(typed->backbone->options().output_stride, 16);
  EXPECT_NE(typed->aux_classifier, nullptr);
  EXPECT_EQ(fcn->num_classes(), 4);
  // Full size: the count of tools/fixtures/make_cnn_fixtures.py's PyTorch transcription of voc-fcn8s
  // with VGG-16 and 21 classes (fcn16s: 134815994, fcn32s: 136152917; each ~0.5 GB, so only one here).
  auto fcn8 = build_model_from_json(R"({"name": "fcn8s", "num_classes": 21})");
  EXPECT_NE(dynamic_cast<FcnVgg*>(fcn8.get())->score_pool3, nullptr);
  EXPECT_EQ(fcn8->num_parameters(), 134489759);
  expect_error([] { build_model_from_json(R"({"name": "fcn_resnet50", "backbone": "resnet18", "num_classes": 2})"); },
               "backbone must be resnet50, got resnet18");
  expect_error([] { build_model_from_json(R"({"name": "fcn32s", "num_classes": 2, "aux_head": true})"); }, "aux_head");
  expect_error([] { build_model_from_json(R"({"name": "fcn", "backbone": "resnet19", "num_classes": 2})"); },
               "unknown backbone 'resnet19'");
}

// ---- emulated CUDA: the smallest variants at a tiny size

TEST(FcnCuda, FcnResnet18MatchesCpu) {
  testing::expect_cuda_model_matches_cpu(
      [] {
        return std::make_shared<FcnResNet>(
            FcnResNetOptions{.num_classes = 3, .backbone = {.depth = 18, .output_stride = 8}, .aux_head = true});
      },
      {1, 3, 32, 32}, /*training=*/true);
}

TEST(FcnCuda, Fcn8sMatchesCpu) {
  testing::expect_cuda_model_matches_cpu(
      [] {
        auto model = std::make_shared<FcnVgg>(small_fcn(FcnVariant::fcn8s, 3));
        NoGradGuard no_grad;  // non-zero score layers, so the skips carry signal
        for (auto& conv : {model->score_fr, model->score_pool3, model->score_pool4}) conv->weight.fill_(0.05);
        return model;
      },
      {1, 3, 32, 32}, /*training=*/false);
}

}  // namespace
}  // namespace se::models
