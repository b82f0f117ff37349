#include <gtest/gtest.h>

#include "models/backbones/resnet.h"
#include "tests/engine/test_util.h"
#include "tests/models/cnn_test_util.h"
#include "tests/models/parity_util.h"

namespace se::models {
namespace {

using testing::expect_error;
using testing::state_names;

Tensor sum_of_stages(const ResNetFeatures& f) {
  Tensor total = sum(f.stem);
  for (const Tensor& s : f.stages) total = add(total, sum(s));
  return total;
}

TEST(ResNet, TorchvisionStateDictNames) {
  ResNet r50({.depth = 50});
  const auto names = state_names(r50);
  for (const char* key : {"conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv3.weight",
                          "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_mean", "layer3.5.bn3.bias",
                          "layer4.2.conv2.weight"}) {
    EXPECT_TRUE(names.contains(key)) << key;
  }
  EXPECT_FALSE(names.contains("layer3.6.conv1.weight"));
  EXPECT_FALSE(names.contains("fc.weight"));
  // BasicBlock stages whose width does not change need no projection.
  const auto r18 = state_names(ResNet({.depth = 18}));
  EXPECT_FALSE(r18.contains("layer1.0.downsample.0.weight"));
  EXPECT_TRUE(r18.contains("layer2.0.downsample.0.weight"));
  EXPECT_FALSE(r18.contains("layer1.0.conv3.weight"));
  EXPECT_EQ(resnet_depth_from_name("resnet101"), 101);
}

// torchvision's documented num_params of resnet18/34/50/101/152 (the ImageNet weights' meta) minus
// the 1000-class fc layer (512 * 1000 + 1000 for 18/34, 2048 * 1000 + 1000 for the others).
int64_t torchvision_parameters_without_fc(int depth) {
  switch (depth) {
    case 18: return 11689512 - 513000;
    case 34: return 21797672 - 513000;
    case 50: return 25557032 - 2049000;
    case 101: return 44549160 - 2049000;
    default: return 60192808 - 2049000;
  }
}

class ResNetDepth : public ::testing::TestWithParam<int> {};

TEST_P(ResNetDepth, ParameterCountAndForwardBackwardShapes) {
  const int depth = GetParam();
  manual_seed(1);
  ResNet net({.depth = depth});
  EXPECT_EQ(net.num_parameters(), torchvision_parameters_without_fc(depth));
  const Tensor x = randn({2, 3, 32, 48});
  const ResNetFeatures f = net.forward(x);
  const int64_t e = depth >= 50 ? 4 : 1;
  EXPECT_EQ(f.stem.shape(), (Shape{2, 64, 16, 24}));
  ASSERT_EQ(f.stages.size(), 4u);
  EXPECT_EQ(f.stages[0].shape(), (Shape{2, 64 * e, 8, 12}));
  EXPECT_EQ(f.stages[1].shape(), (Shape{2, 128 * e, 4, 6}));
  EXPECT_EQ(f.stages[2].shape(), (Shape{2, 256 * e, 2, 3}));
  EXPECT_EQ(f.stages[3].shape(), (Shape{2, 512 * e, 1, 2}));
  for (int s = 0; s < 4; ++s) EXPECT_EQ(f.stages[s].size(1), net.stage_channels()[s]);
  sum_of_stages(f).backward();
  testing::expect_every_parameter_has_a_gradient(net);
}

INSTANTIATE_TEST_SUITE_P(AllDepths, ResNetDepth, ::testing::Values(18, 34, 50, 101, 152));

TEST(ResNet, OutputStrideReplacesStrideWithDilationLikeTorchvision) {
  for (int depth : {18, 50}) {
    ResNet os8({.depth = depth, .output_stride = 8});
    ResNet os16({.depth = depth, .output_stride = 16});
    const Tensor x = randn({1, 3, 64, 64});
    const ResNetFeatures f8 = os8.forward(x), f16 = os16.forward(x);
    for (int s = 1; s < 4; ++s) EXPECT_EQ(f8.stages[s].size(2), 8) << depth << " stage " << s;
    EXPECT_EQ(f16.stages[2].size(2), 4);
    EXPECT_EQ(f16.stages[3].size(2), 4);
    EXPECT_EQ(os8.stage_dilations(), (std::array<int64_t, 4>{1, 1, 2, 4}));
    EXPECT_EQ(os16.stage_dilations(), (std::array<int64_t, 4>{1, 1, 1, 2}));
    // The first block of a dilated stage keeps the previous dilation (torchvision's previous_dilation).
    auto dilation_of = [&](ResNet& net, int stage, size_t block) {
      nn::Module& b = *(*net.layers[stage])[block];
      auto* conv =
          dynamic_cast<nn::Conv2d*>(depth >= 50 ? static_cast<nn::Module*>(dynamic_cast<Bottleneck&>(b).conv2.get())
                                                : dynamic_cast<BasicBlock&>(b).conv1.get());
      return std::pair{conv->options().dilation, conv->options().stride};
    };
    EXPECT_EQ(dilation_of(os8, 2, 0), (std::pair<int64_t, int64_t>{1, 1}));
    EXPECT_EQ(dilation_of(os8, 2, 1), (std::pair<int64_t, int64_t>{2, 1}));
    EXPECT_EQ(dilation_of(os8, 3, 0), (std::pair<int64_t, int64_t>{2, 1}));
    EXPECT_EQ(dilation_of(os8, 3, 1), (std::pair<int64_t, int64_t>{4, 1}));
    EXPECT_EQ(dilation_of(os16, 2, 0), (std::pair<int64_t, int64_t>{1, 2}));
    EXPECT_EQ(dilation_of(os16, 3, 1), (std::pair<int64_t, int64_t>{2, 1}));
  }
}

TEST(ResNet, DeepStemIsMmsegResNetV1c) {
  ResNet net({.depth = 18, .deep_stem = true});
  const auto names = state_names(net);
  for (const char* key :
       {"stem.0.weight", "stem.1.running_mean", "stem.3.weight", "stem.4.bias", "stem.6.weight", "stem.7.weight"}) {
    EXPECT_TRUE(names.contains(key)) << key;
  }
  EXPECT_FALSE(names.contains("conv1.weight"));
  EXPECT_EQ(net.stem->named_parameters()[0].second.shape(), (Shape{32, 3, 3, 3}));
  // The deep stem adds 3x3 convs 3->32->32->64 with BN in place of the 7x7 conv 3->64.
  EXPECT_EQ(net.num_parameters() - ResNet({.depth = 18}).num_parameters(),
            (27 * 32 + 9 * 32 * 32 + 9 * 32 * 64 + 2 * (32 + 32 + 64)) - (49 * 3 * 64 + 2 * 64));
  const ResNetFeatures f = net.forward(randn({2, 3, 32, 32}));
  EXPECT_EQ(f.stem.shape(), (Shape{2, 64, 16, 16}));
  EXPECT_EQ(f.stages[3].shape(), (Shape{2, 512, 1, 1}));
}

TEST(ResNet, ZeroInitResidualZeroesTheLastNormOfEachBlock) {
  ResNet r50({.depth = 50, .zero_init_residual = true});
  ResNet r18({.depth = 18, .zero_init_residual = true});
  for (const auto& [name, p] : r50.named_parameters()) {
    if (name.ends_with("bn3.weight")) {
      EXPECT_EQ(sum(abs(p)).item(), 0.0) << name;
    } else if (name.ends_with("bn2.weight")) {
      EXPECT_EQ(sum(p).item(), double(p.numel())) << name;
    }
  }
  for (const auto& [name, p] : r18.named_parameters()) {
    if (name.ends_with("bn2.weight")) {
      EXPECT_EQ(sum(abs(p)).item(), 0.0) << name;
    }
  }
  // With every residual branch zero, each block is relu(identity or projection): finite features.
  const ResNetFeatures f = r50.forward(randn({2, 3, 32, 32}));
  EXPECT_TRUE(std::isfinite(sum(f.stages[3]).item()));
}

TEST(ResNet, BadOptionsAndInputsAreErrors) {
  expect_error([] { ResNet({.depth = 20}); }, "depth 20 is not one of 18, 34, 50, 101, 152");
  expect_error([] { ResNet({.depth = 18, .output_stride = 4}); }, "output_stride must be 8, 16 or 32, got 4");
  expect_error([] { resnet_depth_from_name("resnet51"); }, "unknown backbone 'resnet51'");
  ResNet net({.depth = 18});
  expect_error([&] { net.forward(randn({1, 1, 32, 32})); }, "expected images (N, 3, H, W), got (1, 1, 32, 32)");
}

#ifdef SE_MODEL_FIXTURES
// tools/fixtures/make_cnn_fixtures.py: torchvision resnet18 / resnet50 (eval, deterministic weights)
// on deterministic_input(1, 3, 64, 64); the first 32 channels of the four stage outputs.
TEST(ResNet, FeaturesMatchTorchvision) {
  for (int depth : {18, 50}) {
    ResNet net({.depth = depth});
    testing::fill_deterministic(net);
    net.eval();
    NoGradGuard no_grad;
    const ResNetFeatures f = net.forward(testing::deterministic_input({1, 3, 64, 64}));
    const std::string file = "resnet" + std::to_string(depth) + ".safetensors";
    for (int s = 0; s < 4; ++s) {
      const Tensor expected = testing::fixture_tensor(file, "layer" + std::to_string(s + 1));
      EXPECT_LT(testing::max_relative_error(f.stages[s].narrow(1, 0, 32), expected), 1e-4) << file << " layer" << s + 1;
    }
  }
}
#endif

TEST(ResNetCuda, Resnet18MatchesCpuForwardAndBackward) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(5);
  ResNet cpu_net({.depth = 18, .output_stride = 8});
  ResNet cuda_net({.depth = 18, .output_stride = 8});
  cuda_net.load_state_dict(cpu_net.state_dict());
  cuda_net.to(Device::cuda());
  const Tensor x = randn({2, 3, 32, 32});
  const ResNetFeatures a = cpu_net.forward(x), b = cuda_net.forward(x.to(Device::cuda()));
  for (int s = 0; s < 4; ++s) {
    EXPECT_LT(testing::max_relative_error(b.stages[s].to(Device::cpu()), a.stages[s]), 1e-4) << "stage " << s;
  }
  sum_of_stages(a).backward();
  sum_of_stages(b).backward();
  EXPECT_LT(testing::max_relative_error(cuda_net.conv1->weight.grad().to(Device::cpu()), cpu_net.conv1->weight.grad()),
            1e-3);
  // Training-mode BN updated the running statistics on both devices alike.
  EXPECT_LT(testing::max_relative_error(cuda_net.bn1->running_var.to(Device::cpu()), cpu_net.bn1->running_var), 1e-4);
}

}  // namespace
}  // namespace se::models
