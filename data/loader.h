// The data loader: worker threads read, augment and collate whole batches into a bounded prefetch
// window; the caller gets them in order as engine Tensors on the target device.
//
// Determinism: batch b of epoch e is a pure function of (seed, e, b): the epoch's permutation comes
// from the seed and the epoch, each sample's augmentation from (seed, e, dataset index). So the batches
// are the same whatever the number of workers, and a saved position (epoch, batch) resumes exactly.
//
// On a CUDA device the workers collate into pinned (page-locked) host buffers, and the copies to the
// device run asynchronously on a copy stream of the loader's own: next() queues the copy of the batch
// after the one it returns whenever the workers have it ready, so that transfer overlaps the caller's
// work on the batch before. The returned tensors are ordered on the caller's current stream (it waits
// for the copy's event) and recorded as used there, so the caching allocator keeps them from the copy
// stream until the caller's work is done.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/transforms.h"
#include "engine/stream.h"
#include "engine/tensor.h"

namespace se {

struct LoaderOptions {
  int64_t batch_size = 8;
  bool shuffle = true;
  bool drop_last = false;  // drop the last, incomplete batch of an epoch
  int num_workers = 2;     // 0: load on the calling thread
  int prefetch = 2;        // batches prepared ahead of the caller (at least 1)
  bool cache = false;      // keep decoded samples (before transforms) in RAM
  uint64_t seed = 0;
  Device device = Device::cpu();
  // Data-parallel sharding, as torch's DistributedSampler(drop_last=False): every rank draws the same
  // epoch permutation, pads it by repeating its start to a multiple of world_size and takes the indices
  // rank, rank + world_size, ...; so the ranks' batches are disjoint (up to the padding) and together
  // cover the epoch. batches_per_epoch() counts this rank's shard.
  int rank = 0;
  int world_size = 1;
  // CUDA devices: collate into pinned host memory so that the copies to the device are asynchronous
  // (pageable host memory is copied synchronously by the runtime). Ignored on the CPU.
  bool pin_memory = true;

  // From {"batch_size", "shuffle", "drop_last", "num_workers", "prefetch", "cache", "seed", "pin_memory"}; the
  // device, rank and world_size are not config keys (the caller picks them).
  static LoaderOptions from_json(const nlohmann::json& config);
};

struct Batch {
  Tensor images;                 // (N, 3, H, W) f32, normalised
  Tensor masks;                  // (N, H, W) i64: class indices or the ignore index
  std::vector<std::string> ids;  // sample ids, in batch order
  std::vector<int64_t> indices;  // dataset indices, in batch order
  int64_t epoch = 0;
  int64_t batch = 0;  // index of the batch within its epoch
};

// Where the loader stands: the next call to next() returns batch `batch` of epoch `epoch`
// (batch == batches_per_epoch(): the end of that epoch is next).
struct LoaderState {
  int64_t epoch = 0;
  int64_t batch = 0;
  nlohmann::json to_json() const;
  static LoaderState from_json(const nlohmann::json& state);
  friend bool operator==(const LoaderState&, const LoaderState&) = default;
};

// What the loader did to move batches to a CUDA device (zeros on the CPU).
struct TransferStats {
  int64_t batches = 0;       // batches copied to the device
  int64_t pinned = 0;        // of those, from pinned host memory (asynchronous copies)
  int64_t copied_ahead = 0;  // of those, queued by the next() before the one that returned them
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, Pipeline pipeline, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  // The next batch of the current epoch; std::nullopt once at the end of each epoch, after which the
  // next call starts the following epoch. Rethrows (as se::Error) what a worker hit, naming the sample.
  std::optional<Batch> next();

  LoaderState state() const { return state_; }
  // Continues from `state` (e.g. from a checkpoint): the batches that follow are those an
  // uninterrupted loader would have given from there.
  void restore(const LoaderState& state);

  const Dataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return options_; }
  TransferStats transfer_stats() const { return transfer_stats_; }

 private:
  struct Result {
    std::optional<Batch> batch;  // on the host
    std::exception_ptr error;
  };
  // A batch whose copy to the device is queued on copy_stream_; `ready` follows the copy.
  struct DeviceBatch {
    int64_t job = 0;
    Batch batch;
    Event ready;
  };

  int64_t global_index(const LoaderState& s) const { return s.epoch * batches_per_epoch_ + s.batch; }
  Batch produce(int64_t global) const;  // thread-safe
  Batch take_host_batch(int64_t job);                     // waits for the workers; rethrows their error
  std::optional<Batch> try_take_host_batch(int64_t job);  // only if ready and without error
  DeviceBatch start_copy(int64_t job, Batch host);
  std::shared_ptr<const std::vector<int64_t>> permutation(int64_t epoch) const;
  Sample load(int64_t index) const;
  void worker_loop();
  void start_workers();
  void stop_workers();

  std::shared_ptr<const Dataset> dataset_;
  Pipeline pipeline_;
  LoaderOptions options_;
  int64_t batches_per_epoch_ = 0;
  LoaderState state_;

  // CUDA devices: the stream the host-to-device copies run on, and the next batch already on its way.
  Stream copy_stream_;
  std::optional<DeviceBatch> copied_ahead_;
  TransferStats transfer_stats_;

  // Worker coordination: jobs are global batch numbers epoch * batches_per_epoch + batch.
  std::mutex mutex_;
  std::condition_variable work_ready_, result_ready_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  uint64_t generation_ = 0;  // bumped by restore(): results of older jobs are dropped
  int64_t next_job_ = 0;     // next global batch a worker takes
  int64_t consumed_ = 0;     // global batch the caller waits for next
  std::map<int64_t, Result> results_;

  mutable std::mutex permutation_mutex_;
  mutable std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> permutations_;  // recent epochs
  mutable std::mutex cache_mutex_;
  mutable std::vector<std::shared_ptr<const Sample>> cache_;
};

}  // namespace se
