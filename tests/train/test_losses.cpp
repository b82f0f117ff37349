// The config-built segmentation loss against direct engine op calls; config errors; class weights from
// hand-computed pixel counts; pixel counting on a small in-memory dataset; backward on the CPU and CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/dataset.h"
#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"
#include "train/losses.h"

namespace se {
namespace {

using testing::error_of;
using testing::expect_error;

constexpr int64_t kClasses = 4;
constexpr int64_t kIgnore = 255;

// Logits (2, 4, 3, 5) f32 and a target (2, 3, 5) with every class and a few ignored pixels.
struct Batch {
  Tensor logits;
  Tensor target;
};

Batch make_batch() {
  manual_seed(7);
  Batch batch;
  batch.logits = mul(randn({2, kClasses, 3, 5}), 2.0);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < 2 * 3 * 5; ++i) labels.push_back(i % 7 == 3 ? kIgnore : (i * 5 + i / 4) % kClasses);
  batch.target = from_vector<int64_t>(labels, {2, 3, 5});
  return batch;
}

Tensor class_tensor(const std::vector<double>& weights) {
  return from_vector<double>(weights, {kClasses}, {.dtype = DType::f32});
}

SegmentationLoss loss_from(const std::string& json, const ClassPixelCounts* stats = nullptr) {
  return SegmentationLoss::from_config(Config::parse(json), kClasses, kIgnore, stats);
}

double part(const LossTerms& terms, const std::string& name) {
  for (const auto& [part_name, value] : terms.parts) {
    if (part_name == name) return value.item();
  }
  ADD_FAILURE() << "no part '" << name << "'";
  return NAN;
}

// ---- each type against its engine op

TEST(SegmentationLoss, EachTypeEqualsTheEngineOp) {
  const Batch b = make_batch();
  const std::vector<double> weights = {0.5, 1.0, 2.0, 1.5};
  {
    CrossEntropyParams p;
    p.ignore_index = kIgnore;
    p.label_smoothing = 0.1;
    p.weight = class_tensor(weights);
    const LossTerms terms = loss_from(R"({"loss": {"type": "ce", "label_smoothing": 0.1,
                                                     "class_weight": [0.5, 1, 2, 1.5]}})")(b.logits, b.target);
    EXPECT_EQ(part(terms, "ce"), cross_entropy(b.logits, b.target, p).item());
  }
  {
    OhemCrossEntropyParams p;
    p.thresh = 0.6;
    p.min_kept = 4;
    p.ignore_index = kIgnore;
    p.weight = class_tensor(weights);
    const LossTerms terms = loss_from(R"({"loss": {"type": "ohem", "thresh": 0.6, "min_kept": 4,
                                                     "class_weight": [0.5, 1, 2, 1.5]}})")(b.logits, b.target);
    EXPECT_EQ(part(terms, "ohem"), ohem_cross_entropy(b.logits, b.target, p).item());
  }
  {
    DiceLossParams p;
    p.smooth = 1.0;
    p.eps = 1e-6;
    p.log_loss = true;
    p.ignore_index = kIgnore;
    const LossTerms terms =
        loss_from(R"({"loss": {"type": "dice", "smooth": 1, "eps": 1e-6, "log_loss": true}})")(b.logits, b.target);
    EXPECT_EQ(part(terms, "dice"), dice_loss(b.logits, b.target, p).item());
  }
  {
    FocalLossParams p;
    p.gamma = 1.5;
    p.alpha = class_tensor(weights);
    p.ignore_index = kIgnore;
    const LossTerms terms =
        loss_from(R"({"loss": {"type": "focal", "gamma": 1.5, "alpha": [0.5, 1, 2, 1.5]}})")(b.logits, b.target);
    EXPECT_EQ(part(terms, "focal"), focal_loss(b.logits, b.target, p).item());
  }
  {
    const LossTerms terms = loss_from(R"({"loss": {"type": "lovasz"}})")(b.logits, b.target);
    EXPECT_EQ(part(terms, "lovasz"), lovasz_softmax(b.logits, b.target, kIgnore).item());
  }
}

