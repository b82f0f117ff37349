#include "models/pspnet.h"

#include "models/cnn_common.h"
#include "models/registry.h"

namespace se::models {

PspNet::PspNet(PspNetOptions options) : SegmentationModel("PSPNet", options.num_classes) {
  backbone = register_module("backbone", std::make_shared<ResNet>(options.backbone));
  const auto& channels = backbone->stage_channels();
  decode_head = register_module(
      "decode_head",
      std::make_shared<mmseg::PspHead>(channels[3], options.channels, options.num_classes, options.pool_scales));
  if (options.aux_head) {
    auxiliary_head =
        register_module("auxiliary_head", std::make_shared<mmseg::FcnHead>(channels[2], 256, options.num_classes));
  }
}

SegmentationOutput PspNet::forward(const Tensor& images, bool with_aux) {
  const ResNetFeatures f = backbone->forward(images);
  const int64_t h = images.size(2), w = images.size(3);
  SegmentationOutput out;
  out.logits = cnn::resize_bilinear(decode_head->forward(f.stages[3]), h, w);
  if (with_aux && auxiliary_head) out.aux_logits = cnn::resize_bilinear(auxiliary_head->forward(f.stages[2]), h, w);
  out.features = f.stages;
  return out;
}

namespace {

// Keys: num_classes, backbone (resnet50), output_stride (8), deep_stem (false), aux_head (false),
// channels (512), pool_scales ([1, 2, 3, 6]).
std::shared_ptr<SegmentationModel> make_pspnet(const Config& cfg) {
  PspNetOptions options;
  options.num_classes = cfg.get<int64_t>("num_classes");
  options.backbone = cnn::read_resnet_options(cfg);
  options.aux_head = cfg.get<bool>("aux_head", false);
  options.channels = cfg.get<int64_t>("channels", 512);
  options.pool_scales = cfg.get<std::vector<int64_t>>("pool_scales", {1, 2, 3, 6});
  return std::make_shared<PspNet>(options);
}

}  // namespace

SE_REGISTER_MODEL(pspnet, "PSPNet: pyramid pooling (bins 1, 2, 3, 6) on a dilated ResNet (mmseg PSPHead)", make_pspnet);

}  // namespace se::models
