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
  const int64_t height = features[0].size(2), width = features[0].size(3);
  std::vector<Tensor> projected(features.size());
  for (size_t i = 0; i < features.size(); ++i) {
    const Tensor& f = features[i];  // (N, C_i, h, w)
    SE_CHECK(f.dim() == 4, "SegformerDecodeHead: feature ", i, " must be (N, C, H, W), got ", shape_str(f.shape()));
    const Tensor tokens = linear_c->at<SegformerMLP>(i)->forward(f);  // (N, h * w, D)
    const Tensor image = tokens.transpose(1, 2).reshape({f.size(0), tokens.size(2), f.size(2), f.size(3)});
    // Deepest stage first, as HF concatenates all_hidden_states[::-1].
    // Bilinear resizing to the same size is the identity (align_corners false), so stage 0 skips it.
    projected[features.size() - 1 - i] =
        f.size(2) == height && f.size(3) == width ? image : interpolate(image, segformer_bilinear(height, width));
  }
  Tensor x = batch_norm->forward_relu(linear_fuse->forward(cat(projected, 1)), activation.get());
  return classifier->forward(dropout->forward(x));
}

}  // namespace se::models
