// Memory for tensor storage. The CPU allocator hands out 64-byte aligned blocks (one cache line,
// a full AVX-512 vector). The CUDA allocator is a stream-ordered caching allocator: freed blocks go
// back to a pool of the stream they were used on and are reused without cudaFree/cudaMalloc or any
// host synchronisation, because later work on that stream is ordered after the earlier users.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/device.h"
#include "kernels/stream.h"

namespace se {

void* cpu_allocate(size_t bytes);  // 64-byte aligned; throws se::Error when the host is out of memory
void cpu_free(void* ptr, size_t bytes);  // `bytes` as passed to cpu_allocate, for the statistics

struct AllocatorStats {
  size_t allocated_bytes = 0;       // held by live tensors (rounded sizes)
  size_t reserved_bytes = 0;        // obtained from the device (allocated + cached)
  size_t peak_allocated_bytes = 0;  // high-water mark of allocated_bytes since the last reset
  size_t peak_reserved_bytes = 0;
  uint64_t allocations = 0;         // allocate() calls
  uint64_t cache_hits = 0;          // allocate() calls served from the cache
  uint64_t device_mallocs = 0;      // calls to the device malloc
  uint64_t device_frees = 0;
};

// The CPU allocator's statistics, process-wide (no cache: reserved equals allocated, and every
// allocation is a "device" malloc). `segengine bench model` reports the peak of a training step.
AllocatorStats cpu_allocator_stats();
void cpu_reset_peak_stats();

class CudaCachingAllocator {
 public:
  explicit CudaCachingAllocator(int device);
  ~CudaCachingAllocator();
  CudaCachingAllocator(const CudaCachingAllocator&) = delete;
  CudaCachingAllocator& operator=(const CudaCachingAllocator&) = delete;

  // A block of at least `bytes` usable in stream order on `stream`. Throws se::Error with the
  // allocator's stats when the device is out of memory even after the cache was released.
  void* allocate(size_t bytes, kernels::Stream stream);
  void free(void* ptr);
  // The block is also used on `stream`: it is not reused until that stream's work so far has finished.
  void record_stream(void* ptr, kernels::Stream stream);
  // Returns every cached (unused) block to the device.
  void empty_cache();

  AllocatorStats stats() const;
  void reset_peak_stats();
  // Caps reserved memory (0 = no cap), like PyTorch's set_per_process_memory_fraction.
  void set_memory_limit(size_t bytes);

  static size_t round_size(size_t bytes);

 private:
  struct Block {
    void* ptr = nullptr;
    size_t size = 0;
    kernels::Stream stream = nullptr;
    std::vector<kernels::Stream> other_streams;  // record_stream() users
  };
  using Pool = std::multimap<size_t, Block*>;  // size -> free block, per stream

  void* take_cached(size_t size, kernels::Stream stream);
  void process_pending_frees();
  void release_cached_blocks();
  [[noreturn]] void throw_out_of_memory(size_t requested);

  int device_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, Block*> live_;                   // ptr -> block in use
  std::unordered_map<kernels::Stream, Pool> pools_;          // free blocks by stream
  std::vector<std::pair<Block*, std::vector<std::shared_ptr<void>>>> pending_;  // freed, waiting on events
  AllocatorStats stats_;
  size_t memory_limit_ = 0;
};

CudaCachingAllocator& cuda_allocator(int device);

}  // namespace se
