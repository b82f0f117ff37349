#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "models/registry.h"
#include "models/unet.h"
#include "nn/safetensors.h"
#include "tests/engine/test_util.h"
#include "tests/models/parity_util.h"
#include "tests/models/unet_test_util.h"

namespace se::models {
namespace {

using testing::error_of;

UNetOptions small_options(bool bilinear, bool batch_norm = true) {
  UNetOptions options;
  options.num_classes = 3;
  options.base_channels = 8;
  options.depth = 3;
  options.bilinear = bilinear;
  options.batch_norm = batch_norm;
  return options;
}

// Fills our model from the formula of each tensor's milesial/Pytorch-UNet name (the name the Python
// fixture script fills by), which also checks that the documented name map leads back to our name.
void fill_as_reference(nn::Module& model) {
  NoGradGuard no_grad;
  for (auto& [name, tensor] : model.state_dict()) {
    if (!is_floating(tensor.dtype())) continue;
    const std::string reference = name.substr(name.find('.') + 1);  // drop "encoder." / "decoder."
    ASSERT_EQ(unet_key_from_reference(reference), name);
    tensor.copy_(from_vector<float>(testing::deterministic_values(reference, tensor.shape()), tensor.shape()));
  }
}

TEST(UNet, ForwardAndBackwardShapesForEveryVariant) {
  for (bool bilinear : {false, true}) {
    for (bool batch_norm : {true, false}) {
      SCOPED_TRACE(std::string(bilinear ? "bilinear" : "transposed") + (batch_norm ? ", bn" : ", no bn"));
      manual_seed(1);
      UNet model(small_options(bilinear, batch_norm));
      // Odd sizes: pooling floors, and the decoder pads each upsampled map to its skip.
      for (const Shape& shape : {Shape{2, 3, 32, 24}, Shape{2, 3, 37, 45}}) {
        model.zero_grad();
        Tensor images = randn(shape);
        SegmentationOutput out = model.forward(images);
        EXPECT_EQ(out.logits.shape(), (Shape{shape[0], 3, shape[2], shape[3]}));
        EXPECT_FALSE(out.aux_logits.defined());
        EXPECT_TRUE(out.features.empty());
        sum(mul(out.logits, randn(out.logits.shape()))).backward();
        testing::expect_all_parameters_have_gradients(model);
      }
      const std::vector<Tensor> features = model.encode(randn({1, 3, 32, 32}));
      ASSERT_EQ(features.size(), 4u);
      for (size_t i = 0; i < features.size(); ++i) {
        EXPECT_EQ(features[i].shape(), (Shape{1, model.encoder->channels()[i], 32 >> i, 32 >> i})) << i;
      }
    }
  }
}

TEST(UNet, EncoderWidthsAndDepthFollowTheOptions) {
  UNetEncoder encoder(
      {.in_channels = 1, .base_channels = 6, .depth = 2, .batch_norm = true, .halve_bottleneck = false});
  EXPECT_EQ(encoder.channels(), (std::vector<int64_t>{6, 12, 24}));
  UNetEncoder halved({.in_channels = 1, .base_channels = 6, .depth = 2, .batch_norm = true, .halve_bottleneck = true});
  EXPECT_EQ(halved.channels(), (std::vector<int64_t>{6, 12, 12}));
  EXPECT_EQ(encoder.named_parameters().front().first, "inc.double_conv.0.weight");
  EXPECT_NE(error_of([&] { encoder.forward(randn({1, 1, 3, 8})); }).find("smaller than 4x4"), std::string::npos);
  EXPECT_NE(error_of([&] {
              encoder.forward(randn({1, 3, 8, 8}));
            }).find("expected images (N, 1, H, W)"),
            std::string::npos);
}

// torchvision's ResNet as the encoder: five levels (stem, layer1..layer4), logits resized from stride 2.
TEST(UNet, ResNetBackboneShapesGradientsAndNames) {
  // Transposed-conv upsampling here; test_siamese_unet runs the bilinear decoder on ResNet-18.
  for (bool bilinear : {false}) {
    SCOPED_TRACE(bilinear ? "bilinear" : "transposed");
    manual_seed(2);
    UNetOptions options = small_options(bilinear);
    options.backbone = "resnet18";
    UNet model(options);
    EXPECT_EQ(model.encoder, nullptr);
    EXPECT_EQ(model.encoder_channels(), (std::vector<int64_t>{64, 64, 128, 256, 512}));
    // torchvision resnet18 has 11,689,512 parameters, of which fc (512 * 1000 + 1000) is left out.
    EXPECT_EQ(model.resnet->num_parameters(), 11689512 - 513000);
    const NamedTensors params = model.named_parameters();
    EXPECT_EQ(params.front().first, "encoder.conv1.weight");
    EXPECT_EQ(params.back().first, "decoder.outc.conv.bias");
    // Odd sizes: the ResNet rounds its strides up, so the decoder crops as well as pads.
    Tensor images = randn({2, 3, 37, 45});
    std::vector<Tensor> levels = model.encode(images);
    ASSERT_EQ(levels.size(), 5u);
    EXPECT_EQ(levels[0].shape(), (Shape{2, 64, 19, 23}));
    EXPECT_EQ(levels[4].shape(), (Shape{2, 512, 2, 2}));
    Tensor logits = model.forward(images).logits;
    EXPECT_EQ(logits.shape(), (Shape{2, 3, 37, 45}));
    sum(mul(logits, randn(logits.shape()))).backward();
    testing::expect_all_parameters_have_gradients(model);
  }
  EXPECT_NE(error_of([] {
              build_model_from_json(R"({"name": "unet", "num_classes": 2, "backbone": "resnet19"})");
            }).find("expected one of resnet18, resnet34, resnet50, resnet101, resnet152"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              build_model_from_json(R"({"name": "unet", "num_classes": 2, "backbone": "vgg16"})");
            }).find("unknown backbone 'vgg16' (expected unet, resnet18"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              build_model_from_json(R"({"name": "unet", "num_classes": 2, "backbone": "resnet18", "depth": 3})");
            }).find("'depth' is a key of the classic U-Net encoder"),
            std::string::npos);
}

