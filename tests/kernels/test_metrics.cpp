// kernels/metrics.h: confusion matrices on the CPU against a plain counting loop (exact, integers), argmax
// ties and NaN, ignore_index and bad labels; CUDA against CPU through both the shared-memory path (C <=
// 110) and the global-atomics path (C > 110, incl. 256+ classes).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/metrics.h"

namespace se::kernels {
namespace {

using test::cast_to;
using test::random_values;

// The last two span several of the CPU's 256-pixel blocks, with a partial last one.
const ConfusionDesc kShapes[] = {{1, 1, 1, 255},     {2, 3, 17, 255},   {3, 5, 33, -100},
                                 {1, 110, 70, 255},  {2, 111, 50, 255}, {1, 300, 40, -100},
                                 {2, 19, 700, 255}, {3, 4, 257, -100}};

std::string describe(const ConfusionDesc& d) {
  return "(N " + std::to_string(d.batch) + ", C " + std::to_string(d.classes) + ", S " + std::to_string(d.spatial) +
         ")";
}

// Labels in [0, C) with about one in eight set to ignore_index.
std::vector<int64_t> random_labels(const ConfusionDesc& d, uint32_t seed, bool with_ignored) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> label(0, d.classes - 1), eighth(0, 7);
  std::vector<int64_t> out(static_cast<size_t>(d.batch * d.spatial));
  for (auto& v : out) v = with_ignored && eighth(rng) == 0 ? d.ignore_index : label(rng);
  return out;
}

std::vector<int64_t> reference(const std::vector<int64_t>& prediction, const std::vector<int64_t>& target,
                               const ConfusionDesc& d) {
  std::vector<int64_t> m(static_cast<size_t>(d.classes * d.classes), 0);
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] != d.ignore_index) ++m[static_cast<size_t>(target[i] * d.classes + prediction[i])];
  }
  return m;
}

// Argmax of (N, C, S) logits, first maximum.
std::vector<int64_t> reference_argmax(const std::vector<float>& x, const ConfusionDesc& d) {
  std::vector<int64_t> out(static_cast<size_t>(d.batch * d.spatial));
  for (int64_t n = 0; n < d.batch; ++n) {
    for (int64_t s = 0; s < d.spatial; ++s) {
      int64_t best = 0;
      for (int64_t c = 1; c < d.classes; ++c) {
        if (x[(n * d.classes + c) * d.spatial + s] > x[(n * d.classes + best) * d.spatial + s]) best = c;
      }
      out[n * d.spatial + s] = best;
    }
  }
  return out;
}

TEST(Confusion, GivenPredictionsMatchCountingExactly) {
  uint32_t seed = 1;
  for (const ConfusionDesc& d : kShapes) {
    std::vector<int64_t> p = random_labels(d, seed++, false), t = random_labels(d, seed++, true);
    std::vector<int64_t> m(static_cast<size_t>(d.classes * d.classes), 0);
    int64_t bad = d.ignore_index;
    cpu::confusion_update(m.data(), &bad, p.data(), t.data(), d, nullptr);
    EXPECT_EQ(m, reference(p, t, d)) << describe(d);
    EXPECT_EQ(bad, d.ignore_index);
    cpu::confusion_update(m.data(), &bad, p.data(), t.data(), d,
                          nullptr);  // accumulates
    std::vector<int64_t> twice = reference(p, t, d);
    for (auto& v : twice) v *= 2;
    EXPECT_EQ(m, twice) << describe(d);
  }
}

TEST(Confusion, ArgmaxOfLogitsMatchesCountingExactly) {
  uint32_t seed = 100;
  for (const ConfusionDesc& d : kShapes) {
    std::vector<float> x = cast_to<float>(random_values(d.batch * d.classes * d.spatial, seed++));
    std::vector<int64_t> t = random_labels(d, seed++, true);
    std::vector<int64_t> m(static_cast<size_t>(d.classes * d.classes), 0);
    int64_t bad = d.ignore_index;
    cpu::argmax_confusion_update(m.data(), &bad, x.data(), t.data(), d, nullptr);
    EXPECT_EQ(m, reference(reference_argmax(x, d), t, d)) << describe(d);
  }
}

