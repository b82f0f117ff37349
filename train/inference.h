// Inference modes for evaluation and prediction: the whole image in one forward, or mmsegmentation's
// sliding window over overlapping crops; optionally test-time augmentation over scales and a
// horizontal flip. The trainer's validation, `segengine eval` and `segengine predict` all go through
// infer(), so a config's "inference" section means the same thing everywhere.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/config.h"
#include "core/dtype.h"
#include "engine/tensor.h"
#include "models/model.h"

namespace se {

struct InferenceOptions {
  enum class Mode { whole, slide };
  Mode mode = Mode::whole;
  // slide: crops of crop_h x crop_w every stride_h / stride_w pixels (mmseg's test_cfg crop_size / stride).
  int64_t crop_h = 512, crop_w = 512, stride_h = 341, stride_w = 341;
  // Multi-scale TTA: the image is resized by each factor to round(H * s) x round(W * s) (bilinear,
  // align_corners=false, as mmcv's rescale), inferred, and the result resized back to H x W the same way.
  std::vector<double> scales{1.0};
  bool flip = false;       // also infer the horizontally flipped image (flipped back) at every scale
  int64_t batch_size = 8;  // images (whole) or crops (slide) per forward
  // Mixed precision: the model's forward runs under autocast in this dtype (f16 or bf16; engine/autocast.h)
  // and its logits are converted to f32 before crops, scales and flips are combined. Unset: f32.
  std::optional<DType> amp;

  // More than one pass (several scales, or flip): infer() returns mean probabilities, not logits.
  bool uses_tta() const { return scales.size() > 1 || flip; }
  // Throws se::Error naming the offending field and value (non-positive crop, stride or batch size, a
  // stride larger than the crop, which would leave pixels no crop covers, no scales, a scale <= 0).
  void validate() const;

  // From an "inference" / "test" config object; every key is optional (the defaults above):
  // {"mode": "whole" | "slide", "crop_size": [h, w] or n, "stride": [h, w] or n, "scales": [...],
  //  "flip": bool, "batch_size": n, "amp": "off" | "bf16" | "f16"}. Validates; errors name the config path
  //  of the key.
  static InferenceOptions from_config(const Config& section);
};

// The "amp" key of a config section (train, inference): "off" (the default) gives nullopt, "bf16" or
// "f16" the autocast dtype; anything else is an error naming the key's path.
std::optional<DType> read_amp(const Config& section);

// Class scores (N, K, H, W) for `images` (N, 3, H, W), computed without autograd by the model in
// whatever train/eval mode the caller set (evaluate() sets eval). The images may be on any device: they
// are moved to the model's (model_device()), where the scores are returned.
//
// Returned values:
//   - one pass (a single scale and no flip): LOGITS. With scale 1 these are exactly what whole or
//     slide inference gives; with another single scale, the logits resized back to H x W.
//   - TTA (uses_tta()): the MEAN SOFTMAX PROBABILITY over scales x {identity, flip} (mmseg's
//     SegTTAModel: softmax of each pass's logits at the original size, then the average).
// Either way argmax over dim 1 is the predicted class.
//
// whole: model.forward on batch_size images at a time.
// slide (mmseg's EncoderDecoder.slide_inference): h_grids = max(H - crop_h + stride_h - 1, 0) / stride_h + 1
// (likewise w); crop (i, j) starts at y1 = i * stride_h, ends at y2 = min(y1 + crop_h, H), and is then moved
// back so that y1 = max(y2 - crop_h, 0): the last crop is aligned to the border. An image smaller than
// the crop is NOT padded (as in mmseg's slide_inference): its crop along that axis is the whole image, so
// every crop of an image has the size min(crop_h, H) x min(crop_w, W). The crops of all N images are run
// batch_size at a time; each pixel's logits are the sum over the crops covering it divided by their count.
// The summation order is the grid order whatever the batch size, so batching does not change the result.
Tensor infer(models::SegmentationModel& model,
             const Tensor& images,  // (N, 3, H, W)
             const InferenceOptions& options);

// The device of the model's first parameter, or `fallback` for a model without parameters.
Device model_device(const models::SegmentationModel& model, Device fallback);

}  // namespace se
