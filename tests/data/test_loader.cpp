// The threaded loader: the same batches whatever the number of workers, per-epoch shuffling,
// drop_last, exact resume from a saved position, the RAM cache, errors, and device placement.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <set>

#include "data/loader.h"
#include "data/synthetic.h"
#include "tests/data/data_test_util.h"

namespace se {
namespace {

using testing::expect_error;

// n samples of `size` x `size` (sample `odd_size` is larger), counting calls to get(); sample `broken` throws.
class CountingDataset : public Dataset {
 public:
  explicit CountingDataset(int64_t n, int size = 12, int64_t broken = -1, int64_t odd_size = -1)
      : n_(n), size_(size), broken_(broken), odd_size_(odd_size) {
    info_.name = "counting";
    info_.class_names = {"a", "b", "c"};
    info_.palette = default_palette(3);
  }
  int64_t size() const override { return n_; }
  Sample get(int64_t index) const override {
    ++calls;
    if (index == broken_) throw Error("mask 'broken.png' has label value 7");
    int side = index == odd_size_ ? size_ + 4 : size_;
    Sample s;
    s.image = testing::pattern_image(side, side, 3, static_cast<int>(index) * 5);
    s.mask = Image(side, side, 1);
    for (size_t p = 0; p < s.mask.pixels.size(); ++p) s.mask.pixels[p] = static_cast<uint8_t>((p + index) % 3);
    s.id = "sample" + std::to_string(index);
    return s;
  }
  mutable std::atomic<int64_t> calls{0};

 private:
  int64_t n_;
  int size_;
  int64_t broken_, odd_size_;
};

Pipeline augment() {
  return Pipeline::from_json(nlohmann::json::parse(R"([
    {"type": "random_resize", "scale": 12, "ratio_range": [0.75, 1.5]},
    {"type": "random_crop", "size": 10},
    {"type": "random_flip"},
    {"type": "photometric_distortion"},
    {"type": "pad", "size": 10}
  ])"));
}

// Every batch of `epochs` epochs, with the end-of-epoch markers, as comparable host data.
struct Flat {
  std::vector<std::vector<float>> images;
  std::vector<std::vector<int64_t>> masks;
  std::vector<std::vector<std::string>> ids;
  bool operator==(const Flat&) const = default;
};

void take(DataLoader& loader, Flat& out, int64_t batches) {
  for (int64_t k = 0; k < batches; ++k) {
    std::optional<Batch> b = loader.next();
    if (!b) {
      out.ids.push_back({"<end of epoch>"});
      continue;
    }
    out.images.push_back(b->images.to_vector<float>());
    out.masks.push_back(b->masks.to_vector<int64_t>());
    out.ids.push_back(b->ids);
  }
}

LoaderOptions opts(int workers, int64_t batch = 4, bool drop_last = false) {
  LoaderOptions o;
  o.batch_size = batch;
  o.num_workers = workers;
  o.drop_last = drop_last;
  o.seed = 42;
  return o;
}

TEST(Loader, SameBatchesWhateverTheNumberOfWorkers) {
  auto ds = std::make_shared<CountingDataset>(10);
  Flat reference;
  DataLoader sync(ds, augment(), opts(0));
  EXPECT_EQ(sync.batches_per_epoch(), 3);
  take(sync, reference, 12);  // 3 epochs of 3 batches + end markers
  for (int workers : {1, 3}) {
    LoaderOptions o = opts(workers);
    o.prefetch = workers == 3 ? 4 : 1;
    DataLoader threaded(ds, augment(), o);
    Flat got;
    take(threaded, got, 12);
    EXPECT_TRUE(got == reference) << workers << " workers";
  }
}

TEST(Loader, ShapesDtypesAndNormalisedValues) {
  auto ds = std::make_shared<CountingDataset>(5);
  LoaderOptions o = opts(2, 2);
  o.shuffle = false;
  DataLoader loader(ds, Pipeline(), o);
  Batch b = *loader.next();
  EXPECT_EQ(b.images.shape(), (Shape{2, 3, 12, 12}));
  EXPECT_EQ(b.images.dtype(), DType::f32);
  EXPECT_EQ(b.masks.shape(), (Shape{2, 12, 12}));
  EXPECT_EQ(b.masks.dtype(), DType::i64);
  EXPECT_EQ(b.ids, (std::vector<std::string>{"sample0", "sample1"}));
  Sample s1 = ds->get(1);
  std::vector<float> images = b.images.to_vector<float>();
  std::vector<int64_t> masks = b.masks.to_vector<int64_t>();
  Normalization n;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 12; ++y)
      for (int x = 0; x < 12; ++x) {
        EXPECT_FLOAT_EQ(images[((3 + c) * 12 + y) * 12 + x], (s1.image.at(y, x, c) - n.mean[c]) / n.std[c]);
        EXPECT_EQ(masks[(12 + y) * 12 + x], s1.mask.at(y, x));
      }
  loader.next();
  Batch last = *loader.next();
  EXPECT_EQ(last.images.size(0), 1) << "the incomplete last batch is kept without drop_last";
  EXPECT_FALSE(loader.next().has_value());
}

TEST(Loader, ShufflesEachEpochOverEverySampleAndDropsLast) {
  auto ds = std::make_shared<CountingDataset>(11);
  DataLoader loader(ds, Pipeline(), opts(2, 3, /*drop_last=*/true));
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  std::vector<std::vector<int64_t>> orders;
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> order;
    while (auto b = loader.next()) {
      EXPECT_EQ(b->images.size(0), 3);
      EXPECT_EQ(b->epoch, epoch);
      order.insert(order.end(), b->indices.begin(), b->indices.end());
    }
    EXPECT_EQ(order.size(), 9u);
    EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 9u) << "no sample twice in an epoch";
    orders.push_back(order);
  }
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
  DataLoader no_drop(ds, Pipeline(), opts(0, 3));
  EXPECT_EQ(no_drop.batches_per_epoch(), 4);
}

