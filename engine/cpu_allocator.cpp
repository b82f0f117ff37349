// The CPU tensor allocator; engine/allocator.h says why large blocks are cached and how the cache
// is bounded.
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>

#include "core/error.h"
#include "core/sanitizer.h"
#include "engine/allocator.h"

namespace se {

CpuCachingAllocator::CpuCachingAllocator(bool caching, bool poison) : poison_(poison), caching_(caching) {}

CpuCachingAllocator::~CpuCachingAllocator() { empty_cache(); }

size_t CpuCachingAllocator::round_size(size_t bytes) {
  if (bytes >= kCachedMin) return (bytes + kBlockRounding - 1) / kBlockRounding * kBlockRounding;
  return bytes == 0 ? kAlignment : (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

void* CpuCachingAllocator::allocate(size_t bytes) {
  size_t size = round_size(bytes);
  void* ptr = nullptr;
  if (bytes >= kCachedMin) {
    ptr = allocate_large(size, bytes);  // sets `size` to the block's: a cached block may be larger
  } else {
    ptr = std::aligned_alloc(kAlignment, size);
    SE_CHECK(ptr != nullptr, "cpu allocator: out of host memory allocating ", format_bytes(bytes));
    system_allocations_.fetch_add(1);
  }
  note_allocated(size);
  asan::unpoison(ptr, size);  // a cached block is poisoned while it waits
  if (poison_) std::memset(ptr, 0xFF, size);
  asan::hand_out(ptr, bytes, size);  // ASan: the rounding past `bytes` is out of bounds
  return ptr;
}

void CpuCachingAllocator::free(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  size_t size = round_size(bytes);
  if (bytes >= kCachedMin) {
    size = free_large(ptr);
  } else {
    std::free(ptr);
    system_frees_.fetch_add(1);
  }
  allocated_bytes_.fetch_sub(size);
}

void* CpuCachingAllocator::allocate_large(size_t& size, size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Best fit, never more than twice the size (the CUDA allocator's rule: bounded waste); among
  // equal sizes the most recently freed (the multimap keeps insertion order), whose pages the
  // caches may still hold.
  auto fit = cached_by_size_.lower_bound(size);
  if (fit != cached_by_size_.end() && fit->first <= 2 * size) {
    fit = std::prev(cached_by_size_.upper_bound(fit->first));
    const uint64_t age = fit->second;
    const CachedBlock block = cached_by_age_.at(age);
    cached_by_age_.erase(age);
    cached_by_size_.erase(fit);
    cached_bytes_.fetch_sub(block.size);
    ++cache_hits_;
    size = block.size;
    hold(block.ptr, size);
    return block.ptr;
  }
  const size_t held_after = held_large_bytes_ + size;
  const size_t cap = std::max(peak_held_large_bytes_, held_after) * 3 / 2;
  evict_until(cap - held_after);
  void* ptr = map_block(size);
  if (ptr == nullptr && !cached_by_age_.empty()) {
    evict_until(0);  // the host is short of memory: give the whole cache back and try again
    ptr = map_block(size);
  }
  SE_CHECK(ptr != nullptr, "cpu allocator: out of host memory allocating ", format_bytes(bytes), " (",
           format_bytes(allocated_bytes_.load()), " already allocated by tensors)");
  hold(ptr, size);
  return ptr;
}

void CpuCachingAllocator::hold(void* ptr, size_t size) {
  held_block_size_[ptr] = size;
  held_large_bytes_ += size;
  peak_held_large_bytes_ = std::max(peak_held_large_bytes_, held_large_bytes_);
}

size_t CpuCachingAllocator::free_large(void* ptr) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = held_block_size_.find(ptr);
  SE_CHECK(it != held_block_size_.end(), "cpu allocator: free of pointer ", ptr,
           " that this allocator did not hand out as a block of 1 MiB or more");
  const size_t block_size = it->second;
  held_block_size_.erase(it);
  held_large_bytes_ -= block_size;
  if (caching_) {
    const uint64_t age = next_age_++;
    cached_by_age_.emplace(age, CachedBlock{ptr, block_size});
    cached_by_size_.emplace(block_size, age);
    cached_bytes_.fetch_add(block_size);
    asan::poison(ptr, block_size);  // a use after free lands in a cached block
  } else {
    unmap_block(ptr, block_size);
  }
  return block_size;
}

// Unmaps cached blocks, least recently freed first, until at most `cached_bytes` stay cached.
void CpuCachingAllocator::evict_until(size_t cached_bytes) {
  while (cached_bytes_.load() > cached_bytes && !cached_by_age_.empty()) {
    auto oldest = cached_by_age_.begin();
    const CachedBlock block = oldest->second;
    auto [first, last] = cached_by_size_.equal_range(block.size);
    for (auto it = first; it != last; ++it) {
      if (it->second == oldest->first) {
        cached_by_size_.erase(it);
        break;
      }
    }
    cached_by_age_.erase(oldest);
    cached_bytes_.fetch_sub(block.size);
    unmap_block(block.ptr, block.size);
  }
}

// `size` fresh (zero) bytes, page aligned, or nullptr. No MADV_HUGEPAGE: with transparent huge
// pages the kernel compacts memory at first touch, which cost seconds of system time on some runs
// of a few training steps and nothing measurable in the steps after.
void* CpuCachingAllocator::map_block(size_t size) {
  void* ptr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ptr == MAP_FAILED) return nullptr;
  system_allocations_.fetch_add(1);
  return ptr;
}

void CpuCachingAllocator::unmap_block(void* ptr, size_t size) {
  asan::unpoison(ptr, size);
  munmap(ptr, size);  // fails only for arguments that map_block did not produce
  system_frees_.fetch_add(1);
}

void CpuCachingAllocator::note_allocated(size_t size) {
  allocations_.fetch_add(1);
  const size_t now = allocated_bytes_.fetch_add(size) + size;
  size_t peak = peak_allocated_bytes_.load();
  while (now > peak && !peak_allocated_bytes_.compare_exchange_weak(peak, now)) {
  }
  const size_t reserved = now + cached_bytes_.load();
  size_t peak_reserved = peak_reserved_bytes_.load();
  while (reserved > peak_reserved && !peak_reserved_bytes_.compare_exchange_weak(peak_reserved, reserved)) {
  }
}

void CpuCachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  evict_until(0);
}

void CpuCachingAllocator::set_caching(bool enabled) {
  std::lock_guard<std::mutex> lock(mutex_);
  caching_ = enabled;
  if (!enabled) evict_until(0);
}

AllocatorStats CpuCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  AllocatorStats stats;
  stats.allocated_bytes = allocated_bytes_.load();
  stats.reserved_bytes = stats.allocated_bytes + cached_bytes_.load();
  stats.peak_allocated_bytes = peak_allocated_bytes_.load();
  stats.peak_reserved_bytes = std::max(peak_reserved_bytes_.load(), stats.reserved_bytes);
  stats.allocations = allocations_.load();
  stats.cache_hits = cache_hits_;
  stats.device_mallocs = system_allocations_.load();
  stats.device_frees = system_frees_.load();
  return stats;
}

