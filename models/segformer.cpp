#include "models/segformer.h"

#include "core/error.h"
#include "models/registry.h"

namespace se::models {

int64_t segformer_decoder_hidden_size(const std::string& variant) {
  mit_config(variant);  // rejects unknown variants
  const std::string v = variant.starts_with("mit_") ? variant.substr(4) : variant;
  return v == "b0" || v == "b1" ? 256 : 768;
}

Segformer::Segformer(const SegformerOptions& options)
    : SegmentationModel("SegformerForSemanticSegmentation", options.num_classes) {
  MitConfig config = mit_config(options.variant);  // validates the variant
  config.num_channels = options.in_channels;
  config.drop_path_rate = options.drop_path_rate;
  segformer = register_module("segformer", std::make_shared<MitBackbone>(config));
  decode_head = register_module("decode_head", std::make_shared<SegformerDecodeHead>(
                                                   config.hidden_sizes, segformer_decoder_hidden_size(options.variant),
                                                   options.num_classes, options.classifier_dropout));
}

SegmentationOutput Segformer::forward(const Tensor& images) {
  SegmentationOutput out;
  out.features = segformer->forward(images);
  const Tensor logits = decode_head->forward(out.features);  // (N, classes, H / 4, W / 4)
  out.logits = interpolate(logits, segformer_bilinear(images.size(2), images.size(3)));
  return out;
}

Tensor Segformer::forward_quarter_resolution(const Tensor& images) {
  return decode_head->forward(segformer->forward(images));
}

SE_REGISTER_MODEL(segformer, "SegFormer B0..B5: Mix Transformer encoder, all-MLP decoder (Xie et al.)",
                  [](const Config& cfg) {
                    SegformerOptions options;
                    options.variant = cfg.get<std::string>("variant", options.variant);
                    options.num_classes = cfg.get<int64_t>("num_classes");
                    options.in_channels = cfg.get<int64_t>("in_channels", options.in_channels);
                    options.drop_path_rate = cfg.get<double>("drop_path_rate", options.drop_path_rate);
                    options.classifier_dropout = cfg.get<double>("classifier_dropout", options.classifier_dropout);
                    return std::make_shared<Segformer>(options);
                  });

}  // namespace se::models