// Data-parallel shards (DistributedSampler semantics): 11 samples over 3 ranks give 4 indices each
// (one padded from the permutation's start); every epoch the shards are disjoint up to that padding,
// cover the dataset, and follow the one-process permutation rank, rank + 3, ...
TEST(Loader, RankShardsCoverTheEpochDisjointly) {
  auto ds = std::make_shared<CountingDataset>(11);
  LoaderOptions whole_options = opts(0, 12);
  DataLoader whole(ds, Pipeline(), whole_options);
  for (int epoch = 0; epoch < 2; ++epoch) {
    const std::vector<int64_t> permutation = whole.next()->indices;
    ASSERT_FALSE(whole.next().has_value());
    std::vector<int64_t> all;
    for (int rank = 0; rank < 3; ++rank) {
      LoaderOptions o = opts(rank == 1 ? 2 : 0, 3);
      o.rank = rank;
      o.world_size = 3;
      DataLoader shard(ds, Pipeline(), o);
      EXPECT_EQ(shard.batches_per_epoch(), 2);  // 4 indices in batches of 3
      shard.restore({epoch, 0});
      std::vector<int64_t> mine;
      while (auto b = shard.next()) mine.insert(mine.end(), b->indices.begin(), b->indices.end());
      ASSERT_EQ(mine.size(), 4u);
      for (size_t k = 0; k < mine.size(); ++k) EXPECT_EQ(mine[k], permutation[(rank + 3 * k) % 11]) << rank;
      all.insert(all.end(), mine.begin(), mine.end());
    }
    EXPECT_EQ(std::set<int64_t>(all.begin(), all.end()).size(), 11u);  // 12 draws cover all 11 samples
  }
  LoaderOptions bad = opts(0);
  bad.rank = 2;
  bad.world_size = 2;
  expect_error([&] { DataLoader(ds, Pipeline(), bad); }, "DataLoader: rank 2 of world_size 2");
}

