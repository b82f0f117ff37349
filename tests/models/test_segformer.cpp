#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <map>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "models/registry.h"
#include "models/segformer.h"
#include "nn/safetensors.h"
#include "tests/engine/test_util.h"
#include "tests/models/parity_util.h"
#include "train/optimizer.h"

namespace se::models {
namespace {

using testing::error_of;

std::shared_ptr<Segformer> make_segformer(const std::string& variant, int64_t num_classes) {
  return std::make_shared<Segformer>(SegformerOptions{.variant = variant, .num_classes = num_classes});
}

// Built once per executable and shared by the tests that only read shapes and counts or refill the
// weights: random initialisation is most of the cost of a large variant (about 4 s per 10M
// parameters on the CI machine), so B3..B5 (47M..85M) are not built at all (see the counts test).
Segformer& shared_segformer(const std::string& variant) {
  static std::map<std::string, std::shared_ptr<Segformer>> models;
  auto& model = models[variant];
  if (!model) model = make_segformer(variant, 3);
  return *model;
}

std::string fixture(const std::string& name) {
  return std::string(SE_MODEL_FIXTURES) + "/" + name;
}

void expect_close(const Tensor& got, const Tensor& expected, double rel_tol, const std::string& what) {
  ASSERT_EQ(got.shape(), expected.shape()) << what;
  const std::vector<float> a = got.to_vector<float>(), b = expected.to_vector<float>();
  double max_abs = 0;
  for (float v : b) max_abs = std::max(max_abs, double(std::abs(v)));
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_NEAR(a[i], b[i], rel_tol * std::max(1.0, max_abs)) << what << " element " << i;
  }
}

// HF SegformerForSemanticSegmentation(SegformerConfig(...)).num_parameters() for the published
// B0..B5 hyper-parameters, printed by tools/fixtures/make_segformer_fixtures.py (transformers 5.23,
// random init, nothing downloaded).
TEST(Segformer, ParameterCountsEqualHuggingFace) {
  EXPECT_EQ(make_segformer("b0", 150)->num_parameters(), 3752694);  // 150 labels (ADE20K), the published B0
  const std::map<std::string, int64_t> hf_3_labels = {{"b0", 3714915},  {"b1", 13678019}, {"b2", 27348931},
                                                      {"b3", 47224771}, {"b4", 63995331}, {"b5", 84595651}};
  for (const std::string variant : {"b0", "b1", "b2"}) {
    EXPECT_EQ(shared_segformer(variant).num_parameters(), hf_3_labels.at(variant)) << variant;
  }
  // B3..B5 are B2 with deeper stages (same widths, heads, sr ratios and 768-wide decoder): B2's count
  // plus, per stage, the extra layers times the size of one of B2's layers of that stage.
  const Segformer& b2 = shared_segformer("b2");
  const std::vector<int64_t> b2_depths = mit_config("b2").depths;
  for (const std::string variant : {"b3", "b4", "b5"}) {
    const MitConfig config = mit_config(variant);
    EXPECT_EQ(config.hidden_sizes, b2.segformer->encoder->config().hidden_sizes);
    EXPECT_EQ(segformer_decoder_hidden_size(variant), 768);
    int64_t count = b2.num_parameters();
    for (size_t stage = 0; stage < 4; ++stage) {
      const auto& layers = *b2.segformer->encoder->block->at<nn::ModuleList>(stage);
      count += (config.depths[stage] - b2_depths[stage]) * layers[0]->num_parameters();
    }
    EXPECT_EQ(count, hf_3_labels.at(variant)) << variant;
  }
}

// Stochastic depth rises linearly over all layers of all stages: torch.linspace(0, 0.1, 8) for B0.
TEST(Segformer, DropPathRisesLinearlyOverTheLayers) {
  const MitEncoder& encoder = *shared_segformer("b0").segformer->encoder;
  std::vector<std::string> rates;
  for (size_t stage = 0; stage < 4; ++stage) {
    const auto& layers = *encoder.block->at<nn::ModuleList>(stage);
    for (size_t j = 0; j < layers.size(); ++j) {
      rates.push_back(layers.at<nn::SegformerLayer>(j)->drop_path->extra_repr());
    }
  }
  ASSERT_EQ(rates.size(), 8u);
  for (size_t i = 0; i < rates.size(); ++i) {
    ASSERT_TRUE(rates[i].starts_with("drop_prob=")) << rates[i];
    EXPECT_NEAR(std::stod(rates[i].substr(10)), 0.1 * double(i) / 7.0, 1e-5) << "layer " << i;
  }
}

// The fixtures hold HF's logits for name-derived weights (tests/models/parity_util.h) and HF's
// state_dict names and shapes (in checkpoint naming; see the script's name map).
void expect_matches_huggingface(const std::string& variant) {
  const nn::SafetensorsContents contents = nn::load_safetensors(fixture("segformer_" + variant + ".safetensors"));
  std::map<std::string, Tensor> ref(contents.tensors.begin(), contents.tensors.end());
  const auto input_shape = nlohmann::json::parse(contents.metadata.at("input_shape")).get<Shape>();
  ASSERT_EQ(contents.metadata.at("num_labels"), "3");
  Segformer* model = &shared_segformer(variant);

  // Same names and shapes; the order differs (transformers 5 registers stage by stage).
  std::map<std::string, Shape> hf_shapes, our_shapes;
  for (const auto& entry : nlohmann::json::parse(contents.metadata.at("state_dict"))) {
    hf_shapes[entry[0].get<std::string>()] = entry[1].get<Shape>();
  }
  for (const auto& [name, tensor] : model->state_dict()) our_shapes[name] = tensor.shape();
  EXPECT_EQ(our_shapes, hf_shapes);

  testing::fill_deterministic(*model);
  model->eval();
  NoGradGuard no_grad;
  const Tensor images = testing::deterministic_input(input_shape);
  const SegmentationOutput out = model->forward(images);
  // The reference must not be flat, or the comparison would prove little.
  const Tensor expected = ref.at("logits");
  EXPECT_GT(max(expected).item() - min(expected).item(), 0.5);
  expect_close(out.logits, expected, 1e-4, "logits");
  expect_close(model->forward_quarter_resolution(images), ref.at("logits_quarter"), 1e-4, "logits_quarter");
}

// The decode head applies its projections and fuse folded per stage (segformer_head.h); that must be
// HF's order's value and gradients, for the parameters and for the features (f64: rounding aside).
TEST(Segformer, FoldedDecodeHeadIsTheModulesOrder) {
  manual_seed(31);
  SegformerDecodeHead head({8, 16, 24, 32}, 16, 3);
  head.to(DType::f64);
  head.train();
  const std::vector<Shape> shapes = {{2, 8, 12, 10}, {2, 16, 6, 5}, {2, 24, 3, 3}, {2, 32, 2, 2}};
  struct Run {
    Tensor value;
    std::vector<Tensor> feature_grads, parameter_grads;
  };
  std::vector<Tensor> base;
  for (const Shape& shape : shapes) base.push_back(randn(shape, {DType::f64}));
  const Tensor weights = randn({2, 16, 12, 10}, {DType::f64});
  auto run = [&](bool folded) {
    head.zero_grad();
    std::vector<Tensor> features;
    for (const Tensor& f : base) features.push_back(f.clone().requires_grad_(true));
    const Tensor fused = folded ? head.fuse_folded(features) : head.fuse_as_modules(features);
    sum(mul(fused, weights)).backward();
    Run r{fused.detach(), {}, {}};
    for (const Tensor& f : features) r.feature_grads.push_back(f.grad());
    for (const auto& [name, p] : head.named_parameters()) {
      if (p.grad().defined()) r.parameter_grads.push_back(p.grad().clone());
    }
    return r;
  };
  const Run folded = run(true), modules = run(false);
  auto expect_near = [](const Tensor& a, const Tensor& b, const std::string& what) {
    ASSERT_EQ(a.shape(), b.shape()) << what;
    const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], y[i], 1e-11 * (1 + std::abs(y[i]))) << what << " " << i;
  };
  expect_near(folded.value, modules.value, "fused map");
  for (size_t i = 0; i < shapes.size(); ++i) expect_near(folded.feature_grads[i], modules.feature_grads[i], "dx");
  ASSERT_EQ(folded.parameter_grads.size(), 2 * 4 + 1u);  // linear_c weights and biases, linear_fuse
  ASSERT_EQ(modules.parameter_grads.size(), folded.parameter_grads.size());
  for (size_t i = 0; i < folded.parameter_grads.size(); ++i) {
    expect_near(folded.parameter_grads[i], modules.parameter_grads[i], "parameter gradient");
  }
}

