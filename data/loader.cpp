#include "data/loader.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "data/json_config.h"

namespace se {

LoaderOptions LoaderOptions::from_json(const nlohmann::json& config) {
  const std::string what = "loader";
  check_config_keys(config, {"batch_size", "shuffle", "drop_last", "num_workers", "prefetch", "cache", "seed", "pin_memory"},
                    what);
  LoaderOptions o;
  o.batch_size = config_value<int64_t>(config, "batch_size", o.batch_size, what);
  o.shuffle = config_value<bool>(config, "shuffle", o.shuffle, what);
  o.drop_last = config_value<bool>(config, "drop_last", o.drop_last, what);
  o.num_workers = config_value<int>(config, "num_workers", o.num_workers, what);
  o.prefetch = config_value<int>(config, "prefetch", o.prefetch, what);
  o.cache = config_value<bool>(config, "cache", o.cache, what);
  o.seed = config_value<uint64_t>(config, "seed", o.seed, what);
  o.pin_memory = config_value<bool>(config, "pin_memory", o.pin_memory, what);
  return o;
}

nlohmann::json LoaderState::to_json() const {
  return {{"epoch", epoch}, {"batch", batch}};
}

LoaderState LoaderState::from_json(const nlohmann::json& state) {
  const std::string what = "loader state";
  check_config_keys(state, {"epoch", "batch"}, what);
  return {config_required<int64_t>(state, "epoch", what), config_required<int64_t>(state, "batch", what)};
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, Pipeline pipeline, LoaderOptions options)
    : dataset_(std::move(dataset)), pipeline_(std::move(pipeline)), options_(options) {
  SE_CHECK(dataset_ != nullptr, "DataLoader: no dataset");
  SE_CHECK(options_.batch_size > 0, "DataLoader: batch_size ", options_.batch_size, ", expected >= 1");
  SE_CHECK(options_.num_workers >= 0 && options_.num_workers <= 256, "DataLoader: num_workers ", options_.num_workers,
           ", expected 0 to 256");
  SE_CHECK(options_.prefetch >= 1, "DataLoader: prefetch ", options_.prefetch, ", expected >= 1");
  check_device(options_.device, "DataLoader");
  SE_CHECK(options_.world_size >= 1 && options_.rank >= 0 && options_.rank < options_.world_size, "DataLoader: rank ",
           options_.rank, " of world_size ", options_.world_size, ", expected 0 <= rank < world_size");
  // This rank's share of an epoch: ceil(size / world_size) indices (all of them for one process).
  const int64_t n = (dataset_->size() + options_.world_size - 1) / options_.world_size;
  batches_per_epoch_ =
      options_.drop_last ? n / options_.batch_size : (n + options_.batch_size - 1) / options_.batch_size;
  SE_CHECK(batches_per_epoch_ > 0, "DataLoader: dataset '", dataset_->info().name, "' has ", dataset_->size(),
           " samples", (options_.world_size > 1 ? detail::concat(" (", n, " per rank of ", options_.world_size, ")") : ""),
           ": no full batch of ", options_.batch_size, (options_.drop_last ? " (drop_last is on)" : ""));
  if (options_.cache) cache_.resize(static_cast<size_t>(dataset_->size()));
  if (options_.device.is_cuda()) copy_stream_ = Stream::create(options_.device);
  start_workers();
}

DataLoader::~DataLoader() {
  stop_workers();
}

void DataLoader::start_workers() {
  for (int w = 0; w < options_.num_workers; ++w) workers_.emplace_back([this] { worker_loop(); });
}

void DataLoader::stop_workers() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

void DataLoader::worker_loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    work_ready_.wait(lock, [&] { return stopping_ || next_job_ < consumed_ + options_.prefetch; });
    if (stopping_) return;
    int64_t job = next_job_++;
    uint64_t generation = generation_;
    lock.unlock();
    Result result;
    try {
      result.batch = produce(job);
    } catch (...) {
      result.error = std::current_exception();
    }
    lock.lock();
    if (generation == generation_) {
      results_[job] = std::move(result);
      result_ready_.notify_all();
    }
  }
}

