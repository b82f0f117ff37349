// The built-in synthetic domain-shift dataset: the default data of every shipped config, so every
// model trains and evaluates anywhere without a download.
//
// A scene is a few objects of five shape classes over a background, drawn in painter's order (later
// objects occlude earlier ones). Classes: 0 background, 1 disc, 2 rectangle, 3 triangle, 4 ring,
// 5 bar. Class identity is carried by geometry alone; appearance (colour, texture, background,
// noise, blur, contrast, gamma) comes from the visual domain. In the training domain "studio" an
// object's hue follows its class most of the time (a shortcut a plain model learns); the other domains
// permute or drop that colour code and change everything else, so training on one domain and
// evaluating on another measures how much a model relies on geometry rather than appearance.
//
// Everything is a pure function of (seed, split, index[, domain]): splits use distinct scene streams,
// and a scene's geometry does not depend on the domain, so one index shows the same layout in every
// domain (paired evaluation across domains).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset.h"

namespace se {

struct SyntheticOptions {
  std::vector<std::string> domains = {"studio"};  // sample i is drawn in domains[i % domains.size()]
  std::string split = "train";                    // train, val or test: distinct scenes
  int64_t size = 0;                               // number of samples; 0: 1000 for train, 200 otherwise
  int image_size = 64;                            // square images of this side
  uint64_t seed = 0;
  int min_objects = 3, max_objects = 7;
  float colour_correlation = -1.f;  // >= 0 overrides the domains' probability that hue follows class
};

struct SyntheticDomainInfo {
  std::string name;
  std::string description;
};

class SyntheticDataset : public Dataset {
 public:
  explicit SyntheticDataset(SyntheticOptions options);
  // From {"type": "synthetic", "domain": "studio" | ["studio", ...], "split", "size", "image_size",
  // "seed", "min_objects", "max_objects", "colour_correlation"}.
  static std::shared_ptr<SyntheticDataset> from_json(const nlohmann::json& config);

  int64_t size() const override { return options_.size; }
  Sample get(int64_t index) const override;
  const SyntheticOptions& options() const { return options_; }

  static const std::vector<SyntheticDomainInfo>& domains();
  static const std::vector<std::string>& class_names();

 private:
  SyntheticOptions options_;
  std::vector<int> domain_ids_;
  int split_id_ = 0;
};

}  // namespace se
