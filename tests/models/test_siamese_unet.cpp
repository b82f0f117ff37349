#include <gtest/gtest.h>

#include "models/registry.h"
#include "models/siamese_unet.h"
#include "tests/engine/test_util.h"
#include "tests/models/parity_util.h"
#include "tests/models/unet_test_util.h"

namespace se::models {
namespace {

using testing::error_of;

SiameseOptions small_options(int64_t depth = 3) {
  SiameseOptions options;
  options.unet.num_classes = 3;
  options.unet.base_channels = 8;
  options.unet.depth = depth;
  options.levels = {1, -1};
  options.consistency_weight = 0.5;
  options.kl_weight = 0.25;
  return options;
}

// A scene with a vertical step edge between columns 15 and 16 in every channel, a little texture,
// and the labels that go with it. images (N, 3, 32, 32)
Tensor edge_images(int64_t n) {
  Tensor right = gt(arange(32.0).view({1, 1, 1, 32}), 15.5).to(DType::f32);  // 0 | 1
  Tensor step = sub(mul(right, 2.0), 1.0).expand({n, 3, 32, 32});
  return add(step, mul(testing::deterministic_input({n, 3, 32, 32}), 0.05));
}

// Column j of the mean |x[..., j + 1] - x[..., j]| over the batch, channels and rows that is largest.
int64_t strongest_vertical_edge(const Tensor& images, int64_t sample) {
  Tensor x = images.select(0, sample);
  Tensor dx = abs(sub(x.slice(2, 1, 32), x.slice(2, 0, 31)));  // (3, 32, 31)
  return static_cast<int64_t>(argmax(mean(dx, {0, 1}), 0).item());
}

TEST(SiameseUNet, BranchesShareOneSetOfParametersWithThePlainUNet) {
  SiameseUNet siamese(small_options());
  UNet plain(small_options().unet);
  EXPECT_EQ(siamese.num_parameters(), plain.num_parameters());
  const NamedTensors a = siamese.state_dict(), b = plain.state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].first, b[i].first);
  // Inference is one branch: a plain U-Net with the same weights gives the same logits.
  testing::fill_deterministic(siamese);
  plain.load_state_dict(siamese.state_dict());
  siamese.eval();
  plain.eval();
  Tensor images = testing::deterministic_input({1, 3, 24, 40});
  SegmentationOutput out = siamese.forward(images);
  testing::expect_close(out.logits, plain.forward(images).logits, 1e-6, "logits");
  ASSERT_EQ(out.features.size(), 2u);  // levels 1 and 3 (-1), finest first
  EXPECT_EQ(out.features[0].shape(), (Shape{1, 16, 12, 20}));
  EXPECT_EQ(out.features[1].shape(), (Shape{1, 64, 3, 5}));
}

TEST(SiameseUNet, ForwardPairShapesAndBranchGradientsAdd) {
  manual_seed(5);
  SiameseUNet model(small_options());
  Tensor view_a = randn({2, 3, 32, 24}), view_b = randn({2, 3, 32, 24});
  Tensor wa = randn({2, 3, 32, 24}), wb = randn({2, 3, 32, 24});
  SiameseOutput pair = model.forward_pair(view_a, view_b);
  for (const SegmentationOutput* branch : {&pair.a, &pair.b}) {
    EXPECT_EQ(branch->logits.shape(), (Shape{2, 3, 32, 24}));
    ASSERT_EQ(branch->features.size(), 2u);
    EXPECT_EQ(branch->features[0].shape(), (Shape{2, 16, 16, 12}));
    EXPECT_EQ(branch->features[1].shape(), (Shape{2, 64, 4, 3}));
  }
  add(sum(mul(pair.a.logits, wa)), sum(mul(pair.b.logits, wb))).backward();
  testing::expect_all_parameters_have_gradients(model);
  NamedTensors pair_grads;
  for (const auto& [name, p] : model.named_parameters()) pair_grads.emplace_back(name, p.grad());
  // The same weights run on each view alone: the pair's gradient is the sum of the two.
  model.zero_grad();
  sum(mul(model.forward(view_a).logits, wa)).backward();
  NamedTensors grads_a;
  for (const auto& [name, p] : model.named_parameters()) grads_a.emplace_back(name, p.grad());
  model.zero_grad();
  sum(mul(model.forward(view_b).logits, wb)).backward();
  const NamedTensors params = model.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    testing::expect_close(add(grads_a[i].second, params[i].second.grad()), pair_grads[i].second, 1e-4, params[i].first,
                          0.01);
  }
}

