// Segmentation losses as engine ops, each against an independent f64 loop of its reference implementation's
// algorithm (named in engine/ops.h), with ignore_index, class weights and absent classes; f64 finite-difference
// gradient checks; error messages; CUDA against the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/gradcheck.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_error;
using testing::expect_gradients_match;

constexpr int64_t kIgnore = 255;

// Host copies of a batch: logits (N, C, S) and targets (N, S).
struct Batch {
  int64_t n, c, h, w;
  std::vector<double> z;
  std::vector<int64_t> y;
  int64_t s() const { return h * w; }
  double logit(int64_t img, int64_t cls, int64_t px) const { return z[(img * c + cls) * s() + px]; }
  int64_t target(int64_t img, int64_t px) const { return y[img * s() + px]; }
  // softmax(z)[img, cls, px]
  double prob(int64_t img, int64_t cls, int64_t px) const {
    double max = -INFINITY, sum = 0;
    for (int64_t k = 0; k < c; ++k) max = std::max(max, logit(img, k, px));
    for (int64_t k = 0; k < c; ++k) sum += std::exp(logit(img, k, px) - max);
    return std::exp(logit(img, cls, px) - max) / sum;
  }
  Tensor logits() const { return from_vector<double>(z, {n, c, h, w}); }
  Tensor targets() const { return from_vector<int64_t>(y, {n, h, w}); }
};

// Random logits; targets drawn from `classes_used` (< c leaves classes absent) and ignore with probability
// ignore_share.
Batch make_batch(int64_t n, int64_t c, int64_t h, int64_t w, uint32_t seed, double ignore_share = 0.2,
                 int64_t classes_used = -1, double scale = 2.0) {
  Batch b{n, c, h, w, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int64_t i = 0; i < n * c * h * w; ++i) b.z.push_back(normal(rng));
  const int64_t used = classes_used < 0 ? c : classes_used;
  for (int64_t i = 0; i < n * h * w; ++i) {
    b.y.push_back(unit(rng) < ignore_share ? kIgnore : static_cast<int64_t>(rng() % used));
  }
  return b;
}

Tensor leaf_logits(const Batch& b) {
  return b.logits().requires_grad_(true);
}

// ---- focal loss: AdeelH/pytorch-multi-class-focal-loss

double focal_reference(const Batch& b, double gamma, const std::vector<double>& alpha) {
  double total = 0;
  int64_t valid = 0;
  for (int64_t i = 0; i < b.n; ++i) {
    for (int64_t p = 0; p < b.s(); ++p) {
      const int64_t y = b.target(i, p);
      if (y == kIgnore) continue;
      const double pt = b.prob(i, y, p);
      total += -(alpha.empty() ? 1.0 : alpha[y]) * std::pow(1 - pt, gamma) * std::log(pt);
      ++valid;
    }
  }
  return valid == 0 ? 0.0 : total / static_cast<double>(valid);
}

TEST(FocalLossOp, MatchesReference) {
  const Batch b = make_batch(2, 4, 3, 5, 1);
  const std::vector<double> alpha = {0.25, 1.0, 0.5, 2.0};
  for (double gamma : {0.0, 0.5, 2.0}) {
    FocalLossParams p;
    p.gamma = gamma;
    p.ignore_index = kIgnore;
    EXPECT_NEAR(focal_loss(b.logits(), b.targets(), p).item(), focal_reference(b, gamma, {}), 1e-12) << gamma;
    p.alpha = from_vector<double>(alpha, {4});
    EXPECT_NEAR(focal_loss(b.logits(), b.targets(), p).item(), focal_reference(b, gamma, alpha), 1e-12) << gamma;
  }
  // gamma 0 without alpha is cross-entropy; all pixels ignored gives 0.
  FocalLossParams ce;
  ce.gamma = 0;
  ce.ignore_index = kIgnore;
  CrossEntropyParams cp;
  cp.ignore_index = kIgnore;
  EXPECT_NEAR(focal_loss(b.logits(), b.targets(), ce).item(), cross_entropy(b.logits(), b.targets(), cp).item(), 1e-12);
  EXPECT_EQ(focal_loss(b.logits(), full_like(b.targets(), kIgnore), ce).item(), 0.0);
  ce.reduction = Reduction::none;
  EXPECT_EQ(focal_loss(b.logits(), b.targets(), ce).shape(), Shape({2, 3, 5}));
}

