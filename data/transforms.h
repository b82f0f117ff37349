// Transforms applied jointly to a sample's image and mask (masks by nearest neighbour, so they keep
// their values; areas a transform invents get the ignore index). Semantics follow mmsegmentation's
// pipeline (RandomResize, RandomCrop with cat_max_ratio, Pad, RandomFlip, PhotoMetricDistortion,
// RandomRotate), so its recipes carry over. Every random draw comes from an Rng that the pipeline
// derives from (seed, epoch, index): the same sample is augmented the same way whatever thread or
// worker runs it.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/rng.h"

namespace se {

class Transform {
 public:
  virtual ~Transform() = default;
  virtual void apply(Sample& sample, Rng& rng) const = 0;
  virtual std::string name() const = 0;
};

struct Size2 {
  int width = 0, height = 0;
};

// Rescales so that the image fits (long side <= max(scale), short side <= min(scale)) with its aspect
// ratio kept (mmcv's rescale_size), or to exactly `scale` when keep_ratio is false. The validation resize.
struct Resize : Transform {
  Size2 scale;
  bool keep_ratio = true;
  bool resize_mask = true;  // false: keep the mask at full resolution (evaluate on the original labels)
  void apply(Sample& sample, Rng& rng) const override;
  std::string name() const override { return "resize"; }
};

// Resize to scale * r, r uniform in ratio_range (mmseg RandomResize).
struct RandomResize : Transform {
  Size2 scale;
  float ratio_min = 0.5f, ratio_max = 2.0f;
  bool keep_ratio = true;
  void apply(Sample& sample, Rng& rng) const override;
  std::string name() const override { return "random_resize"; }
};

// A random crop of at most `size`; with cat_max_ratio < 1 it retries (up to 10 times) until no single
// class covers more than that share of the non-ignored crop pixels (mmseg RandomCrop).
struct RandomCrop : Transform {
  Size2 size;
  float cat_max_ratio = 1.0f;
  int ignore_index = 255;
  void apply(Sample& sample, Rng& rng) const override;
  std::string name() const override { return "random_crop"; }
};

// Pads at the bottom and right up to `size`: image with pad_value, mask with the ignore index.
struct Pad : Transform {
  Size2 size;
  uint8_t pad_value = 0;
  uint8_t mask_pad_value = 255;
  void apply(Sample& sample, Rng& rng) const override;
  std::string name() const override { return "pad"; }
};

struct RandomFlip : Transform {
  float prob = 0.5f;
  void apply(Sample& sample, Rng& rng) const override;
  std::string name() const override { return "random_flip"; }
};

// mmseg PhotoMetricDistortion: random brightness, then contrast either first or last, saturation and
// hue in OpenCV's 8-bit HSV; each step happens with probability 1/2 and saturates to [0, 255].
struct PhotoMetricDistortion : Transform {
  int brightness_delta = 32;
  float contrast_min = 0.5f, contrast_max = 1.5f;
  float saturation_min = 0.5f, saturation_max = 1.5f;
  int hue_delta = 18;
  void apply(Sample& sample, Rng& rng) const override;
  std::string name() const override { return "photometric_distortion"; }
};

// With probability prob, a Gaussian blur of sigma uniform in [sigma_min, sigma_max] (image only).
struct GaussianBlur : Transform {
  float prob = 0.5f;
  float sigma_min = 0.1f, sigma_max = 2.0f;
  void apply(Sample& sample, Rng& rng) const override;
  std::string name() const override { return "gaussian_blur"; }
};

// With probability prob, a rotation by uniform(-degree, degree) about the centre (mmseg RandomRotate).
struct RandomRotate : Transform {
  float prob = 0.5f;
  float degree = 10.f;
  uint8_t pad_value = 0;
  uint8_t mask_pad_value = 255;
  void apply(Sample& sample, Rng& rng) const override;
  std::string name() const override { return "random_rotate"; }
};

// Per-channel (x - mean) / std of RGB values in [0, 255]; ImageNet statistics by default.
struct Normalization {
  std::array<float, 3> mean = {123.675f, 116.28f, 103.53f};
  std::array<float, 3> std = {58.395f, 57.12f, 57.375f};
};

// Writes the normalised image as (3, H, W) floats.
void normalize_chw(const Image& image, const Normalization& normalization, float* out);

// An ordered list of transforms and the final normalisation.
class Pipeline {
 public:
  Pipeline() = default;
  Pipeline& add(std::shared_ptr<const Transform> transform);
  // From a JSON list such as [{"type": "random_flip", "prob": 0.5}, {"type": "normalize", "mean": [...]}];
  // a "normalize" step sets the normalisation (default ImageNet when absent). `ignore_index` fills
  // the defaults of the mask-padding steps.
  static Pipeline from_json(const nlohmann::json& steps, int ignore_index = 255);

  // Runs the transforms with the stream of (seed, epoch, index).
  void apply(Sample& sample, uint64_t seed, int64_t epoch, int64_t index) const;
  const Normalization& normalization() const { return normalization_; }
  void set_normalization(const Normalization& n) { normalization_ = n; }
  size_t size() const { return transforms_.size(); }

 private:
  std::vector<std::shared_ptr<const Transform>> transforms_;
  Normalization normalization_;
};

}  // namespace se
