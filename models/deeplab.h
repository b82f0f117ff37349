// DeepLab on ResNet.
//
// DeepLabV3: torchvision's deeplabv3_resnet50 / _resnet101 (torchvision/models/segmentation/deeplabv3.py)
// on any ResNet depth: DeepLabHead "classifier" (ASPP with image pooling, 256 channels) on layer4,
// optional FCNHead "aux_classifier" on layer3, logits resized bilinearly to the input. torchvision fixes
// output stride 8 and rates 12/24/36; here the stride is configurable and the rates default to
// 12/24/36 at 8, 6/12/18 at 16 (3/6/9 at 32). State names equal torchvision's.
//
// DeepLabV3+: mmsegmentation 1.x's deeplabv3plus_r50-d8 (EncoderDecoder with a
// DepthwiseSeparableASPPHead "decode_head" and an FCNHead "auxiliary_head" on layer3, 256 channels,
// see models/heads/mmseg_heads.h): ASPP dilations (1, rates...), 512 channels, the decoder projects
// layer1 to 48 channels, logits (at layer1's stride 4) resized bilinearly to the input. State names
// equal mmseg's (backbone.*, decode_head.*, auxiliary_head.*); mmseg's configs use the deep stem
// (ResNetV1c), which is the backbone option deep_stem here.
#pragma once

#include <memory>
#include <vector>

#include "models/backbones/resnet.h"
#include "models/heads/mmseg_heads.h"
#include "models/model.h"

namespace se::models {

struct DeepLabV3Options {
  int64_t num_classes = 21;
  ResNetOptions backbone{.depth = 50, .output_stride = 8};
  bool aux_head = false;
  std::vector<int64_t> atrous_rates{};  // empty: by output stride
};

class DeepLabV3 : public SegmentationModel {
 public:
  explicit DeepLabV3(DeepLabV3Options options);
  SegmentationOutput forward(const Tensor& images) override { return forward(images, is_training()); }
  // with_aux: the auxiliary logits also in eval mode, as torchvision returns them.
  SegmentationOutput forward(const Tensor& images,  // (N, 3, H, W)
                             bool with_aux);
  std::shared_ptr<ResNet> backbone;
  std::shared_ptr<nn::Sequential> classifier, aux_classifier;
};

struct DeepLabV3PlusOptions {
  int64_t num_classes = 19;
  ResNetOptions backbone{.depth = 50, .output_stride = 8};
  bool aux_head = false;
  std::vector<int64_t> atrous_rates{};  // empty: by output stride; the head adds the 1x1 branch
  int64_t channels = 512;
  int64_t c1_channels = 48;
};

class DeepLabV3Plus : public SegmentationModel {
 public:
  explicit DeepLabV3Plus(DeepLabV3PlusOptions options);
  SegmentationOutput forward(const Tensor& images) override { return forward(images, is_training()); }
  SegmentationOutput forward(const Tensor& images,  // (N, 3, H, W)
                             bool with_aux);
  std::shared_ptr<ResNet> backbone;
  std::shared_ptr<mmseg::SepAsppHead> decode_head;
  std::shared_ptr<mmseg::FcnHead> auxiliary_head;
};

}  // namespace se::models