TEST(SegmentationLoss, AbsentLossIsPlainCrossEntropy) {
  const Batch b = make_batch();
  Config root = Config::parse("{}");
  const SegmentationLoss loss = SegmentationLoss::from_config(root, kClasses, kIgnore, nullptr);
  root.finish();
  EXPECT_EQ(loss.names(), std::vector<std::string>{"ce"});
  EXPECT_EQ(loss.describe(), "1.0 * ce");
  CrossEntropyParams p;
  p.ignore_index = kIgnore;
  const LossTerms terms = loss(b.logits, b.target);
  EXPECT_EQ(terms.total.item(), cross_entropy(b.logits, b.target, p).item());
  EXPECT_EQ(terms.total.dim(), 0);
  EXPECT_EQ(terms.total.dtype(), DType::f32);
}

TEST(SegmentationLoss, ListWeightsAddUpAndRepeatsGetUniqueNames) {
  const Batch b = make_batch();
  Config root = Config::parse(R"({"loss": [{"type": "ce"},
                                           {"type": "dice", "weight": 0.5},
                                           {"type": "dice", "weight": 2, "smooth": 1},
                                           {"type": "lovasz", "weight": 0.25}]})");
  const SegmentationLoss loss = SegmentationLoss::from_config(root, kClasses, kIgnore, nullptr);
  root.finish();
  EXPECT_EQ(loss.names(), (std::vector<std::string>{"ce", "dice_1", "dice_2", "lovasz"}));
  EXPECT_EQ(loss.describe(), "1.0 * ce + 0.5 * dice_1 + 2.0 * dice_2(smooth=1.0) + 0.25 * lovasz");

  const LossTerms terms = loss(b.logits, b.target);
  ASSERT_EQ(terms.parts.size(), 4u);
  const double expected =
      part(terms, "ce") + 0.5 * part(terms, "dice_1") + 2.0 * part(terms, "dice_2") + 0.25 * part(terms, "lovasz");
  EXPECT_NEAR(terms.total.item(), expected, 1e-6 * std::abs(expected));
  // The parts are unweighted: dice_1 is the plain op.
  DiceLossParams p;
  p.ignore_index = kIgnore;
  EXPECT_EQ(part(terms, "dice_1"), dice_loss(b.logits, b.target, p).item());
  EXPECT_NE(part(terms, "dice_1"), part(terms, "dice_2"));
}

TEST(SegmentationLoss, DescribeShowsSettingsThatDifferFromDefaults) {
  const ClassPixelCounts stats{{10, 20, 30, 40}, 2};
  EXPECT_EQ(loss_from(R"({"loss": [{"type": "ohem", "thresh": 0.9, "class_weight": "inverse_log"},
                                   {"type": "focal", "gamma": 1, "alpha": [1, 1, 1, 1], "weight": 0.4}]})",
                      &stats)
                .describe(),
            "1.0 * ohem(thresh=0.9, class_weight=inverse_log) + 0.4 * focal(gamma=1.0, alpha=list)");
  EXPECT_EQ(
      loss_from(R"({"loss": {"type": "ce", "class_weight": "effective_number", "beta": 0.99}})", &stats).describe(),
      "1.0 * ce(class_weight=effective_number(beta=0.99))");
}

TEST(SegmentationLoss, ClassWeightMethodUsesTheStatistics) {
  const Batch b = make_batch();
  const ClassPixelCounts stats{{100, 10, 1, 0}, 3};
  Config root = Config::parse(R"({"loss": {"type": "ce", "class_weight": "effective_number", "beta": 0.9}})");
  const SegmentationLoss loss = SegmentationLoss::from_config(root, kClasses, kIgnore, &stats);
  root.finish();
  CrossEntropyParams p;
  p.ignore_index = kIgnore;
  p.weight = class_tensor(class_weights_from_counts(stats, "effective_number", 0.9));
  EXPECT_EQ(loss(b.logits, b.target).total.item(), cross_entropy(b.logits, b.target, p).item());
}