TEST(SiameseUNet, ConsistencyGradientReachesTheEncoderOnly) {
  for (ConsistencyLoss kind : {ConsistencyLoss::mse, ConsistencyLoss::cosine}) {
    SCOPED_TRACE(kind == ConsistencyLoss::mse ? "mse" : "cosine");
    manual_seed(6);
    SiameseOptions options = small_options();
    options.levels = {-1};  // the bottleneck: every encoder parameter feeds it
    options.consistency_loss = kind;
    SiameseUNet model(options);
    Tensor images = randn({2, 3, 32, 32});
    SiameseLoss loss = model.loss(model.forward_pair(images, model.make_view(images, 1)), testing::labels_from(images));
    EXPECT_GT(loss.feature_consistency.item(), 0.0);
    loss.feature_consistency.backward();
    testing::expect_all_parameters_have_gradients(*model.encoder);
    for (const auto& [name, p] : model.decoder->named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
  }
}

TEST(SiameseUNet, LossIsTheWeightedSumOfItsParts) {
  manual_seed(8);
  SiameseUNet model(small_options());
  Tensor images = randn({2, 3, 32, 32});
  Tensor target = testing::labels_from(images);
  {
    NoGradGuard no_grad;  // also: the parts need no autograd to be computed
    model.eval();
    SiameseOutput pair = model.forward_pair(images, model.make_view(images, 3));
    SiameseLoss loss = model.loss(pair, target);
    const double expected = loss.seg_a.item() + loss.seg_b.item() + 0.5 * loss.feature_consistency.item() +
                            0.25 * loss.prediction_consistency.item();
    EXPECT_NEAR(loss.total.item(), expected, 1e-5 * std::abs(expected));
    // Branch A is the plain forward; the parts are what their names say.
    EXPECT_NEAR(loss.seg_a.item(), cross_entropy(model.forward(images).logits, target).item(), 1e-5);
    const double mse = (mse_loss(pair.a.features[0], pair.b.features[0]).item() +
                        mse_loss(pair.a.features[1], pair.b.features[1]).item()) /
                       2;
    EXPECT_NEAR(loss.feature_consistency.item(), mse, 1e-5 * mse);
    EXPECT_GT(loss.prediction_consistency.item(), 0.0);
    EXPECT_NEAR(symmetric_kl(pair.a.logits, pair.a.logits).item(), 0.0, 1e-7);
    // The caller's segmentation loss replaces the cross-entropy; the consistency terms stay.
    SiameseLoss custom = model.loss(pair, [&](const Tensor& logits) { return mul(cross_entropy(logits, target), 2.0); });
    EXPECT_NEAR(custom.seg_a.item(), 2 * loss.seg_a.item(), 1e-5);
    EXPECT_NEAR(custom.seg_b.item(), 2 * loss.seg_b.item(), 1e-5);
    EXPECT_EQ(custom.feature_consistency.item(), loss.feature_consistency.item());
    EXPECT_NEAR(custom.total.item(), loss.total.item() + loss.seg_a.item() + loss.seg_b.item(), 1e-5 * expected);
  }
  SiameseOptions no_kl = small_options();
  no_kl.kl_weight = 0;
  SiameseUNet plain_consistency(no_kl);
  EXPECT_FALSE(plain_consistency.training_loss(images, target, 1).prediction_consistency.defined());
}

// The KL term: 0.5 * sum_k (p - q)(log p - log q), checked against its definition on two pixels.
TEST(SiameseUNet, SymmetricKlFollowsItsDefinition) {
  Tensor a = from_vector<float>({1.0f, 0.0f, -1.0f, 0.5f, 0.5f, 0.5f}, {1, 3, 1, 2});
  Tensor b = from_vector<float>({0.0f, 0.0f, 0.0f, 2.0f, -1.0f, 0.0f}, {1, 3, 1, 2});
  std::vector<float> pa = softmax(a, 1).to_vector<float>(), pb = softmax(b, 1).to_vector<float>();
  double expected = 0;
  for (size_t i = 0; i < pa.size(); ++i) expected += (pa[i] - pb[i]) * (std::log(pa[i]) - std::log(pb[i]));
  expected = 0.5 * expected / 2;  // mean over the two pixels
  EXPECT_NEAR(symmetric_kl(a, b).item(), expected, 1e-6);
  EXPECT_NEAR(symmetric_kl(a, b).item(), symmetric_kl(b, a).item(), 1e-7);
}

TEST(SiameseUNet, ViewKeepsGeometryAndChangesAppearance) {
  Tensor images = edge_images(4);
  for (uint64_t seed : {1, 2, 3}) {
    Tensor view = make_domain_shifted_view(images, ViewRecipe{}, seed);
    EXPECT_EQ(view.shape(), images.shape());
    EXPECT_GT(mean(abs(sub(view, images))).item(), 0.05) << "seed " << seed;
    for (int64_t n = 0; n < 4; ++n)
      EXPECT_EQ(strongest_vertical_edge(view, n), 15) << "seed " << seed << ", image " << n;
  }
  // Each part of the recipe alone changes the image and keeps the edge.
  for (int part = 0; part < 6; ++part) {
    ViewRecipe only{0, 0, 0, 0, 0, 0};
    double* amounts[] = {&only.channel_mix, &only.brightness, &only.contrast,
                         &only.gamma,       &only.blur_sigma, &only.noise_std};
    *amounts[part] = part == 4 ? 1.5 : 0.3;  // blur: a sigma of pixels; the rest: amounts
    Tensor view = make_domain_shifted_view(images, only, 11);
    EXPECT_GT(mean(abs(sub(view, images))).item(), 1e-3) << "part " << part;
    EXPECT_EQ(strongest_vertical_edge(view, 0), 15) << "part " << part;
  }
  // The identity recipe is the identity.
  testing::expect_close(make_domain_shifted_view(images, ViewRecipe{0, 0, 0, 0, 0, 0}, 1), images, 1e-6, "identity");
}

TEST(SiameseUNet, ViewIsDeterministicBySeedAndLeavesTheGlobalGenerator) {
  SiameseUNet model(small_options());
  Tensor images = edge_images(2);
  manual_seed(9);
  const std::vector<float> expected_global = rand({8}).to_vector<float>();
  manual_seed(9);
  const std::vector<float> first = model.make_view(images, 77).to_vector<float>();
  EXPECT_EQ(model.make_view(images, 77).to_vector<float>(), first);
  EXPECT_NE(model.make_view(images, 78).to_vector<float>(), first);
  EXPECT_EQ(rand({8}).to_vector<float>(), expected_global);
  // The views of a batch differ from image to image (per-image draws).
  Tensor view = model.make_view(images, 77);
  EXPECT_GT(max(abs(sub(view.select(0, 0), view.select(0, 1)))).item(), 0.05);
  Tensor grad_images = randn({1, 3, 8, 8}).requires_grad_(true);
  EXPECT_FALSE(model.make_view(grad_images, 1).requires_grad());
}

TEST(SiameseUNet, RegistryReadsTheNestedConsistencyAndViewKeys) {
  auto model = build_model_from_json(R"({"name": "siamese_unet", "num_classes": 4, "base_channels": 4, "depth": 2,
      "bilinear": true, "ignore_index": 0,
      "consistency": {"weight": 0.3, "levels": [0, 2, 2], "loss": "cosine", "kl_weight": 0.1},
      "view": {"channel_mix": 0.1, "brightness": 0.0, "contrast": 0.2, "gamma": 0.1, "blur_sigma": 0.5,
               "noise_std": 0.01}})");
  auto* siamese = dynamic_cast<SiameseUNet*>(model.get());
  ASSERT_NE(siamese, nullptr);
  EXPECT_EQ(siamese->levels(), (std::vector<int64_t>{0, 2}));
  const SiameseOptions& o = siamese->siamese_options();
  EXPECT_EQ(o.consistency_loss, ConsistencyLoss::cosine);
  EXPECT_DOUBLE_EQ(o.consistency_weight, 0.3);
  EXPECT_DOUBLE_EQ(o.kl_weight, 0.1);
  EXPECT_EQ(o.ignore_index, 0);
  EXPECT_DOUBLE_EQ(o.view.blur_sigma, 0.5);
  EXPECT_DOUBLE_EQ(o.view.brightness, 0.0);
  EXPECT_EQ(model->forward(randn({1, 3, 8, 8})).features.size(), 2u);

  auto error = [](const std::string& extra) {
    return error_of([&] {
      build_model_from_json(R"({"name": "siamese_unet", "num_classes": 2, "base_channels": 2, "depth": 2, )" + extra +
                            "}");
    });
  };
  EXPECT_NE(error(R"("view": {"gama": 0.1})").find("gama"), std::string::npos);
  EXPECT_NE(error(R"("consistency": {"loss": "l1"})").find("'l1' (expected 'mse' or 'cosine')"), std::string::npos);
  EXPECT_NE(error(R"("consistency": {"levels": [3]})").find("level 3 is outside [-3, 2] for an encoder of 3 levels"),
            std::string::npos);
  EXPECT_NE(error(R"("view": {"contrast": 1.5})").find("view.contrast = 1.5"), std::string::npos);
}

