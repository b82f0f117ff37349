#include "models/heads/torchvision_heads.h"

#include "core/error.h"
#include "models/cnn_common.h"

namespace se::models::torchvision {

std::shared_ptr<nn::Sequential> conv_bn_relu(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                                             int64_t dilation) {
  const int64_t padding = kernel_size == 1 ? 0 : dilation * (kernel_size / 2);
  auto block = std::make_shared<nn::Sequential>();
  block->push_back(
      std::make_shared<nn::Conv2d>(in_channels, out_channels, kernel_size,
                                   nn::Conv2dOptions{.padding = padding, .dilation = dilation, .bias = false}));
  block->push_back(std::make_shared<nn::BatchNorm2d>(out_channels));
  block->push_back(std::make_shared<nn::ReLU>());
  return block;
}

std::shared_ptr<nn::Sequential> make_fcn_head(int64_t in_channels, int64_t num_classes) {
  SE_CHECK(in_channels >= 4 && num_classes > 0, "FCNHead: need in_channels >= 4 and num_classes > 0, got ", in_channels,
           " and ", num_classes);
  const int64_t inter_channels = in_channels / 4;
  auto head = conv_bn_relu(in_channels, inter_channels, 3);
  head->push_back(std::make_shared<nn::Dropout>(0.1));
  head->push_back(std::make_shared<nn::Conv2d>(inter_channels, num_classes, 1));
  return head;
}

AsppPooling::AsppPooling(int64_t in_channels, int64_t out_channels) {
  push_back(std::make_shared<nn::AdaptiveAvgPool2d>(1));
  push_back(std::make_shared<nn::Conv2d>(in_channels, out_channels, 1, nn::Conv2dOptions{.bias = false}));
  push_back(std::make_shared<nn::BatchNorm2d>(out_channels));
  push_back(std::make_shared<nn::ReLU>());
}

Tensor AsppPooling::forward_impl(const Tensor& x) {
  return cnn::resize_bilinear(Sequential::forward_impl(x), x.size(2), x.size(3));
}

Aspp::Aspp(int64_t in_channels, const std::vector<int64_t>& atrous_rates, int64_t out_channels) : UnaryModule("ASPP") {
  SE_CHECK(!atrous_rates.empty(), "ASPP: atrous_rates must not be empty");
  convs = register_module("convs", std::make_shared<nn::ModuleList>());
  convs->push_back(conv_bn_relu(in_channels, out_channels, 1));
  for (int64_t rate : atrous_rates) {
    SE_CHECK(rate > 0, "ASPP: atrous rates must be positive, got ", rate);
    convs->push_back(conv_bn_relu(in_channels, out_channels, 3, rate));
  }
  convs->push_back(std::make_shared<AsppPooling>(in_channels, out_channels));
  project = register_module("project", conv_bn_relu(int64_t(convs->size()) * out_channels, out_channels, 1));
  project->push_back(std::make_shared<nn::Dropout>(0.5));
}

Tensor Aspp::forward_impl(const Tensor& x) {
  std::vector<Tensor> branches;
  for (size_t i = 0; i < convs->size(); ++i) branches.push_back(convs->at<nn::UnaryModule>(i)->forward(x));
  return project->forward(cat(branches, 1));
}

std::shared_ptr<nn::Sequential> make_deeplab_head(int64_t in_channels, int64_t num_classes,
                                                  const std::vector<int64_t>& atrous_rates) {
  auto head = std::make_shared<nn::Sequential>();
  head->push_back(std::make_shared<Aspp>(in_channels, atrous_rates));
  head->push_back(std::make_shared<nn::Conv2d>(256, 256, 3, nn::Conv2dOptions{.padding = 1, .bias = false}));
  head->push_back(std::make_shared<nn::BatchNorm2d>(256));
  head->push_back(std::make_shared<nn::ReLU>());
  head->push_back(std::make_shared<nn::Conv2d>(256, num_classes, 1));
  return head;
}

}  // namespace se::models::torchvision