TEST(SegmentationLoss, NeedsClassPixelCountsOnlyForAMethod) {
  EXPECT_FALSE(SegmentationLoss::needs_class_pixel_counts(Config::parse("{}")));
  EXPECT_FALSE(SegmentationLoss::needs_class_pixel_counts(
      Config::parse(R"({"loss": {"type": "ce", "class_weight": [1, 2, 3, 4]}})")));
  EXPECT_TRUE(SegmentationLoss::needs_class_pixel_counts(
      Config::parse(R"({"loss": {"type": "ce", "class_weight": "inverse_log"}})")));
  EXPECT_TRUE(SegmentationLoss::needs_class_pixel_counts(
      Config::parse(R"({"loss": [{"type": "dice"}, {"type": "focal", "alpha": "inverse_sqrt"}]})")));
  // It declares nothing: a config it looked at still reports the unread "loss".
  const Config root = Config::parse(R"({"loss": {"type": "ce"}})");
  SegmentationLoss::needs_class_pixel_counts(root);
  expect_error([&] { root.finish(); }, "unknown key 'loss'");
}

TEST(SegmentationLoss, HalfPrecisionLogitsAreComputedInF32) {
  const Batch b = make_batch();
  const Tensor half = b.logits.to(DType::f16);
  const LossTerms terms = loss_from(R"({"loss": [{"type": "ce"}, {"type": "focal"}]})")(half, b.target);
  EXPECT_EQ(terms.total.dtype(), DType::f32);
  FocalLossParams p;
  p.ignore_index = kIgnore;
  EXPECT_EQ(part(terms, "focal"), focal_loss(half.to(DType::f32), b.target, p).item());
}

// ---- config errors

TEST(SegmentationLoss, BadTypeListsTheValidTypes) {
  const std::string message = error_of([] { loss_from(R"({"loss": [{"type": "ce"}, {"type": "cross_entropy"}]})"); });
  EXPECT_NE(message.find("loss[1].type"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown loss type 'cross_entropy'"), std::string::npos) << message;
  EXPECT_NE(message.find("valid types: ce, ohem, dice, focal, lovasz"), std::string::npos) << message;
  expect_error([] { loss_from(R"({"loss": {"type": "dise"}})"); }, "did you mean 'dice'?");
  expect_error([] { loss_from(R"({"loss": {"weight": 1}})"); }, "missing key 'loss.type'");
}

TEST(SegmentationLoss, UnknownKeysAreReportedByFinish) {
  {
    Config root = Config::parse(R"({"loss": [{"type": "ce"}, {"type": "ce", "label_smothing": 0.1}]})");
    SegmentationLoss::from_config(root, kClasses, kIgnore, nullptr);
    expect_error([&] { root.finish(); }, "unknown key 'loss[1].label_smothing'");
    expect_error([&] { root.finish(); }, "did you mean 'loss[1].label_smoothing'?");
  }
  {
    // Keys of another type are unknown too: thresh belongs to ohem, beta to effective_number.
    const ClassPixelCounts stats{{1, 2, 3, 4}, 1};
    Config root = Config::parse(R"({"loss": {"type": "ce", "thresh": 0.7, "class_weight": "inverse_log",
                                             "beta": 0.9}})");
    SegmentationLoss::from_config(root, kClasses, kIgnore, &stats);
    const std::string message = error_of([&] { root.finish(); });
    EXPECT_NE(message.find("unknown key 'loss.thresh'"), std::string::npos) << message;
    EXPECT_NE(message.find("unknown key 'loss.beta'"), std::string::npos) << message;
  }
}

