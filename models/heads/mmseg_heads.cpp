#include "models/heads/mmseg_heads.h"

#include "core/error.h"
#include "engine/autograd.h"
#include "models/cnn_common.h"
#include "nn/init.h"

namespace se::models::mmseg {

// ---- building blocks

ConvModule::ConvModule(int64_t in_channels, int64_t out_channels, ConvModuleOptions options)
    : UnaryModule("ConvModule") {
  conv = register_module("conv", std::make_shared<nn::Conv2d>(in_channels, out_channels, options.kernel_size,
                                                              nn::Conv2dOptions{.padding = options.padding,
                                                                                .dilation = options.dilation,
                                                                                .groups = options.groups,
                                                                                .bias = false}));
  bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(out_channels));
}

Tensor ConvModule::forward_impl(const Tensor& x) {
  return bn->forward_relu(conv->forward(x));
}

DepthwiseSeparableConvModule::DepthwiseSeparableConvModule(int64_t in_channels, int64_t out_channels, int64_t dilation)
    : UnaryModule("DepthwiseSeparableConvModule") {
  depthwise_conv = register_module(
      "depthwise_conv",
      std::make_shared<ConvModule>(
          in_channels, in_channels,
          ConvModuleOptions{.kernel_size = 3, .padding = dilation, .dilation = dilation, .groups = in_channels}));
  pointwise_conv = register_module("pointwise_conv", std::make_shared<ConvModule>(in_channels, out_channels));
}

Tensor DepthwiseSeparableConvModule::forward_impl(const Tensor& x) {
  return pointwise_conv->forward(depthwise_conv->forward(x));
}

Dropout2d::Dropout2d(double p) : UnaryModule("Dropout2d"), p_(p) {
  SE_CHECK(p >= 0.0 && p < 1.0, "Dropout2d: p must be in [0, 1), got ", p);
}

Tensor Dropout2d::forward_impl(const Tensor& x) {
  if (!is_training() || p_ == 0.0) return x;
  SE_CHECK(x.dim() == 4, "Dropout2d: expected (N, C, H, W), got ", shape_str(x.shape()));
  // One keep/drop draw per (sample, channel), broadcast over the plane.
  const Tensor keep = ge(rand({x.size(0), x.size(1), 1, 1}, {.device = x.device()}), p_).to(x.dtype());
  return mul(x, mul(keep, 1.0 / (1.0 - p_)));
}

// ---- heads

DecodeHead::DecodeHead(std::string type_name, int64_t channels, int64_t num_classes, double dropout_ratio)
    : Module(std::move(type_name)) {
  SE_CHECK(channels > 0 && num_classes > 0, this->type_name(), ": channels and num_classes must be positive, got ",
           channels, " and ", num_classes);
  dropout_ = register_module("dropout", std::make_shared<Dropout2d>(dropout_ratio));
  conv_seg = register_module("conv_seg", std::make_shared<nn::Conv2d>(channels, num_classes, 1));
}

Tensor DecodeHead::cls_seg(const Tensor& x) {
  return conv_seg->forward(dropout_->forward(x));
}

void DecodeHead::init_weights() {
  NoGradGuard no_grad;
  for (auto& [name, module] : named_modules()) {
    auto* conv = dynamic_cast<nn::Conv2d*>(module);
    if (!conv) continue;
    if (conv == conv_seg.get()) {
      nn::init::normal_(conv->weight, 0.0, 0.01);
      nn::init::zeros_(conv->bias);
    } else {
      nn::init::kaiming_normal_(conv->weight, 0.0, nn::init::FanMode::fan_out, "relu");
    }
  }
}

FcnHead::FcnHead(int64_t in_channels, int64_t channels, int64_t num_classes)
    : DecodeHead("FCNHead", channels, num_classes) {
  convs = register_module("convs", std::make_shared<nn::Sequential>());
  convs->push_back(
      std::make_shared<ConvModule>(in_channels, channels, ConvModuleOptions{.kernel_size = 3, .padding = 1}));
  init_weights();
}

Tensor FcnHead::forward(const Tensor& x) {
  return cls_seg(convs->forward(x));
}

