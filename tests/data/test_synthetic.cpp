// The synthetic domain-shift dataset: deterministic by seed, distinct splits, geometry shared across
// domains, colour coding of classes in the training domain only, and config errors.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "data/dataset.h"
#include "data/synthetic.h"
#include "tests/data/data_test_util.h"

namespace se {
namespace {

using testing::expect_error;

SyntheticOptions options(const std::string& domain, const std::string& split = "train", uint64_t seed = 0) {
  SyntheticOptions o;
  o.domains = {domain};
  o.split = split;
  o.seed = seed;
  o.size = 64;
  return o;
}

TEST(Synthetic, SamplesAreValidAndCoverEveryClass) {
  for (const SyntheticDomainInfo& domain : SyntheticDataset::domains()) {
    SyntheticDataset ds(options(domain.name));
    EXPECT_EQ(ds.num_classes(), 6);
    EXPECT_EQ(ds.info().palette.size(), 6u);
    std::set<int> classes;
    for (int64_t i = 0; i < 16; ++i) {
      Sample s = ds.get(i);
      check_sample(s, "test");
      EXPECT_EQ(s.image.width, 64);
      validate_mask(s.mask, ds.info(), s.id);
      for (uint8_t v : s.mask.pixels) classes.insert(v);
    }
    EXPECT_EQ(classes.size(), 6u) << domain.name;
  }
}

TEST(Synthetic, DeterministicBySeedWhateverTheThread) {
  SyntheticDataset a(options("textured")), b(options("textured"));
  Sample first = a.get(5);
  Sample from_thread;
  std::thread t([&] { from_thread = b.get(5); });
  t.join();
  EXPECT_EQ(first.image, from_thread.image);
  EXPECT_EQ(first.mask, from_thread.mask);
  EXPECT_EQ(first.id, "synthetic/textured/train/5");
  SyntheticDataset other_seed(options("textured", "train", 1));
  EXPECT_NE(other_seed.get(5).mask, first.mask);
}

TEST(Synthetic, SplitsHaveDistinctScenesAndDomainsShareGeometry) {
  SyntheticDataset train(options("studio", "train")), val(options("studio", "val")), test(options("studio", "test"));
  for (int64_t i = 0; i < 8; ++i) {
    EXPECT_NE(train.get(i).mask, val.get(i).mask);
    EXPECT_NE(val.get(i).mask, test.get(i).mask);
  }
  SyntheticDataset fog(options("fog", "test"));
  for (int64_t i = 0; i < 8; ++i) {
    Sample a = test.get(i), b = fog.get(i);
    EXPECT_EQ(a.mask, b.mask) << "the same scene in two domains";
    EXPECT_NE(a.image, b.image);
  }
}

// Mean RGB of the pixels of class `cls` over `n` samples.
std::array<double, 3> class_mean_colour(const SyntheticDataset& ds, int cls, int n) {
  std::array<double, 3> sum{};
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    Sample s = ds.get(i);
    for (int p = 0; p < 64 * 64; ++p) {
      if (s.mask.pixels[p] != cls) continue;
      for (int c = 0; c < 3; ++c) sum[c] += s.image.pixels[3 * p + c];
      ++count;
    }
  }
  for (double& v : sum) v /= static_cast<double>(count);
  return sum;
}

TEST(Synthetic, ColourFollowsClassInStudioAndIsPermutedInTextured) {
  // Discs are red in "studio" and blue in "textured"; with the correlation forced to 0 the hue is random.
  SyntheticOptions studio = options("studio");
  studio.colour_correlation = 1.f;
  auto red = class_mean_colour(SyntheticDataset(studio), 1, 24);
  EXPECT_GT(red[0], red[1] + 60);
  EXPECT_GT(red[0], red[2] + 60);
  SyntheticOptions textured = options("textured");
  textured.colour_correlation = 1.f;
  auto blue = class_mean_colour(SyntheticDataset(textured), 1, 24);
  EXPECT_GT(blue[2], blue[0] + 30);
  studio.colour_correlation = 0.f;
  auto random = class_mean_colour(SyntheticDataset(studio), 1, 48);
  EXPECT_LT(std::abs(random[0] - random[2]), 40);
}

TEST(Synthetic, FactoryAndErrors) {
  auto ds =
      make_dataset({{"type", "synthetic"}, {"domain", {"studio", "neon"}}, {"size", 10}, {"image_size", 32}}, "val");
  EXPECT_EQ(ds->size(), 10);
  EXPECT_EQ(ds->get(1).id, "synthetic/neon/val/1");
  EXPECT_EQ(ds->get(1).image.width, 32);
  EXPECT_EQ(make_dataset({{"type", "synthetic"}})->size(), 1000);
  EXPECT_EQ(make_dataset({{"type", "synthetic"}}, "test")->size(), 200);
  expect_error(
      [] {
        make_dataset({{"type", "synthetic"}, {"domian", "studio"}});
      },
      "dataset 'synthetic': unknown key 'domian'; valid keys: type, domain, split");
  expect_error(
      [] {
        make_dataset({{"type", "synthetic"}, {"domain", "mars"}});
      },
      "unknown domain 'mars'; domains: studio, textured, night, fog, neon, clutter");
  expect_error(
      [] {
        make_dataset({{"type", "synthetic"}, {"size", "many"}});
      },
      "key 'size' is \"many\", expected an integer");
  expect_error(
      [] {
        make_dataset({{"type", "synthetic"}}, "holdout");
      },
      "split 'holdout' is not one of train, val, test");
  expect_error([] { make_dataset({{"type", "imagenet"}}); }, "unknown type 'imagenet'");
  expect_error([] { make_dataset({{"kind", "synthetic"}}); }, "missing required key 'type'");
  expect_error([] { SyntheticDataset(options("studio")).get(64); }, "index 64 out of range [0, 64)");
}

}  // namespace
}  // namespace se
