// The emulator's CUDA runtime (memory, streams, events, errors, device properties) and the engine's
// wrapper of it, kernels/cuda/runtime.h.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/runtime.h"
#include "kernels/emu/emu.h"
#include "tests/emu/emu_test_kernels.h"

namespace se::emu::test {
namespace {

namespace rt = se::kernels::cuda;

TEST(CudaEmuRuntime, DeviceProperties) {
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  EXPECT_EQ(count, 1);
  cudaDeviceProp prop;
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_STREQ(prop.name, "segengine CUDA emulator");
  EXPECT_EQ(prop.warpSize, 32);
  EXPECT_EQ(prop.maxThreadsPerBlock, 1024);
  EXPECT_EQ(prop.sharedMemPerBlock, 48u * 1024);
  EXPECT_EQ(prop.sharedMemPerBlockOptin, 227u * 1024);
  EXPECT_EQ(prop.major, 9);
  EXPECT_GE(prop.multiProcessorCount, 1);
  int value = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0), cudaSuccess);
  EXPECT_EQ(value, 227 * 1024);
  EXPECT_EQ(cudaGetDeviceProperties(&prop, 1), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_STREQ(cudaGetErrorName(cudaErrorMemoryAllocation), "cudaErrorMemoryAllocation");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorMemoryAllocation), "out of memory");
}

TEST(CudaEmuRuntime, MallocTracksBytesAndOutOfMemoryIsReported) {
  const size_t before = device_bytes_in_use();
  void* a = nullptr;
  ASSERT_EQ(cudaMalloc(&a, 1000), cudaSuccess);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 256, 0u);
  EXPECT_EQ(device_bytes_in_use(), before + 1000);
  size_t free_bytes = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total), cudaSuccess);
  EXPECT_EQ(total - free_bytes, before + 1000);
  void* huge = nullptr;
  EXPECT_EQ(cudaMalloc(&huge, total), cudaErrorMemoryAllocation);  // more than is free
  EXPECT_EQ(huge, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaFree(a), cudaSuccess);
  EXPECT_EQ(device_bytes_in_use(), before);
  int not_device = 0;
  EXPECT_EQ(cudaFree(&not_device), cudaErrorInvalidValue);
  (void)cudaGetLastError();
}

TEST(CudaEmuRuntime, WrapperOutOfMemoryReturnsNullAndClearsTheError) {
  EXPECT_EQ(rt::device_malloc(size_t{1} << 60), nullptr);
  EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess);
  void* p = rt::device_malloc(64);
  ASSERT_NE(p, nullptr);
  rt::device_free(p);
}

TEST(CudaEmuRuntime, WrapperDeviceInfoAndVersions) {
  EXPECT_EQ(rt::device_count(), 1);
  const rt::DeviceInfo info = rt::device_info(0);
  EXPECT_TRUE(info.emulated);
  EXPECT_EQ(info.name, "segengine CUDA emulator");
  EXPECT_EQ(info.total_memory, size_t{16384} * 1024 * 1024);
  EXPECT_EQ(info.compute_capability_major, 9);
  EXPECT_EQ(info.shared_memory_per_block, 227u * 1024);
  EXPECT_STREQ(rt::build_kind(), "emulated");
  EXPECT_EQ(rt::runtime_version(), "13.0");
  EXPECT_EQ(rt::driver_version(), "13.0");
  rt::set_device(0);
  EXPECT_EQ(rt::current_device(), 0);
  EXPECT_THROW(rt::set_device(3), se::Error);
}

TEST(CudaEmuRuntime, CopiesMemsetsStreamsAndEvents) {
  const int n = 1 << 14;
  std::vector<float> host(n);
  for (int i = 0; i < n; ++i) host[i] = static_cast<float>(i);
  auto* pinned = static_cast<float*>(rt::pinned_host_malloc(n * sizeof(float)));
  auto* a = static_cast<float*>(rt::device_malloc(n * sizeof(float)));
  auto* b = static_cast<float*>(rt::device_malloc(n * sizeof(float)));
  rt::Stream stream = rt::stream_create();
  rt::Event start = rt::event_create(true), end = rt::event_create(true);

  rt::copy_host_to_device(a, host.data(), n * sizeof(float), stream);
  rt::copy_device_to_device(b, a, n * sizeof(float), stream);
  rt::copy_device_to_host(pinned, b, n * sizeof(float), stream);
  EXPECT_EQ(std::memcmp(pinned, host.data(), n * sizeof(float)), 0);
  rt::memset_device(b, 0, n * sizeof(float), stream);
  rt::copy_device_to_host(pinned, b, n * sizeof(float), stream);
  EXPECT_EQ(pinned[n - 1], 0.0f);

  rt::event_record(start, stream);
  const float first = run_busy_kernel(a, n, 200, stream);
  rt::event_record(end, stream);
  rt::stream_wait_event(nullptr, end);
  rt::event_synchronize(end);
  EXPECT_TRUE(rt::event_query(end));
  EXPECT_GT(rt::event_elapsed_ms(start, end), 0.0f);
  EXPECT_NE(first, 0.0f);
  rt::stream_synchronize(stream);
  rt::device_synchronize();

  rt::Event untimed = rt::event_create(false);
  rt::event_record(untimed, stream);
  EXPECT_THROW(rt::event_elapsed_ms(start, untimed), se::Error);
  rt::event_destroy(untimed);
  rt::event_destroy(start);
  rt::event_destroy(end);
  rt::stream_destroy(stream);
  rt::device_free(a);
  rt::device_free(b);
  rt::pinned_host_free(pinned);
}

TEST(CudaEmuRuntime, MemcpyRejectsABadDirection) {
  int x = 1, y = 0;
  EXPECT_EQ(cudaMemcpy(&y, &x, sizeof(int), cudaMemcpyDefault), cudaSuccess);
  EXPECT_EQ(y, 1);
  EXPECT_EQ(cudaMemcpy(&y, &x, sizeof(int), static_cast<cudaMemcpyKind>(7)), cudaErrorInvalidMemcpyDirection);
  (void)cudaGetLastError();
}

}  // namespace
}  // namespace se::emu::test
