// The CUDA runtime as the engine sees it: plain C++ declarations (no CUDA headers), implemented in
// runtime.cu, which compiles against the real CUDA runtime or against the emulator. engine/ talks to
// devices only through this header and the kernel family headers.
#pragma once

#include <cstddef>
#include <string>

#include "kernels/stream.h"

struct CUevent_st;  // cudaEvent_t is CUevent_st*

namespace se::kernels::cuda {

using se::kernels::Stream;
using Event = CUevent_st*;

struct DeviceInfo {
  std::string name;
  size_t total_memory = 0;          // bytes
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessor_count = 0;
  size_t shared_memory_per_block = 0;  // bytes, the opt-in maximum
  bool emulated = false;             // true when backed by the CPU emulator
};

// Number of devices; 0 when there is no driver or no device (never throws for that).
int device_count();
DeviceInfo device_info(int device);
void set_device(int device);
int current_device();
// "real", "emulated": how this library's CUDA code was built.
const char* build_kind();
// Runtime and driver versions as "13.0" strings; driver "none" without a driver.
std::string runtime_version();
std::string driver_version();

// Returns nullptr when the device is out of memory (the caller decides how to report it); throws
// se::Error for any other failure.
void* device_malloc(size_t bytes);
void device_free(void* ptr);
void* pinned_host_malloc(size_t bytes);
void pinned_host_free(void* ptr);

void copy_host_to_device(void* dst, const void* src, size_t bytes, Stream stream);
void copy_device_to_host(void* dst, const void* src, size_t bytes, Stream stream);  // synchronous
void copy_device_to_device(void* dst, const void* src, size_t bytes, Stream stream);
void memset_device(void* dst, int value, size_t bytes, Stream stream);

Stream stream_create();
void stream_destroy(Stream stream);
void stream_synchronize(Stream stream);
void stream_wait_event(Stream stream, Event event);
void device_synchronize();

Event event_create(bool enable_timing);
void event_destroy(Event event);
void event_record(Event event, Stream stream);
void event_synchronize(Event event);
bool event_query(Event event);  // true when the work before the event has completed
float event_elapsed_ms(Event start, Event end);

}  // namespace se::kernels::cuda
