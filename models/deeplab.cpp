#include "models/deeplab.h"

#include "core/error.h"
#include "models/cnn_common.h"
#include "models/heads/torchvision_heads.h"
#include "models/registry.h"

namespace se::models {

DeepLabV3::DeepLabV3(DeepLabV3Options options) : SegmentationModel("DeepLabV3", options.num_classes) {
  backbone = register_module("backbone", std::make_shared<ResNet>(options.backbone));
  const auto rates =
      options.atrous_rates.empty() ? cnn::default_atrous_rates(options.backbone.output_stride) : options.atrous_rates;
  const auto& channels = backbone->stage_channels();
  classifier = register_module("classifier", torchvision::make_deeplab_head(channels[3], options.num_classes, rates));
  if (options.aux_head) {
    aux_classifier = register_module("aux_classifier", torchvision::make_fcn_head(channels[2], options.num_classes));
  }
}

SegmentationOutput DeepLabV3::forward(const Tensor& images, bool with_aux) {
  const ResNetFeatures f = backbone->forward(images);
  const int64_t h = images.size(2), w = images.size(3);
  SegmentationOutput out;
  out.logits = cnn::resize_bilinear(classifier->forward(f.stages[3]), h, w);
  if (with_aux && aux_classifier) out.aux_logits = cnn::resize_bilinear(aux_classifier->forward(f.stages[2]), h, w);
  out.features = f.stages;
  return out;
}

DeepLabV3Plus::DeepLabV3Plus(DeepLabV3PlusOptions options) : SegmentationModel("DeepLabV3Plus", options.num_classes) {
  backbone = register_module("backbone", std::make_shared<ResNet>(options.backbone));
  std::vector<int64_t> dilations = {1};
  for (int64_t rate : options.atrous_rates.empty() ? cnn::default_atrous_rates(options.backbone.output_stride)
                                                   : options.atrous_rates) {
    dilations.push_back(rate);
  }
  const auto& channels = backbone->stage_channels();
  decode_head = register_module(
      "decode_head", std::make_shared<mmseg::SepAsppHead>(channels[3], options.channels, channels[0],
                                                          options.c1_channels, options.num_classes, dilations));
  if (options.aux_head) {
    auxiliary_head =
        register_module("auxiliary_head", std::make_shared<mmseg::FcnHead>(channels[2], 256, options.num_classes));
  }
}

SegmentationOutput DeepLabV3Plus::forward(const Tensor& images, bool with_aux) {
  const ResNetFeatures f = backbone->forward(images);
  const int64_t h = images.size(2), w = images.size(3);
  SegmentationOutput out;
  out.logits = cnn::resize_bilinear(decode_head->forward(f.stages[0], f.stages[3]), h, w);
  if (with_aux && auxiliary_head) out.aux_logits = cnn::resize_bilinear(auxiliary_head->forward(f.stages[2]), h, w);
  out.features = f.stages;
  return out;
}

namespace {

// Keys: num_classes, backbone (resnet50), output_stride (8), deep_stem (false), aux_head (false),
// atrous_rates (by output stride).
std::shared_ptr<SegmentationModel> make_deeplabv3(const Config& cfg) {
  DeepLabV3Options options;
  options.num_classes = cfg.get<int64_t>("num_classes");
  options.backbone = cnn::read_resnet_options(cfg);
  options.aux_head = cfg.get<bool>("aux_head", false);
  options.atrous_rates = cfg.get<std::vector<int64_t>>("atrous_rates", {});
  return std::make_shared<DeepLabV3>(options);
}

// The keys of deeplabv3, plus channels (512) and c1_channels (48).
std::shared_ptr<SegmentationModel> make_deeplabv3plus(const Config& cfg) {
  DeepLabV3PlusOptions options;
  options.num_classes = cfg.get<int64_t>("num_classes");
  options.backbone = cnn::read_resnet_options(cfg);
  options.aux_head = cfg.get<bool>("aux_head", false);
  options.atrous_rates = cfg.get<std::vector<int64_t>>("atrous_rates", {});
  options.channels = cfg.get<int64_t>("channels", 512);
  options.c1_channels = cfg.get<int64_t>("c1_channels", 48);
  return std::make_shared<DeepLabV3Plus>(options);
}

}  // namespace

SE_REGISTER_MODEL(deeplabv3, "DeepLabV3: ASPP with image pooling on a dilated ResNet (torchvision deeplabv3_resnet*)",
                  make_deeplabv3);
SE_REGISTER_MODEL(
    deeplabv3plus,
    "DeepLabV3+: separable ASPP and a layer1 decoder on a dilated ResNet (mmseg DepthwiseSeparableASPPHead)",
    make_deeplabv3plus);

}  // namespace se::models
