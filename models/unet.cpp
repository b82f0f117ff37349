#include "models/unet.h"

#include "core/error.h"
#include "models/registry.h"

namespace se::models {

UNetOptions read_unet_options(const Config& config) {
  UNetOptions options;
  options.num_classes = config.get<int64_t>("num_classes");
  options.in_channels = config.get<int64_t>("in_channels", options.in_channels);
  options.base_channels = config.get<int64_t>("base_channels", options.base_channels);
  options.depth = config.get<int64_t>("depth", options.depth);
  options.bilinear = config.get<bool>("bilinear", options.bilinear);
  options.batch_norm = config.get<bool>("batch_norm", options.batch_norm);
  options.backbone = config.get<std::string>("backbone", options.backbone);
  if (options.backbone != "unet") {
    SE_CHECK(options.backbone.starts_with("resnet"), "model ", config.path(), ": unknown backbone '", options.backbone,
             "' (expected unet, resnet18, resnet34, resnet50, resnet101 or resnet152)");
    resnet_depth_from_name(options.backbone);  // validates the depth
    for (const char* key : {"depth", "base_channels"}) {
      SE_CHECK(!config.has(key), "model ", config.path(), ": '", key, "' is a key of the classic U-Net encoder; it ",
               "does not apply to backbone '", options.backbone, "'");
    }
  }
  SE_CHECK(options.num_classes > 0, "model ", config.path(), ": num_classes = ", options.num_classes,
           " (expected > 0)");
  return options;
}

UNet::UNet(const UNetOptions& options, std::string type_name)
    : SegmentationModel(std::move(type_name), options.num_classes), options_(options) {
  std::vector<int64_t> widths;
  if (options.backbone == "unet") {
    UNetEncoderOptions encoder_options;
    encoder_options.in_channels = options.in_channels;
    encoder_options.base_channels = options.base_channels;
    encoder_options.depth = options.depth;
    encoder_options.batch_norm = options.batch_norm;
    encoder_options.halve_bottleneck = options.bilinear;
    encoder = register_module("encoder", std::make_shared<UNetEncoder>(encoder_options));
    encoder_channels_ = encoder->channels();
    widths = UNetDecoder::classic_widths(encoder_channels_, options.bilinear);
  } else {
    ResNetOptions resnet_options;
    resnet_options.depth = resnet_depth_from_name(options.backbone);
    resnet_options.in_channels = options.in_channels;
    resnet = register_module("encoder", std::make_shared<ResNet>(resnet_options));
    encoder_channels_ = {resnet->stem_channels()};
    for (int64_t c : resnet->stage_channels()) encoder_channels_.push_back(c);
    // ResNet-18's widths (64, 64, 128, 256) at levels 0..3 for every depth: the bottleneck ResNets'
    // 4x wider skips would make a decoder bigger than the encoder.
    widths = {resnet->stem_channels(), 64, 128, 256};
  }
  UNetDecoderOptions decoder_options;
  decoder_options.skip_channels = encoder_channels_;
  decoder_options.decoder_channels = widths;
  decoder_options.num_classes = options.num_classes;
  decoder_options.bilinear = options.bilinear;
  decoder_options.batch_norm = options.batch_norm;
  decoder = register_module("decoder", std::make_shared<UNetDecoder>(decoder_options));
}

std::vector<Tensor> UNet::encode(const Tensor& images) {  // (N, C_in, H, W)
  if (encoder) return encoder->forward(images);
  ResNetFeatures f = resnet->forward(images);
  std::vector<Tensor> levels{f.stem};
  levels.insert(levels.end(), f.stages.begin(), f.stages.end());
  return levels;
}

Tensor UNet::decode(const std::vector<Tensor>& features, std::array<int64_t, 2> size) {
  Tensor logits = decoder->forward(features);
  if (logits.size(2) == size[0] && logits.size(3) == size[1]) return logits;
  InterpolateParams params;  // a ResNet's finest level has stride 2
  params.size = size;
  params.mode = InterpolateMode::bilinear;
  return interpolate(logits, params);
}

SegmentationOutput UNet::forward(const Tensor& images) {  // (N, C_in, H, W)
  return {decode(encode(images), {images.size(2), images.size(3)}), {}, {}};
}

std::string unet_key_from_reference(const std::string& reference_key) {
  for (const char* prefix : {"inc.", "down"}) {
    if (reference_key.starts_with(prefix)) return "encoder." + reference_key;
  }
  for (const char* prefix : {"up", "outc."}) {
    if (reference_key.starts_with(prefix)) return "decoder." + reference_key;
  }
  SE_THROW("unet_key_from_reference: '", reference_key,
           "' is not a key of milesial/Pytorch-UNet's UNet (expected inc.*, down<i>.*, up<i>.* or outc.*)");
}

SE_REGISTER_MODEL(unet,
                  "U-Net (Ronneberger et al.; milesial/Pytorch-UNet layout): num_classes, in_channels, "
                  "base_channels, depth, bilinear, batch_norm, backbone (unet or resnet18..152)",
                  [](const Config& config) { return std::make_shared<UNet>(read_unet_options(config)); });

}  // namespace se::models