void CpuCachingAllocator::reset_peak_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  peak_allocated_bytes_.store(allocated_bytes_.load());
  peak_reserved_bytes_.store(allocated_bytes_.load() + cached_bytes_.load());
}

namespace {

// An on/off environment variable: unset gives `unset`, "1" on, "0" off, anything else an error that
// says what 1 means.
bool environment_switch(const char* name, bool unset, const char* what_1_means) {
  const char* env = std::getenv(name);
  if (env == nullptr) return unset;
  const std::string value = env;
  SE_CHECK(value == "0" || value == "1", name, "='", value, "': expected 1 (", what_1_means, ") or 0");
  return value == "1";
}

}  // namespace

bool cpu_caching_from_environment() {
  return environment_switch("SEGENGINE_CPU_CACHE", true, "cache freed host blocks of 1 MiB and more, the default");
}

bool poison_from_environment() {
  return environment_switch("SEGENGINE_POISON", false, "fill every new tensor's memory with 0xFF bytes");
}

CpuCachingAllocator& cpu_allocator() {
  // Never destroyed: tensors in static objects may be freed after static destruction began.
  static CpuCachingAllocator* allocator =
      new CpuCachingAllocator(cpu_caching_from_environment(), poison_from_environment());
  return *allocator;
}

void* cpu_allocate(size_t bytes) { return cpu_allocator().allocate(bytes); }
void cpu_free(void* ptr, size_t bytes) { cpu_allocator().free(ptr, bytes); }
AllocatorStats cpu_allocator_stats() { return cpu_allocator().stats(); }
void cpu_reset_peak_stats() { cpu_allocator().reset_peak_stats(); }

}  // namespace se
