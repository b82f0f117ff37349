// Every config under configs/ builds a trainer: its bases resolve, every key is valid (finish()), the
// model matches the dataset's classes. The Cityscapes, VOC and ADE20K variants run on tiny fake
// trees of their layouts (one image per split), so what is checked is the config, not the data.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/data/data_test_util.h"
#include "train/trainer.h"

#ifndef SE_SOURCE_DIR
#error "SE_SOURCE_DIR must name the source tree"
#endif

namespace se {
namespace {

namespace fs = std::filesystem;
using testing::put_image;
using testing::put_mask;
using testing::put_text;
using testing::TempDir;

// A 4 x 2 mask of one value.
Image mask_of(uint8_t value) { return Image(4, 2, 1, value); }

// The dataset root a config expects, filled with one sample per split in that dataset's layout.
std::string fake_tree(const std::string& type, const fs::path& root) {
  if (type == "cityscapes") {
    for (const char* split : {"train", "val"}) {
      const std::string stem = std::string(split) + "/aachen/aachen_000000_000019";
      put_image((root / ("leftImg8bit/" + stem + "_leftImg8bit.png")).string());
      put_mask((root / ("gtFine/" + stem + "_gtFine_labelIds.png")).string(), mask_of(7));
    }
  } else if (type == "voc") {
    put_image((root / "JPEGImages/2007_000032.jpg").string());
    put_mask((root / "SegmentationClass/2007_000032.png").string(), mask_of(1), true);
    put_mask((root / "SegmentationClassAug/2007_000032.png").string(), mask_of(1), true);
    for (const char* list : {"train", "val", "aug"})
      put_text((root / "ImageSets/Segmentation" / (std::string(list) + ".txt")).string(), "2007_000032\n");
  } else if (type == "ade20k") {
    for (const char* split : {"training", "validation"}) {
      put_image((root / "images" / split / "ADE_x_00000001.jpg").string());
      put_mask((root / "annotations" / split / "ADE_x_00000001.png").string(), mask_of(3));
    }
  }
  return root.string();
}

std::vector<fs::path> shipped_configs() {
  std::vector<fs::path> configs;
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(SE_SOURCE_DIR) / "configs")) {
    const fs::path& path = entry.path();
    if (path.extension() == ".json" && path.parent_path().filename() != "_base") configs.push_back(path);
  }
  std::sort(configs.begin(), configs.end());
  return configs;
}

TEST(ShippedConfigs, EveryConfigBuildsATrainer) {
  const auto configs = shipped_configs();
  ASSERT_GE(configs.size(), 7u);
  static std::FILE* const null_console = std::fopen("/dev/null", "w");
  for (const fs::path& path : configs) {
    SCOPED_TRACE(path.string());
    TempDir dir;
    Config config = Config::load(path.string());
    const std::string type = config.sub("data").sub("dataset").get<std::string>("type");
    if (type != "synthetic") {
      config.set("data.dataset.root=" + fake_tree(type, dir.path() / "data"));
      config.set("data.train.loader.drop_last=false");  // one sample cannot fill a batch
    }
    TrainerSetup setup;
    setup.out_dir = dir / "run";
    setup.progress = false;
    setup.console = null_console;
    try {
      Trainer trainer(config, setup);
      EXPECT_GT(trainer.options().max_iters, 0);
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

// The README's quick start trains this config: it must stay on the built-in data.
TEST(ShippedConfigs, TheQuickStartConfigUsesTheBuiltInData) {
  Config config = Config::load((fs::path(SE_SOURCE_DIR) / "configs/unet.json").string());
  EXPECT_EQ(config.sub("data").sub("dataset").get<std::string>("type"), "synthetic");
  EXPECT_EQ(config.sub("model").get<std::string>("name"), "unet");
}

}  // namespace
}  // namespace se