TEST(FocalLossOp, GradientsMatchFiniteDifferences) {
  const Batch b = make_batch(2, 3, 2, 3, 2);
  for (double gamma : {0.5, 2.0}) {
    FocalLossParams p;
    p.gamma = gamma;
    p.ignore_index = kIgnore;
    p.alpha = from_vector<double>({0.5, 1.0, 1.5}, {3});
    expect_gradients_match([&](const std::vector<Tensor>& in) { return focal_loss(in[0], b.targets(), p); },
                           {leaf_logits(b)});
    p.reduction = Reduction::none;
    expect_gradients_match([&](const std::vector<Tensor>& in) { return focal_loss(in[0], b.targets(), p); },
                           {leaf_logits(b)});
  }
}

// ---- OHEM cross-entropy: mmsegmentation's OHEMPixelSampler + CrossEntropyLoss

double ohem_reference(const Batch& b, double thresh, int64_t min_kept, const std::vector<double>& weight) {
  std::vector<double> probs;  // target-class probabilities of the valid pixels
  for (int64_t i = 0; i < b.n; ++i) {
    for (int64_t p = 0; p < b.s(); ++p) {
      if (b.target(i, p) != kIgnore) probs.push_back(b.prob(i, b.target(i, p), p));
    }
  }
  std::vector<double> sorted = probs;
  std::sort(sorted.begin(), sorted.end());
  const double min_threshold =
      sorted.empty() ? 0.0 : sorted[std::min<size_t>(static_cast<size_t>(min_kept * b.n), sorted.size() - 1)];
  const double threshold = std::max(min_threshold, thresh);
  double total = 0;
  for (int64_t i = 0; i < b.n; ++i) {
    for (int64_t p = 0; p < b.s(); ++p) {
      const int64_t y = b.target(i, p);
      if (y == kIgnore || b.prob(i, y, p) >= threshold) continue;
      total += -(weight.empty() ? 1.0 : weight[y]) * std::log(b.prob(i, y, p));
    }
  }
  return total / static_cast<double>(b.n * b.s());  // mean over every pixel (avg_non_ignore=False)
}

TEST(OhemCrossEntropyOp, MatchesReference) {
  const Batch b = make_batch(2, 3, 4, 5, 3, 0.2, -1, 1.5);
  const std::vector<double> weight = {1.0, 0.5, 2.0};
  // thresh decides; min_kept decides (a high k-th probability); every valid pixel kept; nothing kept.
  for (auto [thresh, min_kept] : std::vector<std::pair<double, int64_t>>{{0.7, 3}, {0.1, 12}, {1.1, 0}, {0.0, 0}}) {
    OhemCrossEntropyParams p;
    p.thresh = thresh;
    p.min_kept = min_kept;
    EXPECT_NEAR(ohem_cross_entropy(b.logits(), b.targets(), p).item(), ohem_reference(b, thresh, min_kept, {}), 1e-12)
        << thresh << " " << min_kept;
    p.weight = from_vector<double>(weight, {3});
    EXPECT_NEAR(ohem_cross_entropy(b.logits(), b.targets(), p).item(), ohem_reference(b, thresh, min_kept, weight),
                1e-12)
        << thresh << " " << min_kept;
  }
  const double all = ohem_reference(b, 1.1, 0, {});
  EXPECT_GT(all, ohem_reference(b, 0.1, 12, {}));  // the cases above do select different pixels
  EXPECT_GT(ohem_reference(b, 0.1, 12, {}), 0.0);
}

TEST(OhemCrossEntropyOp, GradientsMatchFiniteDifferences) {
  const Batch b = make_batch(2, 3, 3, 3, 4);
  OhemCrossEntropyParams p;
  p.thresh = 0.6;
  p.min_kept = 2;
  p.weight = from_vector<double>({1.0, 0.5, 2.0}, {3});
  expect_gradients_match([&](const std::vector<Tensor>& in) { return ohem_cross_entropy(in[0], b.targets(), p); },
                         {leaf_logits(b)});
}

// ---- soft Dice: segmentation_models.pytorch DiceLoss(mode="multiclass")

double dice_reference(const Batch& b, double smooth, double eps, bool log_loss, bool ignore) {
  double loss = 0;
  for (int64_t k = 0; k < b.c; ++k) {
    double intersection = 0, cardinality = 0, count = 0;
    for (int64_t i = 0; i < b.n; ++i) {
      for (int64_t p = 0; p < b.s(); ++p) {
        const int64_t y = b.target(i, p);
        if (ignore && y == kIgnore) continue;
        const double prob = b.prob(i, k, p), t = y == k ? 1.0 : 0.0;
        intersection += prob * t;
        cardinality += prob + t;
        count += t;
      }
    }
    const double score = (2 * intersection + smooth) / std::max(cardinality + smooth, eps);
    const double l = log_loss ? -std::log(std::max(score, eps)) : 1 - score;
    if (count > 0) loss += l;
  }
  return loss / static_cast<double>(b.c);
}

