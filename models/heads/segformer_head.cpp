#include "models/heads/segformer_head.h"

#include "core/error.h"
#include "nn/transformer.h"

namespace se::models {

SegformerMLP::SegformerMLP(int64_t input_dim, int64_t decoder_hidden_size) : nn::UnaryModule("SegformerMLP") {
  proj = register_module("proj", std::make_shared<nn::Linear>(input_dim, decoder_hidden_size));
  nn::init_segformer_linear(*proj);
}

Tensor SegformerMLP::forward_impl(const Tensor& x) {
  return proj->forward(x.flatten(2).transpose(1, 2));
}

SegformerDecodeHead::SegformerDecodeHead(const std::vector<int64_t>& in_channels, int64_t decoder_hidden_size,
                                         int64_t num_classes, double classifier_dropout)
    : nn::Module("SegformerDecodeHead") {
  SE_CHECK(!in_channels.empty() && decoder_hidden_size > 0 && num_classes > 0,
           "SegformerDecodeHead: needs at least one input stage and positive decoder_hidden_size and num_classes, got ",
           in_channels.size(), " stages, decoder_hidden_size ", decoder_hidden_size, ", num_classes ", num_classes);
  linear_c = register_module("linear_c", std::make_shared<nn::ModuleList>());
  for (int64_t channels : in_channels)
    linear_c->push_back(std::make_shared<SegformerMLP>(channels, decoder_hidden_size));
  const auto stages = static_cast<int64_t>(in_channels.size());
  linear_fuse =
      register_module("linear_fuse", std::make_shared<nn::Conv2d>(decoder_hidden_size * stages, decoder_hidden_size, 1,
                                                                  nn::Conv2dOptions{.bias = false}));
  nn::init_segformer_conv(*linear_fuse);
  batch_norm = register_module("batch_norm", std::make_shared<nn::BatchNorm2d>(decoder_hidden_size));
  activation = register_module("activation", std::make_shared<nn::ReLU>());
  dropout = register_module("dropout", std::make_shared<nn::Dropout>(classifier_dropout));
  classifier = register_module("classifier", std::make_shared<nn::Conv2d>(decoder_hidden_size, num_classes, 1));
  nn::init_segformer_conv(*classifier);
}

Tensor SegformerDecodeHead::forward(const std::vector<Tensor>& features) {
  SE_CHECK(features.size() == linear_c->size(), "SegformerDecodeHead: expected ", linear_c->size(),
           " feature maps, got ", features.size());
  for (size_t i = 0; i < features.size(); ++i) {
    SE_CHECK(features[i].dim() == 4, "SegformerDecodeHead: feature ", i, " must be (N, C, H, W), got ",
             shape_str(features[i].shape()));
  }
  // Under a ForwardObserver (bench model's per-layer table, segengine info) the modules run as HF's
  // do, so that each keeps its row and the MACs are the architecture's.
  const Tensor fused = nn::current_forward_observer() != nullptr ? fuse_as_modules(features) : fuse_folded(features);
  Tensor x = batch_norm->forward_relu(fused, activation.get());
  return classifier->forward(dropout->forward(x));
}

Tensor SegformerDecodeHead::fuse_as_modules(const std::vector<Tensor>& features) {
  const int64_t height = features[0].size(2), width = features[0].size(3);
  std::vector<Tensor> projected(features.size());
  for (size_t i = 0; i < features.size(); ++i) {
    const Tensor& f = features[i];                                     // (N, C_i, h, w)
    const Tensor tokens = linear_c->at<SegformerMLP>(i)->forward(f);  // (N, h * w, D)
    const Tensor image = tokens.transpose(1, 2).reshape({f.size(0), tokens.size(2), f.size(2), f.size(3)});
    // Deepest stage first, as HF concatenates all_hidden_states[::-1].
    // Bilinear resizing to the same size is the identity (align_corners false), so stage 0 skips it.
    projected[features.size() - 1 - i] =
        f.size(2) == height && f.size(3) == width ? image : interpolate(image, segformer_bilinear(height, width));
  }
  return linear_fuse->forward(cat(projected, 1));
}

// linear_fuse(cat_i(resize(L_i x_i + b_i))) = sum_i resize(F_i L_i x_i) + sum_i F_i b_i, with F_i stage
// i's (D, D) block of the fuse conv's columns: every map here is linear per pixel and bilinear resizing
// is linear per channel (and keeps constants), so they commute. Each stage then costs one (D, C_i) map
// at its own resolution instead of a D x D map and D x 4D fuse at the first stage's: SegFormer-B0's
// decoder at 512x512 does 0.6 GFLOP per image where the HF order does 9.1. The maps are GEMMs of
// (D, C_i) by each image's (C_i, h * w) pixels, which read the encoder's channels-last maps in place
// and write NCHW, so the resizes and sums run on contiguous data; the biases, summed, join the
// deepest stage's map before it is upsampled.
Tensor SegformerDecodeHead::fuse_folded(const std::vector<Tensor>& features) {
  const int64_t height = features[0].size(2), width = features[0].size(3);
  const auto stages = static_cast<int64_t>(features.size());
  const int64_t hidden = linear_fuse->weight.size(0);
  const Tensor fuse = linear_fuse->weight.reshape({hidden, stages * hidden});  // (D, stages * D)
  Tensor sum, bias;
  for (int64_t i = 0; i < stages; ++i) {
    const nn::Linear& proj = *linear_c->at<SegformerMLP>(static_cast<size_t>(i))->proj;
    if (!proj.bias.defined()) continue;
    const Tensor block = fuse.slice(1, (stages - 1 - i) * hidden, (stages - i) * hidden);  // (D, D)
    const Tensor stage_bias = matmul(block, proj.bias);                                  // (D)
    bias = bias.defined() ? add(bias, stage_bias) : stage_bias;
  }
  for (int64_t i = stages - 1; i >= 0; --i) {  // deepest first, as the concatenation
    const Tensor& f = features[static_cast<size_t>(i)];  // (N, C_i, h, w)
    const nn::Linear& proj = *linear_c->at<SegformerMLP>(static_cast<size_t>(i))->proj;
    const Tensor block = fuse.slice(1, (stages - 1 - i) * hidden, (stages - i) * hidden);  // (D, D)
    Tensor map = matmul(matmul(block, proj.weight), f.flatten(2));  // (D, C_i) @ (N, C_i, h * w)
    if (i == stages - 1 && bias.defined()) map = add(map, bias.unsqueeze(1));
    const Tensor image = map.reshape({f.size(0), hidden, f.size(2), f.size(3)});  // (N, D, h, w)
    const Tensor resized =
        f.size(2) == height && f.size(3) == width ? image : interpolate(image, segformer_bilinear(height, width));
    sum = sum.defined() ? add(sum, resized) : resized;
  }
  return sum;
}

}  // namespace se::models