void DataLoader::restore(const LoaderState& state) {
  SE_CHECK(state.epoch >= 0 && state.batch >= 0 && state.batch <= batches_per_epoch_, "DataLoader::restore: epoch ",
           state.epoch, ", batch ", state.batch, " is not a position of a loader with ", batches_per_epoch_,
           " batches per epoch");
  state_ = state;
  copied_ahead_.reset();
  std::lock_guard lock(mutex_);
  ++generation_;
  results_.clear();
  next_job_ = consumed_ = global_index(state_);
  work_ready_.notify_all();
}

Batch DataLoader::take_host_batch(int64_t job) {
  if (workers_.empty()) return produce(job);
  Result result;
  {
    std::unique_lock lock(mutex_);
    result_ready_.wait(lock, [&] { return results_.count(job) > 0; });
    result = std::move(results_[job]);
    results_.erase(job);
    consumed_ = job + 1;
  }
  work_ready_.notify_all();
  if (result.error) {
    restore(state_);  // a later call retries this batch instead of waiting for it forever
    std::rethrow_exception(result.error);
  }
  return std::move(*result.batch);
}

std::optional<Batch> DataLoader::try_take_host_batch(int64_t job) {
  if (workers_.empty()) return std::nullopt;
  std::optional<Batch> batch;
  {
    std::lock_guard lock(mutex_);
    auto it = results_.find(job);
    // An error stays where it is: the next() that asks for this batch reports it.
    if (it == results_.end() || it->second.error) return std::nullopt;
    batch = std::move(it->second.batch);
    results_.erase(it);
    consumed_ = job + 1;
  }
  work_ready_.notify_all();
  return batch;
}

DataLoader::DeviceBatch DataLoader::start_copy(int64_t job, Batch host) {
  DeviceBatch out{job, std::move(host), Event(options_.device, false)};
  const bool pinned = out.batch.images.is_pinned() && out.batch.masks.is_pinned();
  {
    // Allocated and copied in the copy stream's order; the host buffers go back to the pinned cache
    // when this scope ends, and the allocator keeps them until the copy stream has read them.
    StreamGuard on_copy_stream(copy_stream_);
    out.batch.images = out.batch.images.to(options_.device, /*non_blocking=*/true);
    out.batch.masks = out.batch.masks.to(options_.device, /*non_blocking=*/true);
    out.ready.record(copy_stream_);
  }
  ++transfer_stats_.batches;
  if (pinned) ++transfer_stats_.pinned;
  return out;
}

std::optional<Batch> DataLoader::next() {
  if (state_.batch == batches_per_epoch_) {
    state_ = {state_.epoch + 1, 0};
    return std::nullopt;
  }
  const int64_t job = global_index(state_);
  if (options_.device.is_cpu()) {
    Batch batch = take_host_batch(job);
    ++state_.batch;
    return batch;
  }
  std::optional<DeviceBatch> copied;
  if (copied_ahead_ && copied_ahead_->job == job) {
    copied = std::move(copied_ahead_);
    ++transfer_stats_.copied_ahead;
  } else {
    copied = start_copy(job, take_host_batch(job));
  }
  copied_ahead_.reset();
  ++state_.batch;
  // Hand over to the caller's stream: its work waits for the copy, and the memory counts as used there.
  const Stream compute = current_stream(options_.device);
  copied->ready.block(compute);
  record_stream(copied->batch.images, compute);
  record_stream(copied->batch.masks, compute);
  // Queue the next batch's copy now if the workers have it, so it overlaps the caller's work.
  if (std::optional<Batch> host = try_take_host_batch(job + 1)) copied_ahead_ = start_copy(job + 1, std::move(*host));
  return std::move(copied->batch);
}