// Four pixel patterns, each repeated 10 times (so that the CPU's vector loop sees them, not only its tail):
// a tie between classes 1 and 2 -> 1; a NaN in class 2 -> 2; all equal -> 0; NaNs in classes 1 and 2 -> 1
// (the first NaN wins and stays).
TEST(Confusion, ArgmaxTakesTheFirstMaximumAndNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float patterns[3][4] = {{0, 5, 3, 1}, {3, 1, 3, nan}, {3, nan, 3, nan}};  // [class][pattern]
  const int64_t targets[4] = {1, 2, 0, 1}, repeats = 10;
  const ConfusionDesc d{1, 3, 4 * repeats, 255};
  std::vector<float> x(static_cast<size_t>(3 * d.spatial));
  std::vector<int64_t> t(static_cast<size_t>(d.spatial)), m(9, 0);
  for (int64_t s = 0; s < d.spatial; ++s) {
    for (int64_t c = 0; c < 3; ++c) x[c * d.spatial + s] = patterns[c][s % 4];
    t[s] = targets[s % 4];
  }
  int64_t bad = 255;
  cpu::argmax_confusion_update(m.data(), &bad, x.data(), t.data(), d, nullptr);
  EXPECT_EQ(m, (std::vector<int64_t>{10, 0, 0, /**/ 0, 20, 0, /**/ 0, 0, 10}));
}

TEST(Confusion, BadLabelsAreReportedAndSkipped) {
  const ConfusionDesc d{1, 3, 4, 255};
  std::vector<int64_t> p = {0, 1, 2, 2}, t = {0, 9, 255, 2}, m(9, 0);
  int64_t bad = 255;
  cpu::confusion_update(m.data(), &bad, p.data(), t.data(), d, nullptr);
  EXPECT_EQ(bad, 9);
  EXPECT_EQ(m, (std::vector<int64_t>{1, 0, 0, 0, 0, 0, 0, 0, 1}));
  p = {0, 1, 2, 3};
  t = {0, 1, 2, 2};
  bad = 255;
  cpu::confusion_update(m.data(), &bad, p.data(), t.data(), d, nullptr);
  EXPECT_EQ(bad, 3);  // a prediction out of range
}

#ifdef SEGENGINE_HAS_CUDA
TEST(ConfusionCuda, MatchesCpuExactly) {
  SE_SKIP_WITHOUT_CUDA();
  using test::DeviceBuffer;
  uint32_t seed = 200;
  for (const ConfusionDesc& d : kShapes) {
    std::vector<float> x = cast_to<float>(random_values(d.batch * d.classes * d.spatial, seed++));
    std::vector<int64_t> p = random_labels(d, seed++, false), t = random_labels(d, seed++, true);
    std::vector<int64_t> want(static_cast<size_t>(d.classes * d.classes), 0);
    int64_t bad = d.ignore_index;
    cpu::argmax_confusion_update(want.data(), &bad, x.data(), t.data(), d, nullptr);
    cpu::confusion_update(want.data(), &bad, p.data(), t.data(), d, nullptr);
    DeviceBuffer<float> dx(x);
    DeviceBuffer<int64_t> dp(p), dt(t), dm(std::vector<int64_t>(want.size(), 0));
    DeviceBuffer<int64_t> dbad(std::vector<int64_t>{d.ignore_index});
    cuda::argmax_confusion_update(dm.get(), dbad.get(), dx.get(), dt.get(), d, nullptr);
    cuda::confusion_update(dm.get(), dbad.get(), dp.get(), dt.get(), d, nullptr);
    EXPECT_EQ(dm.to_host(), want) << describe(d);
    EXPECT_EQ(dbad.to_host()[0], d.ignore_index) << describe(d);
  }
}

TEST(ConfusionCuda, F16LogitsAndBadLabels) {
  SE_SKIP_WITHOUT_CUDA();
  using test::DeviceBuffer;
  const ConfusionDesc d{2, 4, 9, 255};
  std::vector<f16> x = cast_to<f16>(random_values(d.batch * d.classes * d.spatial, 7));
  std::vector<int64_t> t = random_labels(d, 8, true);
  std::vector<int64_t> want(16, 0);
  int64_t bad = 255;
  cpu::argmax_confusion_update(want.data(), &bad, x.data(), t.data(), d, nullptr);
  DeviceBuffer<f16> dx(x);
  DeviceBuffer<int64_t> dt(t), dm(std::vector<int64_t>(16, 0)), dbad(std::vector<int64_t>{255});
  cuda::argmax_confusion_update(dm.get(), dbad.get(), dx.get(), dt.get(), d, nullptr);
  EXPECT_EQ(dm.to_host(), want);
  t[5] = 4;
  DeviceBuffer<int64_t> dt_bad(t);
  cuda::argmax_confusion_update(dm.get(), dbad.get(), dx.get(), dt_bad.get(), d, nullptr);
  EXPECT_EQ(dbad.to_host()[0], 4);
}
#endif

}  // namespace
}  // namespace se::kernels
