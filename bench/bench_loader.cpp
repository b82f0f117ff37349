// Data loader throughput (images/s) on the built-in synthetic data with the default training
// augmentation, by number of workers, batch 16 of 64 x 64 and of 128 x 128; plus the parts alone
// (scene rendering, the transforms); on a GPU also the loader feeding the device and the host-to-device
// bandwidth, pageable vs pinned. Run: build/bench/bench_loader --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include "data/loader.h"
#include "data/synthetic.h"
#include "engine/ops.h"
#include "engine/stream.h"

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

// The loader feeding a CUDA device: args workers, pin_memory. Each iteration waits for the batch's copy,
// so this is the rate a training step that took no time could consume.
void BM_LoaderToDevice(benchmark::State& state) {
  if (!cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  LoaderOptions o;
  o.batch_size = 16;
  o.num_workers = static_cast<int>(state.range(0));
  o.prefetch = std::max(2, o.num_workers * 2);
  o.pin_memory = state.range(1) != 0;
  o.device = Device::cuda();
  DataLoader loader(synthetic(128), train_pipeline(128), o);
  int64_t images = 0;
  for (auto _ : state) {
    std::optional<Batch> batch = loader.next();
    if (!batch) batch = loader.next();
    images += batch->images.size(0);
    synchronize(Device::cuda());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(images), benchmark::Counter::kIsRate);
  state.counters["copied_ahead"] = static_cast<double>(loader.transfer_stats().copied_ahead);
}
BENCHMARK(BM_LoaderToDevice)
    ->ArgNames({"workers", "pinned"})
    ->Args({2, 0})
    ->Args({2, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Host-to-device bandwidth of one training batch (16 x 3 x 512 x 512 f32, 48 MiB) from pageable and
// from pinned memory: args pinned.
void BM_HostToDevice(benchmark::State& state) {
  if (!cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  Tensor host = rand({16, 3, 512, 512});
  if (state.range(0) != 0) host = host.pin_memory();
  for (auto _ : state) {
    Tensor device = host.to(Device::cuda(), /*non_blocking=*/true);
    synchronize(Device::cuda());
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(host.nbytes()) * static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate, benchmark::Counter::OneK::kIs1000);
}
BENCHMARK(BM_HostToDevice)->ArgName("pinned")->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

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