TEST(Loader, ResumesExactlyFromASavedPosition) {
  auto ds = std::make_shared<CountingDataset>(10);
  DataLoader uninterrupted(ds, augment(), opts(2));
  Flat before, after;
  take(uninterrupted, before, 5);  // epoch 0 (3 batches, end), then batch 0 of epoch 1
  LoaderState saved = uninterrupted.state();
  EXPECT_EQ(saved, (LoaderState{1, 1}));
  take(uninterrupted, after, 6);

  DataLoader resumed(ds, augment(), opts(3));
  resumed.restore(LoaderState::from_json(nlohmann::json::parse(saved.to_json().dump())));
  Flat got;
  take(resumed, got, 6);
  EXPECT_TRUE(got == after);

  // A position at the end of an epoch, and restoring a loader that already prefetched elsewhere.
  DataLoader jumpy(ds, augment(), opts(2));
  jumpy.next();
  jumpy.restore({0, 3});
  EXPECT_FALSE(jumpy.next().has_value());
  Flat from_end;
  take(jumpy, from_end, 1);
  EXPECT_TRUE(from_end.images.front() == before.images.back()) << "batch 0 of epoch 1";
  expect_error([&] { jumpy.restore({0, 4}); }, "is not a position of a loader with 3 batches per epoch");
  expect_error([] { LoaderState::from_json({{"epoch", 1}}); }, "missing required key 'batch'");
}

TEST(Loader, CacheKeepsDecodedSamples) {
  auto plain = std::make_shared<CountingDataset>(6), cached = std::make_shared<CountingDataset>(6);
  LoaderOptions o = opts(1, 2);  // one worker: loads happen one at a time, so they can be counted
  DataLoader a(plain, augment(), o);
  o.cache = true;
  DataLoader b(cached, augment(), o);
  Flat fa, fb;
  take(a, fa, 8);
  take(b, fb, 8);
  EXPECT_TRUE(fa == fb) << "caching happens before the transforms";
  EXPECT_GE(plain->calls.load(), 12);  // two epochs, and what was prefetched
  EXPECT_EQ(cached->calls.load(), 6);
}

TEST(Loader, ErrorsNameTheSampleAndDoNotHang) {
  auto broken = std::make_shared<CountingDataset>(8, 12, /*broken=*/5);
  LoaderOptions o = opts(2, 4);
  o.shuffle = false;
  DataLoader loader(broken, Pipeline(), o);
  ASSERT_TRUE(loader.next().has_value());
  expect_error([&] { loader.next(); },
               "data loader: sample 5 of dataset 'counting' (epoch 0, batch 1): mask 'broken.png' has label value 7");
  EXPECT_EQ(loader.state(), (LoaderState{0, 1}));
  expect_error([&] { loader.next(); }, "sample 5");  // retried, not waited for forever

  auto odd = std::make_shared<CountingDataset>(4, 12, -1, /*odd_size=*/2);
  DataLoader mixed(odd, Pipeline(), opts(0, 4));
  expect_error([&] { mixed.next(); }, "samples of a batch need one size");
  expect_error([&] { DataLoader(odd, Pipeline(), opts(0, 5, true)); },
               "has 4 samples: no full batch of 5 (drop_last is on)");
  expect_error([] { LoaderOptions::from_json({{"batch", 4}}); }, "loader: unknown key 'batch'; valid keys: batch_size");
}

TEST(Loader, SyntheticDataEndToEnd) {
  auto ds = SyntheticDataset::from_json({{"type", "synthetic"}, {"size", 8}, {"image_size", 32}});
  Pipeline pipeline = Pipeline::from_json(nlohmann::json::parse(
      R"([{"type": "random_resize", "scale": 32, "ratio_range": [0.5, 2.0]}, {"type": "random_crop", "size": 32},
          {"type": "pad", "size": 32}, {"type": "random_flip"}, {"type": "normalize"}])"));
  DataLoader loader(ds, pipeline, opts(2, 4));
  int batches = 0;
  while (auto b = loader.next()) {
    ++batches;
    EXPECT_EQ(b->images.shape(), (Shape{4, 3, 32, 32}));
    for (int64_t v : b->masks.to_vector<int64_t>()) EXPECT_TRUE((v >= 0 && v < 6) || v == 255) << v;
  }
  EXPECT_EQ(batches, 2);
}

