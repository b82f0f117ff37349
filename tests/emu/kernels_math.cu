// Test kernels for the emulator: half/bf16 arithmetic, WMMA, math intrinsics, a tiled SGEMM and the kernels
// the timing printout uses.
#include <mma.h>

#include "tests/emu/device_array.cuh"
#include "tests/emu/emu_test_kernels.h"

namespace se::emu::test {
namespace {

constexpr int kHalfOps = 10;

// out[i * kHalfOps + j]: 0 a+b, 1 a*b, 2 fma(a,b,a), 3 max, 4 min, 5 exp(a/4), 6 sqrt(|a|), 7 a/b, 8 -a,
// 9 low + high of a half2 (a, b) multiplied by itself.
template <typename T, typename T2>
__global__ void half_ops_kernel(const float* a, const float* b, float* out, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  const T x = T(a[i]);
  const T y = T(b[i]);
  float* o = out + i * kHalfOps;
  o[0] = static_cast<float>(__hadd(x, y));
  o[1] = static_cast<float>(__hmul(x, y));
  o[2] = static_cast<float>(__hfma(x, y, x));
  o[3] = static_cast<float>(__hmax(x, y));
  o[4] = static_cast<float>(__hmin(x, y));
  o[5] = static_cast<float>(hexp(x * T(0.25f)));
  o[6] = static_cast<float>(hsqrt(__habs(x)));
  o[7] = static_cast<float>(x / y);
  o[8] = static_cast<float>(-x);
  T2 pair;
  pair.x = x;
  pair.y = y;
  const T2 squared = __hmul2(pair, pair);
  o[9] = static_cast<float>(squared.x) + static_cast<float>(squared.y);
}

template <typename T, typename BLayout>
__global__ void wmma_kernel(const T* a, const T* b, const float* c, float* d) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, T, BLayout> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::load_matrix_sync(fc, c, 16, wmma::mem_row_major);
  for (int i = 0; i < fc.num_elements; ++i) fc.x[i] *= 0.5f;  // element-wise ops are layout-free
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(d, fc, 16, wmma::mem_row_major);
}

__global__ void float_intrinsics_kernel(float x, float* out) {
  out[0] = __expf(x);
  out[1] = __logf(x);
  out[2] = __sinf(x);
  out[3] = __cosf(x);
  out[4] = __powf(x, 1.5f);
  out[5] = __fdividef(1.0f, x);
  out[6] = __frcp_rn(x);
  out[7] = rsqrtf(x);
  out[8] = __saturatef(x - 1.0f);
  out[9] = __fmaf_rn(x, x, 1.0f);
  out[10] = __fmul_rn(x, 3.0f) + __fadd_rn(x, 1.0f);
  out[11] = erff(x) + erfcf(x);
  out[12] = exp2f(x);
  out[13] = __int_as_float(__float_as_int(x));
  out[14] = __uint_as_float(__float_as_uint(x)) + static_cast<float>(rsqrt(4.0));
  out[15] = min(x, 1.0f) + max(x, 1.0f);
}

__global__ void int_intrinsics_kernel(unsigned x, long long* out) {
  out[0] = __popc(x);
  out[1] = __popcll(static_cast<unsigned long long>(x) << 32 | x);
  out[2] = __clz(static_cast<int>(x));
  out[3] = __ffs(static_cast<int>(x));
  out[4] = __brev(x);
  out[5] = __double_as_longlong(1.0);
  out[6] = min(static_cast<int>(x), 7) + max(3, 5);
  out[7] = __ldg(out + 0);
}

constexpr int kTile = 16;

__global__ void sgemm_tiled_kernel(const float* a, const float* b, float* c, int m, int n, int k) {
  alignas(16) __shared__ float a_tile[kTile][kTile];
  alignas(16) __shared__ float b_tile[kTile][kTile];
  const int row = static_cast<int>(blockIdx.y * kTile + threadIdx.y);
  const int col = static_cast<int>(blockIdx.x * kTile + threadIdx.x);
  float sum = 0.0f;
  for (int k0 = 0; k0 < k; k0 += kTile) {
    const int ak = k0 + static_cast<int>(threadIdx.x);
    const int bk = k0 + static_cast<int>(threadIdx.y);
    a_tile[threadIdx.y][threadIdx.x] = row < m && ak < k ? a[row * k + ak] : 0.0f;
    b_tile[threadIdx.y][threadIdx.x] = bk < k && col < n ? b[bk * n + col] : 0.0f;
    __syncthreads();
    for (int kk = 0; kk < kTile; ++kk) sum += a_tile[threadIdx.y][kk] * b_tile[kk][threadIdx.x];
    __syncthreads();
  }
  if (row < m && col < n) c[row * n + col] = sum;
}

}  // namespace

std::vector<float> run_half_ops(const std::vector<float>& a, const std::vector<float>& b, bool bf16) {
  const int n = static_cast<int>(a.size());
  DeviceArray<float> d_a(a), d_b(b), d_out(a.size() * kHalfOps);
  if (bf16) {
    SE_LAUNCH((half_ops_kernel<__nv_bfloat16, __nv_bfloat162>), ceil_div(n, 64), 64, 0, nullptr, d_a.get(), d_b.get(),
              d_out.get(), n);
  } else {
    SE_LAUNCH((half_ops_kernel<__half, __half2>), ceil_div(n, 64), 64, 0, nullptr, d_a.get(), d_b.get(), d_out.get(),
              n);
  }
  return d_out.download();
}

template <typename T>
static std::vector<float> run_wmma_typed(const std::vector<float>& a, const std::vector<float>& b,
                                         const std::vector<float>& c, bool b_col_major) {
  std::vector<T> a16(a.begin(), a.end()), b16(b.begin(), b.end());
  if (b_col_major) {  // the caller's B is row-major; store its transpose so the tile means the same B
    for (int r = 0; r < 16; ++r) {
      for (int col = 0; col < 16; ++col) b16[col * 16 + r] = T(b[r * 16 + col]);
    }
  }
  DeviceArray<T> d_a(a16), d_b(b16);
  DeviceArray<float> d_c(c), d_d(256);
  if (b_col_major) {
    SE_LAUNCH((wmma_kernel<T, nvcuda::wmma::col_major>), 1, 32, 0, nullptr, d_a.get(), d_b.get(), d_c.get(), d_d.get());
  } else {
    SE_LAUNCH((wmma_kernel<T, nvcuda::wmma::row_major>), 1, 32, 0, nullptr, d_a.get(), d_b.get(), d_c.get(), d_d.get());
  }
  return d_d.download();
}

std::vector<float> run_wmma(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c,
                            bool bf16, bool b_col_major) {
  return bf16 ? run_wmma_typed<__nv_bfloat16>(a, b, c, b_col_major) : run_wmma_typed<__half>(a, b, c, b_col_major);
}

std::vector<float> run_float_intrinsics(float x) {
  DeviceArray<float> out(16);
  SE_LAUNCH(float_intrinsics_kernel, 1, 1, 0, nullptr, x, out.get());
  return out.download();
}

std::vector<long long> run_int_intrinsics(unsigned x) {
  DeviceArray<long long> out(8);
  SE_LAUNCH(int_intrinsics_kernel, 1, 1, 0, nullptr, x, out.get());
  return out.download();
}

void sgemm_tiled(const float* a, const float* b, float* c, int m, int n, int k) {
  SE_LAUNCH(sgemm_tiled_kernel, dim3(ceil_div(n, kTile), ceil_div(m, kTile)), dim3(kTile, kTile), 0, nullptr, a, b, c,
            m, n, k);
}

}  // namespace se::emu::test
