#include "models/backbones/unet_encoder.h"

#include <string>

#include "core/error.h"

namespace se::models {

DoubleConv::DoubleConv(int64_t in_channels, int64_t out_channels, int64_t mid_channels, bool batch_norm)
    : nn::UnaryModule("DoubleConv") {
  if (mid_channels == 0) mid_channels = out_channels;
  SE_CHECK(in_channels > 0 && mid_channels > 0 && out_channels > 0, "DoubleConv: channels must be positive (in ",
           in_channels, ", mid ", mid_channels, ", out ", out_channels, ")");
  // With BN after it, a conv bias would be cancelled by the mean subtraction: the reference has none.
  const nn::Conv2dOptions conv{.padding = 1, .bias = !batch_norm};
  double_conv = register_module("double_conv", std::make_shared<nn::Sequential>());
  double_conv->push_back(std::make_shared<nn::Conv2d>(in_channels, mid_channels, 3, conv));
  if (batch_norm) double_conv->push_back(std::make_shared<nn::BatchNorm2d>(mid_channels));
  double_conv->push_back(std::make_shared<nn::ReLU>());
  double_conv->push_back(std::make_shared<nn::Conv2d>(mid_channels, out_channels, 3, conv));
  if (batch_norm) double_conv->push_back(std::make_shared<nn::BatchNorm2d>(out_channels));
  double_conv->push_back(std::make_shared<nn::ReLU>());
}

Tensor DoubleConv::forward_impl(const Tensor& x) {
  return double_conv->forward(x);
}

DownBlock::DownBlock(int64_t in_channels, int64_t out_channels, bool batch_norm) : nn::UnaryModule("DownBlock") {
  maxpool_conv = register_module("maxpool_conv", std::make_shared<nn::Sequential>());
  maxpool_conv->push_back(std::make_shared<nn::MaxPool2d>(2));
  maxpool_conv->push_back(std::make_shared<DoubleConv>(in_channels, out_channels, 0, batch_norm));
}

Tensor DownBlock::forward_impl(const Tensor& x) {
  return maxpool_conv->forward(x);
}

UNetEncoder::UNetEncoder(const UNetEncoderOptions& options) : nn::Module("UNetEncoder"), options_(options) {
  SE_CHECK(options.in_channels > 0, "UNetEncoder: in_channels = ", options.in_channels, " (expected > 0)");
  SE_CHECK(options.base_channels > 0, "UNetEncoder: base_channels = ", options.base_channels, " (expected > 0)");
  SE_CHECK(options.depth >= 1 && options.depth <= 8, "UNetEncoder: depth = ", options.depth,
           " (expected 1..8 pooling stages)");
  for (int64_t i = 0; i <= options.depth; ++i) channels_.push_back(options.base_channels << i);
  if (options.halve_bottleneck) channels_.back() /= 2;
  inc = register_module("inc", std::make_shared<DoubleConv>(options.in_channels, channels_[0], 0, options.batch_norm));
  for (int64_t i = 1; i <= options.depth; ++i) {
    downs.push_back(register_module("down" + std::to_string(i),
                                    std::make_shared<DownBlock>(channels_[i - 1], channels_[i], options.batch_norm)));
  }
}

std::vector<Tensor> UNetEncoder::forward(const Tensor& images) {  // (N, C_in, H, W)
  SE_CHECK(images.defined() && images.dim() == 4 && images.size(1) == options_.in_channels,
           "UNetEncoder: expected images (N, ", options_.in_channels, ", H, W), got ",
           images.defined() ? shape_str(images.shape()) : std::string("undefined"));
  const int64_t min_size = int64_t{1} << options_.depth;
  SE_CHECK(images.size(2) >= min_size && images.size(3) >= min_size, "UNetEncoder: input ", shape_str(images.shape()),
           " is smaller than ", min_size, "x", min_size, ", the least that ", options_.depth, " pooling stages need");
  std::vector<Tensor> features{inc->forward(images)};
  for (auto& down : downs) features.push_back(down->forward(features.back()));
  return features;
}

std::string UNetEncoder::extra_repr() const {
  return "in_channels=" + std::to_string(options_.in_channels) +
         ", base_channels=" + std::to_string(options_.base_channels) + ", depth=" + std::to_string(options_.depth) +
         (options_.batch_norm ? "" : ", batch_norm=False") +
         (options_.halve_bottleneck ? ", halve_bottleneck=True" : "");
}

}  // namespace se::models