TEST(Segformer, B0MatchesHuggingFace) {
  expect_matches_huggingface("b0");
}
TEST(Segformer, B1MatchesHuggingFace) {
  expect_matches_huggingface("b1");
}

// B0 (narrow, 256-wide decoder), B1 (wide) and B2 (deeper, 768-wide decoder); B3..B5 differ from
// B2 only in depth (checked by the counts test).
TEST(Segformer, VariantsRunForwardAndBackward) {
  for (const std::string variant : {"b0", "b1", "b2"}) {
    manual_seed(1);
    Segformer& model = shared_segformer(variant);
    model.eval();  // in training, DropPath may drop a whole residual branch of the one sample
    model.zero_grad();
    // 32x64: every stage attends to two reduced keys (with one, softmax would cut the query and key
    // gradients).
    const SegmentationOutput out = model.forward(randn({1, 3, 32, 64}));
    EXPECT_EQ(out.logits.shape(), (Shape{1, 3, 32, 64})) << variant;
    EXPECT_FALSE(out.aux_logits.defined());
    ASSERT_EQ(out.features.size(), 4u);
    const std::vector<int64_t>& widths = model.segformer->out_channels();
    const Shape sizes[] = {{8, 16}, {4, 8}, {2, 4}, {1, 2}};
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(out.features[i].shape(), (Shape{1, widths[i], sizes[i][0], sizes[i][1]})) << variant << " stage " << i;
    }
    mean(mul(out.logits, out.logits)).backward();
    int64_t without_grad = 0;
    for (const auto& [name, p] : model.named_parameters()) {
      if (!p.grad().defined()) {
        ++without_grad;
        continue;
      }
      EXPECT_EQ(p.grad().shape(), p.shape()) << name;
      EXPECT_GT(sum(abs(p.grad())).item(), 0.0) << name;
    }
    EXPECT_EQ(without_grad, 0) << variant;
    model.zero_grad();
  }
}

