// Confusion-matrix accumulation (kernels/metrics.h through SE_DISPATCH) and the host-side metrics.
#include "engine/metrics.h"

#include <cmath>
#include <limits>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/metrics.h"

namespace se {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Mean of the non-NaN values, NaN when there are none.
double nanmean(const std::vector<double>& values) {
  double total = 0;
  int64_t count = 0;
  for (double v : values) {
    if (std::isnan(v)) continue;
    total += v;
    ++count;
  }
  return count == 0 ? kNaN : total / static_cast<double>(count);
}

double ratio(int64_t numerator, int64_t denominator) {
  return denominator == 0 ? kNaN : static_cast<double>(numerator) / static_cast<double>(denominator);
}

}  // namespace

void confusion_matrix_update(Tensor& confusion, const Tensor& prediction, const Tensor& target, int64_t ignore_index) {
  const char* op = "confusion_matrix_update";
  SE_CHECK(confusion.defined() && prediction.defined() && target.defined(), op, ": undefined tensor");
  SE_CHECK(confusion.dtype() == DType::i64 && confusion.dim() == 2 && confusion.size(0) == confusion.size(1) &&
               confusion.is_contiguous(),
           op, ": confusion must be a contiguous (C, C) i64 tensor, got ", shape_str(confusion.shape()), " ",
           dtype_name(confusion.dtype()));
  SE_CHECK(target.dtype() == DType::i64, op, ": target must be i64, got ", dtype_name(target.dtype()));
  SE_CHECK(prediction.device() == confusion.device() && target.device() == confusion.device(), op,
           ": tensors must be on one device (confusion on ", confusion.device().str(), ")");
  const bool logits = is_floating(prediction.dtype());
  SE_CHECK(logits || prediction.dtype() == DType::i64, op, ": prediction must be floating logits or i64, got ",
           dtype_name(prediction.dtype()));
  kernels::ConfusionDesc d;
  d.classes = confusion.size(0);
  d.ignore_index = ignore_index;
  Shape expected = prediction.shape();
  if (logits) {
    SE_CHECK(prediction.dim() >= 2 && prediction.size(1) == d.classes, op, ": logits ", shape_str(prediction.shape()),
             " must be (N, ", d.classes, ", ...) for a ", d.classes, "-class confusion matrix");
    expected.erase(expected.begin() + 1);
  }
  SE_CHECK(target.shape() == expected, op, ": target shape ", shape_str(target.shape()), " does not match prediction ",
           shape_str(prediction.shape()));
  SE_CHECK(!expected.empty(), op, ": prediction must have a batch dim");
  d.batch = expected[0];
  d.spatial = d.batch == 0 ? 0 : shape_numel(expected) / d.batch;
  Tensor p = prediction.contiguous(), t = target.contiguous();
  Tensor bad_value = full({1}, static_cast<double>(ignore_index), {DType::i64, confusion.device()});
  if (logits) {
    dispatch_floating(p.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      SE_DISPATCH(confusion.device(), argmax_confusion_update<T>, confusion.data<int64_t>(), bad_value.data<int64_t>(),
                  p.data<T>(), t.data<int64_t>(), d);
    });
  } else {
    SE_DISPATCH(confusion.device(), confusion_update, confusion.data<int64_t>(), bad_value.data<int64_t>(),
                p.data<int64_t>(), t.data<int64_t>(), d);
  }
  const int64_t bad = bad_value.to_vector<int64_t>()[0];
  SE_CHECK(bad == ignore_index, op, ": label value ", bad, " is out of range for ", d.classes,
           " classes (expected [0, ", d.classes, ") or ignore_index ", ignore_index, ")");
}

SegmentationMetrics segmentation_metrics(const std::vector<int64_t>& confusion, int64_t classes) {
  SE_CHECK(classes >= 0 && static_cast<int64_t>(confusion.size()) == classes * classes, "segmentation_metrics: a ",
           classes, "-class confusion matrix has ", classes * classes, " entries, got ", confusion.size());
  const auto at = [&](int64_t row, int64_t col) { return confusion[static_cast<size_t>(row * classes + col)]; };
  SegmentationMetrics m;
  int64_t total = 0, correct = 0;
  std::vector<int64_t> ground_truth(static_cast<size_t>(classes), 0), predicted(static_cast<size_t>(classes), 0);
  for (int64_t r = 0; r < classes; ++r) {
    for (int64_t c = 0; c < classes; ++c) {
      SE_CHECK(at(r, c) >= 0, "segmentation_metrics: negative count ", at(r, c), " at (", r, ", ", c, ")");
      ground_truth[r] += at(r, c);
      predicted[c] += at(r, c);
      total += at(r, c);
    }
    correct += at(r, r);
  }
  m.pixel_accuracy = ratio(correct, total);
  m.frequency_weighted_iou = total == 0 ? kNaN : 0.0;
  for (int64_t k = 0; k < classes; ++k) {
    const int64_t tp = at(k, k), gt = ground_truth[k], pred = predicted[k];
    m.accuracy.push_back(ratio(tp, gt));
    m.iou.push_back(ratio(tp, gt + pred - tp));
    m.dice.push_back(ratio(2 * tp, gt + pred));
    if (!std::isnan(m.iou.back()) && total > 0) m.frequency_weighted_iou += ratio(gt, total) * m.iou.back();
  }
  m.mean_accuracy = nanmean(m.accuracy);
  m.mean_iou = nanmean(m.iou);
  m.mean_dice = nanmean(m.dice);
  return m;
}

}  // namespace se
