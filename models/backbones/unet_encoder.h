// The classic U-Net encoder (Ronneberger et al. 2015, in the layout of milesial/Pytorch-UNet): a
// double 3x3 conv block at full resolution, then `depth` stages of 2x2 max pooling followed by a
// double conv block, doubling the width at each stage. Children and parameter names follow that
// reference (inc.double_conv.0.weight, down1.maxpool_conv.1.double_conv.0.weight, ...), so its
// weights load under the prefix documented in models/unet.h.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "nn/layers.h"

namespace se::models {

// (3x3 conv, BN, ReLU) twice, as Sequential "double_conv" with indices 0..5 (PyTorch's names). Without
// BN the convs get biases and the Sequential holds (conv, ReLU, conv, ReLU).
class DoubleConv : public nn::UnaryModule {
 public:
  DoubleConv(int64_t in_channels, int64_t out_channels, int64_t mid_channels = 0, bool batch_norm = true);
  std::shared_ptr<nn::Sequential> double_conv;

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C_in, H, W) -> (N, C_out, H, W)
};

// 2x2 max pooling then a DoubleConv, as Sequential "maxpool_conv".
class DownBlock : public nn::UnaryModule {
 public:
  DownBlock(int64_t in_channels, int64_t out_channels, bool batch_norm = true);
  std::shared_ptr<nn::Sequential> maxpool_conv;

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C_in, H, W) -> (N, C_out, H / 2, W / 2)
};

struct UNetEncoderOptions {
  int64_t in_channels = 3;
  int64_t base_channels = 64;  // width of the first level; level i has base * 2^i channels
  int64_t depth = 4;           // pooling stages; features come at 1 / 2^i for i = 0..depth
  bool batch_norm = true;
  // milesial's bilinear variant halves the deepest level (bottleneck) so that the upsampled
  // bottleneck matches the skip it is concatenated with; the transposed-conv variant keeps it.
  bool halve_bottleneck = false;
};

class UNetEncoder : public nn::Module {
 public:
  explicit UNetEncoder(const UNetEncoderOptions& options);
  // images (N, C_in, H, W) -> depth + 1 feature maps, finest first: level i is
  // (N, channels()[i], floor(H / 2^i), floor(W / 2^i)) (pooling floors, as in PyTorch).
  std::vector<Tensor> forward(const Tensor& images);
  const std::vector<int64_t>& channels() const { return channels_; }  // per level, finest first
  const UNetEncoderOptions& options() const { return options_; }
  std::string extra_repr() const override;

  std::shared_ptr<DoubleConv> inc;
  std::vector<std::shared_ptr<DownBlock>> downs;  // children "down1" .. "down<depth>"

 private:
  UNetEncoderOptions options_;
  std::vector<int64_t> channels_;
};

}  // namespace se::models
