// Datasets on disk, on tiny fixture trees written here: folder (split folders and list files),
// Cityscapes (labelIds -> trainIds), VOC (palette masks, SBD aug list), ADE20K (reduce_zero_label),
// CamVid (void ignored), and the errors for missing files, bad labels and bad configs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/file_datasets.h"
#include "data/image_io.h"
#include "tests/data/data_test_util.h"

namespace se {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::expect_error;
using testing::pattern_image;
using testing::put_image;
using testing::put_mask;
using testing::put_text;
using testing::TempDir;

// A 4 x 2 mask holding `values` (cycled).
Image mask_of(const std::vector<uint8_t>& values, int width = 4, int height = 2) {
  Image m(width, height, 1);
  for (size_t i = 0; i < m.pixels.size(); ++i) m.pixels[i] = values[i % values.size()];
  return m;
}

std::vector<uint8_t> mask_values(const Dataset& ds, int64_t index) {
  return ds.get(index).mask.pixels;
}

TEST(FileDatasets, FolderWithSplitFoldersAndListFiles) {
  TempDir dir;
  put_image(dir / "images/train/a.jpg");
  put_mask(dir / "masks/train/a.png", mask_of({0, 1, 2, 255}));
  put_image(dir / "images/train/sub/b.jpg");
  put_mask(dir / "masks/train/sub/b.png", mask_of({2}));
  put_image(dir / "images/val/c.jpg");
  put_mask(dir / "masks/val/c.png", mask_of({1}));
  json config = {{"type", "folder"}, {"root", dir.path().string()}, {"classes", {"sky", "road", "car"}}};
  auto train = make_dataset(config, "train");
  ASSERT_EQ(train->size(), 2);
  EXPECT_EQ(train->num_classes(), 3);
  EXPECT_EQ(train->info().class_names[2], "car");
  Sample a = train->get(0);
  EXPECT_EQ(a.id, "a");
  EXPECT_EQ(a.image.channels, 3);
  EXPECT_EQ(a.mask.pixels, mask_of({0, 1, 2, 255}).pixels);
  EXPECT_EQ(train->get(1).id, "b");
  EXPECT_EQ(make_dataset(config, "val")->size(), 1);

  put_text(dir / "lists/few.txt", "c\r\n\nsub/b\n");
  put_image(dir / "images/c.jpg");
  put_mask(dir / "masks/c.png", mask_of({1}));
  put_image(dir / "images/sub/b.jpg");
  put_mask(dir / "masks/sub/b.png", mask_of({2}));
  json listed = {
      {"type", "folder"}, {"root", dir.path().string()}, {"num_classes", 3}, {"split_file", "lists/few.txt"}};
  auto ds = make_dataset(listed);
  ASSERT_EQ(ds->size(), 2);
  EXPECT_EQ(ds->get(1).id, "sub/b");
  EXPECT_EQ(mask_values(*ds, 1), mask_of({2}).pixels);

  json reduced = listed;
  reduced["reduce_zero_label"] = true;
  EXPECT_EQ(mask_values(*make_dataset(reduced), 0), mask_of({0}).pixels) << "1 becomes 0";
}

TEST(FileDatasets, LabelsAreValidatedWhenLoaded) {
  TempDir dir;
  put_image(dir / "images/train/a.png");
  put_mask(dir / "masks/train/a.png", mask_of({0, 1, 5}));
  auto ds =
      make_dataset({{"type", "folder"}, {"root", dir.path().string()}, {"num_classes", 3}, {"image_suffix", ".png"}});
  expect_error([&] { ds->get(0); },
               detail::concat("mask '", dir / "masks/train/a.png",
                              "' has label value 5, expected a class in [0, 3) or the ignore index 255"));
  put_mask(dir / "masks/train/a.png", mask_of({0}, 3, 2));
  expect_error([&] { ds->get(0); }, "is 4 x 2 but mask");
  put_mask(dir / "masks/train/a.png", pattern_image(4, 2, 3));
  expect_error([&] { ds->get(0); }, "is an RGB PNG; a mask must be");
  fs::remove(dir / "masks/train/a.png");
  expect_error([&] { ds->get(0); }, "does not exist");
  expect_error(
      [&] {
        make_dataset({{"type", "folder"}, {"root", dir.path().string()}, {"num_classes", 3}, {"image_suffix", ".png"}});
      },
      detail::concat("image '", dir / "images/train/a.png", "' has no mask '"));
}

TEST(FileDatasets, CityscapesMapsLabelIdsToTrainIds) {
  TempDir dir;
  std::string stem = "aachen_000000_000019";
  put_image(dir / ("leftImg8bit/train/aachen/" + stem + "_leftImg8bit.png"));
  put_mask(dir / ("gtFine/train/aachen/" + stem + "_gtFine_labelIds.png"), mask_of({7, 8, 26, 0, 33, 23, 9, 24}));
  auto ds = make_dataset({{"type", "cityscapes"}, {"root", dir.path().string()}, {"split", "train"}});
  ASSERT_EQ(ds->size(), 1);
  EXPECT_EQ(ds->num_classes(), 19);
  EXPECT_EQ(ds->info().palette.size(), 19u);
  EXPECT_EQ(ds->get(0).id, "aachen_000000_000019");
  EXPECT_EQ(mask_values(*ds, 0), (std::vector<uint8_t>{0, 1, 13, 255, 18, 10, 255, 11}));
  put_mask(dir / ("gtFine/train/aachen/" + stem + "_gtFine_labelIds.png"), mask_of({7, 40}));
  expect_error([&] { ds->get(0); }, "_gtFine_labelIds.png' has label value 40");
  expect_error(
      [&] {
        make_dataset({{"type", "cityscapes"}, {"root", dir.path().string()}}, "val");
      },
      "dataset 'cityscapes': folder '");
}

TEST(FileDatasets, VocReadsPaletteIndicesAndTheAugList) {
  TempDir dir;
  put_image(dir / "JPEGImages/2007_000032.jpg");
  put_mask(dir / "SegmentationClass/2007_000032.png", mask_of({0, 1, 15, 255}), /*palette=*/true);
  put_text(dir / "ImageSets/Segmentation/train.txt", "2007_000032\n");
  auto ds = make_dataset({{"type", "voc"}, {"root", dir.path().string()}}, "train");
  ASSERT_EQ(ds->size(), 1);
  EXPECT_EQ(ds->num_classes(), 21);
  EXPECT_EQ(ds->info().palette[15], (Rgb{192, 128, 128}));  // person in VOC's colour map
  EXPECT_EQ(mask_values(*ds, 0), mask_of({0, 1, 15, 255}).pixels);

  put_image(dir / "JPEGImages/2008_000002.jpg");
  put_mask(dir / "SegmentationClassAug/2007_000032.png", mask_of({3}), true);
  put_mask(dir / "SegmentationClassAug/2008_000002.png", mask_of({4, 30}), true);
  put_text(dir / "ImageSets/Segmentation/aug.txt", "2007_000032\n2008_000002\n");
  auto aug = make_dataset({{"type", "voc"}, {"root", dir.path().string()}, {"aug", true}});
  ASSERT_EQ(aug->size(), 2);
  EXPECT_EQ(mask_values(*aug, 0), mask_of({3}).pixels);
  expect_error([&] { aug->get(1); }, "2008_000002.png' has label value 30");
  expect_error([&] { make_dataset({{"type", "voc"}, {"root", dir.path().string()}}, "val"); }, "list file '");
}

TEST(FileDatasets, Ade20kReducesZeroLabel) {
  TempDir dir;
  put_image(dir / "images/validation/ADE_val_00000001.jpg");
  put_mask(dir / "annotations/validation/ADE_val_00000001.png", mask_of({0, 1, 150, 12}));
  auto ds = make_dataset({{"type", "ade20k"}, {"root", dir.path().string()}, {"split", "val"}});
  EXPECT_EQ(ds->num_classes(), 150);
  EXPECT_EQ(ds->info().class_names[12], "person");
  EXPECT_EQ(mask_values(*ds, 0), mask_of({255, 0, 149, 11}).pixels);
  put_mask(dir / "annotations/validation/ADE_val_00000001.png", mask_of({151}));
  expect_error([&] { ds->get(0); }, "has label value 151");
  expect_error(
      [&] {
        make_dataset({{"type", "ade20k"}, {"root", dir.path().string()}, {"split", "test"}});
      },
      "split 'test' is not one of train, val");
}

TEST(FileDatasets, CamvidIgnoresVoid) {
  TempDir dir;
  put_image(dir / "test/0001TP_008550.png");
  put_mask(dir / "testannot/0001TP_008550.png", mask_of({0, 10, 11, 3}));
  auto ds = make_dataset({{"type", "camvid"}, {"root", dir.path().string()}}, "test");
  EXPECT_EQ(ds->num_classes(), 11);
  EXPECT_EQ(mask_values(*ds, 0), mask_of({0, 10, 255, 3}).pixels);
  put_mask(dir / "testannot/0001TP_008550.png", mask_of({12}));
  expect_error([&] { ds->get(0); }, "has label value 12");
}

TEST(FileDatasets, ConfigErrors) {
  expect_error(
      [] {
        make_dataset({{"type", "folder"}, {"root", "/x"}, {"num_classes", 2}, {"img_suffix", ".jpg"}});
      },
      "dataset 'folder': unknown key 'img_suffix'; valid keys: type, root, split, image_dir");
  expect_error(
      [] {
        make_dataset({{"type", "folder"}, {"root", "/nonexistent"}, {"num_classes", 2}});
      },
      "folder '/nonexistent/images/train' does not exist");
  expect_error([] { make_dataset({{"type", "folder"}, {"root", "/x"}}); }, "missing required key 'num_classes'");
  expect_error([] { make_dataset({{"type", "cityscapes"}}); }, "dataset 'cityscapes': missing required key 'root'");
  expect_error(
      [] {
        make_dataset({{"type", "folder"}, {"root", "/x"}, {"num_classes", 2}, {"palette", {{1, 2}}}});
      },
      "palette entries must be [r, g, b]");
}

}  // namespace
}  // namespace se
