#include <gtest/gtest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "nn/transformer.h"
#include "tests/engine/gradcheck.h"
#include "tests/engine/test_util.h"

namespace se::nn {
namespace {

using testing::error_of;
using testing::expect_gradients_match;

std::vector<std::string> names_of(const NamedTensors& tensors) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : tensors) names.push_back(name);
  return names;
}

// The state_dict keys of HF transformers' SegformerLayer (SegformerEfficientSelfAttention with
// sr_ratio > 1), in registration order.
TEST(SegformerLayer, HasHuggingFaceNamesAndShapes) {
  SegformerLayer layer(8, 2, 0.0, 2, 4);
  // clang-format off
  const std::vector<std::string> expected = {
      "layer_norm_1.weight", "layer_norm_1.bias",
      "attention.self.query.weight", "attention.self.query.bias",
      "attention.self.key.weight", "attention.self.key.bias",
      "attention.self.value.weight", "attention.self.value.bias",
      "attention.self.sr.weight", "attention.self.sr.bias",
      "attention.self.layer_norm.weight", "attention.self.layer_norm.bias",
      "attention.output.dense.weight", "attention.output.dense.bias",
      "layer_norm_2.weight", "layer_norm_2.bias",
      "mlp.dense1.weight", "mlp.dense1.bias",
      "mlp.dwconv.dwconv.weight", "mlp.dwconv.dwconv.bias",
      "mlp.dense2.weight", "mlp.dense2.bias"};
  // clang-format on
  const NamedTensors state = layer.state_dict();
  EXPECT_EQ(names_of(state), expected);
  EXPECT_EQ(layer.attention->self->sr->weight.shape(), (Shape{8, 8, 2, 2}));
  EXPECT_EQ(layer.mlp->dense1->weight.shape(), (Shape{32, 8}));
  EXPECT_EQ(layer.mlp->dwconv->dwconv->weight.shape(), (Shape{32, 1, 3, 3}));
  // Without spatial reduction there is no sr conv and no key/value norm, as in HF.
  EfficientSelfAttention plain(8, 2, 1);
  EXPECT_EQ(names_of(plain.state_dict()), (std::vector<std::string>{"query.weight", "query.bias", "key.weight",
                                                                    "key.bias", "value.weight", "value.bias"}));
}

TEST(SegformerLayer, InitialisesLikeHuggingFace) {
  manual_seed(3);
  MixFFN mlp(64, 256);
  const std::vector<float> w = mlp.dense1->weight.to_vector<float>();  // 16384 draws of N(0, 0.02)
  double s = 0, s2 = 0;
  for (float v : w) s += v, s2 += double(v) * v;
  const double mean = s / double(w.size()), std = std::sqrt(s2 / double(w.size()) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.001);
  EXPECT_NEAR(std, 0.02, 0.001);
  for (float b : mlp.dense1->bias.to_vector<float>()) EXPECT_EQ(b, 0.0f);
  for (float b : mlp.dwconv->dwconv->bias.to_vector<float>()) EXPECT_EQ(b, 0.0f);
}

// Efficient self-attention written out with the unfused ops, as HF computes it.
TEST(EfficientSelfAttention, MatchesTheUnfusedFormula) {
  manual_seed(5);
  EfficientSelfAttention attn(8, 2, 2);
  const int64_t h = 4, w = 6;
  Tensor x = randn({2, h * w, 8});
  Tensor got = attn.forward(x, h, w);
  NoGradGuard no_grad;
  Tensor image = x.transpose(1, 2).reshape({2, 8, h, w});
  Tensor kv = attn.layer_norm->forward(attn.sr->forward(image).flatten(2).transpose(1, 2));  // (2, 6, 8)
  auto heads = [](const Tensor& t) { return t.reshape({2, t.size(1), 2, 4}).permute({0, 2, 1, 3}); };
  Tensor q = heads(attn.query->forward(x)), k = heads(attn.key->forward(kv)), v = heads(attn.value->forward(kv));
  Tensor probs = softmax(div(matmul(q, k.transpose(-1, -2)), 2.0), -1);  // sqrt(head_dim 4)
  Tensor expected = matmul(probs, v).permute({0, 2, 1, 3}).reshape({2, h * w, 8});
  ASSERT_EQ(got.shape(), expected.shape());
  const std::vector<float> a = got.to_vector<float>(), b = expected.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5f) << i;
}