PspHead::PspHead(int64_t in_channels, int64_t channels, int64_t num_classes, const std::vector<int64_t>& pool_scales)
    : DecodeHead("PSPHead", channels, num_classes) {
  SE_CHECK(!pool_scales.empty(), "PSPHead: pool_scales must not be empty");
  psp_modules = register_module("psp_modules", std::make_shared<nn::ModuleList>());
  for (int64_t scale : pool_scales) {
    SE_CHECK(scale > 0, "PSPHead: pool scales must be positive, got ", scale);
    auto branch = std::make_shared<nn::Sequential>();
    branch->push_back(std::make_shared<nn::AdaptiveAvgPool2d>(scale));
    branch->push_back(std::make_shared<ConvModule>(in_channels, channels));
    psp_modules->push_back(branch);
  }
  bottleneck = register_module(
      "bottleneck", std::make_shared<ConvModule>(in_channels + int64_t(pool_scales.size()) * channels, channels,
                                                 ConvModuleOptions{.kernel_size = 3, .padding = 1}));
  init_weights();
}

Tensor PspHead::forward(const Tensor& x) {
  std::vector<Tensor> outs = {x};
  for (size_t i = 0; i < psp_modules->size(); ++i) {
    outs.push_back(cnn::resize_bilinear(psp_modules->at<nn::Sequential>(i)->forward(x), x.size(2), x.size(3)));
  }
  return cls_seg(bottleneck->forward(cat(outs, 1)));
}

SepAsppHead::SepAsppHead(int64_t in_channels, int64_t channels, int64_t c1_in_channels, int64_t c1_channels,
                         int64_t num_classes, const std::vector<int64_t>& dilations)
    : DecodeHead("DepthwiseSeparableASPPHead", channels, num_classes) {
  SE_CHECK(!dilations.empty() && c1_in_channels > 0 && c1_channels > 0,
           "DepthwiseSeparableASPPHead: need dilations "
           "and positive c1 channels, got ",
           dilations.size(), " dilations, c1_in_channels ", c1_in_channels, ", c1_channels ", c1_channels);
  image_pool = register_module("image_pool", std::make_shared<nn::Sequential>());
  image_pool->push_back(std::make_shared<nn::AdaptiveAvgPool2d>(1));
  image_pool->push_back(std::make_shared<ConvModule>(in_channels, channels));
  aspp_modules = register_module("aspp_modules", std::make_shared<nn::ModuleList>());
  for (int64_t d : dilations) {
    SE_CHECK(d > 0, "DepthwiseSeparableASPPHead: dilations must be positive, got ", d);
    if (d == 1) {
      aspp_modules->push_back(std::make_shared<ConvModule>(in_channels, channels));
    } else {
      aspp_modules->push_back(std::make_shared<DepthwiseSeparableConvModule>(in_channels, channels, d));
    }
  }
  bottleneck =
      register_module("bottleneck", std::make_shared<ConvModule>((int64_t(dilations.size()) + 1) * channels, channels,
                                                                 ConvModuleOptions{.kernel_size = 3, .padding = 1}));
  c1_bottleneck = register_module("c1_bottleneck", std::make_shared<ConvModule>(c1_in_channels, c1_channels));
  sep_bottleneck = register_module("sep_bottleneck", std::make_shared<nn::Sequential>());
  sep_bottleneck->push_back(std::make_shared<DepthwiseSeparableConvModule>(channels + c1_channels, channels));
  sep_bottleneck->push_back(std::make_shared<DepthwiseSeparableConvModule>(channels, channels));
  init_weights();
}

Tensor SepAsppHead::forward(const Tensor& low_level, const Tensor& x) {
  std::vector<Tensor> outs = {cnn::resize_bilinear(image_pool->forward(x), x.size(2), x.size(3))};
  for (size_t i = 0; i < aspp_modules->size(); ++i) outs.push_back(aspp_modules->at<nn::UnaryModule>(i)->forward(x));
  Tensor out = bottleneck->forward(cat(outs, 1));
  const Tensor c1 = c1_bottleneck->forward(low_level);
  out = cat({cnn::resize_bilinear(out, c1.size(2), c1.size(3)), c1}, 1);
  return cls_seg(sep_bottleneck->forward(out));
}

}  // namespace se::models::mmseg