TEST(SiameseUNet, ComparesResNetLevelsWithAResNetBackbone) {
  SiameseOptions options = small_options();
  options.unet.backbone = "resnet18";
  options.unet.bilinear = true;
  options.levels = {0, -1};
  SiameseUNet model(options);
  EXPECT_EQ(model.levels(), (std::vector<int64_t>{0, 4}));
  Tensor images = randn({2, 3, 32, 32});
  SiameseOutput pair = model.forward_pair(images, model.make_view(images, 1));
  EXPECT_EQ(pair.b.logits.shape(), (Shape{2, 3, 32, 32}));
  ASSERT_EQ(pair.b.features.size(), 2u);
  EXPECT_EQ(pair.a.features[0].shape(), (Shape{2, 64, 16, 16}));  // the stem
  EXPECT_EQ(pair.a.features[1].shape(), (Shape{2, 512, 1, 1}));   // layer4
  EXPECT_GT(model.loss(pair, testing::labels_from(images)).feature_consistency.item(), 0.0);
}

TEST(SiameseUNet, OptimizerStepsReduceTheTotalLoss) {
  manual_seed(10);
  SiameseUNet model(small_options(2));
  Tensor images = randn({2, 3, 32, 32});
  Tensor target = testing::labels_from(images);
  const std::vector<double> losses = testing::adam_losses(
      model, [&] { return model.training_loss(images, target, 123).total; }, 6);
  EXPECT_LT(losses.back(), 0.8 * losses.front()) << "first " << losses.front() << ", last " << losses.back();
}

