#include "data/dataset.h"

#include <array>

#include "core/error.h"
#include "data/file_datasets.h"
#include "data/json_config.h"
#include "data/synthetic.h"

namespace se {

void validate_mask(const Image& mask, const DatasetInfo& info, const std::string& file) {
  SE_CHECK(mask.channels == 1, "dataset '", info.name, "': mask '", file, "' has ", mask.channels,
           " channels, expected 1 (class indices)");
  // One pass to find the bad values, so the message can name the first one.
  std::array<bool, 256> seen{};
  for (uint8_t v : mask.pixels) seen[v] = true;
  for (int v = 0; v < 256; ++v) {
    if (seen[v] && v >= info.num_classes() && v != info.ignore_index) {
      SE_THROW("dataset '", info.name, "': mask '", file, "' has label value ", v, ", expected a class in [0, ",
               info.num_classes(), ") or the ignore index ", info.ignore_index);
    }
  }
}

void check_sample(const Sample& sample, const std::string& where) {
  SE_CHECK(sample.image.channels == 3, where, ": image of '", sample.id, "' is ", image_shape_str(sample.image),
           ", expected 3 channels");
  SE_CHECK(sample.mask.channels == 1, where, ": mask of '", sample.id, "' is ", image_shape_str(sample.mask),
           ", expected 1 channel");
  SE_CHECK(sample.image.width == sample.mask.width && sample.image.height == sample.mask.height, where, ": image ",
           image_shape_str(sample.image), " and mask ", image_shape_str(sample.mask), " of '", sample.id,
           "' differ in size");
}

std::vector<Rgb> default_palette(int n) {
  std::vector<Rgb> palette(n);
  for (int i = 0; i < n; ++i) {
    int c = i;
    Rgb rgb{0, 0, 0};
    for (int bit = 7; c > 0; --bit, c >>= 3)
      for (int ch = 0; ch < 3; ++ch) rgb[ch] |= static_cast<uint8_t>(((c >> ch) & 1) << bit);
    palette[i] = rgb;
  }
  return palette;
}

std::shared_ptr<Dataset> make_dataset(const nlohmann::json& config, const std::string& split) {
  SE_CHECK(config.is_object(), "dataset: expected a JSON object with a \"type\", got ", config.dump());
  std::string type = config_required<std::string>(config, "type", "dataset");
  nlohmann::json c = config;
  if (!split.empty()) c["split"] = split;
  if (type == "synthetic") return SyntheticDataset::from_json(c);
  if (type == "folder") return make_folder_dataset(c);
  if (type == "cityscapes") return make_cityscapes_dataset(c);
  if (type == "voc") return make_voc_dataset(c);
  if (type == "ade20k") return make_ade20k_dataset(c);
  if (type == "camvid") return make_camvid_dataset(c);
  SE_THROW("dataset: unknown type '", type, "'; types: synthetic, folder, cityscapes, voc, ade20k, camvid");
}

}  // namespace se