TEST(SegformerLayer, GradientsMatchFiniteDifferences) {
  manual_seed(7);
  auto layer = std::make_shared<SegformerLayer>(4, 2, 0.0, 2, 2);
  layer->to(DType::f64);
  // Non-square token image, odd so that the sr conv drops a row and a column.
  const int64_t h = 5, w = 3;
  expect_gradients_match([&](const std::vector<Tensor>& in) { return layer->forward(in[0], h, w); },
                         {randn({2, h * w, 4}, {DType::f64}).requires_grad_(true)});
  auto embed = std::make_shared<OverlapPatchEmbeddings>(3, 2, 2, 4);
  embed->to(DType::f64);
  expect_gradients_match([&](const std::vector<Tensor>& in) { return embed->forward(in[0]).tokens; },
                         {randn({1, 2, 5, 6}, {DType::f64}).requires_grad_(true)});
}

TEST(SegformerLayer, ParametersReceiveGradients) {
  manual_seed(9);
  SegformerLayer layer(8, 2, 0.0, 2, 4);
  sum(mul(layer.forward(randn({2, 16, 8}), 4, 4), randn({2, 16, 8}))).backward();
  for (const auto& [name, p] : layer.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_GT(sum(abs(p.grad())).item(), 0.0) << name;
  }
}

TEST(OverlapPatchEmbeddings, DownsamplesWithOverlap) {
  OverlapPatchEmbeddings embed(7, 4, 3, 16);
  const auto out = embed.forward(zeros({2, 3, 33, 18}));
  EXPECT_EQ(out.height, 9);  // ceil(33 / 4)
  EXPECT_EQ(out.width, 5);   // ceil(18 / 4)
  EXPECT_EQ(out.tokens.shape(), (Shape{2, 45, 16}));
}

TEST(SegformerLayer, RejectsMismatchedShapes) {
  SegformerLayer layer(8, 2, 0.0, 4, 4);
  EXPECT_NE(error_of([&] {
              layer.forward(zeros({1, 15, 8}), 4, 4);
            }).find("do not match the image size 4x4"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              layer.forward(zeros({1, 6, 8}), 2, 3);
            }).find("smaller than sr_ratio 4"),
            std::string::npos);
  EXPECT_NE(error_of([] { EfficientSelfAttention(10, 3, 1); }).find("multiple of num_attention_heads 3"),
            std::string::npos);
}

void expect_near(const Tensor& cpu, const Tensor& cuda, double rel_tol, const std::string& what) {
  const std::vector<float> a = cpu.to_vector<float>(), b = cuda.to_vector<float>();
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t k = 0; k < a.size(); ++k) ASSERT_NEAR(a[k], b[k], rel_tol * (1 + std::abs(a[k]))) << what << " " << k;
}

// The whole layer (attention with spatial reduction, Mix-FFN) on the emulated device against the
// CPU: outputs, the input gradient and every parameter gradient.
TEST(SegformerLayer, CudaMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(11);
  SegformerLayer cpu(8, 2, 0.0, 2, 4), cuda(8, 2, 0.0, 2, 4);
  cuda.load_state_dict(cpu.state_dict());
  cuda.to(Device::cuda());
  Tensor x = randn({2, 24, 8}).requires_grad_(true);
  Tensor x_cuda = x.detach().to(Device::cuda()).requires_grad_(true);
  Tensor y = cpu.forward(x, 4, 6), y_cuda = cuda.forward(x_cuda, 4, 6);
  expect_near(y, y_cuda, 1e-4, "output");
  Tensor w = randn(y.shape());
  y.backward(w);
  y_cuda.backward(w.to(Device::cuda()));
  expect_near(x.grad(), x_cuda.grad(), 1e-4, "input grad");
  const NamedTensors params = cpu.named_parameters(), params_cuda = cuda.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    expect_near(params[i].second.grad(), params_cuda[i].second.grad(), 1e-4, params[i].first);
  }
}

}  // namespace
}  // namespace se::nn
