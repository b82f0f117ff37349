// Memory for tensor storage. The CPU allocator caches the blocks of 1 MiB and more (see
// CpuCachingAllocator). The CUDA allocator is a stream-ordered caching allocator: freed blocks go
// back to a pool of the stream they were used on and are reused without cudaFree/cudaMalloc or any
// host synchronisation, because later work on that stream is ordered after the earlier users.
#pragma once

#include <atomic>
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

struct AllocatorStats {
  size_t allocated_bytes = 0;       // held by live tensors (rounded sizes)
  size_t reserved_bytes = 0;        // obtained from the device (allocated + cached)
  size_t peak_allocated_bytes = 0;  // high-water mark of allocated_bytes since the last reset
  size_t peak_reserved_bytes = 0;
  uint64_t allocations = 0;         // allocate() calls
  uint64_t cache_hits = 0;          // allocate() calls served from the cache
  uint64_t device_mallocs = 0;      // calls to the device malloc (CPU: blocks obtained from the system)
  uint64_t device_frees = 0;        // blocks given back
};

// "12.50 MiB", for the allocators' messages.
std::string format_bytes(size_t bytes);

// Host memory for CPU tensors, 64-byte aligned. Blocks under 1 MiB come from malloc, whose arenas
// reuse them without system calls. Blocks of 1 MiB and more (rounded to 2 MiB multiples, the size
// classes) are mapped by the allocator and, when freed, kept in a cache for a later allocation of
// at least half their size (best fit): a training step frees and allocates the same activation
// sizes every iteration, and giving them back to the kernel, as glibc does above its mmap
// threshold, meant zero-filling page faults on every first touch of every step (30 % of a
// SegFormer-B0 CPU step). The cache is bounded: before mapping a new block, the least
// recently freed cached blocks are unmapped until reserved bytes (held + cached, large blocks)
// fit in 1.5x the most the large blocks have ever held, so the cache adds at most half the
// program's own peak, and a change of sizes (eval after training) does not pile blocks up.
class CpuCachingAllocator {
 public:
  static constexpr size_t kAlignment = 64;            // a cache line, a full AVX-512 vector
  static constexpr size_t kCachedMin = size_t{1} << 20;
  static constexpr size_t kBlockRounding = size_t{2} << 20;

  explicit CpuCachingAllocator(bool caching, bool poison = false);  // poison: see poison_from_environment
  ~CpuCachingAllocator();  // unmaps the cached blocks; blocks still held must have been freed
  CpuCachingAllocator(const CpuCachingAllocator&) = delete;
  CpuCachingAllocator& operator=(const CpuCachingAllocator&) = delete;

  void* allocate(size_t bytes);           // throws se::Error when the host is out of memory
  void free(void* ptr, size_t bytes);     // `bytes` as passed to allocate
  void empty_cache();                     // gives every cached block back to the system
  void set_caching(bool enabled);         // false also empties the cache
  AllocatorStats stats() const;
  void reset_peak_stats();

  static size_t round_size(size_t bytes);

 private:
  struct CachedBlock {
    void* ptr;
    size_t size;
  };
  void* allocate_large(size_t& size, size_t bytes);
  void hold(void* ptr, size_t size);
  size_t free_large(void* ptr);
  void evict_until(size_t cached_bytes);
  void* map_block(size_t size);
  void unmap_block(void* ptr, size_t size);
  void note_allocated(size_t size);

  const bool poison_;
  // Small blocks touch only the atomics (every thread allocates); large ones take the mutex, under
  // which alone cached_bytes_ changes.
  std::atomic<size_t> allocated_bytes_{0};
  std::atomic<size_t> peak_allocated_bytes_{0};
  std::atomic<size_t> cached_bytes_{0};
  std::atomic<size_t> peak_reserved_bytes_{0};
  std::atomic<uint64_t> allocations_{0};
  std::atomic<uint64_t> system_allocations_{0};
  std::atomic<uint64_t> system_frees_{0};

  mutable std::mutex mutex_;
  bool caching_;
  std::unordered_map<void*, size_t> held_block_size_;  // large blocks in use -> their mapped size
  std::map<uint64_t, CachedBlock> cached_by_age_;      // free order -> cached block
  std::multimap<size_t, uint64_t> cached_by_size_;     // size -> free order of a cached block
  uint64_t next_age_ = 0;
  size_t held_large_bytes_ = 0;       // mapped bytes of the large blocks in use
  size_t peak_held_large_bytes_ = 0;  // never reset: the cache's bound
  uint64_t cache_hits_ = 0;
};

// SEGENGINE_CPU_CACHE: unset or 1 caches (the default), 0 does not (every large block goes back to
// the system when freed: for memory checkers, and hosts short of memory). Throws se::Error naming
// the variable for any other value.
bool cpu_caching_from_environment();

// SEGENGINE_POISON=1: the CPU and CUDA allocators fill every block they hand out with 0xFF bytes first
// (NaN in every float dtype, -1 in the integer ones), so that a kernel that reads memory it has not
// written gives NaN in every run, rather than whatever the block held (zeros from a fresh mapping, an
// earlier tensor's values from a cache: a real GPU's cudaMalloc gives garbage too). `make test` runs
// the suites so. Unset or 0: off; throws se::Error naming the variable for any other value.
bool poison_from_environment();

// The process's CPU allocator (caching and poison as the environment says), and shorthands for it.
CpuCachingAllocator& cpu_allocator();
void* cpu_allocate(size_t bytes);
void cpu_free(void* ptr, size_t bytes);
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
