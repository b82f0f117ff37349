// ResNet-18/34/50/101/152 backbones with torchvision's layout and parameter names (conv1, bn1,
// layer1..layer4 of BasicBlock / Bottleneck, downsample.0 / .1), so a torchvision state_dict without
// its "fc." entries loads directly. The classifier (avgpool, fc) is left out: segmentation uses the
// feature maps of the four stages.
//
// Options beyond torchvision:
// - deep_stem: mmseg's ResNetV1c stem, three 3x3 convs (stride 2, 1, 1) of widths stem_width / 2,
//   stem_width / 2, stem_width, each with BN and ReLU, named stem.0 .. stem.8 as mmseg's nn.Sequential;
//   it replaces conv1 / bn1.
// - output_stride 8 or 16: torchvision's replace_stride_with_dilation ([False, True, True] for 8,
//   [False, False, True] for 16). A dilated stage keeps stride 1; its first block uses the previous
//   dilation and the others the stage's (for 8: layer3 1,2,2..; layer4 2,4,4..), which is also mmseg's
//   contract_dilation. torchvision rejects dilation in BasicBlock; we follow mmseg's BasicBlock, which
//   dilates conv1 only (conv2 stays 3x3, padding 1), so ResNet-18/34 dilate too.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace se::models {

struct ResNetOptions {
  int depth = 50;                   // 18, 34, 50, 101 or 152
  int64_t output_stride = 32;       // 32 (no dilation), 16 or 8
  bool deep_stem = false;           // mmseg ResNetV1c stem instead of the 7x7 conv1
  int64_t stem_width = 64;          // output channels of the stem (conv1 or the deep stem's last conv)
  bool zero_init_residual = false;  // zero the last BN weight of each block (torchvision's option)
  int64_t in_channels = 3;
};

// Parses "resnet18" .. "resnet152" into a depth; other names are an error listing the valid ones.
int resnet_depth_from_name(const std::string& name);

// torchvision.models.resnet.BasicBlock: conv3x3-bn-relu-conv3x3-bn, plus the (downsampled) input.
class BasicBlock : public nn::UnaryModule {
 public:
  static constexpr int64_t expansion = 1;
  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, int64_t dilation,
             std::shared_ptr<nn::Sequential> downsample);
  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::Sequential> downsample;  // conv1x1 + BN, or null

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, inplanes, H, W) -> (N, planes, H / stride, W / stride)
};

// torchvision's Bottleneck (ResNet V1.5: the stride sits on the 3x3 conv2, as in mmseg's style='pytorch').
class Bottleneck : public nn::UnaryModule {
 public:
  static constexpr int64_t expansion = 4;
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, int64_t dilation,
             std::shared_ptr<nn::Sequential> downsample);
  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<nn::Sequential> downsample;

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, inplanes, H, W) -> (N, 4 planes, H / stride, W / stride)
};

struct ResNetFeatures {
  Tensor stem;                 // (N, stem_width, H/2, W/2): after the stem's last ReLU, before the max pool
  std::vector<Tensor> stages;  // layer1..layer4: strides 4, 8, 16, 32 (capped at output_stride)
};

class ResNet : public nn::Module {
 public:
  explicit ResNet(ResNetOptions options);
  ResNetFeatures forward(const Tensor& images);  // (N, in_channels, H, W)
  const ResNetOptions& options() const { return options_; }
  // Channels of layer1..layer4 (64, 128, 256, 512 times the block expansion) and of the stem.
  const std::array<int64_t, 4>& stage_channels() const { return stage_channels_; }
  int64_t stem_channels() const { return options_.stem_width; }
  // The dilation of the last block of each stage (1 unless output_stride < 32).
  const std::array<int64_t, 4>& stage_dilations() const { return stage_dilations_; }

  // Exactly one of conv1/bn1 (torchvision stem) and stem (deep stem) is set.
  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::Sequential> stem;
  std::shared_ptr<nn::MaxPool2d> maxpool;
  std::array<std::shared_ptr<nn::Sequential>, 4> layers;  // registered as layer1..layer4

 private:
  ResNetOptions options_;
  std::array<int64_t, 4> stage_channels_{};
  std::array<int64_t, 4> stage_dilations_{};
};

}  // namespace se::models