TEST(Segformer, BatchOfNonSquareImages) {
  manual_seed(2);
  auto model = make_segformer("b0", 5);
  Tensor images = randn({2, 3, 64, 36}).requires_grad_(true);
  const SegmentationOutput out = model->forward(images);
  EXPECT_EQ(out.logits.shape(), (Shape{2, 5, 64, 36}));
  EXPECT_EQ(out.features[0].shape(), (Shape{2, 32, 16, 9}));
  EXPECT_EQ(out.features[3].shape(), (Shape{2, 256, 2, 2}));
  sum(out.logits).backward();
  EXPECT_EQ(images.grad().shape(), images.shape());
  EXPECT_GT(sum(abs(images.grad())).item(), 0.0);
}

TEST(Segformer, RegistryReadsItsKeysAndRejectsBadOnes) {
  auto model = build_model_from_json(
      R"({"name": "segformer", "variant": "b0", "num_classes": 7, "drop_path_rate": 0.2, "classifier_dropout": 0.0})");
  EXPECT_EQ(model->num_classes(), 7);
  auto segformer = std::dynamic_pointer_cast<Segformer>(model);
  ASSERT_NE(segformer, nullptr);
  EXPECT_EQ(segformer->segformer->out_channels(), (std::vector<int64_t>{32, 64, 160, 256}));
  EXPECT_EQ(segformer->decode_head->linear_fuse->weight.shape(), (Shape{256, 1024, 1, 1}));
  const auto& last_stage = *segformer->segformer->encoder->block->at<nn::ModuleList>(3);
  EXPECT_EQ(last_stage.at<nn::SegformerLayer>(1)->drop_path->extra_repr(), "drop_prob=0.2");
  // The wide variants (built by the other tests); B2..B5 decode with 768 channels.
  EXPECT_EQ(mit_config("b1").hidden_sizes, (std::vector<int64_t>{64, 128, 320, 512}));
  EXPECT_EQ(segformer_decoder_hidden_size("b1"), 256);
  EXPECT_EQ(segformer_decoder_hidden_size("b2"), 768);
  auto gray = build_model_from_json(R"({"name": "segformer", "num_classes": 2, "in_channels": 1})");
  EXPECT_EQ(gray->forward(zeros({1, 1, 32, 32})).logits.shape(), (Shape{1, 2, 32, 32}));
  EXPECT_NE(error_of([] {
              build_model_from_json(R"({"name": "segformer", "variant": "b6", "num_classes": 2})");
            }).find("unknown variant 'b6'; expected one of b0, b1, b2, b3, b4, b5"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              build_model_from_json(R"({"name": "segformer", "varient": "b1", "num_classes": 2})");
            }).find("variant"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              make_segformer("b0", 2)->forward(zeros({1, 3, 16, 64}));
            }).find("smaller than sr_ratio 8"),
            std::string::npos);
}

