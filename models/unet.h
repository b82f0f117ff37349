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
// depth (4), bilinear (false), batch_norm (true).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
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
};

// Reads the keys above from `config` (not finish()ing it).
UNetOptions read_unet_options(const Config& config);

class UNet : public SegmentationModel {
 public:
  explicit UNet(const UNetOptions& options, std::string type_name = "UNet");
  // images (N, in_channels, H, W) with H, W >= 2^depth -> logits (N, num_classes, H, W); no features.
  SegmentationOutput forward(const Tensor& images) override;
  // The two halves, for models that run them separately (Siamese U-Net).
  std::vector<Tensor> encode(const Tensor& images);    // (N, C_in, H, W) -> depth + 1 maps, finest first
  Tensor decode(const std::vector<Tensor>& features);  // -> (N, num_classes, H, W)
  const UNetOptions& options() const { return options_; }

  std::shared_ptr<UNetEncoder> encoder;
  std::shared_ptr<UNetDecoder> decoder;

 private:
  UNetOptions options_;
};

// A key of a milesial/Pytorch-UNet state_dict as named here (see the table above); errors on keys
// that belong to no part of that model.
std::string unet_key_from_reference(const std::string& reference_key);

}  // namespace se::models
