#include "models/backbones/mit.h"

#include "core/error.h"

namespace se::models {

MitConfig mit_config(const std::string& variant) {
  const std::string v = variant.starts_with("mit_") ? variant.substr(4) : variant;
  MitConfig config;
  // nvidia/mit-b0..b5 (config.json on the HF hub, = the paper's Table 6): B0 is narrower, B1..B5
  // share the widths and differ in depth.
  config.num_attention_heads = {1, 2, 5, 8};
  config.hidden_sizes = v == "b0" ? std::vector<int64_t>{32, 64, 160, 256} : std::vector<int64_t>{64, 128, 320, 512};
  if (v == "b0" || v == "b1") {
    config.depths = {2, 2, 2, 2};
  } else if (v == "b2") {
    config.depths = {3, 4, 6, 3};
  } else if (v == "b3") {
    config.depths = {3, 4, 18, 3};
  } else if (v == "b4") {
    config.depths = {3, 8, 27, 3};
  } else if (v == "b5") {
    config.depths = {3, 6, 40, 3};
  } else {
    SE_THROW("mit: unknown variant '", variant, "'; expected one of b0, b1, b2, b3, b4, b5");
  }
  return config;
}

MitEncoder::MitEncoder(const MitConfig& config) : nn::Module("SegformerEncoder"), config_(config) {
  const size_t stages = config.hidden_sizes.size();
  for (const auto* list : {&config.depths, &config.num_attention_heads, &config.sr_ratios, &config.patch_sizes,
                           &config.strides, &config.mlp_ratios}) {
    SE_CHECK(list->size() == stages, "mit: every per-stage list must have ", stages,
             " entries (one per hidden size), got one with ", list->size());
  }
  SE_CHECK(stages > 0, "mit: hidden_sizes must not be empty");
  int64_t total_depth = 0;
  for (int64_t depth : config.depths) {
    SE_CHECK(depth > 0, "mit: depths must be positive, got ", depth);
    total_depth += depth;
  }
  patch_embeddings = register_module("patch_embeddings", std::make_shared<nn::ModuleList>());
  block = register_module("block", std::make_shared<nn::ModuleList>());
  layer_norm = register_module("layer_norm", std::make_shared<nn::ModuleList>());
  int64_t layer_index = 0;  // over all stages: the stochastic depth rate grows with it
  for (size_t i = 0; i < stages; ++i) {
    const int64_t hidden = config.hidden_sizes[i];
    patch_embeddings->push_back(std::make_shared<nn::OverlapPatchEmbeddings>(
        config.patch_sizes[i], config.strides[i], i == 0 ? config.num_channels : config.hidden_sizes[i - 1], hidden));
    auto layers = std::make_shared<nn::ModuleList>();
    for (int64_t j = 0; j < config.depths[i]; ++j, ++layer_index) {
      // torch.linspace(0, drop_path_rate, total_depth)[layer_index]
      const double rate = total_depth > 1 ? config.drop_path_rate * double(layer_index) / double(total_depth - 1) : 0.0;
      layers->push_back(std::make_shared<nn::SegformerLayer>(hidden, config.num_attention_heads[i], rate,
                                                             config.sr_ratios[i], config.mlp_ratios[i]));
    }
    block->push_back(layers);
    layer_norm->push_back(std::make_shared<nn::LayerNorm>(Shape{hidden}));
  }
}

std::vector<Tensor> MitEncoder::forward(const Tensor& images) {
  SE_CHECK(images.dim() == 4 && images.size(1) == config_.num_channels, "mit: expected images (N, ",
           config_.num_channels, ", H, W), got ", shape_str(images.shape()));
  std::vector<Tensor> features;
  Tensor x = images;
  for (size_t i = 0; i < config_.hidden_sizes.size(); ++i) {
    auto embedded = patch_embeddings->at<nn::OverlapPatchEmbeddings>(i)->forward(x);
    Tensor tokens = embedded.tokens;  // (N, h * w, C)
    const auto& layers = *block->at<nn::ModuleList>(i);
    for (size_t j = 0; j < layers.size(); ++j) {
      tokens = layers.at<nn::SegformerLayer>(j)->forward(tokens, embedded.height, embedded.width);
    }
    tokens = layer_norm->at<nn::LayerNorm>(i)->forward(tokens);
    // (N, h * w, C) -> (N, C, h, w): a channels-last view; the next patch embedding's conv copies it.
    x = tokens.view({tokens.size(0), embedded.height, embedded.width, tokens.size(2)}).permute({0, 3, 1, 2});
    features.push_back(x);
  }
  return features;
}

MitBackbone::MitBackbone(const MitConfig& config) : nn::Module("SegformerModel") {
  encoder = register_module("encoder", std::make_shared<MitEncoder>(config));
}

}  // namespace se::models
