// The emulator's numerics: __half/__nv_bfloat16 arithmetic and intrinsics, WMMA, fast-math and integer
// intrinsics, a tiled SGEMM. Tolerances follow the 16-bit types' precision.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cmath>
#include <vector>

#include "core/half.h"
#include "tests/emu/emu_test_kernels.h"

namespace se::emu::test {
namespace {

float round16(float x, bool bf16) { return bf16 ? static_cast<float>(se::bf16(x)) : static_cast<float>(se::f16(x)); }

void check_half_ops(bool bf16) {
  const std::vector<float> a = {1.5f, -2.25f, 3.0f, 0.125f, 7.75f, -0.5f};
  const std::vector<float> b = {0.5f, 4.0f, -1.5f, 2.0f, 0.25f, -3.0f};
  const std::vector<float> out = run_half_ops(a, b, bf16);
  const float tol = bf16 ? 1.0f / 128 : 1.0f / 1024;  // relative: one unit in the last place, and a bit
  for (size_t i = 0; i < a.size(); ++i) {
    const float x = round16(a[i], bf16), y = round16(b[i], bf16);
    const float expected[] = {x + y, x * y, std::fma(x, y, x), std::max(x, y), std::min(x, y),
                              std::exp(x * 0.25f), std::sqrt(std::fabs(x)), x / y, -x,
                              round16(x * x, bf16) + round16(y * y, bf16)};
    for (int j = 0; j < 10; ++j) {
      EXPECT_NEAR(out[i * 10 + j], expected[j], tol * (std::fabs(expected[j]) + 1.0f)) << "input " << i << " op " << j;
    }
  }
}

TEST(CudaEmuHalf, HalfArithmeticAndIntrinsics) { check_half_ops(false); }
TEST(CudaEmuHalf, Bfloat16ArithmeticAndIntrinsics) { check_half_ops(true); }

void check_wmma(bool bf16, bool b_col_major) {
  std::vector<float> a(256), b(256), c(256);
  for (int i = 0; i < 256; ++i) {
    a[i] = round16(static_cast<float>((i * 7) % 13 - 6) / 4.0f, bf16);
    b[i] = round16(static_cast<float>((i * 5) % 11 - 5) / 8.0f, bf16);
    c[i] = static_cast<float>(i % 9);
  }
  const std::vector<float> d = run_wmma(a, b, c, bf16, b_col_major);
  for (int r = 0; r < 16; ++r) {
    for (int col = 0; col < 16; ++col) {
      float expected = 0.5f * c[r * 16 + col];
      for (int k = 0; k < 16; ++k) expected += a[r * 16 + k] * b[k * 16 + col];
      EXPECT_NEAR(d[r * 16 + col], expected, 1e-4f) << r << "," << col;
    }
  }
}

TEST(CudaEmuWmma, F16RowMajor) { check_wmma(false, false); }
TEST(CudaEmuWmma, F16ColMajorB) { check_wmma(false, true); }
TEST(CudaEmuWmma, Bf16RowMajor) { check_wmma(true, false); }
TEST(CudaEmuWmma, Bf16ColMajorB) { check_wmma(true, true); }

TEST(CudaEmuMath, FloatIntrinsics) {
  const float x = 1.75f;
  const std::vector<float> o = run_float_intrinsics(x);
  const float expected[] = {std::exp(x), std::log(x), std::sin(x), std::cos(x), std::pow(x, 1.5f), 1.0f / x, 1.0f / x,
                            1.0f / std::sqrt(x), 0.75f, x * x + 1.0f, 3.0f * x + x + 1.0f, 1.0f, std::exp2(x), x,
                            x + 0.5f, 1.0f + x};
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(o[i], expected[i], 1e-5f * (std::fabs(expected[i]) + 1.0f)) << i;
}

TEST(CudaEmuMath, IntegerIntrinsics) {
  const unsigned x = 0x00f0'0010u;
  const std::vector<long long> o = run_int_intrinsics(x);
  EXPECT_EQ(o[0], 5);
  EXPECT_EQ(o[1], 10);
  EXPECT_EQ(o[2], 8);
  EXPECT_EQ(o[3], 5);
  EXPECT_EQ(o[4], 0x08000f00ll);
  EXPECT_EQ(o[5], 0x3ff0000000000000ll);
  EXPECT_EQ(o[6], 7 + 5);
  EXPECT_EQ(o[7], 5);
}

TEST(CudaEmuMath, TiledSgemmMatchesReference) {
  const int m = 37, n = 50, k = 45;  // not multiples of the tile
  std::vector<float> a(m * k), b(k * n), c(m * n);
  for (int i = 0; i < m * k; ++i) a[i] = static_cast<float>(i % 17) / 16.0f - 0.5f;
  for (int i = 0; i < k * n; ++i) b[i] = static_cast<float>(i % 13) / 8.0f - 0.75f;
  float *da, *db, *dc;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&da), a.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&db), b.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dc), c.size() * 4), cudaSuccess);
  cudaMemcpy(da, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
  sgemm_tiled(da, db, dc, m, n, k);
  cudaMemcpy(c.data(), dc, c.size() * 4, cudaMemcpyDeviceToHost);
  for (int r = 0; r < m; ++r) {
    for (int col = 0; col < n; ++col) {
      double expected = 0;
      for (int i = 0; i < k; ++i) expected += static_cast<double>(a[r * k + i]) * b[i * n + col];
      EXPECT_NEAR(c[r * n + col], expected, 1e-4) << r << "," << col;
    }
  }
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
}

}  // namespace
}  // namespace se::emu::test
