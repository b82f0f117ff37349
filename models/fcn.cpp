#include "models/fcn.h"

#include <cmath>

#include "core/error.h"
#include "engine/autograd.h"
#include "models/cnn_common.h"
#include "models/heads/torchvision_heads.h"
#include "models/registry.h"
#include "nn/init.h"

namespace se::models {

// ---- FCN on ResNet (torchvision)

FcnResNet::FcnResNet(FcnResNetOptions options) : SegmentationModel("FCN", options.num_classes) {
  backbone = register_module("backbone", std::make_shared<ResNet>(options.backbone));
  const auto& channels = backbone->stage_channels();
  classifier = register_module("classifier", torchvision::make_fcn_head(channels[3], options.num_classes));
  if (options.aux_head) {
    aux_classifier = register_module("aux_classifier", torchvision::make_fcn_head(channels[2], options.num_classes));
  }
}

SegmentationOutput FcnResNet::forward(const Tensor& images, bool with_aux) {
  const ResNetFeatures f = backbone->forward(images);
  const int64_t h = images.size(2), w = images.size(3);
  SegmentationOutput out;
  out.logits = cnn::resize_bilinear(classifier->forward(f.stages[3]), h, w);
  if (with_aux && aux_classifier) out.aux_logits = cnn::resize_bilinear(aux_classifier->forward(f.stages[2]), h, w);
  out.features = f.stages;
  return out;
}

// ---- FCN-32s/16s/8s on VGG (Long et al.)

void fill_bilinear_upsampling_(Tensor& weight) {
  SE_CHECK(weight.dim() == 4 && weight.size(0) == weight.size(1) && weight.size(2) == weight.size(3),
           "fill_bilinear_upsampling_: expected a (C, C, k, k) weight, got ", shape_str(weight.shape()));
  const int64_t channels = weight.size(0), k = weight.size(2);
  const int64_t factor = (k + 1) / 2;
  const double center = k % 2 == 1 ? double(factor - 1) : double(factor) - 0.5;
  std::vector<float> values(static_cast<size_t>(channels * channels * k * k), 0.0f);
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        const double v = (1.0 - std::abs(double(i) - center) / double(factor)) *
                         (1.0 - std::abs(double(j) - center) / double(factor));
        values[static_cast<size_t>(((c * channels + c) * k + i) * k + j)] = static_cast<float>(v);
      }
    }
  }
  NoGradGuard no_grad;
  weight.copy_(from_vector<float>(values, weight.shape()));
}

namespace {

std::shared_ptr<nn::ConvTranspose2d> make_upscore(int64_t classes, int64_t kernel, int64_t stride) {
  auto up = std::make_shared<nn::ConvTranspose2d>(classes, classes, kernel,
                                                  nn::ConvTranspose2dOptions{.stride = stride, .bias = false});
  fill_bilinear_upsampling_(up->weight);
  return up;
}

std::shared_ptr<nn::Conv2d> make_score(int64_t in, int64_t classes) {
  auto score = std::make_shared<nn::Conv2d>(in, classes, 1);
  NoGradGuard no_grad;
  nn::init::zeros_(score->weight);
  nn::init::zeros_(score->bias);
  return score;
}

// The reference's fixed crops: `offset` rows and columns off the top left, then the target's size.
Tensor crop(const Tensor& x,  // (N, C, H, W)
            int64_t offset, int64_t height, int64_t width) {
  SE_CHECK(x.size(2) >= offset + height && x.size(3) >= offset + width, "FCN: cannot crop ", height, "x", width,
           " at offset ", offset, " from ", shape_str(x.shape()));
  return x.narrow(2, offset, height).narrow(3, offset, width);
}

}  // namespace

FcnVgg::FcnVgg(FcnVggOptions options) : SegmentationModel("FCN", options.num_classes), variant_(options.variant) {
  const int64_t k = options.num_classes;
  SE_CHECK(k > 0 && options.fc_channels > 0, "FCN: num_classes and fc_channels must be positive, got ", k, " and ",
           options.fc_channels);
  options.backbone.first_padding = 100;
  options.backbone.ceil_mode = true;
  backbone = register_module("backbone", std::make_shared<Vgg>(options.backbone));
  const auto& channels = backbone->stage_channels();
  fc6 = register_module("fc6", std::make_shared<nn::Conv2d>(channels[4], options.fc_channels, 7));
  drop6_ = register_module("drop6", std::make_shared<nn::Dropout>(0.5));
  fc7 = register_module("fc7", std::make_shared<nn::Conv2d>(options.fc_channels, options.fc_channels, 1));
  drop7_ = register_module("drop7", std::make_shared<nn::Dropout>(0.5));
  score_fr = register_module("score_fr", make_score(options.fc_channels, k));
  switch (variant_) {
    case FcnVariant::fcn32s: upscore = register_module("upscore", make_upscore(k, 64, 32)); break;
    case FcnVariant::fcn16s:
      score_pool4 = register_module("score_pool4", make_score(channels[3], k));
      upscore2 = register_module("upscore2", make_upscore(k, 4, 2));
      upscore16 = register_module("upscore16", make_upscore(k, 32, 16));
      break;
    case FcnVariant::fcn8s:
      score_pool3 = register_module("score_pool3", make_score(channels[2], k));
      score_pool4 = register_module("score_pool4", make_score(channels[3], k));
      upscore2 = register_module("upscore2", make_upscore(k, 4, 2));
      upscore8 = register_module("upscore8", make_upscore(k, 16, 8));
      upscore_pool4 = register_module("upscore_pool4", make_upscore(k, 4, 2));
      break;
  }
}

