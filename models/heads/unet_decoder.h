// The U-Net decoder (milesial/Pytorch-UNet's Up and OutConv blocks): from the coarsest encoder level
// upward, each block upsamples by 2 (bilinear, align_corners=True, or a 2x2 stride-2 transposed conv
// halving the width), pads it to its skip's size, concatenates [skip, upsampled] and applies a
// DoubleConv; a 1x1 conv then gives the class logits at the finest level's resolution.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "models/backbones/unet_encoder.h"

namespace se::models {

class UpBlock : public nn::Module {
 public:
  // low_channels: channels of the coarser input; skip_channels: of the skip it joins.
  UpBlock(int64_t low_channels, int64_t skip_channels, int64_t out_channels, bool bilinear, bool batch_norm = true);
  Tensor forward(const Tensor& low,     // (N, low_channels, h, w)
                 const Tensor& skip);   // (N, skip_channels, H, W), H in {2h, 2h + 1} -> (N, out_channels, H, W)
  std::shared_ptr<nn::UnaryModule> up;  // Upsample or ConvTranspose2d
  std::shared_ptr<DoubleConv> conv;
};

// The 1x1 classifier, named "conv" inside as in the reference (outc.conv.weight).
class OutConv : public nn::UnaryModule {
 public:
  OutConv(int64_t in_channels, int64_t num_classes);
  std::shared_ptr<nn::Conv2d> conv;

 protected:
  Tensor forward_impl(const Tensor& x) override { return conv->forward(x); }  // (N, C, H, W) -> (N, K, H, W)
};

struct UNetDecoderOptions {
  std::vector<int64_t> skip_channels;     // the encoder's channels per level, finest first (depth + 1 entries)
  std::vector<int64_t> decoder_channels;  // output width per level, finest first (depth entries: levels 0..depth-1)
  int64_t num_classes = 0;
  bool bilinear = false;
  bool batch_norm = true;
};

class UNetDecoder : public nn::Module {
 public:
  explicit UNetDecoder(const UNetDecoderOptions& options);
  // features: the encoder's depth + 1 maps, finest first -> logits (N, num_classes, H0, W0) at level 0's size.
  Tensor forward(const std::vector<Tensor>& features);
  // The classic U-Net's widths for an encoder of these channels: the skip widths (transposed conv), or
  // half of them above level 0 (bilinear, matching the encoder's halved bottleneck).
  static std::vector<int64_t> classic_widths(const std::vector<int64_t>& skip_channels, bool bilinear);

  std::vector<std::shared_ptr<UpBlock>> ups;  // children "up1" (coarsest) .. "up<depth>" (finest)
  std::shared_ptr<OutConv> outc;

 private:
  UNetDecoderOptions options_;
};

}  // namespace se::models