// The smallest model at 1x3x32x32: the view, both branches, the loss parts and the gradients vs the CPU.
TEST(SiameseUNetCuda, MatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  SiameseOptions options = small_options(2);
  SiameseUNet cpu(options), cuda(options);
  testing::fill_deterministic(cpu);
  cuda.load_state_dict(cpu.state_dict());
  cuda.to(Device::cuda());
  Tensor images = testing::deterministic_input({1, 3, 32, 32});
  Tensor target = testing::labels_from(images);
  testing::expect_close(cuda.make_view(images.to(Device::cuda()), 4).to(Device::cpu()), cpu.make_view(images, 4), 1e-4,
                        "view", 0.01);
  SiameseLoss cpu_loss = cpu.training_loss(images, target, 4);
  SiameseLoss cuda_loss = cuda.training_loss(images.to(Device::cuda()), target.to(Device::cuda()), 4);
  for (auto [name, c, g] : {std::tuple{"seg_a", cpu_loss.seg_a, cuda_loss.seg_a},
                            {"seg_b", cpu_loss.seg_b, cuda_loss.seg_b},
                            {"feature", cpu_loss.feature_consistency, cuda_loss.feature_consistency},
                            {"kl", cpu_loss.prediction_consistency, cuda_loss.prediction_consistency}}) {
    EXPECT_NEAR(g.item(), c.item(), 1e-3 * std::abs(c.item()) + 1e-6) << name;
  }
  cpu_loss.total.backward();
  cuda_loss.total.backward();
  const NamedTensors cpu_params = cpu.named_parameters(), cuda_params = cuda.named_parameters();
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    testing::expect_close(cuda_params[i].second.grad().to(Device::cpu()), cpu_params[i].second.grad(), 1e-3,
                          cpu_params[i].first + ".grad", 0.01);
  }
}

}  // namespace
}  // namespace se::models
