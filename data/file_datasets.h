// Datasets read from disk: a generic folder layout and the standard benchmarks (Cityscapes,
// Pascal VOC 2012 with the SBD augmented set, ADE20K, CamVid). Each is a list of (image, mask) files
// plus a table mapping stored label values to classes; masks are validated when loaded, so a value
// that is neither a class nor ignored is an error naming the file and the value.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset.h"

namespace se {

struct FileEntry {
  std::string image;  // path of the RGB image
  std::string mask;   // path of the label image
  std::string id;     // e.g. the file stem
};

// Stored label value -> class index, the ignore index, or kInvalidLabel (an error when met).
using LabelMap = std::array<int, 256>;
constexpr int kInvalidLabel = -1;
LabelMap identity_label_map();  // every value as is (then checked against the classes)
// ADE20K style: 0 ("other") becomes ignored, every other value v becomes v - 1.
LabelMap reduce_zero_label_map(int ignore_index);

class FileDataset : public Dataset {
 public:
  FileDataset(DatasetInfo info, std::vector<FileEntry> entries, LabelMap label_map);
  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  Sample get(int64_t index) const override;
  const std::vector<FileEntry>& entries() const { return entries_; }

 private:
  std::vector<FileEntry> entries_;
  LabelMap label_map_;
};

// {"type": "folder", "root", "split", "image_dir": "images", "mask_dir": "masks", "image_suffix": ".jpg",
//  "mask_suffix": ".png", "split_file", "classes" | "num_classes", "palette", "ignore_index", "reduce_zero_label"}.
// Without split_file, images are the files ending in image_suffix under root/image_dir/split (recursively),
// masks the same relative stems under root/mask_dir/split. With split_file (relative to root), each
// line is an id and the files are root/image_dir/<id><image_suffix> and root/mask_dir/<id><mask_suffix>.
std::shared_ptr<FileDataset> make_folder_dataset(const nlohmann::json& config);
// {"type": "cityscapes", "root", "split"}: leftImg8bit/<split>/<city>/*_leftImg8bit.png with
// gtFine/<split>/<city>/*_gtFine_labelIds.png; the 34 labelIds map to the 19 trainIds, the rest to 255.
std::shared_ptr<FileDataset> make_cityscapes_dataset(const nlohmann::json& config);
// {"type": "voc", "root" (the VOC2012 folder), "split", "aug"}: ImageSets/Segmentation/<split>.txt,
// JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNGs); 21 classes, 255 ignored. With
// "aug": true the list is ImageSets/Segmentation/aug.txt and masks come from SegmentationClassAug/
// (the SBD-augmented set as mmsegmentation's voc_aug converter writes it).
std::shared_ptr<FileDataset> make_voc_dataset(const nlohmann::json& config);
// {"type": "ade20k", "root" (ADEChallengeData2016), "split": train | val}: images/<training|validation>/*.jpg
// with annotations/.../*.png; 150 classes with reduce_zero_label (0 is ignored).
std::shared_ptr<FileDataset> make_ade20k_dataset(const nlohmann::json& config);
// {"type": "camvid", "root", "split": train | val | test}: the SegNet layout <split>/*.png with
// <split>annot/*.png; 11 classes, label 11 (void) ignored.
std::shared_ptr<FileDataset> make_camvid_dataset(const nlohmann::json& config);

}  // namespace se
