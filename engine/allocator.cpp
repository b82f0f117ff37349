#include "engine/allocator.h"

#include <cstdio>
#include <string>

#include "core/error.h"
#include "core/sanitizer.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace se {

namespace {
constexpr size_t kSmallBlock = 1 << 20;    // below 1 MiB: round to 512 B
constexpr size_t kSmallRounding = 512;
constexpr size_t kLargeRounding = 2 << 20;  // 1 MiB and above: round to 2 MiB
}  // namespace

std::string format_bytes(size_t bytes) {
  char text[64];
  if (bytes >= (size_t{1} << 30)) {
    std::snprintf(text, sizeof(text), "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  } else if (bytes >= (size_t{1} << 20)) {
    std::snprintf(text, sizeof(text), "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  } else {
    std::snprintf(text, sizeof(text), "%zu bytes", bytes);
  }
  return text;
}

size_t CudaCachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) return kSmallRounding;
  if (bytes < kSmallBlock) return (bytes + kSmallRounding - 1) / kSmallRounding * kSmallRounding;
  return (bytes + kLargeRounding - 1) / kLargeRounding * kLargeRounding;
}

CudaCachingAllocator::CudaCachingAllocator(int device) : device_(device) {}

CudaCachingAllocator::~CudaCachingAllocator() {
  // The device memory is left to the driver (the process-wide allocators are never destroyed; freeing
  // could race with runtime teardown); only the bookkeeping goes.
  for (auto& [ptr, block] : live_) delete block;
  for (auto& [stream, pool] : pools_) {
    for (auto& [size, block] : pool) delete block;
  }
  for (auto& [block, events] : pending_) delete block;
}

void* CudaCachingAllocator::take_cached(size_t size, kernels::Stream stream) {
  auto pool_it = pools_.find(stream);
  if (pool_it == pools_.end()) return nullptr;
  Pool& pool = pool_it->second;
  auto it = pool.lower_bound(size);
  // Best fit, but never hand a large block to a much smaller request (no splitting: bounded waste).
  if (it == pool.end() || it->first > 2 * size) return nullptr;
  Block* block = it->second;
  pool.erase(it);
  live_[block->ptr] = block;
  return block->ptr;
}

void* CudaCachingAllocator::allocate(size_t bytes, kernels::Stream stream) {
#ifndef SEGENGINE_HAS_CUDA
  SE_THROW("cuda allocator: this build has CUDA off");
#else
  std::lock_guard<std::mutex> lock(mutex_);
  size_t size = round_size(bytes);
  process_pending_frees();
  ++stats_.allocations;
  void* ptr = take_cached(size, stream);
  if (ptr != nullptr) {
    ++stats_.cache_hits;
  } else {
    bool over_limit = memory_limit_ != 0 && stats_.reserved_bytes + size > memory_limit_;
    if (!over_limit) {
      kernels::cuda::set_device(device_);
      ptr = kernels::cuda::device_malloc(size);
    }
    if (ptr == nullptr) {
      // Out of memory: give the cache back to the device and try once more.
      release_cached_blocks();
      over_limit = memory_limit_ != 0 && stats_.reserved_bytes + size > memory_limit_;
      if (!over_limit) ptr = kernels::cuda::device_malloc(size);
      if (ptr == nullptr) throw_out_of_memory(bytes);
    }
    ++stats_.device_mallocs;
    stats_.reserved_bytes += size;
    stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
    auto* block = new Block{ptr, size, stream, {}};
    live_[ptr] = block;
  }
  stats_.allocated_bytes += live_[ptr]->size;  // a cached block may be larger than `size`
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  static const bool poison = poison_from_environment();
  asan::unpoison(ptr, live_[ptr]->size);  // (the emulator's device memory is host memory) a cached block is poisoned
  if (poison) kernels::cuda::memset_device(ptr, 0xFF, live_[ptr]->size, stream);
  asan::hand_out(ptr, bytes, live_[ptr]->size);
  return ptr;
#endif
}

