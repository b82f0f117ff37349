// The training loss of a segmentation model, composed from the config like mmsegmentation's loss_decode
// list, and class weights computed from the training set's pixel statistics.
//
//   "loss": {"type": "ce", "class_weight": "inverse_log"}
//   "loss": [{"type": "ohem", "thresh": 0.7, "min_kept": 100000}, {"type": "dice", "weight": 0.5}]
//
//   ClassPixelCounts stats = count_class_pixels(train_set, 500);  // only needed when a method is named
//   SegmentationLoss loss = SegmentationLoss::from_config(root, num_classes, ignore_index, &stats);
//   LossTerms terms = loss(logits, target);  // terms.total.backward(); log terms.parts
//
// Term types and their keys (all optional; every term also takes "weight", default 1, >= 0):
//   ce      cross_entropy:      label_smoothing (0), class_weight
//   ohem    ohem_cross_entropy: thresh (0.7), min_kept (100000), class_weight
//   dice    dice_loss:          smooth (0), eps (1e-7), log_loss (false)
//   focal   focal_loss:         gamma (2), alpha (per-class weights, given like class_weight)
//   lovasz  lovasz_softmax:     no keys of its own (the op has no per_image mode)
// Per-class weights ("class_weight", "alpha") are a list of num_classes numbers, or a method name from
// class_weights_from_counts, optionally with "beta" for effective_number.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace se {

class Config;
class Dataset;

// Labelled pixels per class of (part of) a dataset.
struct ClassPixelCounts {
  std::vector<int64_t> pixels;  // one per class; the ignore index is not counted
  int64_t images = 0;           // how many samples were counted
};

// Counts the labelled pixels per class over up to max_samples samples of `dataset` (evenly spaced indices
// floor(i * size / max_samples); all samples when max_samples <= 0 or >= size), skipping the dataset's ignore
// index. Reads samples with Dataset::get on `num_threads` threads (0: the hardware's concurrency).
ClassPixelCounts count_class_pixels(const Dataset& dataset, int64_t max_samples = 0, int num_threads = 0);

// Per-class weights from pixel counts, n_c pixels of class c, p_c = n_c / sum_j n_j. Methods:
//   inverse_frequency  w_c = 1 / p_c   (median frequency balancing of Eigen & Fergus 2015 and SegNet is
//                      this up to the normalisation: median(p) / p_c)
//   inverse_sqrt       w_c = 1 / sqrt(p_c)   (a softened inverse frequency)
//   inverse_log        w_c = 1 / ln(1.02 + p_c)   (ENet, Paszke et al. 2016: bounded in [1.42, 50.5] raw)
//   effective_number   w_c = (1 - beta) / (1 - beta^n_c)   (Cui et al. 2019, "Class-Balanced Loss Based on
//                      Effective Number of Samples": 1 / E_n with E_n = (1 - beta^n) / (1 - beta);
//                      beta in [0, 1), default 0.9999)
// Normalisation: the weights of the classes with pixels are scaled so that their mean is 1 (Cui et al.'s
// convention of weights summing to the number of classes, over the classes that occur). A class without
// pixels gets the largest weight of the others: it is at least as rare as the rarest counted class, and a
// weight of 0 would silently drop its pixels when a batch has them. Errors when no class has pixels or the
// method is unknown (the message lists the methods).
std::vector<double> class_weights_from_counts(const ClassPixelCounts& counts, const std::string& method,
                                              double beta = 0.9999);
// The method names class_weights_from_counts accepts.
const std::vector<std::string>& class_weight_methods();

// The result of one loss evaluation: 0-d f32 tensors (f64 for f64 logits) on the logits' device.
struct LossTerms {
  Tensor total;                                       // sum over terms of weight * value
  std::vector<std::pair<std::string, Tensor>> parts;  // (name, unweighted value) in config order
};

class SegmentationLoss {
 public:
  // Reads root's "loss" key: one term object or a list of them; absent: plain cross-entropy. Every key is read
  // through the Config, so root.finish() reports unknown ones. `stats` is needed only when a class weight
  // method is named (and must then have num_classes counts). A bad "type" is an error listing the types, a
  // per-class list of the wrong length an error naming the key and num_classes.
  static SegmentationLoss from_config(const Config& root, int64_t num_classes, int64_t ignore_index,
                                      const ClassPixelCounts* stats = nullptr);
  // Whether root's "loss" names a class weight method, i.e. whether from_config needs `stats`: lets the trainer
  // skip reading the training set when it does not. Declares no keys.
  static bool needs_class_pixel_counts(const Config& root);

  // f16 and bf16 logits are computed in f32 (as torch.autocast runs cross_entropy); f32 and f64 as they are.
  LossTerms operator()(const Tensor& logits,         // (N, K, H, W) floating, K = num_classes
                       const Tensor& target) const;  // (N, H, W) i64 in [0, K) or ignore_index

  // One line, e.g. "1.0 * ohem(thresh=0.9) + 0.5 * dice": each term with the settings that differ from
  // the defaults.
  std::string describe() const;
  // The part names, in the order operator() returns them. A type used once is named by its type ("ce");
  // a type used several times is numbered in config order ("dice_1", "dice_2").
  std::vector<std::string> names() const;
  int64_t num_classes() const { return num_classes_; }
  int64_t ignore_index() const { return ignore_index_; }

  enum class Type { ce, ohem, dice, focal, lovasz };
  struct Term {
    Type type = Type::ce;
    std::string name;                   // unique part name
    double weight = 1.0;                // multiplies the value in the total
    std::vector<double> class_weights;  // ce/ohem class_weight, focal alpha; empty: none
    std::string class_weight_source;    // "" (none), "list" or the method name, for describe()
    double label_smoothing = 0.0;       // ce
    double thresh = 0.7;                // ohem
    int64_t min_kept = 100000;          // ohem
    double smooth = 0.0;                // dice
    double eps = 1e-7;                  // dice
    bool log_loss = false;              // dice
    double gamma = 2.0;                 // focal
  };
  const std::vector<Term>& terms() const { return terms_; }

 private:
  std::vector<Term> terms_;
  int64_t num_classes_ = 0;
  int64_t ignore_index_ = 255;
};

}  // namespace se