TEST(SegmentationLoss, BadClassWeightsNameTheKey) {
  expect_error([] { loss_from(R"({"loss": [{"type": "ce"}, {"type": "ohem", "class_weight": [1, 2, 3]}]})"); },
               "key 'loss[1].class_weight' has 3 values, expected num_classes = 4");
  expect_error([] { loss_from(R"({"loss": {"type": "focal", "alpha": [1, 2]}})"); },
               "key 'loss.alpha' has 2 values, expected num_classes = 4");
  expect_error([] { loss_from(R"({"loss": {"type": "ce", "class_weight": "median"}})"); },
               "unknown class weight method 'median' (valid methods: inverse_frequency, inverse_sqrt, inverse_log, "
               "effective_number");
  expect_error([] { loss_from(R"({"loss": {"type": "ce", "class_weight": "inverse_log"}})"); },
               "'loss.class_weight' = 'inverse_log' needs the training set's class pixel counts");
  const ClassPixelCounts three_classes{{1, 2, 3}, 1};
  expect_error([&] { loss_from(R"({"loss": {"type": "ce", "class_weight": "inverse_log"}})", &three_classes); },
               "the pixel counts have 3 classes, the model has 4");
  expect_error([] { loss_from(R"({"loss": {"type": "ce", "class_weight": 2}})"); },
               "key 'loss.class_weight': expected a list of 4 numbers or a method name");
  expect_error([] { loss_from(R"({"loss": {"type": "ce", "class_weight": [1, -1, 1, 1]}})"); }, "value -1 for class 1");
}

TEST(SegmentationLoss, BadValuesAndShapesAreErrors) {
  expect_error([] { loss_from(R"({"loss": {"type": "dice", "weight": -1}})"); }, "key 'loss.weight' = -1");
  expect_error([] { loss_from(R"({"loss": {"type": "ohem", "thresh": 1.5}})"); }, "key 'loss.thresh' = 1.5");
  expect_error([] { loss_from(R"({"loss": []})"); }, "key 'loss' is an empty list");
  expect_error([] { loss_from(R"({"loss": "ce"})"); }, "key 'loss': expected a loss object or a list of them");
  expect_error([] { loss_from(R"({"loss": [{"type": "ce"}, 3]})"); }, "expected a list of objects");
  const Batch b = make_batch();
  const SegmentationLoss loss = loss_from("{}");
  expect_error([&] { loss(b.logits.narrow(1, 0, 3), b.target); }, "(expected (N, 4, H, W) floating)");
  expect_error([&] { loss(b.logits, b.target.to(DType::i32)); }, "(expected (N, H, W) i64)");
}

// ---- class weights from counts

TEST(ClassWeightsFromCounts, InverseFrequency) {
  // 1 / p = 7, 3.5, 1.75; mean 49 / 12; the empty class gets the largest weight.
  const std::vector<double> w = class_weights_from_counts({{1, 2, 4, 0}, 1}, "inverse_frequency");
  const std::vector<double> expected = {12.0 / 7, 6.0 / 7, 3.0 / 7, 12.0 / 7};
  ASSERT_EQ(w.size(), expected.size());
  for (size_t c = 0; c < w.size(); ++c) EXPECT_NEAR(w[c], expected[c], 1e-12) << c;
}

TEST(ClassWeightsFromCounts, InverseSqrt) {
  // 1 / sqrt(p) is proportional to 1, 1/2, 1/4.
  const std::vector<double> w = class_weights_from_counts({{1, 4, 16}, 1}, "inverse_sqrt");
  const std::vector<double> expected = {12.0 / 7, 6.0 / 7, 3.0 / 7};
  for (size_t c = 0; c < w.size(); ++c) EXPECT_NEAR(w[c], expected[c], 1e-12) << c;
}

TEST(ClassWeightsFromCounts, InverseLogIsEnets) {
  // p = 1/4, 3/4: raw 1 / ln(1.27) and 1 / ln(1.77), scaled to mean 1.
  const std::vector<double> w = class_weights_from_counts({{1, 3}, 1}, "inverse_log");
  const double a = 1 / std::log(1.27), b = 1 / std::log(1.77);
  EXPECT_NEAR(w[0], 2 * a / (a + b), 1e-12);
  EXPECT_NEAR(w[1], 2 * b / (a + b), 1e-12);
  EXPECT_GT(w[0], w[1]);
}

