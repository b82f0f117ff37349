// Pieces shared by the CNN segmentation models (FCN, DeepLabV3/V3+, PSPNet): the ResNet backbone
// config keys and the bilinear resize every head uses.
#pragma once

#include <string>
#include <vector>

#include "core/config.h"
#include "engine/ops.h"
#include "models/backbones/resnet.h"

namespace se::models::cnn {

// F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False), as torchvision and mmseg
// resize features and logits.
inline Tensor resize_bilinear(const Tensor& x,  // (N, C, H, W)
                              int64_t height, int64_t width) {
  if (x.size(2) == height && x.size(3) == width) return x;
  InterpolateParams params;
  params.size = std::array<int64_t, 2>{height, width};
  params.mode = InterpolateMode::bilinear;
  return interpolate(x, params);
}

// The backbone keys of a model config:
//   "backbone"       resnet18 | resnet34 | resnet50 | resnet101 | resnet152 (default `default_backbone`)
//   "output_stride"  8 | 16 | 32 (default `default_output_stride`)
//   "deep_stem"      mmseg's ResNetV1c stem (default false)
inline ResNetOptions read_resnet_options(const Config& cfg, const std::string& default_backbone = "resnet50",
                                         int64_t default_output_stride = 8) {
  ResNetOptions options;
  options.depth = resnet_depth_from_name(cfg.get<std::string>("backbone", default_backbone));
  options.output_stride = cfg.get<int64_t>("output_stride", default_output_stride);
  options.deep_stem = cfg.get<bool>("deep_stem", false);
  return options;
}

// DeepLab's atrous rates for an output stride: (6, 12, 18) at 16, doubled at 8 (the DeepLabV3 paper;
// torchvision's 12/24/36 and mmseg's d8 configs), halved at 32.
inline std::vector<int64_t> default_atrous_rates(int64_t output_stride) {
  const int64_t base = 96 / output_stride;  // 12, 6 or 3
  return {base, 2 * base, 3 * base};
}

}  // namespace se::models::cnn