std::shared_ptr<const std::vector<int64_t>> DataLoader::permutation(int64_t epoch) const {
  std::lock_guard lock(permutation_mutex_);
  auto it = permutations_.find(epoch);
  if (it != permutations_.end()) return it->second;
  auto order = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(dataset_->size()));
  std::iota(order->begin(), order->end(), 0);
  if (options_.shuffle) {
    // Fisher-Yates on a stream of its own (a different key than the transforms' (seed, epoch, index)).
    Rng rng(options_.seed ^ 0x53485546464C45ull, static_cast<uint64_t>(epoch));
    for (int64_t i = static_cast<int64_t>(order->size()) - 1; i > 0; --i)
      std::swap((*order)[i], (*order)[rng.uniform_int(0, i)]);
  }
  if (options_.world_size > 1) {
    const auto world = static_cast<size_t>(options_.world_size);
    auto shard = std::make_shared<std::vector<int64_t>>();
    const size_t padded = (order->size() + world - 1) / world * world;
    for (size_t i = static_cast<size_t>(options_.rank); i < padded; i += world) shard->push_back((*order)[i % order->size()]);
    order = shard;
  }
  permutations_[epoch] = order;
  while (permutations_.size() > 3) permutations_.erase(permutations_.begin());  // the prefetch window spans <= 2
  return order;
}

Sample DataLoader::load(int64_t index) const {
  if (!options_.cache) return dataset_->get(index);
  {
    std::lock_guard lock(cache_mutex_);
    if (cache_[index]) return *cache_[index];
  }
  auto sample = std::make_shared<const Sample>(dataset_->get(index));
  std::lock_guard lock(cache_mutex_);
  cache_[index] = sample;
  return *sample;
}

Batch DataLoader::produce(int64_t global) const {
  Batch batch;
  batch.epoch = global / batches_per_epoch_;
  batch.batch = global % batches_per_epoch_;
  auto order = permutation(batch.epoch);
  int64_t begin = batch.batch * options_.batch_size;
  int64_t end = std::min<int64_t>(begin + options_.batch_size, static_cast<int64_t>(order->size()));
  std::vector<Sample> samples;
  for (int64_t i = begin; i < end; ++i) {
    int64_t index = (*order)[i];
    try {
      Sample s = load(index);
      pipeline_.apply(s, options_.seed, batch.epoch, index);
      check_sample(s, "data loader");
      samples.push_back(std::move(s));
    } catch (const Error& e) {
      SE_THROW("data loader: sample ", index, " of dataset '", dataset_->info().name, "' (epoch ", batch.epoch,
               ", batch ", batch.batch, "): ", e.what());
    }
    batch.indices.push_back(index);
    batch.ids.push_back(samples.back().id);
  }
  const Sample& first = samples.front();
  int64_t n = static_cast<int64_t>(samples.size());
  int64_t h = first.image.height, w = first.image.width, mh = first.mask.height, mw = first.mask.width;
  for (const Sample& s : samples) {
    SE_CHECK(s.image.height == h && s.image.width == w && s.mask.height == mh && s.mask.width == mw,
             "data loader: cannot batch '", first.id, "' (image ", image_shape_str(first.image), ") with '", s.id,
             "' (image ", image_shape_str(s.image), "): samples of a batch need one size; add a random_crop + pad ",
             "or a fixed resize to the transforms, or use batch_size 1");
  }
  if (options_.device.is_cuda() && options_.pin_memory) {
    batch.images = empty_pinned({n, 3, h, w});
    batch.masks = empty_pinned({n, mh, mw}, DType::i64);
  } else {
    batch.images = empty({n, 3, h, w});
    batch.masks = empty({n, mh, mw}, {.dtype = DType::i64});
  }
  float* images = batch.images.data<float>();
  int64_t* masks = batch.masks.data<int64_t>();
  for (int64_t k = 0; k < n; ++k) {
    normalize_chw(samples[k].image, pipeline_.normalization(), images + k * 3 * h * w);
    std::copy(samples[k].mask.pixels.begin(), samples[k].mask.pixels.end(), masks + k * mh * mw);
  }
  return batch;
}

}  // namespace se
