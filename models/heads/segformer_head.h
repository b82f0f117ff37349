// SegFormer's all-MLP decoder (HF SegformerDecodeHead, names "linear_c.{i}.proj", "linear_fuse",
// "batch_norm", "classifier"): each encoder stage is projected to decoder_hidden_size channels by a
// Linear, upsampled bilinearly to the first stage's size, concatenated (deepest stage first), fused
// by a 1x1 conv without bias + BatchNorm + ReLU, and classified by a 1x1 conv after dropout. The
// projection and the fuse are linear, so forward applies them folded, per stage at its resolution.
#pragma once

#include <array>
#include <memory>
#include <vector>

#include "nn/layers.h"

namespace se::models {

// Bilinear resizing to (height, width) with align_corners false, as every SegFormer upsampling.
inline InterpolateParams segformer_bilinear(int64_t height, int64_t width) {
  InterpolateParams params;
  params.size = std::array<int64_t, 2>{height, width};
  params.mode = InterpolateMode::bilinear;
  return params;
}

// SegformerMLP: (N, C, h, w) -> (N, h * w, decoder_hidden_size).
class SegformerMLP : public nn::UnaryModule {
 public:
  SegformerMLP(int64_t input_dim, int64_t decoder_hidden_size);
  std::shared_ptr<nn::Linear> proj;

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C, h, w) -> (N, h * w, D)
};

class SegformerDecodeHead : public nn::Module {
 public:
  SegformerDecodeHead(const std::vector<int64_t>& in_channels, int64_t decoder_hidden_size, int64_t num_classes,
                      double classifier_dropout = 0.1);
  // features[i]: (N, in_channels[i], H_i, W_i); returns logits (N, num_classes, H_0, W_0).
  Tensor forward(const std::vector<Tensor>& features);

  std::shared_ptr<nn::ModuleList> linear_c;  // of SegformerMLP
  std::shared_ptr<nn::Conv2d> linear_fuse;
  std::shared_ptr<nn::BatchNorm2d> batch_norm;
  std::shared_ptr<nn::ReLU> activation;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Conv2d> classifier;

  // The fused (N, D, H_0, W_0) map before the BatchNorm, two ways with the same value: HF's order
  // (project, upsample, concatenate, fuse), and the linear maps folded per stage (see the .cpp), which
  // forward uses unless a ForwardObserver watches the modules.
  Tensor fuse_as_modules(const std::vector<Tensor>& features);
  Tensor fuse_folded(const std::vector<Tensor>& features);
};

}  // namespace se::models
