// Pinned (page-locked) host memory for fast, asynchronous host-to-device copies. cudaHostAlloc is slow
// (it maps pages for the device) and synchronises the device, so freed blocks are cached and reused.
// A block read by an asynchronous copy must outlive that copy: record_stream() notes the stream a copy
// was queued on, and a freed block is reused only after the work queued on those streams up to the
// free has finished (an event per stream, checked without blocking at the next allocation).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/allocator.h"
#include "kernels/stream.h"

namespace se {

class PinnedHostAllocator {
 public:
  PinnedHostAllocator() = default;
  ~PinnedHostAllocator();
  PinnedHostAllocator(const PinnedHostAllocator&) = delete;
  PinnedHostAllocator& operator=(const PinnedHostAllocator&) = delete;

  // A page-locked block of at least `bytes`, from the cache when one fits. Throws se::Error in a build
  // without CUDA or when the host cannot pin that much.
  void* allocate(size_t bytes);
  // Back to the cache; reusable once the streams recorded for it have passed this point.
  void free(void* ptr);
  // The block is used by work queued on `stream` of cuda:`device` (e.g. an asynchronous copy from it).
  void record_stream(void* ptr, int device, kernels::Stream stream);
  // True for the start of a block this allocator handed out and that is still in use.
  bool owns(const void* ptr) const;
  // Unpins and frees every cached block (waits for pending copies first).
  void empty_cache();

  // allocated: held by live blocks; reserved: pinned in all (allocated + cached + pending);
  // device_mallocs/frees count cudaHostAlloc/cudaFreeHost calls.
  AllocatorStats stats() const;

  // Rounds requests up to a power of two (at least 4 KiB) so that the varying batch shapes of a loader
  // reuse a handful of blocks.
  static size_t round_size(size_t bytes);

 private:
  struct Block {
    void* ptr = nullptr;
    size_t size = 0;
    std::vector<std::pair<int, kernels::Stream>> streams;  // (device, stream) that used it
  };
  struct Pending {
    Block* block = nullptr;
    std::vector<std::shared_ptr<void>> events;  // recorded at free() on each stream of the block
  };

  void process_pending();
  void release_cached();

  mutable std::mutex mutex_;
  std::unordered_map<const void*, Block*> live_;
  std::multimap<size_t, Block*> cached_;  // size -> free block
  std::vector<Pending> pending_;
  AllocatorStats stats_;
};

PinnedHostAllocator& pinned_host_allocator();

}  // namespace se