TEST(DiceLossOp, MatchesReference) {
  const Batch b = make_batch(2, 5, 3, 4, 5, 0.2, 3);  // classes 3 and 4 absent
  for (bool log_loss : {false, true}) {
    for (double smooth : {0.0, 1.0}) {
      DiceLossParams p;
      p.smooth = smooth;
      p.log_loss = log_loss;
      p.ignore_index = kIgnore;
      EXPECT_NEAR(dice_loss(b.logits(), b.targets(), p).item(), dice_reference(b, smooth, 1e-7, log_loss, true), 1e-12);
    }
  }
  const Batch full = make_batch(1, 3, 4, 4, 6, 0.0);  // no ignore_index, every target valid
  EXPECT_NEAR(dice_loss(full.logits(), full.targets()).item(), dice_reference(full, 0, 1e-7, false, false), 1e-12);
}

TEST(DiceLossOp, GradientsMatchFiniteDifferences) {
  const Batch b = make_batch(2, 4, 2, 3, 7, 0.2, 3);
  DiceLossParams p;
  p.smooth = 0.5;
  p.ignore_index = kIgnore;
  expect_gradients_match([&](const std::vector<Tensor>& in) { return dice_loss(in[0], b.targets(), p); },
                         {leaf_logits(b)});
  p.log_loss = true;
  expect_gradients_match([&](const std::vector<Tensor>& in) { return dice_loss(in[0], b.targets(), p); },
                         {leaf_logits(b)});
}

// ---- Lovasz-softmax: Berman et al.'s lovasz_softmax(classes="present", per_image=False, ignore)

double lovasz_reference(const Batch& b, bool ignore) {
  std::vector<std::vector<double>> probs(static_cast<size_t>(b.c));  // (C, valid pixels)
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < b.n; ++i) {
    for (int64_t p = 0; p < b.s(); ++p) {
      if (ignore && b.target(i, p) == kIgnore) continue;  // flatten_probas drops them
      labels.push_back(b.target(i, p));
      for (int64_t k = 0; k < b.c; ++k) probs[k].push_back(b.prob(i, k, p));
    }
  }
  if (labels.empty()) return 0.0;
  double total = 0;
  int present = 0;
  for (int64_t k = 0; k < b.c; ++k) {
    const size_t count = labels.size();
    std::vector<double> fg(count), errors(count);
    for (size_t j = 0; j < count; ++j) {
      fg[j] = labels[j] == k ? 1.0 : 0.0;
      errors[j] = std::abs(fg[j] - probs[k][j]);
    }
    const double gts = std::accumulate(fg.begin(), fg.end(), 0.0);
    if (gts == 0) continue;  // classes="present"
    ++present;
    std::vector<size_t> perm(count);
    std::iota(perm.begin(), perm.end(), size_t{0});
    std::stable_sort(perm.begin(), perm.end(), [&](size_t a, size_t c) { return errors[a] > errors[c]; });
    double cum_fg = 0, cum_bg = 0, previous = 0, loss = 0;
    for (size_t j = 0; j < count; ++j) {  // lovasz_grad(fg_sorted), dotted with errors_sorted
      cum_fg += fg[perm[j]];
      cum_bg += 1 - fg[perm[j]];
      const double jaccard = 1 - (gts - cum_fg) / (gts + cum_bg);
      loss += errors[perm[j]] * (jaccard - previous);
      previous = jaccard;
    }
    total += loss;
  }
  return present == 0 ? 0.0 : total / present;
}

TEST(LovaszSoftmaxOp, MatchesReference) {
  const Batch b = make_batch(2, 4, 5, 7, 8, 0.25, 3);  // class 3 absent
  EXPECT_NEAR(lovasz_softmax(b.logits(), b.targets(), kIgnore).item(), lovasz_reference(b, true), 1e-12);
  const Batch full = make_batch(1, 3, 6, 5, 9, 0.0);
  EXPECT_NEAR(lovasz_softmax(full.logits(), full.targets()).item(), lovasz_reference(full, false), 1e-12);
  EXPECT_EQ(lovasz_softmax(b.logits(), full_like(b.targets(), kIgnore), kIgnore).item(), 0.0);
  // Long rows: several CUDA sort tiles worth of pixels on the CPU path too.
  const Batch large = make_batch(2, 3, 40, 30, 10);
  EXPECT_NEAR(lovasz_softmax(large.logits(), large.targets(), kIgnore).item(), lovasz_reference(large, true), 1e-11);
}

