// PSPNet (Zhao et al., CVPR 2017) as mmsegmentation 1.x's pspnet_r50-d8: an EncoderDecoder with a
// PSPHead "decode_head" (pyramid pooling at bins 1, 2, 3, 6 of 512 channels each, concatenated with
// layer4, then a 3x3 ConvModule and conv_seg; models/heads/mmseg_heads.h) and an FCNHead
// "auxiliary_head" (256 channels) on layer3; logits resized bilinearly to the input. State names equal
// mmseg's; its configs use the deep stem (ResNetV1c), the backbone option deep_stem here.
#pragma once

#include <memory>
#include <vector>

#include "models/backbones/resnet.h"
#include "models/heads/mmseg_heads.h"
#include "models/model.h"

namespace se::models {

struct PspNetOptions {
  int64_t num_classes = 19;
  ResNetOptions backbone{.depth = 50, .output_stride = 8};
  bool aux_head = false;
  int64_t channels = 512;
  std::vector<int64_t> pool_scales = {1, 2, 3, 6};
};

class PspNet : public SegmentationModel {
 public:
  explicit PspNet(PspNetOptions options);
  SegmentationOutput forward(const Tensor& images) override { return forward(images, is_training()); }
  SegmentationOutput forward(const Tensor& images,  // (N, 3, H, W)
                             bool with_aux);
  std::shared_ptr<ResNet> backbone;
  std::shared_ptr<mmseg::PspHead> decode_head;
  std::shared_ptr<mmseg::FcnHead> auxiliary_head;
};

}  // namespace se::models