TEST(ClassWeightsFromCounts, EffectiveNumber) {
  // beta 0.5: (1 - beta) / (1 - beta^n) = 1 for n = 1, 2/3 for n = 2; mean 5/6.
  std::vector<double> w = class_weights_from_counts({{1, 2, 0}, 1}, "effective_number", 0.5);
  EXPECT_NEAR(w[0], 6.0 / 5, 1e-12);
  EXPECT_NEAR(w[1], 4.0 / 5, 1e-12);
  EXPECT_NEAR(w[2], 6.0 / 5, 1e-12);
  // beta 0 weighs every class with pixels the same.
  w = class_weights_from_counts({{5, 100, 1}, 1}, "effective_number", 0.0);
  for (double x : w) EXPECT_NEAR(x, 1.0, 1e-12);
  // The default beta on huge counts: every 1 - beta^n is close to 1, so the weights approach 1.
  w = class_weights_from_counts({{1000000000, 2000000000}, 1}, "effective_number");
  EXPECT_NEAR(w[0], 1.0, 1e-12);
}

TEST(ClassWeightsFromCounts, Errors) {
  expect_error(
      [] {
        class_weights_from_counts({{0, 0}, 3}, "inverse_log");
      },
      "no class has labelled pixels (3 images counted)");
  expect_error(
      [] {
        class_weights_from_counts({{1, 2}, 1}, "inverse");
      },
      "unknown method 'inverse' (valid methods: inverse_frequency, inverse_sqrt");
  expect_error(
      [] {
        class_weights_from_counts({{1, 2}, 1}, "effective_number", 1.0);
      },
      "beta = 1 (expected in [0, 1))");
  expect_error([] { class_weights_from_counts({{}, 0}, "inverse_log"); }, "no classes");
}

// ---- counting pixels

// Six 2x2 samples over six classes: sample k's mask is {k, k, ignore, 0}.
class FixedMasks : public Dataset {
 public:
  explicit FixedMasks(uint8_t extra_value = 0) : extra_value_(extra_value) {
    info_.name = "fixed";
    for (int c = 0; c < 6; ++c) info_.class_names.push_back(std::string("class") + std::to_string(c));
    info_.ignore_index = 255;
  }
  int64_t size() const override { return 6; }
  Sample get(int64_t index) const override {
    Sample sample;
    sample.image = Image(2, 2, 3);
    sample.mask = Image(2, 2, 1);
    const auto k = static_cast<uint8_t>(index);
    sample.mask.pixels = {k, k, 255, index == 5 ? extra_value_ : uint8_t{0}};
    sample.id = std::string("fixed/") + std::to_string(index);
    return sample;
  }

 private:
  uint8_t extra_value_;  // the last pixel of sample 5
};

TEST(CountClassPixels, AllSamplesSkipTheIgnoreIndex) {
  const ClassPixelCounts counts = count_class_pixels(FixedMasks(), 0, 1);
  EXPECT_EQ(counts.pixels, (std::vector<int64_t>{8, 2, 2, 2, 2, 2}));
  EXPECT_EQ(counts.images, 6);
  EXPECT_EQ(count_class_pixels(FixedMasks(), 6, 3).pixels, counts.pixels);  // threads change nothing
  EXPECT_EQ(count_class_pixels(FixedMasks(), 100).pixels, counts.pixels);
}

TEST(CountClassPixels, MaxSamplesTakesEvenlySpacedIndices) {
  ClassPixelCounts counts = count_class_pixels(FixedMasks(), 3, 2);  // samples 0, 2, 4
  EXPECT_EQ(counts.pixels, (std::vector<int64_t>{5, 0, 2, 0, 2, 0}));
  EXPECT_EQ(counts.images, 3);
  counts = count_class_pixels(FixedMasks(), 4, 1);  // samples 0, 1, 3, 4
  EXPECT_EQ(counts.pixels, (std::vector<int64_t>{6, 2, 0, 2, 2, 0}));
}

