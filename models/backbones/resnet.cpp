#include "models/backbones/resnet.h"

#include "core/error.h"
#include "engine/autograd.h"
#include "nn/init.h"

namespace se::models {
namespace {

struct Arch {
  bool bottleneck;
  std::array<int, 4> blocks;
};

Arch arch_of(int depth) {
  switch (depth) {
    case 18: return {false, {2, 2, 2, 2}};
    case 34: return {false, {3, 4, 6, 3}};
    case 50: return {true, {3, 4, 6, 3}};
    case 101: return {true, {3, 4, 23, 3}};
    case 152: return {true, {3, 8, 36, 3}};
    default: SE_THROW("ResNet: depth ", depth, " is not one of 18, 34, 50, 101, 152");
  }
}

std::shared_ptr<nn::Conv2d> conv3x3(int64_t in, int64_t out, int64_t stride = 1, int64_t dilation = 1) {
  return std::make_shared<nn::Conv2d>(
      in, out, 3, nn::Conv2dOptions{.stride = stride, .padding = dilation, .dilation = dilation, .bias = false});
}

std::shared_ptr<nn::Conv2d> conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return std::make_shared<nn::Conv2d>(in, out, 1, nn::Conv2dOptions{.stride = stride, .bias = false});
}

}  // namespace

int resnet_depth_from_name(const std::string& name) {
  for (int depth : {18, 34, 50, 101, 152}) {
    if (name == "resnet" + std::to_string(depth)) return depth;
  }
  SE_THROW("ResNet: unknown backbone '", name, "'; expected one of resnet18, resnet34, resnet50, resnet101, resnet152");
}

// ---- blocks

BasicBlock::BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, int64_t dilation,
                       std::shared_ptr<nn::Sequential> downsample_)
    : UnaryModule("BasicBlock") {
  conv1 = register_module("conv1", conv3x3(inplanes, planes, stride, dilation));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  if (downsample_) downsample = register_module("downsample", std::move(downsample_));
}

Tensor BasicBlock::forward_impl(const Tensor& x) {
  Tensor out = bn1->forward_relu(conv1->forward(x));
  out = bn2->forward(conv2->forward(out));
  return relu(add(out, downsample ? downsample->forward(x) : x));
}

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, int64_t dilation,
                       std::shared_ptr<nn::Sequential> downsample_)
    : UnaryModule("Bottleneck") {
  conv1 = register_module("conv1", conv1x1(inplanes, planes));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, stride, dilation));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  conv3 = register_module("conv3", conv1x1(planes, planes * expansion));
  bn3 = register_module("bn3", std::make_shared<nn::BatchNorm2d>(planes * expansion));
  if (downsample_) downsample = register_module("downsample", std::move(downsample_));
}

Tensor Bottleneck::forward_impl(const Tensor& x) {
  Tensor out = bn1->forward_relu(conv1->forward(x));
  out = bn2->forward_relu(conv2->forward(out));
  out = bn3->forward(conv3->forward(out));
  return relu(add(out, downsample ? downsample->forward(x) : x));
}

// ---- ResNet

