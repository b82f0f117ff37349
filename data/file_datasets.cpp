#include "data/file_datasets.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/image_io.h"
#include "data/json_config.h"

namespace se {

namespace fs = std::filesystem;

LabelMap identity_label_map() {
  LabelMap map;
  for (int v = 0; v < 256; ++v) map[v] = v;
  return map;
}

LabelMap reduce_zero_label_map(int ignore_index) {
  LabelMap map;
  map[0] = ignore_index;
  for (int v = 1; v < 256; ++v) map[v] = v - 1;
  map[255] = ignore_index;  // ignored stays ignored (mmseg: 255 - 1 = 254 -> 255)
  return map;
}

FileDataset::FileDataset(DatasetInfo info, std::vector<FileEntry> entries, LabelMap label_map)
    : entries_(std::move(entries)), label_map_(label_map) {
  info_ = std::move(info);
  SE_CHECK(info_.num_classes() > 0 && info_.num_classes() <= 256, "dataset '", info_.name, "': ", info_.num_classes(),
           " classes, expected 1 to 256");
  SE_CHECK(info_.ignore_index >= 0 && info_.ignore_index <= 255, "dataset '", info_.name, "': ignore_index ",
           info_.ignore_index, ", expected 0 to 255 (masks are 8-bit)");
  if (info_.palette.empty()) info_.palette = default_palette(info_.num_classes());
  SE_CHECK(info_.palette.size() == static_cast<size_t>(info_.num_classes()), "dataset '", info_.name, "': palette of ",
           info_.palette.size(), " colours for ", info_.num_classes(), " classes");
}

Sample FileDataset::get(int64_t index) const {
  SE_CHECK(index >= 0 && index < size(), "dataset '", info_.name, "': index ", index, " out of range [0, ", size(),
           ")");
  const FileEntry& entry = entries_[index];
  Sample sample;
  sample.id = entry.id;
  sample.image = read_image(entry.image);
  sample.mask = read_mask(entry.mask);
  SE_CHECK(sample.image.width == sample.mask.width && sample.image.height == sample.mask.height, "dataset '",
           info_.name, "': image '", entry.image, "' is ", sample.image.width, " x ", sample.image.height,
           " but mask '", entry.mask, "' is ", sample.mask.width, " x ", sample.mask.height);
  // Map and validate through a table of the 256 possible values: one lookup per pixel.
  std::array<int, 256> mapped;
  for (int v = 0; v < 256; ++v) {
    int m = label_map_[v];
    mapped[v] = (m == kInvalidLabel || (m >= info_.num_classes() && m != info_.ignore_index)) ? kInvalidLabel : m;
  }
  for (uint8_t& v : sample.mask.pixels) {
    int m = mapped[v];
    if (m == kInvalidLabel) {
      SE_THROW("dataset '", info_.name, "': mask '", entry.mask, "' has label value ", int{v}, ", expected ",
               label_map_ == identity_label_map() ? "a class in [0, " + std::to_string(info_.num_classes()) + ")"
                                                  : std::string("a value the dataset's label table knows"),
               " or the ignore index ", info_.ignore_index);
    }
    v = static_cast<uint8_t>(m);
  }
  return sample;
}

// ---- file discovery

namespace {

void check_dir(const fs::path& dir, const std::string& what) {
  std::error_code ec;
  SE_CHECK(fs::is_directory(dir, ec), what, ": folder '", dir.string(), "' does not exist");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Files under `dir` (recursively) whose names end in `suffix`, as paths relative to `dir`, sorted.
std::vector<std::string> find_files(const fs::path& dir, const std::string& suffix, const std::string& what) {
  check_dir(dir, what);
  std::vector<std::string> found;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::string rel = fs::relative(entry.path(), dir).string();
    if (ends_with(rel, suffix)) found.push_back(rel);
  }
  std::sort(found.begin(), found.end());
  SE_CHECK(!found.empty(), what, ": no '*", suffix, "' files under '", dir.string(), "'");
  return found;
}

std::vector<std::string> read_list(const fs::path& file, const std::string& what) {
  std::error_code ec;
  SE_CHECK(fs::is_regular_file(file, ec), what, ": list file '", file.string(), "' does not exist");
  std::ifstream in(file);
  std::vector<std::string> ids;
  std::string line;
  while (std::getline(in, line)) {
    // Trim spaces and carriage returns; skip blank lines.
    auto begin = line.find_first_not_of(" \t\r"), end = line.find_last_not_of(" \t\r");
    if (begin != std::string::npos) ids.push_back(line.substr(begin, end - begin + 1));
  }
  SE_CHECK(!ids.empty(), what, ": list file '", file.string(), "' names no samples");
  return ids;
}

// Pairs images (files ending in image_suffix under image_dir) with masks (same relative stem + mask_suffix
// under mask_dir); a missing mask is an error.
std::vector<FileEntry> pair_by_stem(const fs::path& image_dir, const std::string& image_suffix,
                                    const fs::path& mask_dir, const std::string& mask_suffix, const std::string& what) {
  std::vector<std::string> images = find_files(image_dir, image_suffix, what);
  check_dir(mask_dir, what);
  std::vector<FileEntry> entries;
  for (const std::string& rel : images) {
    std::string stem = rel.substr(0, rel.size() - image_suffix.size());
    FileEntry e{(image_dir / rel).string(), (mask_dir / (stem + mask_suffix)).string(),
                fs::path(stem).filename().string()};
    std::error_code ec;
    SE_CHECK(fs::is_regular_file(e.mask, ec), what, ": image '", e.image, "' has no mask '", e.mask, "'");
    entries.push_back(std::move(e));
  }
  return entries;
}

std::vector<FileEntry> entries_from_list(const std::vector<std::string>& ids, const fs::path& image_dir,
                                         const std::string& image_suffix, const fs::path& mask_dir,
                                         const std::string& mask_suffix, const std::string& what) {
  std::vector<FileEntry> entries;
  for (const std::string& id : ids) {
    FileEntry e{(image_dir / (id + image_suffix)).string(), (mask_dir / (id + mask_suffix)).string(), id};
    std::error_code ec;
    SE_CHECK(fs::is_regular_file(e.image, ec), what, ": image '", e.image, "' (id '", id, "') does not exist");
    SE_CHECK(fs::is_regular_file(e.mask, ec), what, ": mask '", e.mask, "' (id '", id, "') does not exist");
    entries.push_back(std::move(e));
  }
  return entries;
}

std::vector<Rgb> palette_value(const nlohmann::json& config, const std::string& what) {
  auto it = config.find("palette");
  if (it == config.end()) return {};
  auto rows = config_as<std::vector<std::vector<int>>>(*it, "palette", what);
  std::vector<Rgb> palette;
  for (const auto& row : rows) {
    SE_CHECK(row.size() == 3 && std::all_of(row.begin(), row.end(), [](int v) { return v >= 0 && v <= 255; }), what,
             ": palette entries must be [r, g, b] with values 0 to 255, got ", nlohmann::json(row).dump());
    palette.push_back({static_cast<uint8_t>(row[0]), static_cast<uint8_t>(row[1]), static_cast<uint8_t>(row[2])});
  }
  return palette;
}

std::string split_of(const nlohmann::json& config, const std::vector<std::string>& valid, const std::string& what) {
  std::string split = config_value<std::string>(config, "split", "train", what);
  if (!valid.empty() && std::find(valid.begin(), valid.end(), split) == valid.end()) {
    std::string list;
    for (const std::string& v : valid) list += (list.empty() ? "" : ", ") + v;
    SE_THROW(what, ": split '", split, "' is not one of ", list);
  }
  return split;
}

}  // namespace

std::shared_ptr<FileDataset> make_folder_dataset(const nlohmann::json& config) {
  const std::string what = "dataset 'folder'";
  check_config_keys(config,
                    {"type", "root", "split", "image_dir", "mask_dir", "image_suffix", "mask_suffix", "split_file",
                     "classes", "num_classes", "palette", "ignore_index", "reduce_zero_label"},
                    what);
  fs::path root = config_required<std::string>(config, "root", what);
  std::string split = split_of(config, {}, what);
  fs::path image_dir = root / config_value<std::string>(config, "image_dir", "images", what);
  fs::path mask_dir = root / config_value<std::string>(config, "mask_dir", "masks", what);
  std::string image_suffix = config_value<std::string>(config, "image_suffix", ".jpg", what);
  std::string mask_suffix = config_value<std::string>(config, "mask_suffix", ".png", what);
  DatasetInfo info;
  info.name = "folder";
  if (config.contains("classes")) {
    SE_CHECK(!config.contains("num_classes"), what, ": give either 'classes' (names) or 'num_classes', not both");
    info.class_names = config_as<std::vector<std::string>>(config["classes"], "classes", what);
  } else {
    int n = config_required<int>(config, "num_classes", what);
    SE_CHECK(n > 0 && n <= 256, what, ": num_classes ", n, ", expected 1 to 256");
    for (int c = 0; c < n; ++c) info.class_names.push_back("class" + std::to_string(c));
  }
  info.palette = palette_value(config, what);
  info.ignore_index = config_value<int>(config, "ignore_index", 255, what);
  LabelMap map = config_value<bool>(config, "reduce_zero_label", false, what) ? reduce_zero_label_map(info.ignore_index)
                                                                              : identity_label_map();
  std::vector<FileEntry> entries;
  if (config.contains("split_file")) {
    auto ids = read_list(root / config_as<std::string>(config["split_file"], "split_file", what), what);
    entries = entries_from_list(ids, image_dir, image_suffix, mask_dir, mask_suffix, what);
  } else {
    entries = pair_by_stem(image_dir / split, image_suffix, mask_dir / split, mask_suffix, what);
  }
  return std::make_shared<FileDataset>(std::move(info), std::move(entries), map);
}

std::shared_ptr<FileDataset> make_cityscapes_dataset(const nlohmann::json& config) {
  const std::string what = "dataset 'cityscapes'";
  check_config_keys(config, {"type", "root", "split"}, what);
  fs::path root = config_required<std::string>(config, "root", what);
  std::string split = split_of(config, {"train", "val", "test"}, what);
  DatasetInfo info;
  info.name = "cityscapes";
  info.class_names = {"road",         "sidewalk",   "building", "wall",       "fence",  "pole",  "traffic light",
                      "traffic sign", "vegetation", "terrain",  "sky",        "person", "rider", "car",
                      "truck",        "bus",        "train",    "motorcycle", "bicycle"};
  info.palette = {{128, 64, 128},  {244, 35, 232}, {70, 70, 70},  {102, 102, 156}, {190, 153, 153},
                  {153, 153, 153}, {250, 170, 30}, {220, 220, 0}, {107, 142, 35},  {152, 251, 152},
                  {70, 130, 180},  {220, 20, 60},  {255, 0, 0},   {0, 0, 142},     {0, 0, 70},
                  {0, 60, 100},    {0, 80, 100},   {0, 0, 230},   {119, 11, 32}};
  // labelId -> trainId (cityscapesScripts labels.py); ids 0-6, 9, 10, 14-16, 18, 29, 30 are ignored.
  LabelMap map;
  map.fill(kInvalidLabel);
  const int train_ids[34] = {255, 255, 255, 255, 255, 255, 255, 0,  1,  255, 255, 2,  3,   4,   255, 255, 255,
                             5,   255, 6,   7,   8,   9,   10,  11, 12, 13,  14,  15, 255, 255, 16,  17,  18};
  for (int id = 0; id < 34; ++id) map[id] = train_ids[id];
  map[255] = 255;
  auto entries = pair_by_stem(root / "leftImg8bit" / split, "_leftImg8bit.png", root / "gtFine" / split,
                              "_gtFine_labelIds.png", what);
  return std::make_shared<FileDataset>(std::move(info), std::move(entries), map);
}

std::shared_ptr<FileDataset> make_voc_dataset(const nlohmann::json& config) {
  const std::string what = "dataset 'voc'";
  check_config_keys(config, {"type", "root", "split", "aug"}, what);
  fs::path root = config_required<std::string>(config, "root", what);
  std::string split = split_of(config, {}, what);
  bool aug = config_value<bool>(config, "aug", false, what);
  DatasetInfo info;
  info.name = "voc";
  info.class_names = {"background", "aeroplane", "bicycle",     "bird",  "boat",        "bottle", "bus",
                      "car",        "cat",       "chair",       "cow",   "diningtable", "dog",    "horse",
                      "motorbike",  "person",    "pottedplant", "sheep", "sofa",        "train",  "tvmonitor"};
  info.palette = default_palette(21);  // VOC's own colour map
  fs::path list = root / "ImageSets" / "Segmentation" / (aug ? std::string("aug.txt") : split + ".txt");
  auto entries = entries_from_list(read_list(list, what), root / "JPEGImages", ".jpg",
                                   root / (aug ? "SegmentationClassAug" : "SegmentationClass"), ".png", what);
  return std::make_shared<FileDataset>(std::move(info), std::move(entries), identity_label_map());
}

std::shared_ptr<FileDataset> make_ade20k_dataset(const nlohmann::json& config) {
  const std::string what = "dataset 'ade20k'";
  check_config_keys(config, {"type", "root", "split"}, what);
  fs::path root = config_required<std::string>(config, "root", what);
  std::string folder = split_of(config, {"train", "val"}, what) == "train" ? "training" : "validation";
  DatasetInfo info;
  info.name = "ade20k";
  // clang-format off
  info.class_names = {
      "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
      "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
      "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
      "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
      "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
      "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
      "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
      "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
      "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
      "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
      "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
      "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
      "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
      "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
      "bulletin board", "shower", "radiator", "glass", "clock", "flag"};
  // clang-format on
  auto entries = pair_by_stem(root / "images" / folder, ".jpg", root / "annotations" / folder, ".png", what);
  return std::make_shared<FileDataset>(std::move(info), std::move(entries), reduce_zero_label_map(255));
}

std::shared_ptr<FileDataset> make_camvid_dataset(const nlohmann::json& config) {
  const std::string what = "dataset 'camvid'";
  check_config_keys(config, {"type", "root", "split"}, what);
  fs::path root = config_required<std::string>(config, "root", what);
  std::string split = split_of(config, {"train", "val", "test"}, what);
  DatasetInfo info;
  info.name = "camvid";
  info.class_names = {"sky",         "building", "pole", "road",       "pavement", "tree",
                      "sign symbol", "fence",    "car",  "pedestrian", "bicyclist"};
  info.palette = {{128, 128, 128}, {128, 0, 0},   {192, 192, 128}, {128, 64, 128}, {60, 40, 222}, {128, 128, 0},
                  {192, 128, 128}, {64, 64, 128}, {64, 0, 128},    {64, 64, 0},    {0, 128, 192}};
  LabelMap map = identity_label_map();
  map[11] = 255;  // void
  auto entries = pair_by_stem(root / split, ".png", root / (split + "annot"), ".png", what);
  return std::make_shared<FileDataset>(std::move(info), std::move(entries), map);
}

}  // namespace se
