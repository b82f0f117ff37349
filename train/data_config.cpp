#include "train/data_config.h"

#include "core/error.h"

namespace se {

bool has_split(const Config& data_section, const std::string& split) { return data_section.has(split); }

SplitData read_split(const Config& data_section, const std::string& split, uint64_t seed, bool training) {
  SE_CHECK(has_split(data_section, split), "config: data.", split, " is missing (the config describes no ", split,
           " split)");
  const Config section = data_section.sub(split);
  SplitData result;
  result.split = split;

  nlohmann::json dataset = data_section.get<nlohmann::json>("dataset", nlohmann::json::object());
  nlohmann::json overrides = section.get<nlohmann::json>("dataset", nlohmann::json::object());
  SE_CHECK(dataset.is_object(), "config: data.dataset must be an object, got ", dataset.dump());
  SE_CHECK(overrides.is_object(), "config: data.", split, ".dataset must be an object, got ", overrides.dump());
  dataset.merge_patch(overrides);
  if (!dataset.contains("split")) dataset["split"] = split;
  result.dataset_config = dataset;
  const nlohmann::json transforms = section.get<nlohmann::json>("transforms", nlohmann::json::array());
  nlohmann::json loader = section.get<nlohmann::json>("loader", nlohmann::json::object());
  SE_CHECK(loader.is_object(), "config: data.", split, ".loader must be an object, got ", loader.dump());
  if (!training) {
    if (!loader.contains("shuffle")) loader["shuffle"] = false;
    if (!loader.contains("drop_last")) loader["drop_last"] = false;
  }
  if (!loader.contains("seed")) loader["seed"] = seed;

  // The data layer checks its own keys; its messages say which object, this prefix says where.
  try {
    result.dataset = make_dataset(dataset);
  } catch (const Error& e) {
    SE_THROW("config: data.", split, ".dataset: ", e.what());
  }
  try {
    result.pipeline = Pipeline::from_json(transforms, result.dataset->info().ignore_index);
  } catch (const Error& e) {
    SE_THROW("config: data.", split, ".transforms: ", e.what());
  }
  try {
    result.loader = LoaderOptions::from_json(loader);
  } catch (const Error& e) {
    SE_THROW("config: data.", split, ".loader: ", e.what());
  }
  return result;
}

}  // namespace se
