// kernels/cuda/runtime.h on the CUDA runtime API: the same source serves the real build (nvcc, CUDA
// runtime) and the emulated one (the emulator's runtime in kernels/emu).
#include "kernels/cuda/runtime.h"

#include "kernels/cuda/common.cuh"

namespace se::kernels::cuda {
namespace {

std::string version_string(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

}  // namespace

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error of the caller's next CUDA call
    return 0;
  }
  return count;
}

DeviceInfo device_info(int device) {
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  DeviceInfo info;
  info.name = prop.name;
  info.total_memory = prop.totalGlobalMem;
  info.compute_capability_major = prop.major;
  info.compute_capability_minor = prop.minor;
  info.multiprocessor_count = prop.multiProcessorCount;
  info.shared_memory_per_block = prop.sharedMemPerBlockOptin;
#ifdef SEGENGINE_CUDA_EMU
  info.emulated = true;
#endif
  return info;
}

void set_device(int device) { CUDA_CHECK(cudaSetDevice(device)); }

int current_device() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

const char* build_kind() {
#ifdef SEGENGINE_CUDA_EMU
  return "emulated";
#else
  return "real";
#endif
}

std::string runtime_version() {
  int version = 0;
  CUDA_CHECK(cudaRuntimeGetVersion(&version));
  return version_string(version);
}

std::string driver_version() {
  int version = 0;
  if (cudaDriverGetVersion(&version) != cudaSuccess || version == 0) {
    (void)cudaGetLastError();
    return "none";
  }
  return version_string(version);
}

void* device_malloc(size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // out of memory is the caller's to report; keep it out of the sticky state
    return nullptr;
  }
  CUDA_CHECK(status);
  return ptr;
}

void device_free(void* ptr) { CUDA_CHECK(cudaFree(ptr)); }

void* pinned_host_malloc(size_t bytes) {
  void* ptr = nullptr;
  // Portable: page-locked for every device's context, so one buffer can feed copies to any GPU.
  CUDA_CHECK(cudaHostAlloc(&ptr, bytes, cudaHostAllocPortable));
  return ptr;
}

void pinned_host_free(void* ptr) { CUDA_CHECK(cudaFreeHost(ptr)); }

void copy_host_to_device(void* dst, const void* src, size_t bytes, Stream stream) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
}

void copy_device_to_host(void* dst, const void* src, size_t bytes, Stream stream) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes, Stream stream) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
}

void memset_device(void* dst, int value, size_t bytes, Stream stream) {
  CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, stream));
}

Stream stream_create() {
  cudaStream_t stream = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return stream;
}

void stream_destroy(Stream stream) { CUDA_CHECK(cudaStreamDestroy(stream)); }
void stream_synchronize(Stream stream) { CUDA_CHECK(cudaStreamSynchronize(stream)); }
void stream_wait_event(Stream stream, Event event) { CUDA_CHECK(cudaStreamWaitEvent(stream, event, 0)); }
void device_synchronize() { CUDA_CHECK(cudaDeviceSynchronize()); }

Event event_create(bool enable_timing) {
  cudaEvent_t event = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&event, enable_timing ? cudaEventDefault : cudaEventDisableTiming));
  return event;
}

void event_destroy(Event event) { CUDA_CHECK(cudaEventDestroy(event)); }
void event_record(Event event, Stream stream) { CUDA_CHECK(cudaEventRecord(event, stream)); }
void event_synchronize(Event event) { CUDA_CHECK(cudaEventSynchronize(event)); }

bool event_query(Event event) {
  const cudaError_t status = cudaEventQuery(event);
  if (status == cudaErrorNotReady) return false;
  CUDA_CHECK(status);
  return true;
}

float event_elapsed_ms(Event start, Event end) {
  float ms = 0.0f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start, end));
  return ms;
}

}  // namespace se::kernels::cuda
