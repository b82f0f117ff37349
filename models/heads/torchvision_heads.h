// The segmentation heads of torchvision.models.segmentation, with its module layout and names so that a
// torchvision fcn_resnet* / deeplabv3_resnet* state_dict loads directly:
//   FCNHead      fcn.py:       Sequential(conv3x3 C->C/4 no bias, BN, ReLU, Dropout(0.1), conv1x1 C/4->K)
//   ASPP         deeplabv3.py: convs = [1x1 branch, one 3x3 dilated branch per rate, image pooling],
//                              project = Sequential(conv1x1 (R+2)*256->256, BN, ReLU, Dropout(0.5))
//   DeepLabHead  deeplabv3.py: Sequential(ASPP, conv3x3 256->256, BN, ReLU, conv1x1 256->K)
#pragma once

#include <memory>
#include <vector>

#include "nn/layers.h"

namespace se::models::torchvision {

// FCNHead(in_channels, channels): the classifier of fcn_resnet* and the auxiliary classifier of both.
std::shared_ptr<nn::Sequential> make_fcn_head(int64_t in_channels, int64_t num_classes);

// conv(k) + BN + ReLU without conv bias: ASPP's branches.
std::shared_ptr<nn::Sequential> conv_bn_relu(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                                             int64_t dilation = 1);

// ASPPPooling: global average pool, conv1x1 + BN + ReLU, then bilinear back to the input's size
// (align_corners = false).
class AsppPooling : public nn::Sequential {
 public:
  AsppPooling(int64_t in_channels, int64_t out_channels);

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C_in, H, W) -> (N, C_out, H, W)
};

class Aspp : public nn::UnaryModule {
 public:
  Aspp(int64_t in_channels, const std::vector<int64_t>& atrous_rates, int64_t out_channels = 256);
  std::shared_ptr<nn::ModuleList> convs;
  std::shared_ptr<nn::Sequential> project;

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C_in, H, W) -> (N, out_channels, H, W)
};

std::shared_ptr<nn::Sequential> make_deeplab_head(int64_t in_channels, int64_t num_classes,
                                                  const std::vector<int64_t>& atrous_rates);

}  // namespace se::models::torchvision
