// MiT (Mix Transformer), SegFormer's hierarchical encoder, B0..B5, with the hyper-parameters of the
// published nvidia/mit-b0..b5 checkpoints and the module names of HF transformers' SegformerModel
// ("encoder.patch_embeddings.0.proj.weight", "encoder.block.0.0.attention.self.query.weight",
// "encoder.layer_norm.0.weight"), so HF weights load without a name map.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/transformer.h"

namespace se::models {

struct MitConfig {
  int64_t num_channels = 3;
  std::vector<int64_t> hidden_sizes;         // per stage
  std::vector<int64_t> depths;               // layers per stage
  std::vector<int64_t> num_attention_heads;  // per stage
  std::vector<int64_t> sr_ratios = {8, 4, 2, 1};
  std::vector<int64_t> patch_sizes = {7, 3, 3, 3};
  std::vector<int64_t> strides = {4, 2, 2, 2};
  std::vector<int64_t> mlp_ratios = {4, 4, 4, 4};
  double drop_path_rate = 0.1;  // stochastic depth rises linearly from 0 to this over all layers
};

// "b0".."b5" (or "mit_b0".."mit_b5"); anything else is an error listing them.
MitConfig mit_config(const std::string& variant);

// SegformerEncoder: per stage, an overlapping patch embedding, `depth` transformer layers and a
// LayerNorm; the stages see the image at strides 4, 8, 16 and 32.
class MitEncoder : public nn::Module {
 public:
  explicit MitEncoder(const MitConfig& config);
  // Each stage's output (N, hidden_sizes[i], H_i, W_i) with H_0 = ceil(H / 4) and H_{i+1} = ceil(H_i / 2);
  // H and W must be at least 32 (the first stage's keys are reduced 8x). Views, not necessarily contiguous.
  std::vector<Tensor> forward(const Tensor& images);  // images: (N, num_channels, H, W)
  const MitConfig& config() const { return config_; }

  std::shared_ptr<nn::ModuleList> patch_embeddings;  // of OverlapPatchEmbeddings
  std::shared_ptr<nn::ModuleList> block;             // of ModuleList of SegformerLayer
  std::shared_ptr<nn::ModuleList> layer_norm;        // of LayerNorm

 private:
  MitConfig config_;
};

// SegformerModel: the encoder under the name "encoder" (its parent names it "segformer").
class MitBackbone : public nn::Module {
 public:
  explicit MitBackbone(const MitConfig& config);
  std::vector<Tensor> forward(const Tensor& images) { return encoder->forward(images); }  // as MitEncoder
  const std::vector<int64_t>& out_channels() const { return encoder->config().hidden_sizes; }

  std::shared_ptr<MitEncoder> encoder;
};

}  // namespace se::models
