// The host-side half of the vendor references (bench/vendor/vendor.h): how our kernel descriptors map onto
// cuBLAS and cuDNN arguments, and how a vendor's output is compared with ours. Plain C++ without CUDA
// headers, so every build compiles it and its unit tests run on a CPU (tests/tools/test_vendor_mapping.cpp).
// A mapping returns std::nullopt when the vendor library has no call for exactly the same work (the
// benchmark then shows "-"); the reason is in the comment of each function.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/dtype.h"
#include "kernels/conv.h"
#include "kernels/gemm.h"
#include "kernels/norm.h"
#include "kernels/pool.h"
#include "kernels/softmax.h"

namespace se::vendor {

// The dtypes the references run: f32 (strict FP32 math, no TF32, as our f32 kernels), f16 and bf16 (f32
// accumulation, tensor cores allowed, as ours).
bool is_vendor_dtype(DType dtype);

// ---- cuBLAS GEMM
// cuBLAS is column-major. A row-major (rows, cols) matrix with row stride ld is the column-major
// (cols, rows) matrix with leading dimension ld, its transpose. So row-major C = op(A) op(B) is computed
// as column-major C^T = op(B)^T op(A)^T: cuBLAS's first operand is our B, its second our A, its m our n,
// its n our m, and the transpose flags stay with their operands.
struct CublasGemmArgs {
  bool transa = false, transb = false;               // cuBLAS's op flags: transa for our B, transb for our A
  int m = 0, n = 0, k = 0;                           // cuBLAS's sizes: m = our n, n = our m, k = our k
  int lda = 0, ldb = 0, ldc = 0;                     // lda = our ldb, ldb = our lda, ldc = our ldc
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // batch strides: our stride_b, stride_a, stride_c
  int batch = 1;                                     // > 1: cublasGemmStridedBatchedEx
  float alpha = 1.0f, beta = 0.0f;
};
// nullopt for f64 and for sizes beyond cuBLAS's 32-bit arguments.
std::optional<CublasGemmArgs> cublas_gemm_args(const kernels::GemmDesc& desc);

// ---- cuDNN convolution (NCHW, cross-correlation, as ours)
using Dims4 = std::array<int, 4>;  // N, C, H, W

struct CudnnConvArgs {
  Dims4 x{}, w{}, y{};  // x (N, C_in, H, W), w (C_out, C_in / groups, KH, KW), y (N, C_out, OH, OW)
  Dims4 bias{};         // (1, C_out, 1, 1)
  std::array<int, 2> pad{}, stride{}, dilation{};  // (h, w) each
  int groups = 1;
  DType dtype = DType::f32;
  bool tensor_cores = false;  // f16/bf16: CUDNN_TENSOR_OP_MATH; f32: CUDNN_FMA_MATH (no TF32)
  // Conv2dLayout::nhwc: x, y and w keep the dims above, stored channels-last (cuDNN's NHWC format).
  bool channels_last = false;
};
// nullopt for a fused activation (cuDNN's fused call has no exact GELU), a dtype other than f32, f16 or
// bf16, and tensors beyond cuDNN's 32-bit sizes.
std::optional<CudnnConvArgs> cudnn_conv_args(const kernels::Conv2dDesc& desc);

// ---- cuDNN pooling. Our (planes, H, W) data is cuDNN's (1, planes, H, W).
enum class PoolMode { max, average_count_include_pad, average_count_exclude_pad };

struct CudnnPoolArgs {
  Dims4 x{}, y{};                                // (1, planes, in_h, in_w), (1, planes, out_h, out_w)
  std::array<int, 2> window{}, pad{}, stride{};  // (h, w) each
  PoolMode mode = PoolMode::max;
};
// Max pooling; nullopt with dilation (cuDNN pools without) or an output size other than cuDNN's floor
// formula (ceil_mode).
std::optional<CudnnPoolArgs> cudnn_max_pool_args(const kernels::Pool2dDesc& desc);
// Average pooling with desc.count_include_pad; nullopt as for max pooling.
std::optional<CudnnPoolArgs> cudnn_avg_pool_args(const kernels::Pool2dDesc& desc);
// Adaptive average pooling whose bins tile the input exactly (in % out == 0 in both dims) is average
// pooling with window = stride = in / out; nullopt for other bin counts (e.g. PSPNet's 3 and 6 on 64).
std::optional<CudnnPoolArgs> cudnn_adaptive_avg_pool_args(const kernels::AdaptivePool2dDesc& desc);

// ---- cuDNN softmax over (outer, size, inner): the tensor (outer, size, inner, 1) in
// CUDNN_SOFTMAX_MODE_CHANNEL (over C for each N, H, W), algorithm CUDNN_SOFTMAX_ACCURATE (max subtracted).
std::optional<Dims4> cudnn_softmax_dims(const kernels::SoftmaxDesc& desc);

// ---- cuDNN batch normalization, CUDNN_BATCHNORM_SPATIAL: x (N, C, HW, 1); the per-channel tensors are
// (1, C, 1, 1) in f32 (cudnnDeriveBNTensorDescriptor), as our norm_param_t for f32/f16/bf16.
std::optional<Dims4> cudnn_batch_norm_dims(const kernels::BatchNormDesc& desc);

// ---- Comparing a vendor output with ours
struct OutputDifference {
  double max_abs_diff = 0;       // max |ours - vendor|; infinite where exactly one of them is NaN or the sizes differ
  double max_abs_reference = 0;  // max |ours|
  // max_abs_diff relative to the output's scale (max |ours|, at least 1e-30), so that values near 0 of a
  // large output do not dominate.
  double relative() const;
};
OutputDifference compare_outputs(std::span<const float> ours, std::span<const float> vendor);

// The largest relative difference (OutputDifference::relative) accepted for a dtype. A descriptor mistake
// (a wrong pad, layout or operand order) gives differences of the order of the output itself; rounding
// and summation order stay well below: f32 1e-3 (Winograd and FFT algorithms included), f16 1e-2, bf16 3e-2.
double relative_tolerance(DType dtype);

// Max pooling's backward routes each output's gradient to one maximum of its window; where the maximum is
// tied, cuDNN and we may pick different inputs. These per-plane moments do not depend on that choice:
// for each plane, sum(grad_x) and sum(grad_x * x) (= sum over outputs of grad_y * max). Returns 2 * planes
// values, to be compared with compare_outputs instead of grad_x itself.
std::vector<float> max_pool_gradient_moments(std::span<const float> grad_x,  // (planes, H, W)
                                             std::span<const float> x,       // (planes, H, W)
                                             int64_t planes);

}  // namespace se::vendor