ResNet::ResNet(ResNetOptions options) : Module("ResNet"), options_(options) {
  const Arch arch = arch_of(options.depth);
  SE_CHECK(options.output_stride == 8 || options.output_stride == 16 || options.output_stride == 32,
           "ResNet: output_stride must be 8, 16 or 32, got ", options.output_stride);
  SE_CHECK(options.stem_width > 0 && options.stem_width % 2 == 0 && options.in_channels > 0,
           "ResNet: stem_width must be positive and even and in_channels positive, got stem_width ", options.stem_width,
           ", in_channels ", options.in_channels);
  const int64_t w = options.stem_width;
  if (options.deep_stem) {
    stem = register_module("stem", std::make_shared<nn::Sequential>());
    const int64_t widths[4] = {options.in_channels, w / 2, w / 2, w};
    for (int i = 0; i < 3; ++i) {
      stem->push_back(conv3x3(widths[i], widths[i + 1], i == 0 ? 2 : 1));
      stem->push_back(std::make_shared<nn::BatchNorm2d>(widths[i + 1]));
      stem->push_back(std::make_shared<nn::ReLU>());
    }
  } else {
    conv1 = register_module("conv1",
                            std::make_shared<nn::Conv2d>(options.in_channels, w, 7,
                                                         nn::Conv2dOptions{.stride = 2, .padding = 3, .bias = false}));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(w));
  }
  maxpool = register_module("maxpool", std::make_shared<nn::MaxPool2d>(3, 2, 1));

  // torchvision's _make_layer: a stage whose stride 2 is replaced by dilation keeps stride 1 and
  // multiplies the running dilation; its first block still uses the previous dilation.
  const int64_t expansion = arch.bottleneck ? Bottleneck::expansion : BasicBlock::expansion;
  int64_t inplanes = w, dilation = 1, stride_so_far = 4;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t planes = int64_t{64} << stage;
    int64_t stride = stage == 0 ? 1 : 2;
    const int64_t previous_dilation = dilation;
    if (stride == 2 && stride_so_far * 2 > options.output_stride) {
      dilation *= stride;
      stride = 1;
    }
    stride_so_far *= stride;
    std::shared_ptr<nn::Sequential> downsample;
    if (stride != 1 || inplanes != planes * expansion) {
      downsample = std::make_shared<nn::Sequential>();
      downsample->push_back(conv1x1(inplanes, planes * expansion, stride));
      downsample->push_back(std::make_shared<nn::BatchNorm2d>(planes * expansion));
    }
    auto layer = std::make_shared<nn::Sequential>();
    for (int b = 0; b < arch.blocks[stage]; ++b) {
      const int64_t block_stride = b == 0 ? stride : 1;
      const int64_t block_dilation = b == 0 ? previous_dilation : dilation;
      auto block_downsample = b == 0 ? downsample : nullptr;
      if (arch.bottleneck) {
        layer->push_back(
            std::make_shared<Bottleneck>(inplanes, planes, block_stride, block_dilation, block_downsample));
      } else {
        layer->push_back(
            std::make_shared<BasicBlock>(inplanes, planes, block_stride, block_dilation, block_downsample));
      }
      inplanes = planes * expansion;
    }
    layers[stage] = register_module("layer" + std::to_string(stage + 1), layer);
    stage_channels_[stage] = planes * expansion;
    stage_dilations_[stage] = dilation;
  }

  // torchvision's initialisation: kaiming_normal(fan_out, relu) for convs, BN weight 1 and bias 0
  // (the BatchNorm2d default), and optionally a zero last BN in every block so each starts as identity.
  NoGradGuard no_grad;
  for (auto& [name, module] : named_modules()) {
    if (auto* conv = dynamic_cast<nn::Conv2d*>(module)) {
      nn::init::kaiming_normal_(conv->weight, 0.0, nn::init::FanMode::fan_out, "relu");
    }
    if (!options.zero_init_residual) continue;
    if (auto* block = dynamic_cast<Bottleneck*>(module)) nn::init::zeros_(block->bn3->weight);
    if (auto* block = dynamic_cast<BasicBlock*>(module)) nn::init::zeros_(block->bn2->weight);
  }
}

ResNetFeatures ResNet::forward(const Tensor& images) {
  SE_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels, "ResNet: expected images (N, ",
           options_.in_channels, ", H, W), got ", shape_str(images.shape()));
  ResNetFeatures out;
  out.stem = stem ? stem->forward(images) : bn1->forward_relu(conv1->forward(images));
  Tensor x = maxpool->forward(out.stem);
  for (auto& layer : layers) {
    x = layer->forward(x);
    out.stages.push_back(x);
  }
  return out;
}

}  // namespace se::models
