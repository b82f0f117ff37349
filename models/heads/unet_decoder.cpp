#include "models/heads/unet_decoder.h"

#include <string>

#include "core/error.h"

namespace se::models {

UpBlock::UpBlock(int64_t low_channels, int64_t skip_channels, int64_t out_channels, bool bilinear, bool batch_norm)
    : nn::Module("UpBlock") {
  if (bilinear) {
    InterpolateParams params;
    params.scale_factor = std::array<double, 2>{2.0, 2.0};
    params.mode = InterpolateMode::bilinear;
    params.align_corners = true;
    up = register_module("up", std::make_shared<nn::Upsample>(params));
    const int64_t in_channels = skip_channels + low_channels;
    conv =
        register_module("conv", std::make_shared<DoubleConv>(in_channels, out_channels, in_channels / 2, batch_norm));
  } else {
    SE_CHECK(low_channels % 2 == 0, "UpBlock: the transposed conv halves the width, but the coarser input has ",
             low_channels, " channels");
    up = register_module("up", std::make_shared<nn::ConvTranspose2d>(low_channels, low_channels / 2, 2,
                                                                     nn::ConvTranspose2dOptions{.stride = 2}));
    conv = register_module("conv",
                           std::make_shared<DoubleConv>(skip_channels + low_channels / 2, out_channels, 0, batch_norm));
  }
}

Tensor UpBlock::forward(const Tensor& low, const Tensor& skip) {
  Tensor x = up->forward(low);
  // Pooling floored odd sizes; pad (as the reference: the extra row/column at the bottom/right half)
  // so the upsampled map lines up with its skip.
  const int64_t dy = skip.size(2) - x.size(2), dx = skip.size(3) - x.size(3);
  if (dy != 0 || dx != 0) x = pad(x, {dx / 2, dx - dx / 2, dy / 2, dy - dy / 2});
  return conv->forward(cat({skip, x}, 1));
}

OutConv::OutConv(int64_t in_channels, int64_t num_classes) : nn::UnaryModule("OutConv") {
  conv = register_module("conv", std::make_shared<nn::Conv2d>(in_channels, num_classes, 1));
}

std::vector<int64_t> UNetDecoder::classic_widths(const std::vector<int64_t>& skip_channels, bool bilinear) {
  std::vector<int64_t> widths(skip_channels.begin(), skip_channels.end() - 1);
  if (bilinear) {
    for (size_t i = 1; i < widths.size(); ++i) widths[i] /= 2;
  }
  return widths;
}

UNetDecoder::UNetDecoder(const UNetDecoderOptions& options) : nn::Module("UNetDecoder"), options_(options) {
  const auto& skips = options.skip_channels;
  const auto& widths = options.decoder_channels;
  SE_CHECK(skips.size() >= 2 && widths.size() + 1 == skips.size(), "UNetDecoder: expected depth + 1 skip widths and ",
           "depth decoder widths, got ", skips.size(), " and ", widths.size());
  SE_CHECK(options.num_classes > 0, "UNetDecoder: num_classes = ", options.num_classes, " (expected > 0)");
  const int64_t depth = static_cast<int64_t>(widths.size());
  int64_t low = skips.back();
  for (int64_t k = 1; k <= depth; ++k) {
    const int64_t level = depth - k;
    ups.push_back(register_module(
        "up" + std::to_string(k),
        std::make_shared<UpBlock>(low, skips[level], widths[level], options.bilinear, options.batch_norm)));
    low = widths[level];
  }
  outc = register_module("outc", std::make_shared<OutConv>(widths.front(), options.num_classes));
}

Tensor UNetDecoder::forward(const std::vector<Tensor>& features) {
  SE_CHECK(features.size() == options_.skip_channels.size(), "UNetDecoder: expected ", options_.skip_channels.size(),
           " feature maps, got ", features.size());
  for (size_t i = 0; i < features.size(); ++i) {
    SE_CHECK(features[i].dim() == 4 && features[i].size(1) == options_.skip_channels[i], "UNetDecoder: feature ", i,
             " is ", shape_str(features[i].shape()), ", expected (N, ", options_.skip_channels[i], ", H, W)");
  }
  Tensor x = features.back();
  for (size_t k = 0; k < ups.size(); ++k) x = ups[k]->forward(x, features[features.size() - 2 - k]);
  return outc->forward(x);
}

}  // namespace se::models
