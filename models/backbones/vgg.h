// VGG-16/19 with and without batch norm: torchvision's `features` (names features.N, where N counts
// every conv, BN, ReLU and max-pool in order), without the classifier, so a torchvision vgg*
// state_dict minus its "classifier." entries loads directly. Returns the output of every max pool.
//
// FCN-32s/16s/8s need two departures from torchvision, both options: the first conv pads by 100
// (Long et al.'s trick so that any input size survives fc6's 7x7 valid conv) and Caffe's pooling
// rounds up (ceil_mode).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace se::models {

struct VggOptions {
  int depth = 16;           // 16 or 19
  bool batch_norm = false;  // vgg16_bn / vgg19_bn: conv, BN, ReLU
  int64_t width = 64;       // channels of the first block; blocks have width x (1, 2, 4, 8, 8)
  int64_t first_padding = 1;
  bool ceil_mode = false;
  int64_t in_channels = 3;
};

// "vgg16", "vgg16_bn", "vgg19", "vgg19_bn" into depth and batch_norm; anything else is an error.
VggOptions vgg_options_from_name(const std::string& name);

class Vgg : public nn::Module {
 public:
  explicit Vgg(VggOptions options);
  // pool1..pool5: strides 2, 4, 8, 16, 32 (with ceil_mode, sizes round up).
  std::vector<Tensor> forward(const Tensor& images);  // (N, in_channels, H, W)
  const std::array<int64_t, 5>& stage_channels() const { return stage_channels_; }
  const VggOptions& options() const { return options_; }
  std::shared_ptr<nn::Sequential> features;

 private:
  VggOptions options_;
  std::array<int64_t, 5> stage_channels_{};
};

}  // namespace se::models