TEST(Segformer, OptimizerStepsReduceTheLoss) {
  manual_seed(4);
  auto model = std::make_shared<Segformer>(
      SegformerOptions{.variant = "b0", .num_classes = 3, .drop_path_rate = 0.0, .classifier_dropout = 0.0});
  model->train();
  const Tensor images = randn({2, 3, 32, 32});
  // Regions: class 0 on the top half, 1 and 2 on the bottom left and right.
  std::vector<int64_t> labels(2 * 32 * 32);
  for (size_t i = 0; i < labels.size(); ++i) {
    const size_t y = (i / 32) % 32, x = i % 32;
    labels[i] = y < 16 ? 0 : (x < 16 ? 1 : 2);
  }
  const Tensor target = from_vector<int64_t>(labels, {2, 32, 32});
  Optimizer optimizer(make_param_groups(model->named_parameters()),
                      {.type = OptimizerType::adamw, .lr = 1e-3, .weight_decay = 0.01});
  std::vector<double> losses;
  for (int step = 0; step < 5; ++step) {
    Tensor loss = cross_entropy(model->forward(images).logits, target);
    losses.push_back(loss.item());
    loss.backward();
    optimizer.step();
    optimizer.zero_grad();
  }
  EXPECT_LT(losses.back(), 0.5 * losses.front()) << "first " << losses.front() << ", last " << losses.back();
}

// One training-mode step of B0 against HF's, in float64 so that only semantics can differ (dropout and drop
// path 0): name-derived weights, two non-square images, cross-entropy of the upsampled logits over a fixed
// target with ignored pixels. The loss, each parameter's gradient (sum and sum of squares: attention with
// spatial reduction, LayerNorm, Mix-FFN's depthwise conv and GELU, the decode head with its BatchNorm's
// batch statistics, the resizes) and the BatchNorm's updated running statistics match.
void expect_training_step_matches_huggingface(Device device) {
  const std::string path = fixture("segformer_b0_train.safetensors");
  const nn::SafetensorsContents contents = nn::load_safetensors(path);
  const std::map<std::string, Tensor> reference(contents.tensors.begin(), contents.tensors.end());
  const auto input_shape = nlohmann::json::parse(contents.metadata.at("input_shape")).get<Shape>();
  const int64_t classes = std::stoll(contents.metadata.at("num_labels"));
  Segformer model(
      SegformerOptions{.variant = "b0", .num_classes = classes, .drop_path_rate = 0.0, .classifier_dropout = 0.0});
  testing::fill_deterministic(model);
  model.to(device, DType::f64);
  model.train();
  CrossEntropyParams ce;
  ce.ignore_index = 255;
  const Tensor target = testing::training_target({input_shape[0], input_shape[2], input_shape[3]}, classes, device);
  const Tensor loss =
      cross_entropy(model.forward(testing::deterministic_input(input_shape).to(device, DType::f64)).logits, target, ce);
  loss.backward();
  testing::expect_training_step_matches(
      model, loss, reference, "", [](const std::string& name) { return name; }, path);
}

TEST(Segformer, B0TrainingStepMatchesHuggingFace) {
  expect_training_step_matches_huggingface(Device::cpu());
}

TEST(SegformerCuda, B0TrainingStepMatchesHuggingFace) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  expect_training_step_matches_huggingface(Device::cuda());
}

// B0 forward and backward on the emulated device against the CPU, eval mode.
TEST(Segformer, B0CudaMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(6);
  auto cpu = make_segformer("b0", 3), cuda = make_segformer("b0", 3);
  cuda->load_state_dict(cpu->state_dict());
  cuda->to(Device::cuda());
  cpu->eval();
  cuda->eval();
  const Tensor images = randn({1, 3, 32, 64});  // two reduced keys per stage, so q and k get gradients
  const Tensor y = cpu->forward(images).logits, y_cuda = cuda->forward(images.to(Device::cuda())).logits;
  expect_close(y_cuda, y, 1e-4, "logits");
  const Tensor w = randn(y.shape());
  sum(mul(y, w)).backward();
  sum(mul(y_cuda, w.to(Device::cuda()))).backward();
  const NamedTensors params = cpu->named_parameters(), params_cuda = cuda->named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    expect_close(params_cuda[i].second.grad(), params[i].second.grad(), 1e-3, params[i].first);
  }
  EXPECT_GT(sum(abs(cpu->segformer->encoder->block->at<nn::ModuleList>(0)
                        ->at<nn::SegformerLayer>(0)
                        ->attention->self->query->weight.grad()))
                .item(),
            0.0);
}

}  // namespace
}  // namespace se::models
