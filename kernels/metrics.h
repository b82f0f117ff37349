// Segmentation metrics on the device: the confusion matrix of predicted against ground-truth classes,
// accumulated in int64, rows the ground truth, columns the prediction: confusion[t * C + p] += 1.
// Predictions are either given (N, S) class indices or the argmax over the class dim of (N, C, S) logits
// (first maximum; NaN counts as the maximum, as in PyTorch's argmax), fused into the same pass. Pixels
// whose target is ignore_index are skipped. A target or given prediction outside [0, C) that is not
// ignore_index is skipped and its value written into *bad_value, which the caller initialises to
// ignore_index and reads back once (as for cross-entropy in kernels/loss.h). Host-side metrics from the
// matrix live in engine/metrics.h.
#pragma once

#include <cstdint>

#include "core/half.h"
#include "kernels/stream.h"

namespace se::kernels {

struct ConfusionDesc {
  int64_t batch = 1;    // N
  int64_t classes = 1;  // C
  int64_t spatial = 1;  // S = H * W
  int64_t ignore_index = -100;
};

// argmax_confusion_update: instantiated for float, double, f16, bf16.
namespace cpu {
template <typename T>
void argmax_confusion_update(int64_t* confusion,     // (C, C), accumulated into
                             int64_t* bad_value,     // (1)
                             const T* logits,        // (N, C, S)
                             const int64_t* target,  // (N, S)
                             const ConfusionDesc& desc, Stream stream);
void confusion_update(int64_t* confusion,         // (C, C), accumulated into
                      int64_t* bad_value,         // (1)
                      const int64_t* prediction,  // (N, S)
                      const int64_t* target,      // (N, S)
                      const ConfusionDesc& desc, Stream stream);
}  // namespace cpu

// CUDA: per-block histograms in shared memory when C * C counters fit in 48 KiB (C <= 110), merged into the
// global matrix with one atomic per non-zero bin; global atomics per pixel beyond that.
namespace cuda {
template <typename T>
void argmax_confusion_update(int64_t* confusion,     // (C, C), device, accumulated into
                             int64_t* bad_value,     // (1), device
                             const T* logits,        // (N, C, S)
                             const int64_t* target,  // (N, S)
                             const ConfusionDesc& desc, Stream stream);
void confusion_update(int64_t* confusion,         // (C, C), device, accumulated into
                      int64_t* bad_value,         // (1), device
                      const int64_t* prediction,  // (N, S)
                      const int64_t* target,      // (N, S)
                      const ConfusionDesc& desc, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
