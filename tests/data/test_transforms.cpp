// Transform invariants: masks keep their values, invented areas are ignored, flips and exact
// rotations invert, photometric changes leave masks (and greys) alone, and everything is a function
// of (seed, epoch, index).
#include <gtest/gtest.h>

#include <set>

#include "data/image_ops.h"
#include "data/transforms.h"
#include "tests/data/data_test_util.h"

namespace se {
namespace {

using testing::expect_error;
using testing::pattern_image;

// An image with a pattern and a mask of blocks of classes 0..3.
Sample block_sample(int width, int height) {
  Sample s;
  s.image = pattern_image(width, height, 3);
  s.mask = Image(width, height, 1);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) s.mask.at(y, x) = static_cast<uint8_t>((x * 4 / width + y * 2 / height) % 4);
  s.id = "blocks";
  return s;
}

std::set<int> values(const Image& mask) {
  return {mask.pixels.begin(), mask.pixels.end()};
}

Pipeline full_pipeline() {
  return Pipeline::from_json(nlohmann::json::parse(R"([
    {"type": "random_resize", "scale": [48, 32], "ratio_range": [0.5, 2.0]},
    {"type": "random_crop", "size": 32, "cat_max_ratio": 0.75},
    {"type": "random_rotate", "prob": 1.0, "degree": 30},
    {"type": "random_flip"},
    {"type": "photometric_distortion"},
    {"type": "gaussian_blur", "prob": 0.5},
    {"type": "pad", "size": 32},
    {"type": "normalize", "mean": [1, 2, 3], "std": [4, 5, 6]}
  ])"));
}

TEST(Transforms, MaskValuesAreKeptAndOutputSizeIsFixed) {
  Pipeline pipeline = full_pipeline();
  EXPECT_EQ(pipeline.size(), 7u);
  EXPECT_EQ(pipeline.normalization().std[2], 6.f);
  std::set<int> allowed = {0, 1, 2, 3, 255};
  for (int64_t index = 0; index < 20; ++index) {
    Sample s = block_sample(40, 30);
    pipeline.apply(s, 7, 0, index);
    EXPECT_EQ(s.image.width, 32);
    EXPECT_EQ(s.image.height, 32);
    check_sample(s, "test");
    for (int v : values(s.mask)) EXPECT_TRUE(allowed.count(v)) << "value " << v << " at index " << index;
  }
}

TEST(Transforms, DeterministicForSeedEpochIndex) {
  Pipeline pipeline = full_pipeline();
  Sample a = block_sample(40, 30), b = block_sample(40, 30);
  pipeline.apply(a, 3, 1, 5);
  pipeline.apply(b, 3, 1, 5);
  EXPECT_EQ(a.image, b.image);
  EXPECT_EQ(a.mask, b.mask);
  int differing = 0;
  for (int64_t epoch = 2; epoch < 6; ++epoch) {
    Sample c = block_sample(40, 30);
    pipeline.apply(c, 3, epoch, 5);
    differing += c.image != a.image;
  }
  EXPECT_GE(differing, 3);
}

TEST(Transforms, PadFillsImageAndIgnoresMask) {
  Sample s = block_sample(10, 7);
  Sample original = s;
  Pad pad;
  pad.size = {16, 12};
  pad.pad_value = 9;
  Rng rng(0, 0);
  pad.apply(s, rng);
  ASSERT_EQ(s.mask.width, 16);
  ASSERT_EQ(s.mask.height, 12);
  for (int y = 0; y < 12; ++y)
    for (int x = 0; x < 16; ++x) {
      bool inside = x < 10 && y < 7;
      EXPECT_EQ(s.mask.at(y, x), inside ? original.mask.at(y, x) : 255);
      EXPECT_EQ(s.image.at(y, x, 1), inside ? original.image.at(y, x, 1) : 9);
    }
}

TEST(Transforms, FlipTwiceIsIdentityAndExactRotationsInvert) {
  Sample s = block_sample(9, 6);
  RandomFlip flip;
  flip.prob = 1.f;
  Rng rng(0, 0);
  Sample once = s;
  flip.apply(once, rng);
  EXPECT_NE(once.image, s.image);
  EXPECT_EQ(once.mask.at(0, 0), s.mask.at(0, 8));
  Sample twice = once;
  flip.apply(twice, rng);
  EXPECT_EQ(twice.image, s.image);
  EXPECT_EQ(twice.mask, s.mask);

  // On an odd square, 90 degrees maps pixel centres onto pixel centres: nearest rotation is a permutation.
  Image mask = block_sample(7, 7).mask;
  mask.at(0, 6) = 9;  // top right corner goes to the top left (counter-clockwise)
  Image rotated = rotate(mask, 90.f, true, 255);
  EXPECT_EQ(rotated.at(0, 0), 9);
  EXPECT_EQ(values(rotated), values(mask));
  EXPECT_EQ(rotate(rotated, -90.f, true, 255), mask);
  EXPECT_EQ(rotate(s.image, 0.f, false, 0), s.image);
}

TEST(Transforms, RotationPadsWithIgnore) {
  Sample s = block_sample(20, 20);
  RandomRotate rot;
  rot.prob = 1.f;
  rot.degree = 45.f;
  int64_t ignored = 0;
  for (int64_t i = 0; i < 4; ++i) {
    Sample r = s;
    Rng rng(1, 0, static_cast<uint64_t>(i));
    rot.apply(r, rng);
    ignored += std::count(r.mask.pixels.begin(), r.mask.pixels.end(), 255);
    EXPECT_EQ(r.mask.at(10, 10), s.mask.at(10, 10)) << "the centre stays";
  }
  EXPECT_GT(ignored, 0);
}

TEST(Transforms, ResizeKeepsAspectRatioLikeMmcv) {
  Sample s = block_sample(100, 50);
  Resize resize;
  resize.scale = {64, 64};  // factor min(64/100, 64/50) = 0.64
  Rng rng(0, 0);
  resize.apply(s, rng);
  EXPECT_EQ(s.image.width, 64);
  EXPECT_EQ(s.image.height, 32);
  EXPECT_EQ(s.mask.width, 64);
  EXPECT_EQ(values(s.mask), values(block_sample(100, 50).mask));

  Sample wide = block_sample(1024, 512);
  resize.scale = {2048, 512};  // factor min(2048/1024, 512/512) = 1
  resize.resize_mask = false;
  resize.apply(wide, rng);
  EXPECT_EQ(wide.image.width, 1024);

  Sample keep_mask = block_sample(60, 40);
  resize.scale = {30, 30};
  resize.apply(keep_mask, rng);
  EXPECT_EQ(keep_mask.image.width, 30);
  EXPECT_EQ(keep_mask.image.height, 20);
  EXPECT_EQ(keep_mask.mask.width, 60) << "resize_mask false keeps the labels at full resolution";
}

TEST(Transforms, CatMaxRatioAvoidsSingleClassCrops) {
  // Class 1 everywhere but a 20 x 20 block of class 2 in one corner, and an ignored stripe.
  Sample s;
  s.image = pattern_image(64, 64, 3);
  s.mask = Image(64, 64, 1, 1);
  for (int y = 40; y < 60; ++y)
    for (int x = 40; x < 60; ++x) s.mask.at(y, x) = 2;
  for (int x = 0; x < 64; ++x) s.mask.at(0, x) = 255;
  auto good_crops = [&](float ratio) {
    RandomCrop crop;
    crop.size = {24, 24};
    crop.cat_max_ratio = ratio;
    int good = 0;
    for (uint64_t i = 0; i < 100; ++i) {
      Sample c = s;
      Rng rng(11, 0, i);
      crop.apply(c, rng);
      int64_t n1 = std::count(c.mask.pixels.begin(), c.mask.pixels.end(), 1);
      int64_t n2 = std::count(c.mask.pixels.begin(), c.mask.pixels.end(), 2);
      good += n2 > 0 && std::max(n1, n2) < 0.75 * (n1 + n2);
    }
    return good;
  };
  int plain = good_crops(1.f), balanced = good_crops(0.75f);
  EXPECT_GT(balanced, plain + 30) << "plain " << plain << ", with cat_max_ratio " << balanced;
}

TEST(Transforms, PhotometricDistortionLeavesMaskAndGreysAlone) {
  Sample grey = block_sample(16, 16);
  for (size_t i = 0; i < grey.image.pixels.size(); i += 3)
    grey.image.pixels[i + 1] = grey.image.pixels[i + 2] = grey.image.pixels[i];
  PhotoMetricDistortion pmd;
  int changed = 0;
  for (uint64_t i = 0; i < 16; ++i) {
    Sample s = grey;
    Rng rng(5, 0, i);
    pmd.apply(s, rng);
    EXPECT_EQ(s.mask, grey.mask);
    for (size_t p = 0; p < s.image.pixels.size(); p += 3) {
      ASSERT_EQ(s.image.pixels[p], s.image.pixels[p + 1]);
      ASSERT_EQ(s.image.pixels[p], s.image.pixels[p + 2]);
    }
    changed += s.image != grey.image;
  }
  EXPECT_GE(changed, 8);
}

TEST(Transforms, HsvRoundTripAndHueOfPrimaries) {
  Image image = pattern_image(32, 16, 3);
  Image hsv = image;
  rgb_to_hsv(hsv);
  Image back = hsv;
  hsv_to_rgb(back);
  for (size_t i = 0; i < image.pixels.size(); ++i) EXPECT_NEAR(back.pixels[i], image.pixels[i], 5) << i;
  Image primaries(3, 1, 3);
  primaries.at(0, 0, 0) = 255, primaries.at(0, 1, 1) = 255, primaries.at(0, 2, 2) = 200;
  rgb_to_hsv(primaries);
  EXPECT_EQ(primaries.at(0, 0, 0), 0);    // red: 0 degrees
  EXPECT_EQ(primaries.at(0, 1, 0), 60);   // green: 120 degrees / 2
  EXPECT_EQ(primaries.at(0, 2, 0), 120);  // blue: 240 degrees / 2
  EXPECT_EQ(primaries.at(0, 2, 1), 255);
  EXPECT_EQ(primaries.at(0, 2, 2), 200);
}

TEST(Transforms, BlurKeepsConstantImagesAndNormalizeIsPerChannel) {
  Image flat(12, 9, 3, 77);
  EXPECT_EQ(gaussian_blur(flat, 1.5f), flat);
  Image image = pattern_image(5, 4, 3);
  Normalization n{{10.f, 20.f, 30.f}, {2.f, 4.f, 8.f}};
  std::vector<float> out(3 * 5 * 4);
  normalize_chw(image, n, out.data());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 5; ++x) EXPECT_FLOAT_EQ(out[(c * 4 + y) * 5 + x], (image.at(y, x, c) - n.mean[c]) / n.std[c]);
}

TEST(Transforms, ConfigErrors) {
  using nlohmann::json;
  expect_error([] { Pipeline::from_json(json::parse(R"([{"type": "random_flip", "p": 0.5}])")); },
               "transform 'random_flip': unknown key 'p'; valid keys: type, prob");
  expect_error([] { Pipeline::from_json(json::parse(R"([{"type": "normalize"}, {"type": "random_flip"}])")); },
               "must be the last step");
  expect_error([] { Pipeline::from_json(json::parse(R"([{"type": "cutmix"}])")); },
               "step 0 has unknown type 'cutmix'; types: resize, random_resize");
  expect_error([] { Pipeline::from_json(json::parse(R"([{"type": "random_crop", "size": [1, 2, 3]}])")); },
               "key 'size' is [1,2,3], expected a positive size or [width, height]");
  expect_error([] { Pipeline::from_json(json::parse(R"([{"type": "random_flip", "prob": 2}])")); },
               "expected a probability in [0, 1]");
  expect_error([] { Pipeline::from_json(json::parse(R"({"type": "random_flip"})")); }, "expected a JSON list of steps");
}

}  // namespace
}  // namespace se
