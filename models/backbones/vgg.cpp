#include "models/backbones/vgg.h"

#include "core/error.h"
#include "engine/autograd.h"
#include "nn/init.h"

namespace se::models {

VggOptions vgg_options_from_name(const std::string& name) {
  for (int depth : {16, 19}) {
    const std::string base = "vgg" + std::to_string(depth);
    if (name == base) return {.depth = depth};
    if (name == base + "_bn") return {.depth = depth, .batch_norm = true};
  }
  SE_THROW("VGG: unknown backbone '", name, "'; expected one of vgg16, vgg16_bn, vgg19, vgg19_bn");
}

Vgg::Vgg(VggOptions options) : Module("VGG"), options_(options) {
  SE_CHECK(options.depth == 16 || options.depth == 19, "VGG: depth must be 16 or 19, got ", options.depth);
  SE_CHECK(options.width > 0 && options.first_padding >= 0 && options.in_channels > 0,
           "VGG: width and in_channels must be positive and first_padding non-negative, got width ", options.width,
           ", in_channels ", options.in_channels, ", first_padding ", options.first_padding);
  // torchvision's cfgs "D" (16) and "E" (19): convs per block, then a 2x2 max pool.
  const std::array<int, 5> convs =
      options.depth == 16 ? std::array<int, 5>{2, 2, 3, 3, 3} : std::array<int, 5>{2, 2, 4, 4, 4};
  const std::array<int64_t, 5> multipliers = {1, 2, 4, 8, 8};
  features = register_module("features", std::make_shared<nn::Sequential>());
  int64_t in = options.in_channels;
  bool first = true;
  for (int block = 0; block < 5; ++block) {
    const int64_t out = options.width * multipliers[block];
    for (int c = 0; c < convs[block]; ++c) {
      const int64_t padding = first ? options.first_padding : 1;
      first = false;
      features->push_back(std::make_shared<nn::Conv2d>(in, out, 3, nn::Conv2dOptions{.padding = padding}));
      if (options.batch_norm) features->push_back(std::make_shared<nn::BatchNorm2d>(out));
      features->push_back(std::make_shared<nn::ReLU>());
      in = out;
    }
    features->push_back(std::make_shared<nn::MaxPool2d>(2, 2, 0, 1, options.ceil_mode));
    stage_channels_[block] = out;
  }
  // torchvision's VGG init: kaiming_normal(fan_out, relu) weights and zero biases for convs.
  NoGradGuard no_grad;
  for (auto& [name, module] : named_modules()) {
    if (auto* conv = dynamic_cast<nn::Conv2d*>(module)) {
      nn::init::kaiming_normal_(conv->weight, 0.0, nn::init::FanMode::fan_out, "relu");
      nn::init::zeros_(conv->bias);
    }
  }
}

std::vector<Tensor> Vgg::forward(const Tensor& images) {
  SE_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels, "VGG: expected images (N, ",
           options_.in_channels, ", H, W), got ", shape_str(images.shape()));
  std::vector<Tensor> pools;
  Tensor x = images;
  for (size_t i = 0; i < features->size(); ++i) {
    const auto& layer = (*features)[i];
    x = layer->forward(x);
    if (dynamic_cast<nn::MaxPool2d*>(layer.get())) pools.push_back(x);
  }
  return pools;
}

}  // namespace se::models