TEST(UNet, RegistryBuildsItFromConfigAndRejectsUnknownKeys) {
  auto model = build_model_from_json(
      R"({"name": "unet", "num_classes": 5, "base_channels": 4, "depth": 2, "bilinear": true, "in_channels": 1})");
  EXPECT_EQ(model->type_name(), "UNet");
  EXPECT_EQ(model->num_classes(), 5);
  EXPECT_EQ(model->forward(randn({1, 1, 12, 12})).logits.shape(), (Shape{1, 5, 12, 12}));
  const std::string typo = error_of(
      [] { build_model_from_json(R"({"name": "unet", "num_classes": 2, "base_channels": 2, "bilinar": true})"); });
  EXPECT_NE(typo.find("bilinar"), std::string::npos) << typo;
  EXPECT_NE(typo.find("bilinear"), std::string::npos) << typo;
  EXPECT_NE(error_of([] { build_model_from_json(R"({"name": "unet", "num_classes": 0})"); }).find("num_classes = 0"),
            std::string::npos);
}

TEST(UNet, ReferenceNamesMapOntoOurs) {
  EXPECT_EQ(unet_key_from_reference("inc.double_conv.1.running_mean"), "encoder.inc.double_conv.1.running_mean");
  EXPECT_EQ(unet_key_from_reference("down4.maxpool_conv.1.double_conv.3.weight"),
            "encoder.down4.maxpool_conv.1.double_conv.3.weight");
  EXPECT_EQ(unet_key_from_reference("up1.up.weight"), "decoder.up1.up.weight");
  EXPECT_EQ(unet_key_from_reference("outc.conv.bias"), "decoder.outc.conv.bias");
  EXPECT_NE(error_of([] { unet_key_from_reference("fc.weight"); }).find("'fc.weight' is not a key"), std::string::npos);
}

// The classic 64-channel U-Net against milesial/Pytorch-UNet's UNet(n_channels=3, n_classes=2, bilinear):
// the parameter counts printed by tools/fixtures/make_unet_fixtures.py (sum of p.numel() over the
// PyTorch model), and the logits of that script in eval mode with name-derived weights; its 56x44
// input exercises the padding of odd-sized maps.
TEST(UNet, ClassicModelMatchesPyTorchReference) {
  const std::string path = std::string(SE_MODEL_FIXTURES) + "/unet.safetensors";
  const nn::SafetensorsContents fixture = nn::load_safetensors(path);
  auto reference = [&](const std::string& key) {
    for (const auto& [name, tensor] : fixture.tensors) {
      if (name == key) return tensor;
    }
    ADD_FAILURE() << path << " has no tensor '" << key << "'";
    return Tensor();
  };
  for (bool bilinear : {false, true}) {
    SCOPED_TRACE(bilinear ? "bilinear" : "transposed");
    UNetOptions options;
    options.num_classes = 2;
    options.bilinear = bilinear;
    UNet model(options);
    EXPECT_EQ(model.num_parameters(), bilinear ? 17263042 : 31037698);
    fill_as_reference(model);
    model.eval();
    NoGradGuard no_grad;
    Tensor logits = model.forward(testing::deterministic_input({1, 3, 56, 44})).logits;
    testing::expect_close(logits, reference(bilinear ? "logits_bilinear" : "logits_transposed"), 1e-4, "logits");
  }
}