TEST(CountClassPixels, ValueOutsideTheClassesNamesTheSample) {
  expect_error([] { count_class_pixels(FixedMasks(7), 0, 2); },
               "sample 'fixed/5' has mask value 7 (expected a class in [0, 6) or the ignore index 255)");
}

// ---- backward

const char* kMixedLoss = R"({"loss": [{"type": "ce", "class_weight": [0.5, 1, 2, 1.5]},
                                      {"type": "ohem", "min_kept": 6, "weight": 0.7},
                                      {"type": "dice", "weight": 0.5},
                                      {"type": "focal", "weight": 0.3},
                                      {"type": "lovasz", "weight": 0.25}]})";

TEST(SegmentationLoss, BackwardThroughTheWeightedSum) {
  const Batch b = make_batch();
  const SegmentationLoss loss = loss_from(kMixedLoss);
  Tensor leaf = b.logits.detach().requires_grad_(true);
  loss(leaf, b.target).total.backward();
  ASSERT_TRUE(leaf.grad().defined());
  EXPECT_EQ(leaf.grad().shape(), b.logits.shape());

  // The gradient of the total is the weighted sum of each term's own gradient.
  std::vector<double> expected(static_cast<size_t>(b.logits.numel()), 0.0);
  const auto& terms = loss.terms();
  for (size_t i = 0; i < terms.size(); ++i) {
    Tensor single = b.logits.detach().requires_grad_(true);
    loss(single, b.target).parts[i].second.backward();
    const std::vector<double> g = single.grad().to_vector<double>();
    for (size_t k = 0; k < g.size(); ++k) expected[k] += terms[i].weight * g[k];
  }
  const std::vector<double> actual = leaf.grad().to_vector<double>();
  double largest = 0.0;
  for (size_t k = 0; k < actual.size(); ++k) {
    ASSERT_TRUE(std::isfinite(actual[k])) << k;
    EXPECT_NEAR(actual[k], expected[k], 1e-6) << k;
    largest = std::max(largest, std::abs(actual[k]));
  }
  EXPECT_GT(largest, 0.0);
}

TEST(SegmentationLossCuda, MatchesCpuForwardAndBackward) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const Batch b = make_batch();
  const SegmentationLoss loss = loss_from(kMixedLoss);
  Tensor cpu_leaf = b.logits.detach().requires_grad_(true);
  Tensor cuda_leaf = b.logits.to(Device::cuda(0)).requires_grad_(true);
  const LossTerms cpu = loss(cpu_leaf, b.target);
  const LossTerms cuda = loss(cuda_leaf, b.target.to(Device::cuda(0)));
  EXPECT_EQ(cuda.total.device(), Device::cuda(0));
  ASSERT_EQ(cpu.parts.size(), cuda.parts.size());
  for (size_t i = 0; i < cpu.parts.size(); ++i) {
    EXPECT_EQ(cpu.parts[i].first, cuda.parts[i].first);
    const double expected = cpu.parts[i].second.item();
    EXPECT_NEAR(cuda.parts[i].second.item(), expected, 1e-5 * (1 + std::abs(expected))) << cpu.parts[i].first;
  }
  EXPECT_NEAR(cuda.total.item(), cpu.total.item(), 1e-5 * (1 + std::abs(cpu.total.item())));
  cpu.total.backward();
  cuda.total.backward();
  const std::vector<float> a = cpu_leaf.grad().to_vector<float>(), g = cuda_leaf.grad().to_vector<float>();
  ASSERT_EQ(a.size(), g.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(g[k], a[k], 1e-5 * (1 + std::abs(a[k]))) << k;
}

}  // namespace
}  // namespace se
