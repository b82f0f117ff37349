// Fully convolutional networks.
//
// FcnResNet: torchvision's fcn_resnet50 / fcn_resnet101 (torchvision/models/segmentation/fcn.py) on any
// ResNet depth: the backbone at output stride 8, FCNHead "classifier" on layer4, optional FCNHead
// "aux_classifier" on layer3, both upsampled bilinearly (align_corners = false) to the input size.
// State names equal torchvision's (backbone.*, classifier.*, aux_classifier.*).
//
// FcnVgg: FCN-32s/16s/8s of Long, Shelhamer and Darrell (CVPR 2015), following the reference Caffe
// nets voc-fcn32s/16s/8s/net.py of github.com/shelhamer/fcn.berkeleyvision.org (the staged, not
// "at-once", variants) as wkentaro/pytorch-fcn transcribes them:
//   VGG-16 features with conv1_1 padded by 100 and ceil-mode pooling;
//   fc6 = conv7x7 512->4096 (valid) + ReLU + dropout 0.5, fc7 = conv1x1 4096->4096 + ReLU + dropout 0.5;
//   score_fr = conv1x1 4096->K;
//   32s: upscore  = deconv k64 s32 (no bias), crop 19;
//   16s: upscore2 = deconv k4 s2, + score_pool4(pool4) cropped at 5, upscore16 = deconv k32 s16, crop 27;
//    8s: upscore2, + score_pool4 crop 5, upscore_pool4 = deconv k4 s2, + score_pool3(pool3) crop 9,
//        upscore8 = deconv k16 s8, crop 31.
// Init as the reference: deconvolutions hold bilinear upsampling kernels, the score layers are zero
// (Caffe's default filler). Differences: the deconvolutions stay learnable (pytorch-fcn; Caffe fixes
// them with lr_mult 0), dropout is element-wise as Caffe's (pytorch-fcn uses Dropout2d). The VGG part
// keeps torchvision's names (backbone.features.N) so ImageNet VGG weights load; fc6/fc7 take the
// reshaped classifier weights as in the paper.
#pragma once

#include <memory>

#include "models/backbones/resnet.h"
#include "models/backbones/vgg.h"
#include "models/model.h"

namespace se::models {

struct FcnResNetOptions {
  int64_t num_classes = 21;
  ResNetOptions backbone{.depth = 50, .output_stride = 8};
  bool aux_head = false;
};

class FcnResNet : public SegmentationModel {
 public:
  explicit FcnResNet(FcnResNetOptions options);
  // Auxiliary logits while training (or with_aux: torchvision computes them in eval mode too).
  SegmentationOutput forward(const Tensor& images) override { return forward(images, is_training()); }
  SegmentationOutput forward(const Tensor& images,  // (N, 3, H, W)
                             bool with_aux);
  std::shared_ptr<ResNet> backbone;
  std::shared_ptr<nn::Sequential> classifier, aux_classifier;  // aux_classifier: null without aux head
};

enum class FcnVariant { fcn32s, fcn16s, fcn8s };

struct FcnVggOptions {
  FcnVariant variant = FcnVariant::fcn8s;
  int64_t num_classes = 21;
  VggOptions backbone{.depth = 16};  // first_padding and ceil_mode are set by the model
  int64_t fc_channels = 4096;        // fc6 / fc7 width (smaller only for tests)
};

class FcnVgg : public SegmentationModel {
 public:
  explicit FcnVgg(FcnVggOptions options);
  SegmentationOutput forward(const Tensor& images) override;  // (N, 3, H, W)
  std::shared_ptr<Vgg> backbone;
  std::shared_ptr<nn::Conv2d> fc6, fc7, score_fr, score_pool4, score_pool3;  // score_pool*: null when unused
  // 32s: upscore; 16s: upscore2, upscore16; 8s: upscore2, upscore_pool4, upscore8.
  std::shared_ptr<nn::ConvTranspose2d> upscore, upscore2, upscore_pool4, upscore16, upscore8;

 private:
  FcnVariant variant_;
  std::shared_ptr<nn::Dropout> drop6_, drop7_;
};

// Fills a (C, C, k, k) transposed-conv weight with a bilinear upsampling kernel on the diagonal
// (pytorch-fcn's get_upsampling_weight, Caffe's "bilinear" filler), zeros elsewhere.
void fill_bilinear_upsampling_(Tensor& weight);  // (C, C, k, k)

}  // namespace se::models
