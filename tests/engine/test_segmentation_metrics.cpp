// engine/metrics.h: segmentation metrics checked exactly on integer confusion matrices (each expected value
// is the same double division the definition names), and confusion_matrix_update on Tensors (CPU, CUDA
// against CPU, error messages).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/metrics.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_error;

TEST(SegmentationMetrics, ExactOnAnIntegerConfusionMatrix) {
  // Rows the ground truth. Class 2 is predicted once but never in the ground truth (IoU 0, counted); class
  // 3 appears in neither (IoU NaN, excluded from the means, as mmseg's nanmean).
  const std::vector<int64_t> m = {2, 1, 1, 0,  //
                                  0, 4, 0, 0,  //
                                  0, 0, 0, 0,  //
                                  0, 0, 0, 0};
  const SegmentationMetrics r = segmentation_metrics(m, 4);
  // ground truth per class [4, 4, 0, 0], predicted [2, 5, 1, 0], tp [2, 4, 0,
  // 0], total 8
  EXPECT_EQ(r.pixel_accuracy, 6.0 / 8);
  ASSERT_EQ(r.accuracy.size(), 4u);
  EXPECT_EQ(r.accuracy[0], 2.0 / 4);
  EXPECT_EQ(r.accuracy[1], 4.0 / 4);
  EXPECT_TRUE(std::isnan(r.accuracy[2]) && std::isnan(r.accuracy[3]));
  EXPECT_EQ(r.mean_accuracy, (2.0 / 4 + 4.0 / 4) / 2);
  EXPECT_EQ(r.iou[0], 2.0 / 4);
  EXPECT_EQ(r.iou[1], 4.0 / 5);
  EXPECT_EQ(r.iou[2], 0.0);
  EXPECT_TRUE(std::isnan(r.iou[3]));
  EXPECT_EQ(r.mean_iou, (2.0 / 4 + 4.0 / 5 + 0.0) / 3);
  EXPECT_EQ(r.frequency_weighted_iou, 4.0 / 8 * (2.0 / 4) + 4.0 / 8 * (4.0 / 5) + 0.0 / 8 * 0.0);
  EXPECT_EQ(r.dice[0], 4.0 / 6);
  EXPECT_EQ(r.dice[1], 8.0 / 9);
  EXPECT_EQ(r.dice[2], 0.0);
  EXPECT_TRUE(std::isnan(r.dice[3]));
  EXPECT_EQ(r.mean_dice, (4.0 / 6 + 8.0 / 9 + 0.0) / 3);
}

TEST(SegmentationMetrics, PerfectAndEmptyMatrices) {
  const SegmentationMetrics perfect = segmentation_metrics({5, 0, 0, 7}, 2);
  EXPECT_EQ(perfect.pixel_accuracy, 1.0);
  EXPECT_EQ(perfect.mean_iou, 1.0);
  EXPECT_EQ(perfect.frequency_weighted_iou, 5.0 / 12 + 7.0 / 12);
  EXPECT_EQ(perfect.mean_dice, 1.0);
  const SegmentationMetrics empty = segmentation_metrics({0, 0, 0, 0}, 2);
  EXPECT_TRUE(std::isnan(empty.pixel_accuracy) && std::isnan(empty.mean_iou) && std::isnan(empty.mean_accuracy) &&
              std::isnan(empty.frequency_weighted_iou) && std::isnan(empty.mean_dice));
  expect_error([] { segmentation_metrics({1, 2, 3}, 2); }, "segmentation_metrics: a 2-class confusion matrix has 4");
  expect_error([] { segmentation_metrics({1, -2, 3, 4}, 2); }, "segmentation_metrics: negative count -2 at (0, 1)");
}

TEST(ConfusionMatrixOps, LogitsAndPredictionsAccumulate) {
  Tensor confusion = zeros({3, 3}, {DType::i64});
  // (1, 3, 2, 2) logits: argmax per pixel [2, 0, 1, 1]
  Tensor logits = from_vector<float>({0, 9, 0, 0, /**/ 0, 0, 5, 5, /**/ 1, 0, 0, 0}, {1, 3, 2, 2});
  Tensor target = from_vector<int64_t>({2, 1, 255, 1}, {1, 2, 2}, {DType::i64});
  confusion_matrix_update(confusion, logits, target, 255);
  EXPECT_EQ(confusion.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0, 1, 1, 0, 0, 0, 1}));
  confusion_matrix_update(confusion, from_vector<int64_t>({0, 0, 0, 0}, {1, 2, 2}, {DType::i64}), target, 255);
  EXPECT_EQ(confusion.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0, 3, 1, 0, 1, 0, 1}));
}

TEST(ConfusionMatrixOps, BadArgumentsAreErrors) {
  Tensor confusion = zeros({3, 3}, {DType::i64});
  Tensor target = from_vector<int64_t>({0, 7}, {1, 2}, {DType::i64});
  expect_error(
      [&] {
        confusion_matrix_update(confusion, zeros({1, 3, 2}), target, 255);
      },
      "confusion_matrix_update: label value 7 is out of range for 3 classes");
  expect_error(
      [&] {
        confusion_matrix_update(confusion, zeros({1, 4, 2}), target, 255);
      },
      "must be (N, 3, ...) for a 3-class confusion matrix");
  expect_error(
      [&] {
        confusion_matrix_update(confusion, zeros({1, 3, 3}), target, 255);
      },
      "target shape (1, 2) does not match prediction (1, 3, 3)");
  Tensor wrong = zeros({3, 2}, {DType::i64});
  expect_error(
      [&] {
        confusion_matrix_update(wrong, zeros({1, 3, 2}), target, 255);
      },
      "confusion must be a contiguous (C, C) i64 tensor");
}

#ifdef SEGENGINE_HAS_CUDA
TEST(ConfusionMatrixOpsCuda, MatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (int64_t classes : {4, 130}) {
    Tensor logits = randn({2, classes, 5, 7});
    Tensor target = argmax(randn({2, classes, 5, 7}), 1);
    Tensor cpu_confusion = zeros({classes, classes}, {DType::i64});
    Tensor cuda_confusion = zeros({classes, classes}, {DType::i64, Device::cuda()});
    confusion_matrix_update(cpu_confusion, logits, target, 255);
    confusion_matrix_update(cuda_confusion, logits.to(Device::cuda()), target.to(Device::cuda()), 255);
    EXPECT_EQ(cuda_confusion.to_vector<int64_t>(), cpu_confusion.to_vector<int64_t>()) << classes;
  }
  Tensor confusion = zeros({3, 3}, {DType::i64, Device::cuda()});
  expect_error(
      [&] {
        confusion_matrix_update(confusion, zeros({1, 3, 2}, {DType::f32, Device::cuda()}),
                                from_vector<int64_t>({0, -5}, {1, 2}, {DType::i64, Device::cuda()}), 255);
      },
      "label value -5 is out of range");
}
#endif

}  // namespace
}  // namespace se
