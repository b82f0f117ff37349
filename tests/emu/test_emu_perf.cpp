// Timings of the emulator, printed for the record (no timed assertions; speed targets live in benchmarks):
// launch overhead of an empty kernel, cost of a __syncthreads per thread, a 256^3 tiled SGEMM.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "tests/emu/emu_test_kernels.h"

namespace se::emu::test {
namespace {

template <typename F>
double seconds(F&& f, int repeats) {
  f();  // warm up: thread pool, fiber stacks
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
}

TEST(CudaEmuPerf, PrintTimings) {
  const double empty_1x32 = seconds([] { launch_empty({1, 1, 1}, {32, 1, 1}); }, 2000);
  const double empty_64x256 = seconds([] { launch_empty({64, 1, 1}, {256, 1, 1}); }, 200);
  const int barriers = 200;
  const double sync = seconds([&] { launch_barriers(256, barriers); }, 20);

  const int n = 256;
  std::vector<float> host(n * n, 1.0f);
  float *a, *b, *c;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&a), host.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&b), host.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&c), host.size() * 4), cudaSuccess);
  cudaMemcpy(a, host.data(), host.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(b, host.data(), host.size() * 4, cudaMemcpyHostToDevice);
  const double sgemm = seconds([&] { sgemm_tiled(a, b, c, n, n, n); }, 3);
  cudaMemcpy(host.data(), c, 4, cudaMemcpyDeviceToHost);
  EXPECT_EQ(host[0], static_cast<float>(n));
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);

  std::printf("segengine-emu timings:\n");
  std::printf("  empty kernel launch, 1 x 32 threads:      %8.2f us\n", empty_1x32 * 1e6);
  std::printf("  empty kernel launch, 64 x 256 threads:    %8.2f us (%.1f ns per thread)\n", empty_64x256 * 1e6,
              empty_64x256 * 1e9 / (64 * 256));
  std::printf("  __syncthreads, 256 threads:               %8.2f ns per thread per barrier\n",
              sync * 1e9 / (barriers * 256.0));
  std::printf("  SGEMM 256^3, 16x16 shared-memory tiles:   %8.2f ms (%.2f GFLOP/s)\n", sgemm * 1e3,
              2.0 * n * n * n / sgemm * 1e-9);
}

}  // namespace
}  // namespace se::emu::test
