// Reference-counted memory behind one or more tensors (views share it). The version counter counts
// in-place writes, so autograd can tell that a tensor saved for backward was modified since.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "engine/device.h"

namespace se {

class Storage {
 public:
  // Allocates `nbytes` on `device`; on CUDA, in stream order on the device's current stream.
  Storage(size_t nbytes, Device device);
  // Page-locked host memory (device must be the CPU) from the pinned host allocator, when `pinned`.
  Storage(size_t nbytes, Device device, bool pinned);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }

  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  bool pinned_ = false;
  std::atomic<uint64_t> version_{0};
};

}  // namespace se
