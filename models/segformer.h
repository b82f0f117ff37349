// SegFormer B0..B5 (Xie et al., 2021): the MiT encoder and the all-MLP decoder, with the module names
// of HF transformers' SegformerForSemanticSegmentation ("segformer.encoder.*", "decode_head.*"), so
// its state_dict loads unchanged. HF returns logits at 1/4 of the input resolution; forward returns
// them upsampled to the input (bilinear, align_corners false, as HF's loss does).
#pragma once

#include <memory>
#include <string>

#include "models/backbones/mit.h"
#include "models/heads/segformer_head.h"
#include "models/model.h"

namespace se::models {

struct SegformerOptions {
  std::string variant = "b0";  // b0..b5
  int64_t num_classes = 19;
  int64_t in_channels = 3;
  double drop_path_rate = 0.1;      // encoder stochastic depth (HF default)
  double classifier_dropout = 0.1;  // before the classifier (HF classifier_dropout_prob)
};

// The decoder width of the published checkpoints: 256 for B0 and B1, 768 for B2..B5.
int64_t segformer_decoder_hidden_size(const std::string& variant);

class Segformer : public SegmentationModel {
 public:
  explicit Segformer(const SegformerOptions& options);
  // images (N, in_channels, H, W), H and W >= 32 -> logits (N, num_classes, H, W); features holds the
  // four encoder stages (N, C_i, H / 2^(i+2), W / 2^(i+2)) (rounded up), coarsest last.
  SegmentationOutput forward(const Tensor& images) override;
  // The decoder's logits at the first stage's resolution (N, num_classes, ceil(H / 4), ceil(W / 4)),
  // HF's SemanticSegmenterOutput.logits.
  Tensor forward_quarter_resolution(const Tensor& images);

  std::shared_ptr<MitBackbone> segformer;
  std::shared_ptr<SegformerDecodeHead> decode_head;
};

}  // namespace se::models