TEST(LovaszSoftmaxOp, GradientsMatchFiniteDifferences) {
  const Batch b = make_batch(2, 3, 3, 3, 11);
  expect_gradients_match([&](const std::vector<Tensor>& in) { return lovasz_softmax(in[0], b.targets(), kIgnore); },
                         {leaf_logits(b)});
}

// ---- errors

TEST(SegmentationLossOps, ErrorsNameOpAndValue) {
  const Tensor logits = randn({1, 3, 2, 2});
  const Tensor target = from_vector<int64_t>({0, 1, 2, 5}, {1, 2, 2});
  expect_error([&] { dice_loss(logits, target); },
               "dice_loss: target value 5 is out of range for 3 classes (expected [0, 3))");
  expect_error([&] { lovasz_softmax(logits, target, 255); },
               "lovasz_softmax: target value 5 is out of range for 3 classes (expected [0, 3) or ignore_index 255)");
  expect_error([&] { focal_loss(logits, target); }, "focal_loss: target value 5 is out of range for 3 classes");
  expect_error([&] { ohem_cross_entropy(logits, target); }, "target value 5 is out of range");
  FocalLossParams bad_gamma;
  bad_gamma.gamma = -1;
  expect_error([&] { focal_loss(logits, zeros_like(target), bad_gamma); }, "focal_loss: gamma = -1");
  FocalLossParams bad_alpha;
  bad_alpha.alpha = ones({2});
  expect_error([&] { focal_loss(logits, zeros_like(target), bad_alpha); }, "focal_loss: alpha must be (3,), got (2,)");
  expect_error(
      [&] {
        dice_loss(logits, zeros({1, 3, 2}, {DType::i64}));
      },
      "dice_loss: target shape (1, 3, 2) does not match logits (1, 3, 2, 2) (expected (1, 2, 2))");
  expect_error([&] { lovasz_softmax(logits.to(DType::f16), target); },
               "lovasz_softmax: logits dtype f16 is not supported (expected f32 or f64)");
}

// ---- CUDA against the CPU (f32)

void expect_loss_cuda_matches_cpu(const std::function<Tensor(const Tensor&, const Tensor&)>& loss, const Batch& b,
                                  double tol) {
  const Tensor cpu_x = b.logits().to(DType::f32).requires_grad_(true);
  const Tensor cuda_x = cpu_x.detach().to(Device::cuda()).requires_grad_(true);
  const Tensor cpu_loss = loss(cpu_x, b.targets()), cuda_loss = loss(cuda_x, b.targets().to(Device::cuda()));
  EXPECT_EQ(cuda_loss.device(), Device::cuda());
  EXPECT_NEAR(cuda_loss.item(), cpu_loss.item(), tol * (1 + std::abs(cpu_loss.item())));
  cpu_loss.backward();
  cuda_loss.backward();
  const std::vector<float> want = cpu_x.grad().to_vector<float>(), got = cuda_x.grad().to_vector<float>();
  ASSERT_EQ(got.size(), want.size());
  float scale = 0;
  for (float v : want) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol * scale) << "grad " << i;
}

TEST(SegmentationLossOpsCuda, MatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const Batch b = make_batch(2, 5, 9, 13, 12, 0.2, 4);
  FocalLossParams fp;
  fp.ignore_index = kIgnore;
  fp.alpha = from_vector<float>({0.5f, 1, 1, 2, 1}, {5});
  expect_loss_cuda_matches_cpu(
      [&](const Tensor& x, const Tensor& t) {
        FocalLossParams p = fp;
        p.alpha = fp.alpha.to(x.device());
        return focal_loss(x, t, p);
      },
      b, 1e-5);
  expect_loss_cuda_matches_cpu(
      [](const Tensor& x, const Tensor& t) {
        OhemCrossEntropyParams p;
        p.min_kept = 20;
        return ohem_cross_entropy(x, t, p);
      },
      b, 1e-5);
  expect_loss_cuda_matches_cpu(
      [](const Tensor& x, const Tensor& t) {
        DiceLossParams p;
        p.ignore_index = kIgnore;
        return dice_loss(x, t, p);
      },
      b, 1e-5);
  expect_loss_cuda_matches_cpu([](const Tensor& x, const Tensor& t) { return lovasz_softmax(x, t, kIgnore); }, b, 1e-5);
  // More pixels than one CUDA sort tile.
  expect_loss_cuda_matches_cpu([](const Tensor& x, const Tensor& t) { return lovasz_softmax(x, t, kIgnore); },
                               make_batch(1, 3, 40, 35, 13), 1e-4);
}

}  // namespace
}  // namespace se
