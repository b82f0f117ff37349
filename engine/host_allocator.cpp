#include "engine/host_allocator.h"

#include <algorithm>

#include "core/error.h"
#include "core/sanitizer.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace se {

namespace {
constexpr size_t kMinPinnedBlock = 4096;  // one page
}  // namespace

size_t PinnedHostAllocator::round_size(size_t bytes) {
  size_t size = kMinPinnedBlock;
  while (size < bytes) size *= 2;
  return size;
}

PinnedHostAllocator::~PinnedHostAllocator() {
  // Blocks still live are leaked on purpose (their tensors outlive this allocator); the process-wide
  // allocator is never destroyed, so this runs only for allocators a test made.
  release_cached();
}

void* PinnedHostAllocator::allocate(size_t bytes) {
#ifndef SEGENGINE_HAS_CUDA
  (void)bytes;
  SE_THROW("pinned host memory needs a build with CUDA (this one has CUDA off)");
#else
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  process_pending();
  ++stats_.allocations;
  Block* block = nullptr;
  // The smallest cached block that fits; sizes are powers of two, so at most the next size up.
  auto it = cached_.lower_bound(size);
  if (it != cached_.end() && it->first <= 2 * size) {
    block = it->second;
    cached_.erase(it);
    ++stats_.cache_hits;
  } else {
    void* ptr = nullptr;
    try {
      ptr = kernels::cuda::pinned_host_malloc(size);
    } catch (const Error&) {
      // Maybe the cache holds the memory: give it back and try once more.
      release_cached();
      try {
        ptr = kernels::cuda::pinned_host_malloc(size);
      } catch (const Error& e) {
        SE_THROW("pinned host allocator: cannot pin ", size, " bytes (", stats_.reserved_bytes,
                 " bytes pinned already): ", e.what());
      }
    }
    block = new Block{ptr, size, {}};
    ++stats_.device_mallocs;
    stats_.reserved_bytes += size;
    stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  }
  live_[block->ptr] = block;
  stats_.allocated_bytes += block->size;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  asan::hand_out(block->ptr, bytes, block->size);
  return block->ptr;
#endif
}

void PinnedHostAllocator::free(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  SE_CHECK(it != live_.end(), "pinned host allocator: free of pointer ", ptr, " that it did not hand out");
  Block* block = it->second;
  live_.erase(it);
  stats_.allocated_bytes -= block->size;
  asan::poison(block->ptr, block->size);  // ASan builds are emulated: queued copies have run
#ifdef SEGENGINE_HAS_CUDA
  if (!block->streams.empty()) {
    // Copies from this block may still be queued: reusable only once the streams pass this point.
    Pending pending{block, {}};
    const int current_device = kernels::cuda::current_device();  // events belong to their stream's device
    for (const auto& [device, stream] : block->streams) {
      kernels::cuda::set_device(device);
      auto* event = kernels::cuda::event_create(false);
      kernels::cuda::event_record(event, stream);
      pending.events.emplace_back(event,
                                  [](void* e) { kernels::cuda::event_destroy(static_cast<kernels::cuda::Event>(e)); });
    }
    kernels::cuda::set_device(current_device);
    block->streams.clear();
    pending_.push_back(std::move(pending));
    return;
  }
#endif
  cached_.emplace(block->size, block);
}

void PinnedHostAllocator::record_stream(void* ptr, int device, kernels::Stream stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  SE_CHECK(it != live_.end(), "pinned host allocator: record_stream on pointer ", ptr, " that is not a live pinned block");
  auto& streams = it->second->streams;
  const std::pair<int, kernels::Stream> use{device, stream};
  if (std::find(streams.begin(), streams.end(), use) == streams.end()) streams.push_back(use);
}

bool PinnedHostAllocator::owns(const void* ptr) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return live_.count(ptr) > 0;
}

void PinnedHostAllocator::process_pending() {
#ifdef SEGENGINE_HAS_CUDA
  for (size_t i = 0; i < pending_.size();) {
    const bool done = std::all_of(pending_[i].events.begin(), pending_[i].events.end(), [](const auto& event) {
      return kernels::cuda::event_query(static_cast<kernels::cuda::Event>(event.get()));
    });
    if (done) {
      cached_.emplace(pending_[i].block->size, pending_[i].block);
      pending_[i] = std::move(pending_.back());
      pending_.pop_back();
    } else {
      ++i;
    }
  }
#endif
}

void PinnedHostAllocator::release_cached() {
#ifdef SEGENGINE_HAS_CUDA
  for (Pending& pending : pending_) {
    for (auto& event : pending.events) kernels::cuda::event_synchronize(static_cast<kernels::cuda::Event>(event.get()));
  }
  process_pending();
  for (auto& [size, block] : cached_) {
    asan::unpoison(block->ptr, block->size);
    kernels::cuda::pinned_host_free(block->ptr);
    ++stats_.device_frees;
    stats_.reserved_bytes -= block->size;
    delete block;
  }
  cached_.clear();
#endif
}

void PinnedHostAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached();
}

AllocatorStats PinnedHostAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

PinnedHostAllocator& pinned_host_allocator() {
  // Never destroyed: pinned tensors may be freed during static destruction, and calling into the CUDA
  // runtime at process exit could race with its teardown (the OS reclaims the memory).
  static PinnedHostAllocator* allocator = new PinnedHostAllocator();
  return *allocator;
}

}  // namespace se