void CudaCachingAllocator::free(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  SE_CHECK(it != live_.end(), "cuda allocator: free of pointer ", ptr, " that this allocator did not hand out");
  Block* block = it->second;
  live_.erase(it);
  stats_.allocated_bytes -= block->size;
  // ASan builds are emulated, where every launch has finished by now: a later use of the block is a
  // use after free.
  asan::poison(block->ptr, block->size);
#ifdef SEGENGINE_HAS_CUDA
  if (!block->other_streams.empty()) {
    // Used on other streams too: reusable only when their work up to now has finished.
    std::vector<std::shared_ptr<void>> events;
    kernels::cuda::set_device(device_);
    for (kernels::Stream other : block->other_streams) {
      auto* event = kernels::cuda::event_create(false);
      kernels::cuda::event_record(event, other);
      events.emplace_back(event, [](void* e) { kernels::cuda::event_destroy(static_cast<kernels::cuda::Event>(e)); });
    }
    block->other_streams.clear();
    pending_.emplace_back(block, std::move(events));
    return;
  }
#endif
  pools_[block->stream].emplace(block->size, block);
}

void CudaCachingAllocator::record_stream(void* ptr, kernels::Stream stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  SE_CHECK(it != live_.end(), "cuda allocator: record_stream on pointer ", ptr, " that is not allocated");
  Block* block = it->second;
  if (stream == block->stream) return;
  for (kernels::Stream s : block->other_streams) {
    if (s == stream) return;
  }
  block->other_streams.push_back(stream);
}

void CudaCachingAllocator::process_pending_frees() {
#ifdef SEGENGINE_HAS_CUDA
  for (size_t i = 0; i < pending_.size();) {
    bool done = true;
    for (auto& event : pending_[i].second) {
      done = done && kernels::cuda::event_query(static_cast<kernels::cuda::Event>(event.get()));
    }
    if (done) {
      Block* block = pending_[i].first;
      pools_[block->stream].emplace(block->size, block);
      pending_[i] = std::move(pending_.back());
      pending_.pop_back();
    } else {
      ++i;
    }
  }
#endif
}

void CudaCachingAllocator::release_cached_blocks() {
#ifdef SEGENGINE_HAS_CUDA
  if (!pending_.empty()) {
    kernels::cuda::device_synchronize();
    process_pending_frees();
  }
  kernels::cuda::set_device(device_);
  for (auto& [stream, pool] : pools_) {
    for (auto& [size, block] : pool) {
      asan::unpoison(block->ptr, block->size);
      kernels::cuda::device_free(block->ptr);
      ++stats_.device_frees;
      stats_.reserved_bytes -= block->size;
      delete block;
    }
  }
  pools_.clear();
#endif
}

void CudaCachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_blocks();
}

void CudaCachingAllocator::throw_out_of_memory(size_t requested) {
  std::string limit = memory_limit_ != 0 ? ", limit " + format_bytes(memory_limit_) : "";
  size_t total = 0;
#ifdef SEGENGINE_HAS_CUDA
  total = kernels::cuda::device_info(device_).total_memory;
#endif
  SE_THROW("cuda allocator: out of memory on cuda:", device_, ": tried to allocate ", format_bytes(requested),
           "; allocated ", format_bytes(stats_.allocated_bytes), ", reserved ", format_bytes(stats_.reserved_bytes),
           ", peak allocated ", format_bytes(stats_.peak_allocated_bytes), ", device total ", format_bytes(total),
           limit);
}

AllocatorStats CudaCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CudaCachingAllocator::reset_peak_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

void CudaCachingAllocator::set_memory_limit(size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  memory_limit_ = bytes;
}

CudaCachingAllocator& cuda_allocator(int device) {
  check_device(Device::cuda(device), "cuda_allocator");
  static std::mutex mutex;
  // Never destroyed (as the pinned host allocator): tensors in static storage are freed during static
  // destruction, maybe after a static allocator would have gone; and the blocks they and the cache hold
  // stay reachable, not leaks, for LeakSanitizer.
  static auto* allocators = new std::vector<CudaCachingAllocator*>();
  std::lock_guard<std::mutex> lock(mutex);
  if (allocators->size() <= static_cast<size_t>(device)) allocators->resize(device + 1, nullptr);
  if ((*allocators)[device] == nullptr) (*allocators)[device] = new CudaCachingAllocator(device);
  return *(*allocators)[device];
}

}  // namespace se
