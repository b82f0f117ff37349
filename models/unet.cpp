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
  SE_CHECK(options.num_classes > 0, "model ", config.path(), ": num_classes = ", options.num_classes,
           " (expected > 0)");
  return options;
}

UNet::UNet(const UNetOptions& options, std::string type_name)
    : SegmentationModel(std::move(type_name), options.num_classes), options_(options) {
  encoder = register_module("encoder",
                            std::make_shared<UNetEncoder>(UNetEncoderOptions{.in_channels = options.in_channels,
                                                                             .base_channels = options.base_channels,
                                                                             .depth = options.depth,
                                                                             .batch_norm = options.batch_norm,
                                                                             .halve_bottleneck = options.bilinear}));
  decoder = register_module("decoder",
                            std::make_shared<UNetDecoder>(UNetDecoderOptions{
                                .skip_channels = encoder->channels(),
                                .decoder_channels = UNetDecoder::classic_widths(encoder->channels(), options.bilinear),
                                .num_classes = options.num_classes,
                                .bilinear = options.bilinear,
                                .batch_norm = options.batch_norm}));
}

std::vector<Tensor> UNet::encode(const Tensor& images) {
  return encoder->forward(images);
}

Tensor UNet::decode(const std::vector<Tensor>& features) {
  return decoder->forward(features);
}

SegmentationOutput UNet::forward(const Tensor& images) {  // (N, C_in, H, W)
  return {decode(encode(images)), {}, {}};
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
                  "base_channels, depth, bilinear, batch_norm",
                  [](const Config& config) { return std::make_shared<UNet>(read_unet_options(config)); });

}  // namespace se::models
