// Data loader throughput (images/s) on the built-in synthetic data with the default training
// augmentation, by number of workers, batch 16 of 64 x 64 and of 128 x 128; plus the parts alone
// (scene rendering, the transforms). Run: build/bench/bench_loader --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include "data/loader.h"
#include "data/synthetic.h"

namespace se {
namespace {

Pipeline train_pipeline(int size) {
  return Pipeline::from_json(nlohmann::json::array({
      {{"type", "random_resize"}, {"scale", size}, {"ratio_range", {0.5, 2.0}}},
      {{"type", "random_crop"}, {"size", size}, {"cat_max_ratio", 0.75}},
      {{"type", "pad"}, {"size", size}},
      {{"type", "random_flip"}},
      {{"type", "photometric_distortion"}},
      {{"type", "normalize"}},
  }));
}

std::shared_ptr<SyntheticDataset> synthetic(int size, bool cache_friendly_size = false) {
  return SyntheticDataset::from_json(
      {{"type", "synthetic"}, {"image_size", size}, {"size", cache_friendly_size ? 64 : 100000}});
}

// args: workers, image size, cache
void BM_Loader(benchmark::State& state) {
  int workers = static_cast<int>(state.range(0)), size = static_cast<int>(state.range(1));
  bool cache = state.range(2) != 0;
  LoaderOptions o;
  o.batch_size = 16;
  o.num_workers = workers;
  o.prefetch = std::max(2, workers * 2);
  o.cache = cache;
  DataLoader loader(synthetic(size, cache), train_pipeline(size), o);
  if (cache) {  // fill the cache first: measure the steady state
    while (loader.next()) {
    }
  }
  int64_t images = 0;
  for (auto _ : state) {
    std::optional<Batch> batch = loader.next();
    if (!batch) batch = loader.next();
    images += batch->images.size(0);
    benchmark::DoNotOptimize(batch->images.data_ptr());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(images), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Loader)
    ->ArgNames({"workers", "size", "cache"})
    ->Args({0, 64, 0})
    ->Args({1, 64, 0})
    ->Args({2, 64, 0})
    ->Args({2, 64, 1})
    ->Args({0, 128, 0})
    ->Args({2, 128, 0})
    ->Args({2, 128, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_SyntheticRender(benchmark::State& state) {
  auto ds = synthetic(static_cast<int>(state.range(0)));
  int64_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(ds->get(i++ % ds->size()).image.pixels.data());
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(i), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SyntheticRender)->Arg(64)->Arg(128)->Unit(benchmark::kMicrosecond);

void BM_TrainTransforms(benchmark::State& state) {
  int size = static_cast<int>(state.range(0));
  auto ds = synthetic(size);
  Sample original = ds->get(0);
  Pipeline pipeline = train_pipeline(size);
  int64_t i = 0;
  for (auto _ : state) {
    Sample s = original;
    pipeline.apply(s, 0, 0, i++);
    benchmark::DoNotOptimize(s.image.pixels.data());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(i), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TrainTransforms)->Arg(64)->Arg(128)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace se
BENCHMARK_MAIN();
