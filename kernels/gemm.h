// GEMM: the basis of matmul, linear layers and convolution-as-GEMM.
//   C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b]   for b < batch
// All matrices are row-major; op(X) = X or X^T. op(A) is (m, k), op(B) is (k, n), C is (m, n).
// f16/bf16 inputs accumulate in f32 and round once on the final store; f64 computes in f64.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/stream.h"

namespace se::kernels {

struct GemmDesc {
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  int64_t lda = 0, ldb = 0, ldc = 0;                  // row strides (elements) of A, B, C as stored
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // batch strides (elements); 0 broadcasts A or B
  float alpha = 1.0f, beta = 0.0f;                   // beta == 0 never reads C (C may hold NaN)
  DType dtype = DType::f32;                          // of A, B and C: f32, f64, f16 or bf16
};

// Throws se::Error naming the first bad field and its value.
inline void validate_gemm(const GemmDesc& d) {
  SE_CHECK(d.dtype == DType::f32 || d.dtype == DType::f64 || d.dtype == DType::f16 || d.dtype == DType::bf16,
           "gemm: dtype ", dtype_name(d.dtype), " is not supported (expected f32, f64, f16 or bf16)");
  SE_CHECK(d.m >= 0, "gemm: m = ", d.m, " is negative");
  SE_CHECK(d.n >= 0, "gemm: n = ", d.n, " is negative");
  SE_CHECK(d.k >= 0, "gemm: k = ", d.k, " is negative");
  SE_CHECK(d.batch >= 0, "gemm: batch = ", d.batch, " is negative");
  // Stored shapes: A is (m, k), or (k, m) when transposed; B is (k, n), or (n, k) when transposed.
  const int64_t a_cols = d.trans_a ? d.m : d.k;
  const int64_t b_cols = d.trans_b ? d.k : d.n;
  SE_CHECK(d.lda >= std::max<int64_t>(1, a_cols), "gemm: lda = ", d.lda, " is smaller than the ",
           a_cols, " columns of A as stored (trans_a = ", d.trans_a, ")");
  SE_CHECK(d.ldb >= std::max<int64_t>(1, b_cols), "gemm: ldb = ", d.ldb, " is smaller than the ",
           b_cols, " columns of B as stored (trans_b = ", d.trans_b, ")");
  SE_CHECK(d.ldc >= std::max<int64_t>(1, d.n), "gemm: ldc = ", d.ldc, " is smaller than n = ", d.n);
  SE_CHECK(d.stride_a >= 0, "gemm: stride_a = ", d.stride_a, " is negative");
  SE_CHECK(d.stride_b >= 0, "gemm: stride_b = ", d.stride_b, " is negative");
  // Batch items of C must not overlap, or the result would depend on the order of the items.
  SE_CHECK(d.batch <= 1 || d.m == 0 || d.n == 0 || d.stride_c >= d.m * d.ldc, "gemm: stride_c = ",
           d.stride_c, " makes batch items of C overlap (expected >= m * ldc = ", d.m * d.ldc, ")");
}

namespace cpu {
// Synchronous; `stream` is ignored. Uses OpenMP threads (omp_get_max_threads()).
void gemm(const GemmDesc& desc, const void* a,  // (batch, m, k) or (batch, k, m) when trans_a
          const void* b,                        // (batch, k, n) or (batch, n, k) when trans_b
          void* c,                              // (batch, m, n)
          Stream stream);

// The micro-kernel family the CPU GEMM uses. The best one the CPU supports is chosen at start-up;
// tests and benchmarks may select another one (process-wide; not while a gemm is running).
enum class GemmIsa { generic, avx2, avx512 };
const char* gemm_isa_name(GemmIsa isa);
bool gemm_isa_supported(GemmIsa isa);
GemmIsa gemm_isa();
void set_gemm_isa(GemmIsa isa);  // throws se::Error when the CPU lacks the instructions
}  // namespace cpu

namespace cuda {
// Asynchronous on `stream`; pointers are device memory.
void gemm(const GemmDesc& desc, const void* a,  // (batch, m, k) or (batch, k, m) when trans_a
          const void* b,                        // (batch, k, n) or (batch, n, k) when trans_b
          void* c,                              // (batch, m, n)
          Stream stream);
}  // namespace cuda

}  // namespace se::kernels
