// The one interface of every dataset (built-in synthetic, folder trees, Cityscapes, VOC, ADE20K,
// CamVid), and the factory that builds one from a JSON object such as {"type": "synthetic", ...}.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/image.h"

namespace se {

struct Sample {
  Image image;     // (H, W, 3) RGB
  Image mask;      // (H, W, 1) class indices in [0, num_classes) or the ignore index
  std::string id;  // stable name of the sample (file stem, or synthetic/<domain>/<split>/<index>)
};

struct DatasetInfo {
  std::string name;                      // e.g. "cityscapes"
  std::vector<std::string> class_names;  // one per class
  std::vector<Rgb> palette;              // one colour per class, for overlays and index PNGs
  int ignore_index = 255;                // mask value that is not a class (masks are 8-bit)
  int num_classes() const { return static_cast<int>(class_names.size()); }
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // The sample at `index` in [0, size()), decoded and validated, before any transform. Safe to call
  // from several threads at once.
  virtual Sample get(int64_t index) const = 0;
  const DatasetInfo& info() const { return info_; }
  int num_classes() const { return info_.num_classes(); }

 protected:
  DatasetInfo info_;
};

// Builds a dataset from its JSON description; "type" picks the kind (synthetic, folder, cityscapes,
// voc, ade20k, camvid) and the other keys are the kind's own (unknown keys are errors listing the
// valid ones). A non-empty `split` overrides the object's "split" key, so one data section can give
// the train, val and test sets.
std::shared_ptr<Dataset> make_dataset(const nlohmann::json& config, const std::string& split = "");

// Throws unless every mask value is a class of `info` or its ignore index; names `file` and the value.
void validate_mask(const Image& mask, const DatasetInfo& info, const std::string& file);

// Throws unless image and mask have the same size and the expected channels; names `id`.
void check_sample(const Sample& sample, const std::string& where);

// A palette of `n` distinct colours (the VOC bit-interleaving scheme), for datasets without their own.
std::vector<Rgb> default_palette(int n);

}  // namespace se
