// U-Net (Ronneberger et al. 2015) in the layout of the common PyTorch reference, milesial/Pytorch-UNet:
// BN after every 3x3 conv, bilinear (align_corners=True) or transposed-conv upsampling, padding of
// odd-sized maps before each skip concatenation. The 64-channel, depth-4 model has exactly the
// reference's parameters: UNet(n_channels=3, n_classes=K, bilinear=b).
//
// Names: ours are the reference's under two prefixes (the one name map, unet_key_from_reference):
//   inc.*, down<i>.*  ->  encoder.inc.*, encoder.down<i>.*
//   up<i>.*, outc.*   ->  decoder.up<i>.*, decoder.outc.*
//
// Config (registered as "unet"): num_classes (required), in_channels (3), base_channels (64),
// depth (4), bilinear (false), batch_norm (true), backbone ("unet").
//
// backbone "resnet18" .. "resnet152" swaps the encoder for torchvision's ResNet (models/backbones/
// resnet.h, registered as "encoder": encoder.conv1.weight, encoder.layer1.0.conv1.weight, ...): its
// five levels are the stem (stride 2) and layer1..layer4 (strides 4..32), the decoder widths are
// 64, 64, 128, 256 at levels 0..3, and the logits at stride 2 are resized (bilinear) to the input. depth
// and base_channels do not apply to it; batch_norm then concerns the decoder only.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "models/backbones/resnet.h"
#include "models/backbones/unet_encoder.h"
#include "models/heads/unet_decoder.h"
#include "models/model.h"

namespace se::models {

struct UNetOptions {
  int64_t num_classes = 0;
  int64_t in_channels = 3;
  int64_t base_channels = 64;
  int64_t depth = 4;
  bool bilinear = false;
  bool batch_norm = true;
  std::string backbone = "unet";  // or resnet18, resnet34, resnet50, resnet101, resnet152
};

// Reads the keys above from `config` (not finish()ing it).
UNetOptions read_unet_options(const Config& config);

class UNet : public SegmentationModel {
 public:
  explicit UNet(const UNetOptions& options, std::string type_name = "UNet");
  // images (N, in_channels, H, W) with H, W >= 2^depth -> logits (N, num_classes, H, W); no features.
  SegmentationOutput forward(const Tensor& images) override;
  // The two halves, for models that run them separately (Siamese U-Net).
  std::vector<Tensor> encode(const Tensor& images);  // (N, C_in, H, W) -> num_levels() maps, finest first
  // -> logits (N, num_classes, H, W) at `size` (H, W), the input's.
  Tensor decode(const std::vector<Tensor>& features, std::array<int64_t, 2> size);
  const UNetOptions& options() const { return options_; }
  const std::vector<int64_t>& encoder_channels() const { return encoder_channels_; }  // per level, finest first
  int64_t num_levels() const { return static_cast<int64_t>(encoder_channels_.size()); }

  std::shared_ptr<UNetEncoder> encoder;  // the classic encoder, or null with a ResNet backbone
  std::shared_ptr<ResNet> resnet;        // the ResNet backbone, or null; registered as "encoder" too
  std::shared_ptr<UNetDecoder> decoder;

 private:
  UNetOptions options_;
  std::vector<int64_t> encoder_channels_;
};

// A key of a milesial/Pytorch-UNet state_dict as named here (see the table above); errors on keys
// that belong to no part of that model.
std::string unet_key_from_reference(const std::string& reference_key);

}  // namespace se::models
