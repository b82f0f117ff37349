#include <gtest/gtest.h>

#include "models/model_stats.h"
#include "models/registry.h"
#include "models/unet.h"
#include "tests/engine/test_util.h"

namespace se::models {
namespace {

// U-Net with in_channels 1, base 2, depth 1, 2 classes, transposed conv: small enough to count by hand.
UNet tiny_unet() {
  UNetOptions options;
  options.num_classes = 2;
  options.in_channels = 1;
  options.base_channels = 2;
  options.depth = 1;
  return UNet(options);
}

TEST(ModelStats, CountsMacsAndLayerOutputsOfATinyUNet) {
  UNet model = tiny_unet();
  const ModelStats stats = measure_model(model, {1, 1, 8, 8});
  // Conv2d: output elements x C_in x 9 (or x 1 for the 1x1 classifier); ConvTranspose2d: input elements x C_out x 4.
  const double inc = 128 * 1 * 9 + 128 * 2 * 9;       // 8x8: 1 -> 2 -> 2
  const double down1 = 64 * 2 * 9 + 64 * 4 * 9;       // 4x4: 2 -> 4 -> 4
  const double up1_transposed = 64 * 2 * 4;           // 4 channels at 4x4 -> 2 channels, 2x2 kernel
  const double up1_conv = 128 * 4 * 9 + 128 * 2 * 9;  // 8x8: [skip 2, up 2] -> 2 -> 2
  const double classifier = 128 * 2;                  // 8x8: 2 -> 2 classes
  EXPECT_DOUBLE_EQ(stats.macs, inc + down1 + up1_transposed + up1_conv + classifier);
  EXPECT_DOUBLE_EQ(stats.macs_by_type.at("ConvTranspose2d"), up1_transposed);
  EXPECT_DOUBLE_EQ(stats.macs_by_type.at("Conv2d"), inc + down1 + up1_conv + classifier);
  // Leaf outputs in elements: inc 6 layers x 128; down1 pool 32 + 6 x 64; up 128 + 6 x 128; classifier 128.
  const int64_t elements = 64 /* input */ + 6 * 128 + (32 + 6 * 64) + (128 + 6 * 128) + 128;
  EXPECT_EQ(stats.activation_bytes, elements * 4);
  EXPECT_EQ(stats.leaf_calls, 6 + 7 + 7 + 1);
  EXPECT_EQ(stats.parameters, model.num_parameters());
  EXPECT_EQ(stats.parameter_bytes, model.num_parameters() * 4);
  EXPECT_EQ(stats.logits_shape, (Shape{1, 2, 8, 8}));
  EXPECT_TRUE(model.is_training());  // the mode is restored
  // The batch multiplies the work.
  EXPECT_DOUBLE_EQ(measure_model(model, {3, 1, 8, 8}).macs, 3 * stats.macs);
  testing::expect_error([&] { measure_model(model, {1, 8, 8}); }, "measure_model: input shape (1, 8, 8)");
}

// SegFormer-B0 at 64x64: per stage (hidden C, tokens L = (64 / stride)^2, keys Lk = L / sr^2, 2 layers)
// the attention products take 2 x L x Lk x C per layer.
TEST(ModelStats, CountsSegformerAttentionProducts) {
  auto model = build_model_from_json(R"({"name": "segformer", "variant": "b0", "num_classes": 3})");
  const ModelStats stats = measure_model(*model, {1, 3, 64, 64});
  const double per_layer = 2.0 * 256 * 4 * 32    // stage 1: 16x16 tokens, sr 8 -> 2x2 keys, C 32
                           + 2.0 * 64 * 4 * 64   // stage 2: 8x8, sr 4 -> 2x2, C 64
                           + 2.0 * 16 * 4 * 160  // stage 3: 4x4, sr 2 -> 2x2, C 160
                           + 2.0 * 4 * 4 * 256;  // stage 4: 2x2, sr 1 -> 2x2, C 256
  EXPECT_DOUBLE_EQ(stats.macs_by_type.at("SegformerEfficientSelfAttention"), 2 * per_layer);
  // The projections stay counted as Linear layers.
  EXPECT_GT(stats.macs_by_type.at("Linear"), 0);
}

TEST(ModelStats, RegisteredCountersAddModuleTypes) {
  UNet model = tiny_unet();
  const double before = measure_model(model, {1, 1, 8, 8}).macs;
  register_mac_counter("ReLU",
                       [](const nn::Module&, const Tensor&, const Tensor& output) { return double(output.numel()); });
  const ModelStats stats = measure_model(model, {1, 1, 8, 8});
  EXPECT_DOUBLE_EQ(stats.macs_by_type.at("ReLU"), 2 * 128 + 2 * 64 + 2 * 128);
  EXPECT_DOUBLE_EQ(stats.macs, before + stats.macs_by_type.at("ReLU"));
  register_mac_counter("ReLU", [](const nn::Module&, const Tensor&, const Tensor&) { return 0.0; });
}

TEST(ModelStatsCuda, SameStatsOnTheDeviceAndTheModelStaysHome) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  UNet model = tiny_unet();
  const ModelStats cpu = measure_model(model, {1, 1, 8, 8});
  const ModelStats cuda = measure_model(model, {1, 1, 8, 8}, Device::cuda());
  EXPECT_DOUBLE_EQ(cuda.macs, cpu.macs);
  EXPECT_EQ(cuda.activation_bytes, cpu.activation_bytes);
  EXPECT_TRUE(model.parameters().front().device().is_cpu());
}

}  // namespace
}  // namespace se::models
