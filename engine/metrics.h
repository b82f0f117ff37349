// Segmentation metrics. The confusion matrix is accumulated on the tensors' device (kernels/metrics.h); the
// metrics are computed on the host from the integer matrix, as mmseg does. They live in engine/ (not
// kernels/) because the accumulation takes Tensors and the trainer and the CLI both use them; the host part
// is plain integer-to-double arithmetic with no device code.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace se {

// Adds the pixels of one batch to `confusion` (C, C) i64 (rows the ground truth, columns the prediction),
// on confusion's device. `prediction` is either (N, C, d1, ...) floating logits (argmax over dim 1, fused)
// or (N, d1, ...) i64 class indices; `target` is (N, d1, ...) i64. Pixels whose target is ignore_index are
// skipped; any other label outside [0, C) is an error naming it.
void confusion_matrix_update(Tensor& confusion, const Tensor& prediction, const Tensor& target, int64_t ignore_index);

// Metrics of a C x C confusion matrix (row-major, rows the ground truth). Per-class values are NaN where
// undefined; the means are over the defined ones (mmseg's nanmean), NaN when none is defined.
struct SegmentationMetrics {
  double pixel_accuracy = 0;     // sum(tp) / sum(all)
  std::vector<double> accuracy;  // per class: tp / ground-truth pixels (NaN: class absent)
  double mean_accuracy = 0;
  std::vector<double> iou;  // per class: tp / (gt + pred - tp) (NaN: absent from both)
  double mean_iou = 0;
  double frequency_weighted_iou = 0;  // sum over classes with a defined IoU of gt / total * iou
  std::vector<double> dice;           // per class: 2 tp / (gt + pred) (NaN: absent from both)
  double mean_dice = 0;
};
SegmentationMetrics segmentation_metrics(const std::vector<int64_t>& confusion, int64_t classes);

}  // namespace se
