// Evaluation of a segmentation model over a data set: the confusion matrix accumulated on the model's
// device, the metrics computed from it on the host (engine/metrics.h, mmseg's definitions), and the
// reports `segengine eval` and the trainer write: an mmseg-like text table, JSON, a CSV of the confusion
// matrix, a confusion heatmap PNG; plus the PNGs `segengine predict` writes for one image.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/image.h"
#include "data/loader.h"
#include "engine/metrics.h"
#include "engine/tensor.h"
#include "models/model.h"
#include "train/inference.h"

namespace se {

struct EvaluationResult {
  int64_t num_classes = 0;
  std::vector<int64_t> confusion;  // num_classes x num_classes, row-major, rows the ground truth
  SegmentationMetrics metrics;     // of `confusion`
  int64_t images = 0;              // images evaluated
  double seconds = 0;              // wall time of the pass (loading included)
};

// The metrics of a confusion matrix, packaged (e.g. for a confusion summed over several evaluations).
EvaluationResult make_evaluation_result(std::vector<int64_t> confusion, int64_t num_classes, int64_t images = 0,
                                        double seconds = 0);

// Runs infer() over one full epoch of `loader` (every batch it gives, so drop_last applies) with the model
// in eval mode (its train/eval mode is restored afterwards, also on error), and accumulates the confusion
// of argmax predictions against the masks on the model's device (pixels whose mask is ignore_index are
// skipped; any other mask value outside [0, K) is an error naming it).
// Loader position: whatever it is, the pass starts at batch 0 of the loader's current epoch, and the loader
// is put back there afterwards, so evaluating again sees exactly the same batches (same order and
// augmentation stream) and gives the same result.
// progress(done, total) is called after each batch with the batches done and the batches of the pass.
EvaluationResult evaluate(models::SegmentationModel& model, DataLoader& loader, const InferenceOptions& options,
                          int64_t ignore_index, const std::function<void(int64_t done, int64_t total)>& progress = {});

// mmseg-like text: a per-class table (Class, IoU, Acc, Dice in percent, two decimals, "nan" where undefined),
// then a summary table (aAcc, mIoU, mAcc, mDice, fwIoU). class_names: one per class, or empty for "class <i>".
std::string format_evaluation_table(const EvaluationResult& result, const std::vector<std::string>& class_names);

// {"num_classes", "images", "seconds", "aAcc", "mIoU", "mAcc", "mDice", "fwIoU",
//  "per_class": [{"class", "IoU", "Acc", "Dice"}, ...], "confusion": [[...], ...] (rows the ground truth)}.
// Metrics are fractions in [0, 1] (the table shows percent); undefined (NaN) values are null.
nlohmann::json evaluation_to_json(const EvaluationResult& result, const std::vector<std::string>& class_names);

// The confusion matrix as CSV, written atomically: a header "ground_truth\prediction,<class>,..." then one row
// per ground-truth class "<class>,<count>,...". Names with commas or quotes are quoted (RFC 4180).
void write_confusion_csv(const std::string& path, const EvaluationResult& result,
                         const std::vector<std::string>& class_names);

// A PNG heatmap of the row-normalised confusion (each ground-truth row sums to 1; rows without ground-truth
// pixels are light grey), colours from the viridis map (dark: 0, yellow: 1), written atomically. Cells are square,
// between 4 and 48 pixels, about 480 pixels for the whole matrix; cells of 28 pixels and more show the percentage. With
// a palette (one colour per class), a strip of each class's colour runs along the left edge (ground truth, rows) and
// the top edge (prediction, columns). Size: see confusion_heatmap_size().
void write_confusion_heatmap(const std::string& path, const EvaluationResult& result, const std::vector<Rgb>& palette);
struct HeatmapGeometry {
  int cell = 0;   // side of one cell in pixels
  int strip = 0;  // width of the palette strips (0 without a palette)
  int width = 0, height = 0;
};
HeatmapGeometry confusion_heatmap_size(int64_t num_classes, bool with_palette);

// For `segengine predict`: writes `prediction` as an index (palette) PNG, and an overlay of `image` with the
// class colours blended in at alpha 0.5 (RGB PNG). Both atomically. Every prediction must have a palette
// entry (at most 256 classes: index PNGs are 8-bit).
void write_prediction_pngs(const std::string& index_png_path, const std::string& overlay_png_path,
                           const Image& image,        // (H, W, 3) RGB
                           const Tensor& prediction,  // (H, W) i64 class indices, any device
                           const std::vector<Rgb>& palette);

}  // namespace se
