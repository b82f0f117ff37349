#include "nn/transformer.h"

#include "core/error.h"
#include "engine/autograd.h"
#include "nn/init.h"

namespace se::nn {
namespace {

constexpr double kInitializerRange = 0.02;  // HF SegformerConfig.initializer_range

void init_weight_and_bias(Tensor& weight, Tensor& bias) {
  NoGradGuard no_grad;
  init::normal_(weight, 0.0, kInitializerRange);
  if (bias.defined()) init::zeros_(bias);
}

// (N, H * W, C) tokens as the (N, C, H, W) image they index; a view (channels-last strides), no copy.
Tensor tokens_to_image(const Tensor& x, int64_t height, int64_t width, const char* op) {
  SE_CHECK(x.dim() == 3 && x.size(1) == height * width, op, ": tokens of shape ", shape_str(x.shape()),
           " do not match the image size ", height, "x", width, " (expected (N, ", height * width, ", C))");
  return x.view({x.size(0), height, width, x.size(2)}).permute({0, 3, 1, 2});
}

// (N, C, H, W) -> (N, H * W, C), a view.
Tensor image_to_tokens(const Tensor& x) {
  return x.flatten(2).transpose(1, 2);
}

}  // namespace

void init_segformer_linear(Linear& layer) {
  init_weight_and_bias(layer.weight, layer.bias);
}
void init_segformer_conv(Conv2d& layer) {
  init_weight_and_bias(layer.weight, layer.bias);
}

// ---- OverlapPatchEmbeddings

OverlapPatchEmbeddings::OverlapPatchEmbeddings(int64_t patch_size, int64_t stride, int64_t in_channels,
                                               int64_t hidden_size)
    : Module("SegformerOverlapPatchEmbeddings") {
  proj = register_module("proj", std::make_shared<Conv2d>(in_channels, hidden_size, patch_size,
                                                          Conv2dOptions{.stride = stride, .padding = patch_size / 2}));
  init_segformer_conv(*proj);
  layer_norm = register_module("layer_norm", std::make_shared<LayerNorm>(Shape{hidden_size}));
}

OverlapPatchEmbeddings::Output OverlapPatchEmbeddings::forward(const Tensor& x) {
  SE_CHECK(x.dim() == 4, "OverlapPatchEmbeddings: expected an (N, C, H, W) input, got ", shape_str(x.shape()));
  const Tensor embeddings = proj->forward(x);  // (N, hidden, OH, OW)
  return {layer_norm->forward(image_to_tokens(embeddings)), embeddings.size(2), embeddings.size(3)};
}

// ---- EfficientSelfAttention

EfficientSelfAttention::EfficientSelfAttention(int64_t hidden_size, int64_t num_attention_heads, int64_t sr_ratio)
    : Module("SegformerEfficientSelfAttention"),
      hidden_size_(hidden_size),
      num_heads_(num_attention_heads),
      sr_ratio_(sr_ratio) {
  SE_CHECK(hidden_size > 0 && num_attention_heads > 0 && hidden_size % num_attention_heads == 0,
           "EfficientSelfAttention: hidden_size ", hidden_size, " must be a positive multiple of num_attention_heads ",
           num_attention_heads);
  SE_CHECK(sr_ratio >= 1, "EfficientSelfAttention: sr_ratio must be >= 1, got ", sr_ratio);
  query = register_module("query", std::make_shared<Linear>(hidden_size, hidden_size));
  key = register_module("key", std::make_shared<Linear>(hidden_size, hidden_size));
  value = register_module("value", std::make_shared<Linear>(hidden_size, hidden_size));
  for (Linear* layer : {query.get(), key.get(), value.get()}) init_segformer_linear(*layer);
  if (sr_ratio > 1) {
    sr = register_module(
        "sr", std::make_shared<Conv2d>(hidden_size, hidden_size, sr_ratio, Conv2dOptions{.stride = sr_ratio}));
    init_segformer_conv(*sr);
    layer_norm = register_module("layer_norm", std::make_shared<LayerNorm>(Shape{hidden_size}));
  }
}

std::string EfficientSelfAttention::extra_repr() const {
  return detail::concat("num_attention_heads=", num_heads_, ", sr_ratio=", sr_ratio_);
}

Tensor EfficientSelfAttention::forward(const Tensor& x, int64_t height, int64_t width) {
  ForwardObserver* observer = current_forward_observer();
  if (observer == nullptr) return attend(x, height, width);
  observer->before_forward(*this, x);
  Tensor y = attend(x, height, width);
  observer->after_forward(*this, x, y);
  return y;
}

Tensor EfficientSelfAttention::attend(const Tensor& x, int64_t height, int64_t width) {
  const Tensor image = tokens_to_image(x, height, width, "EfficientSelfAttention");
  SE_CHECK(x.size(2) == hidden_size_, "EfficientSelfAttention: tokens of shape ", shape_str(x.shape()),
           " do not have hidden_size ", hidden_size_, " channels");
  SE_CHECK(height >= sr_ratio_ && width >= sr_ratio_, "EfficientSelfAttention: the ", height, "x", width,
           " token image is smaller than sr_ratio ", sr_ratio_, " (the input image is too small for this stage)");
  const int64_t n = x.size(0), head_dim = hidden_size_ / num_heads_;
  // (N, L, C) -> (N, heads, L, head_dim)
  auto split_heads = [&](const Tensor& t) {
    return t.view({n, t.size(1), num_heads_, head_dim}).permute({0, 2, 1, 3});
  };
  Tensor reduced = x;  // (N, L', C): the keys' and values' tokens
  if (sr_ratio_ > 1) reduced = layer_norm->forward(image_to_tokens(sr->forward(image)));
  last_key_tokens_ = reduced.size(1);
  const Tensor context =
      scaled_dot_product_attention(split_heads(query->forward(x)), split_heads(key->forward(reduced)),
                                   split_heads(value->forward(reduced)));  // (N, heads, L, head_dim)
  return context.permute({0, 2, 1, 3}).reshape({n, x.size(1), hidden_size_});
}

// ---- SegformerAttention

AttentionOutput::AttentionOutput(int64_t hidden_size) : UnaryModule("SegformerSelfOutput") {
  dense = register_module("dense", std::make_shared<Linear>(hidden_size, hidden_size));
  init_segformer_linear(*dense);
}

SegformerAttention::SegformerAttention(int64_t hidden_size, int64_t num_attention_heads, int64_t sr_ratio)
    : Module("SegformerAttention") {
  self = register_module("self", std::make_shared<EfficientSelfAttention>(hidden_size, num_attention_heads, sr_ratio));
  output = register_module("output", std::make_shared<AttentionOutput>(hidden_size));
}

Tensor SegformerAttention::forward(const Tensor& x, int64_t height, int64_t width) {
  return output->forward(self->forward(x, height, width));
}

// ---- Mix-FFN

DWConv::DWConv(int64_t channels, kernels::ConvActivation activation) : Module("SegformerDWConv") {
  dwconv = register_module("dwconv", std::make_shared<Conv2d>(channels, channels, 3,
                                                              Conv2dOptions{.padding = 1,
                                                                            .groups = channels,
                                                                            .bias = true,
                                                                            .activation = activation}));
  init_segformer_conv(*dwconv);
}

Tensor DWConv::forward(const Tensor& x, int64_t height, int64_t width) {
  return image_to_tokens(dwconv->forward(tokens_to_image(x, height, width, "DWConv")));
}

MixFFN::MixFFN(int64_t in_features, int64_t hidden_features) : Module("SegformerMixFFN") {
  dense1 = register_module("dense1", std::make_shared<Linear>(in_features, hidden_features));
  // The GELU after the depthwise conv is fused into its epilogue (elementwise, so it commutes with the
  // reshape back to tokens).
  dwconv = register_module("dwconv", std::make_shared<DWConv>(hidden_features, kernels::ConvActivation::gelu));
  dense2 = register_module("dense2", std::make_shared<Linear>(hidden_features, in_features));
  init_segformer_linear(*dense1);
  init_segformer_linear(*dense2);
}

Tensor MixFFN::forward(const Tensor& x, int64_t height, int64_t width) {
  return dense2->forward(dwconv->forward(dense1->forward(x), height, width));
}

// ---- SegformerLayer

SegformerLayer::SegformerLayer(int64_t hidden_size, int64_t num_attention_heads, double drop_path_rate,
                               int64_t sr_ratio, int64_t mlp_ratio)
    : Module("SegformerLayer") {
  SE_CHECK(mlp_ratio >= 1, "SegformerLayer: mlp_ratio must be >= 1, got ", mlp_ratio);
  layer_norm_1 = register_module("layer_norm_1", std::make_shared<LayerNorm>(Shape{hidden_size}));
  attention =
      register_module("attention", std::make_shared<SegformerAttention>(hidden_size, num_attention_heads, sr_ratio));
  drop_path = register_module("drop_path", std::make_shared<DropPath>(drop_path_rate));
  layer_norm_2 = register_module("layer_norm_2", std::make_shared<LayerNorm>(Shape{hidden_size}));
  mlp = register_module("mlp", std::make_shared<MixFFN>(hidden_size, hidden_size * mlp_ratio));
}

Tensor SegformerLayer::forward(const Tensor& x, int64_t height, int64_t width) {
  const Tensor h = add(drop_path->forward(attention->forward(layer_norm_1->forward(x), height, width)), x);
  return add(drop_path->forward(mlp->forward(layer_norm_2->forward(h), height, width)), h);
}

}  // namespace se::nn
