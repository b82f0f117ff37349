// Device and pinned host memory of the emulated device: ordinary host memory, tracked so that cudaFree
// rejects unknown pointers and cudaMalloc fails with cudaErrorMemoryAllocation beyond the device's size
// (SEGENGINE_EMU_MEMORY_MB, default 16384). Copies and memsets run synchronously.
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "core/sanitizer.h"
#include "kernels/emu/src/internal.h"

namespace se::emu::detail {
namespace {

constexpr size_t kAlignment = 256;  // cudaMalloc's guarantee

struct Allocations {
  std::mutex mutex;
  std::unordered_map<void*, size_t> device;  // pointer -> bytes
  std::unordered_map<void*, size_t> host;
  size_t device_bytes = 0;
};

Allocations& allocations() {
  static Allocations* state = new Allocations;  // outlives static destructors that may still free memory
  return *state;
}

// ASan builds: the rounding past `bytes` is out of bounds, as past a cudaMalloc block for compute-sanitizer.
void* aligned_block(size_t bytes) {
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* block = std::aligned_alloc(kAlignment, rounded);
  if (block != nullptr) se::asan::hand_out(block, bytes, rounded);
  return block;
}

bool valid_kind(cudaMemcpyKind kind) {
  return kind == cudaMemcpyHostToHost || kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToHost ||
         kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyDefault;
}

}  // namespace

size_t total_memory_bytes() {
  static const size_t bytes = [] {
    size_t mib = 16384;
    if (const char* env = std::getenv("SEGENGINE_EMU_MEMORY_MB")) {
      const long long value = std::strtoll(env, nullptr, 10);
      if (value > 0) mib = static_cast<size_t>(value);
    }
    return mib * 1024 * 1024;
  }();
  return bytes;
}

}  // namespace se::emu::detail

using se::emu::detail::allocations;
using se::emu::detail::record;

size_t se::emu::device_bytes_in_use() {
  std::lock_guard<std::mutex> lock(allocations().mutex);
  return allocations().device_bytes;
}

size_t se::emu::device_allocation_count() {
  std::lock_guard<std::mutex> lock(allocations().mutex);
  return allocations().device.size();
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (ptr == nullptr) return record(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  auto& state = allocations();
  std::lock_guard<std::mutex> lock(state.mutex);
  if (bytes > se::emu::detail::total_memory_bytes() - state.device_bytes) return record(cudaErrorMemoryAllocation);
  void* block = se::emu::detail::aligned_block(bytes);
  if (block == nullptr) return record(cudaErrorMemoryAllocation);
  state.device.emplace(block, bytes);
  state.device_bytes += bytes;
  *ptr = block;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  auto& state = allocations();
  std::lock_guard<std::mutex> lock(state.mutex);
  auto found = state.device.find(ptr);
  if (found == state.device.end()) return record(cudaErrorInvalidValue);
  state.device_bytes -= found->second;
  state.device.erase(found);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int) {
  if (ptr == nullptr) return record(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  void* block = se::emu::detail::aligned_block(bytes);
  if (block == nullptr) return record(cudaErrorMemoryAllocation);
  auto& state = allocations();
  std::lock_guard<std::mutex> lock(state.mutex);
  state.host.emplace(block, bytes);
  *ptr = block;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) { return cudaHostAlloc(ptr, bytes, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  auto& state = allocations();
  std::lock_guard<std::mutex> lock(state.mutex);
  if (state.host.erase(ptr) == 0) return record(cudaErrorInvalidValue);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return record(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(allocations().mutex);
  *total_bytes = se::emu::detail::total_memory_bytes();
  *free_bytes = *total_bytes - allocations().device_bytes;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (!se::emu::detail::valid_kind(kind)) return record(cudaErrorInvalidMemcpyDirection);
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return record(cudaErrorInvalidValue);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr) return record(cudaErrorInvalidValue);
  std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) { return cudaMemset(dst, value, bytes); }

cudaError_t cudaMemcpyToSymbol(const void* symbol, const void* src, size_t bytes, size_t offset, cudaMemcpyKind kind) {
  return cudaMemcpy(static_cast<char*>(const_cast<void*>(symbol)) + offset, src, bytes, kind);
}

cudaError_t cudaMemcpyFromSymbol(void* dst, const void* symbol, size_t bytes, size_t offset, cudaMemcpyKind kind) {
  return cudaMemcpy(dst, static_cast<const char*>(symbol) + offset, bytes, kind);
}