SegmentationOutput FcnVgg::forward(const Tensor& images) {
  const std::vector<Tensor> pools = backbone->forward(images);
  const int64_t h = images.size(2), w = images.size(3);
  Tensor x = drop6_->forward(relu(fc6->forward(pools[4])));
  x = drop7_->forward(relu(fc7->forward(x)));
  x = score_fr->forward(x);
  SegmentationOutput out;
  out.features = {pools[2], pools[3], pools[4]};
  if (variant_ == FcnVariant::fcn32s) {
    out.logits = crop(upscore->forward(x), 19, h, w);
    return out;
  }
  x = upscore2->forward(x);
  x = add(x, crop(score_pool4->forward(pools[3]), 5, x.size(2), x.size(3)));
  if (variant_ == FcnVariant::fcn16s) {
    out.logits = crop(upscore16->forward(x), 27, h, w);
    return out;
  }
  x = upscore_pool4->forward(x);
  x = add(x, crop(score_pool3->forward(pools[2]), 9, x.size(2), x.size(3)));
  out.logits = crop(upscore8->forward(x), 31, h, w).contiguous();
  return out;
}

// ---- registry

namespace {

// fcn, fcn_resnet50, fcn_resnet101: keys num_classes, backbone, output_stride (8), deep_stem, aux_head (false).
// The torchvision names fix the backbone: another one is an error pointing to "fcn".
ModelFactory fcn_resnet_factory(const std::string& default_backbone, bool fixed_backbone) {
  return [=](const Config& cfg) -> std::shared_ptr<SegmentationModel> {
    FcnResNetOptions options;
    options.num_classes = cfg.get<int64_t>("num_classes");
    options.backbone = cnn::read_resnet_options(cfg, default_backbone);
    SE_CHECK(!fixed_backbone || options.backbone.depth == resnet_depth_from_name(default_backbone), "model fcn_",
             default_backbone, ": backbone must be ", default_backbone, ", got resnet", options.backbone.depth,
             " (use the name \"fcn\" for other backbones)");
    options.aux_head = cfg.get<bool>("aux_head", false);
    return std::make_shared<FcnResNet>(options);
  };
}

// fcn8s, fcn16s, fcn32s: keys num_classes, backbone (vgg16 | vgg16_bn | vgg19 | vgg19_bn; default vgg16).
ModelFactory fcn_vgg_factory(FcnVariant variant) {
  return [variant](const Config& cfg) -> std::shared_ptr<SegmentationModel> {
    FcnVggOptions options;
    options.variant = variant;
    options.num_classes = cfg.get<int64_t>("num_classes");
    options.backbone = vgg_options_from_name(cfg.get<std::string>("backbone", "vgg16"));
    return std::make_shared<FcnVgg>(options);
  };
}

}  // namespace

SE_REGISTER_MODEL(fcn, "FCN head on a dilated ResNet (torchvision fcn_resnet*; backbone resnet18..152)",
                  fcn_resnet_factory("resnet50", false));
SE_REGISTER_MODEL(fcn_resnet50, "torchvision fcn_resnet50: FCNHead on dilated ResNet-50, output stride 8",
                  fcn_resnet_factory("resnet50", true));
SE_REGISTER_MODEL(fcn_resnet101, "torchvision fcn_resnet101: FCNHead on dilated ResNet-101, output stride 8",
                  fcn_resnet_factory("resnet101", true));
SE_REGISTER_MODEL(fcn32s, "FCN-32s on VGG-16 (Long et al. 2015)", fcn_vgg_factory(FcnVariant::fcn32s));
SE_REGISTER_MODEL(fcn16s, "FCN-16s on VGG-16 (Long et al. 2015)", fcn_vgg_factory(FcnVariant::fcn16s));
SE_REGISTER_MODEL(fcn8s, "FCN-8s on VGG-16 (Long et al. 2015)", fcn_vgg_factory(FcnVariant::fcn8s));

}  // namespace se::models