// One training-mode step against PyTorch, in float64 so that only semantics can differ: the script's
// width-8 UNet(3, 4) (every channel count of the reference scaled by 8 / 64, which is our base_channels)
// with name-derived weights, batch statistics in every BatchNorm, cross-entropy over a fixed target with
// ignored pixels. The loss, each parameter's gradient (its sum and sum of squares: every conv, transposed
// conv and norm backward of the net) and the BatchNorms' updated running statistics match.
void expect_training_step_matches_pytorch(Device device) {
  const std::string path = std::string(SE_MODEL_FIXTURES) + "/unet.safetensors";
  const nn::SafetensorsContents contents = nn::load_safetensors(path);
  const std::map<std::string, Tensor> reference(contents.tensors.begin(), contents.tensors.end());
  UNetOptions options;
  options.num_classes = 4;
  options.base_channels = 8;
  options.depth = 4;
  UNet model(options);
  fill_as_reference(model);
  model.to(device, DType::f64);
  model.train();
  CrossEntropyParams ce;
  ce.ignore_index = 255;
  const Tensor images = testing::deterministic_input({2, 3, 40, 36}).to(device, DType::f64);
  const Tensor loss = cross_entropy(model.forward(images).logits, testing::training_target({2, 40, 36}, 4, device), ce);
  loss.backward();
  // Our names are the reference's under "encoder." or "decoder." (unet_key_from_reference).
  testing::expect_training_step_matches(
      model, loss, reference, "train.", [](const std::string& name) { return name.substr(name.find('.') + 1); }, path);
}

TEST(UNet, TrainingStepMatchesPyTorchReference) {
  expect_training_step_matches_pytorch(Device::cpu());
}

TEST(UNetCuda, TrainingStepMatchesPyTorchReference) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  expect_training_step_matches_pytorch(Device::cuda());
}

TEST(UNet, OptimizerStepsReduceTheLoss) {
  manual_seed(3);
  UNetOptions options = small_options(false);
  options.depth = 2;
  UNet model(options);
  Tensor images = randn({2, 3, 32, 32});
  Tensor target = testing::labels_from(images);
  const std::vector<double> losses = testing::adam_losses(
      model, [&] { return cross_entropy(model.forward(images).logits, target); }, 6);
  EXPECT_LT(losses.back(), 0.8 * losses.front()) << "first " << losses.front() << ", last " << losses.back();
}

// The smallest model at 1x3x32x32 on the emulated device: logits and every parameter gradient vs the CPU.
TEST(UNetCuda, MatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (bool bilinear : {false, true}) {
    SCOPED_TRACE(bilinear ? "bilinear" : "transposed");
    UNetOptions options = small_options(bilinear);
    options.depth = 2;
    UNet cpu(options), cuda(options);
    testing::fill_deterministic(cpu);
    cuda.load_state_dict(cpu.state_dict());
    cuda.to(Device::cuda());
    Tensor images = testing::deterministic_input({1, 3, 32, 32});
    Tensor weights = randn({1, 3, 32, 32});
    Tensor cpu_logits = cpu.forward(images).logits;
    Tensor cuda_logits = cuda.forward(images.to(Device::cuda())).logits;
    // Summation orders differ between the backends, and BN's batch statistics amplify that.
    testing::expect_close(cuda_logits.to(Device::cpu()), cpu_logits, 1e-3, "logits", 0.01);
    sum(mul(cpu_logits, weights)).backward();
    sum(mul(cuda_logits, weights.to(Device::cuda()))).backward();
    const NamedTensors cpu_params = cpu.named_parameters(), cuda_params = cuda.named_parameters();
    for (size_t i = 0; i < cpu_params.size(); ++i) {
      testing::expect_close(cuda_params[i].second.grad().to(Device::cpu()), cpu_params[i].second.grad(), 1e-3,
                            cpu_params[i].first + ".grad", 0.01);
    }
  }
}

}  // namespace
}  // namespace se::models
