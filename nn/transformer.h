// SegFormer's transformer block (Xie et al., 2021) as nn layers, with the module and parameter names
// of Hugging Face transformers' Segformer* modules, so a SegformerForSemanticSegmentation state_dict
// loads unchanged. Tokens are (N, L, C) with L = H * W in row-major order (the layout of a
// channels-last image), and the layers that need the image take its height and width.
//
// Omitted on purpose: HF's hidden and attention-probability dropouts (0 in every published config;
// the fused attention has no dropout) and head pruning. Layer norms use torch's eps 1e-5, as HF's
// modules do (they ignore config.layer_norm_eps).
#pragma once

#include <memory>

#include "nn/layers.h"

namespace se::nn {

// Linear and Conv2d weights ~ N(0, 0.02) and biases 0, as HF's _init_weights (initializer_range
// 0.02). The original code's trunc_normal_(std=0.02) truncates at +-2, i.e. 100 std: the same law.
void init_segformer_linear(Linear& layer);
void init_segformer_conv(Conv2d& layer);

// SegformerOverlapPatchEmbeddings: a strided convolution with overlapping windows (padding
// patch_size / 2), then LayerNorm over channels.
class OverlapPatchEmbeddings : public Module {
 public:
  OverlapPatchEmbeddings(int64_t patch_size, int64_t stride, int64_t in_channels, int64_t hidden_size);
  struct Output {
    Tensor tokens;  // (N, OH * OW, hidden_size)
    int64_t height = 0, width = 0;
  };
  Output forward(const Tensor& x);  // x: (N, C_in, H, W)

  std::shared_ptr<Conv2d> proj;
  std::shared_ptr<LayerNorm> layer_norm;
};

// SegformerEfficientSelfAttention: multi-head attention whose keys and values come from the image
// shrunk by sr_ratio (a conv with kernel = stride = sr_ratio, then LayerNorm), so the cost is
// L * L / sr_ratio^2 instead of L^2. Runs on the fused scaled_dot_product_attention.
class EfficientSelfAttention : public Module {
 public:
  EfficientSelfAttention(int64_t hidden_size, int64_t num_attention_heads, int64_t sr_ratio);
  // Reported to the thread's ForwardObserver (input x, output), so `segengine info` counts the
  // attention products (models/model_stats.cpp).
  Tensor forward(const Tensor& x, int64_t height, int64_t width);  // x: (N, H * W, C) -> (N, H * W, C)
  std::string extra_repr() const override;
  // The key/value sequence length of the latest forward: H * W / sr_ratio^2 (rounded down per axis).
  int64_t last_key_tokens() const { return last_key_tokens_; }

  std::shared_ptr<Linear> query, key, value;
  std::shared_ptr<Conv2d> sr;             // only when sr_ratio > 1
  std::shared_ptr<LayerNorm> layer_norm;  // only when sr_ratio > 1

 private:
  Tensor attend(const Tensor& x, int64_t height, int64_t width);
  int64_t hidden_size_, num_heads_, sr_ratio_;
  int64_t last_key_tokens_ = 0;
};

// SegformerSelfOutput: the attention's output projection.
class AttentionOutput : public UnaryModule {
 public:
  explicit AttentionOutput(int64_t hidden_size);
  std::shared_ptr<Linear> dense;

 protected:
  Tensor forward_impl(const Tensor& x) override { return dense->forward(x); }  // (N, L, C)
};

// SegformerAttention: names "self.*" and "output.dense.*".
class SegformerAttention : public Module {
 public:
  SegformerAttention(int64_t hidden_size, int64_t num_attention_heads, int64_t sr_ratio);
  Tensor forward(const Tensor& x, int64_t height, int64_t width);  // x: (N, H * W, C)

  std::shared_ptr<EfficientSelfAttention> self;
  std::shared_ptr<AttentionOutput> output;
};

// SegformerDWConv: a 3x3 depthwise convolution over the token image (the positional information of
// Mix-FFN, which is why MiT needs no position embeddings).
class DWConv : public Module {
 public:
  // `activation`: fused into the depthwise conv (MixFFN's GELU).
  explicit DWConv(int64_t channels, kernels::ConvActivation activation = kernels::ConvActivation::none);
  Tensor forward(const Tensor& x, int64_t height, int64_t width);  // x: (N, H * W, C) -> (N, H * W, C)

  std::shared_ptr<Conv2d> dwconv;
};

// SegformerMixFFN: dense1 -> depthwise 3x3 -> GELU (exact; fused into the depthwise conv) -> dense2.
class MixFFN : public Module {
 public:
  MixFFN(int64_t in_features, int64_t hidden_features);
  Tensor forward(const Tensor& x, int64_t height, int64_t width);  // x: (N, H * W, C)

  std::shared_ptr<Linear> dense1;
  std::shared_ptr<DWConv> dwconv;
  std::shared_ptr<Linear> dense2;
};

// SegformerLayer, pre-norm: x + drop_path(attention(norm1(x))), then + drop_path(mlp(norm2(x))).
class SegformerLayer : public Module {
 public:
  SegformerLayer(int64_t hidden_size, int64_t num_attention_heads, double drop_path, int64_t sr_ratio,
                 int64_t mlp_ratio);
  Tensor forward(const Tensor& x, int64_t height, int64_t width);  // x: (N, H * W, C)

  std::shared_ptr<LayerNorm> layer_norm_1;
  std::shared_ptr<SegformerAttention> attention;
  std::shared_ptr<DropPath> drop_path;
  std::shared_ptr<LayerNorm> layer_norm_2;
  std::shared_ptr<MixFFN> mlp;
};

}  // namespace se::nn
