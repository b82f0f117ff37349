// The "data" section of a training config: one dataset description shared by the splits, and per
// split (train, val, test) its overrides, transforms and loader options.
//
//   "data": {
//     "dataset": {"type": "synthetic", "domain": "studio", "image_size": 64},   shared by every split
//     "train": {"dataset": {"size": 2000}, "transforms": [...], "loader": {"batch_size": 8}},
//     "val":   {"dataset": {"size": 200}, "loader": {"batch_size": 16, "shuffle": false}},
//     "test":  {"dataset": {"domain": "fog"}}
//   }
//
// A split's "dataset" object is merged over the shared one (JSON merge patch: objects key by key,
// null deletes); "split" defaults to the split's name. Evaluation splits default to no shuffling
// and keep every sample (drop_last false).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/transforms.h"

namespace se {

struct SplitData {
  std::string split;
  nlohmann::json dataset_config;  // the merged description
  std::shared_ptr<Dataset> dataset;
  Pipeline pipeline;
  LoaderOptions loader;
};

// True when the config describes `split` (data.<split> is present).
bool has_split(const Config& data_section, const std::string& split);

// Builds the dataset, pipeline and loader options of data.<split>. `seed` is the run's seed: the
// loader's unless the split sets its own. Errors name the config path (e.g. "data.val.loader").
SplitData read_split(const Config& data_section, const std::string& split, uint64_t seed, bool training);

}  // namespace se