TEST(LoaderCuda, BatchesLandOnTheDeviceWithTheSameValues) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto ds = std::make_shared<CountingDataset>(6);
  LoaderOptions o = opts(2, 3);
  DataLoader host(ds, augment(), o);
  o.device = Device::cuda();
  DataLoader device(ds, augment(), o);
  for (int k = 0; k < 2; ++k) {
    Batch a = *host.next(), b = *device.next();
    EXPECT_EQ(b.images.device(), Device::cuda());
    EXPECT_EQ(b.masks.device(), Device::cuda());
    EXPECT_EQ(a.images.to_vector<float>(), b.images.to_vector<float>());
    EXPECT_EQ(a.masks.to_vector<int64_t>(), b.masks.to_vector<int64_t>());
  }
  EXPECT_EQ(host.transfer_stats().batches, 0);
}

// The copy path: pinned host batches, copies queued one batch ahead on the loader's stream, handed to
// the caller's stream; the batches are those of the CPU loader, also across epochs and a restore.
TEST(LoaderCuda, CopiesFromPinnedMemoryAheadOfTheCaller) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto ds = std::make_shared<CountingDataset>(10);
  Flat reference;
  DataLoader host(ds, augment(), opts(2, 4));
  take(host, reference, 12);
  host.restore({1, 1});
  take(host, reference, 3);
  for (bool pin : {true, false}) {
    for (int workers : {0, 2}) {
      LoaderOptions o = opts(workers, 4);
      o.device = Device::cuda();
      o.pin_memory = pin;
      o.prefetch = 3;
      DataLoader loader(ds, augment(), o);
      Stream caller = Stream::create(Device::cuda());  // the batches are used on a stream of the caller's
      StreamGuard guard(caller);
      Flat got;
      for (int k = 0; k < 12; ++k) {
        // Gives the workers time to finish the next batch, so that next() can queue its copy early.
        if (workers > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        take(loader, got, 1);
      }
      loader.restore({1, 1});
      take(loader, got, 3);
      EXPECT_TRUE(got == reference) << "pin_memory " << pin << ", " << workers << " workers";
      const TransferStats stats = loader.transfer_stats();
      EXPECT_GE(stats.batches, 11) << pin << " " << workers;  // 9 batches, 2 after the restore, + dropped ones
      EXPECT_EQ(stats.pinned, pin ? stats.batches : 0) << workers;
      if (workers == 0) {
        EXPECT_EQ(stats.copied_ahead, 0);  // nothing to copy ahead without workers
      } else {
        EXPECT_GT(stats.copied_ahead, 0) << pin;
      }
    }
  }
}

// A worker's error for the batch after the current one must not surface early or be lost.
TEST(LoaderCuda, AnErrorAheadIsReportedWhenItsBatchIsAskedFor) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto broken = std::make_shared<CountingDataset>(12, 12, /*broken=*/9);
  LoaderOptions o = opts(2, 4);
  o.shuffle = false;
  o.device = Device::cuda();
  DataLoader loader(broken, Pipeline(), o);
  ASSERT_TRUE(loader.next().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(loader.next().has_value());
  expect_error([&] { loader.next(); }, "sample 9 of dataset 'counting' (epoch 0, batch 2)");
  expect_error([&] { loader.next(); }, "sample 9");
  EXPECT_EQ(loader.state(), (LoaderState{0, 2}));
  expect_error([] { LoaderOptions::from_json({{"pin_memory", "yes"}}); }, "pin_memory");
}

}  // namespace
}  // namespace se
