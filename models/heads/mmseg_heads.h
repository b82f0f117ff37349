// Decode heads of mmsegmentation 1.x (mmseg/models/decode_heads) with its module layout and names, so
// that an mmseg checkpoint's decode_head.* / auxiliary_head.* entries load directly:
//   ConvModule                      mmcv: conv (no bias) "conv", BatchNorm "bn", ReLU "activate"
//   DepthwiseSeparableConvModule    mmcv: "depthwise_conv" (ConvModule, groups = C_in) + "pointwise_conv" (1x1)
//   every head ends in cls_seg: Dropout2d(0.1), then "conv_seg" = conv1x1 channels -> num_classes
//   FcnHead      fcn_head.py with num_convs = 1, concat_input = False: convs.0 = ConvModule 3x3 (the aux head)
//   PspHead      psp_head.py: psp_modules.i = (AdaptiveAvgPool2d(scale), ConvModule 1x1), each resized back
//                bilinearly; bottleneck = ConvModule 3x3 over [x, pooled...]
//   SepAsppHead  sep_aspp_head.py (DeepLabV3+): image_pool (global pool + ConvModule 1x1), aspp_modules
//                (1x1 ConvModule for dilation 1, DepthwiseSeparableConvModule 3x3 otherwise), bottleneck =
//                ConvModule 3x3 (ASPPHead's), c1_bottleneck = ConvModule 1x1 of the low-level features to
//                c1_channels, sep_bottleneck = two DepthwiseSeparableConvModules 3x3.
// Initialisation as mmseg: kaiming_normal(fan_out, relu) convs, BN 1/0, conv_seg N(0, 0.01) and bias 0.
#pragma once

#include <memory>
#include <vector>

#include "nn/layers.h"

namespace se::models::mmseg {

struct ConvModuleOptions {
  int64_t kernel_size = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
};

class ConvModule : public nn::UnaryModule {
 public:
  ConvModule(int64_t in_channels, int64_t out_channels, ConvModuleOptions options = {});
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C_in, H, W) -> (N, C_out, H', W')
};

class DepthwiseSeparableConvModule : public nn::UnaryModule {
 public:
  DepthwiseSeparableConvModule(int64_t in_channels, int64_t out_channels, int64_t dilation = 1);  // 3x3, same size
  std::shared_ptr<ConvModule> depthwise_conv, pointwise_conv;

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C_in, H, W) -> (N, C_out, H, W)
};

// torch.nn.Dropout2d: zeroes whole channels with probability p while training, scaling the rest.
class Dropout2d : public nn::UnaryModule {
 public:
  explicit Dropout2d(double p);

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C, H, W)

 private:
  double p_;
};

// mmseg's BaseDecodeHead part every head shares: dropout then conv_seg.
class DecodeHead : public nn::Module {
 public:
  DecodeHead(std::string type_name, int64_t channels, int64_t num_classes, double dropout_ratio = 0.1);
  Tensor cls_seg(const Tensor& x);  // (N, channels, H, W) -> (N, num_classes, H, W)
  std::shared_ptr<nn::Conv2d> conv_seg;

 protected:
  void init_weights();  // mmseg's init of the whole head; call at the end of a derived constructor

 private:
  std::shared_ptr<Dropout2d> dropout_;
};

// The auxiliary FCNHead (num_convs 1, kernel 3, no concat_input).
class FcnHead : public DecodeHead {
 public:
  FcnHead(int64_t in_channels, int64_t channels, int64_t num_classes);
  Tensor forward(const Tensor& x);  // (N, in_channels, H, W) -> (N, num_classes, H, W)
  std::shared_ptr<nn::Sequential> convs;
};

class PspHead : public DecodeHead {
 public:
  PspHead(int64_t in_channels, int64_t channels, int64_t num_classes, const std::vector<int64_t>& pool_scales);
  Tensor forward(const Tensor& x);  // (N, in_channels, H, W) -> (N, num_classes, H, W)
  std::shared_ptr<nn::ModuleList> psp_modules;
  std::shared_ptr<ConvModule> bottleneck;
};

class SepAsppHead : public DecodeHead {
 public:
  SepAsppHead(int64_t in_channels, int64_t channels, int64_t c1_in_channels, int64_t c1_channels, int64_t num_classes,
              const std::vector<int64_t>& dilations);
  Tensor forward(const Tensor& low_level,  // (N, c1_in_channels, H1, W1): layer1
                 const Tensor& x);         // (N, in_channels, H, W): layer4  -> (N, num_classes, H1, W1)
  std::shared_ptr<nn::Sequential> image_pool;
  std::shared_ptr<nn::ModuleList> aspp_modules;
  std::shared_ptr<ConvModule> bottleneck, c1_bottleneck;
  std::shared_ptr<nn::Sequential> sep_bottleneck;
};

}  // namespace se::models::mmseg
