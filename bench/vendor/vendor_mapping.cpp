#include "bench/vendor/vendor_mapping.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace se::vendor {

namespace {

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

bool fits_int(std::initializer_list<int64_t> values) {
  return std::all_of(values.begin(), values.end(), [](int64_t v) { return v >= 0 && v <= kIntMax; });
}

// cuDNN's legacy tensor descriptors hold at most 2^31 - 1 elements.
bool fits_tensor(const Dims4& d) {
  return int64_t{d[0]} * d[1] * d[2] * d[3] <= kIntMax;
}

std::optional<CudnnPoolArgs> pool_args(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                       std::array<int64_t, 2> window, std::array<int64_t, 2> pad,
                                       std::array<int64_t, 2> stride, PoolMode mode) {
  if (!fits_int({planes, in_h, in_w, out_h, out_w, window[0], window[1], pad[0], pad[1], stride[0], stride[1]})) {
    return std::nullopt;
  }
  // cudnnGetPooling2dForwardOutputDim: 1 + (in + 2 pad - window) / stride, rounded down.
  if (out_h != 1 + (in_h + 2 * pad[0] - window[0]) / stride[0] ||
      out_w != 1 + (in_w + 2 * pad[1] - window[1]) / stride[1]) {
    return std::nullopt;
  }
  CudnnPoolArgs a;
  a.x = {1, int(planes), int(in_h), int(in_w)};
  a.y = {1, int(planes), int(out_h), int(out_w)};
  a.window = {int(window[0]), int(window[1])};
  a.pad = {int(pad[0]), int(pad[1])};
  a.stride = {int(stride[0]), int(stride[1])};
  a.mode = mode;
  if (!fits_tensor(a.x)) return std::nullopt;
  return a;
}

}  // namespace

bool is_vendor_dtype(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16;
}

std::optional<CublasGemmArgs> cublas_gemm_args(const kernels::GemmDesc& d) {
  if (!is_vendor_dtype(d.dtype) || !fits_int({d.m, d.n, d.k, d.lda, d.ldb, d.ldc, d.batch})) return std::nullopt;
  CublasGemmArgs a;
  a.transa = d.trans_b;
  a.transb = d.trans_a;
  a.m = int(d.n);
  a.n = int(d.m);
  a.k = int(d.k);
  a.lda = int(d.ldb);
  a.ldb = int(d.lda);
  a.ldc = int(d.ldc);
  a.stride_a = d.stride_b;
  a.stride_b = d.stride_a;
  a.stride_c = d.stride_c;
  a.batch = int(d.batch);
  a.alpha = d.alpha;
  a.beta = d.beta;
  return a;
}

std::optional<CudnnConvArgs> cudnn_conv_args(const kernels::Conv2dDesc& d) {
  if (!is_vendor_dtype(d.dtype) || d.activation != kernels::ConvActivation::none) return std::nullopt;
  const int64_t out_h = kernels::conv2d_output_h(d), out_w = kernels::conv2d_output_w(d);
  if (!fits_int({d.n, d.c_in, d.h, d.w, d.c_out, d.kernel_h, d.kernel_w, out_h, out_w, d.pad_h, d.pad_w, d.stride_h,
                 d.stride_w, d.dilation_h, d.dilation_w, d.groups})) {
    return std::nullopt;
  }
  CudnnConvArgs a;
  a.x = {int(d.n), int(d.c_in), int(d.h), int(d.w)};
  a.w = {int(d.c_out), int(d.c_in / d.groups), int(d.kernel_h), int(d.kernel_w)};
  a.y = {int(d.n), int(d.c_out), int(out_h), int(out_w)};
  a.bias = {1, int(d.c_out), 1, 1};
  a.pad = {int(d.pad_h), int(d.pad_w)};
  a.stride = {int(d.stride_h), int(d.stride_w)};
  a.dilation = {int(d.dilation_h), int(d.dilation_w)};
  a.groups = int(d.groups);
  a.dtype = d.dtype;
  a.tensor_cores = d.dtype != DType::f32;
  a.channels_last = d.layout == kernels::Conv2dLayout::nhwc;
  if (!fits_tensor(a.x) || !fits_tensor(a.w) || !fits_tensor(a.y)) return std::nullopt;
  return a;
}

std::optional<CudnnPoolArgs> cudnn_max_pool_args(const kernels::Pool2dDesc& d) {
  if (d.dilation_h != 1 || d.dilation_w != 1) return std::nullopt;
  return pool_args(d.planes, d.in_h, d.in_w, d.out_h, d.out_w, {d.kernel_h, d.kernel_w}, {d.pad_h, d.pad_w},
                   {d.stride_h, d.stride_w}, PoolMode::max);
}

std::optional<CudnnPoolArgs> cudnn_avg_pool_args(const kernels::Pool2dDesc& d) {
  if (d.dilation_h != 1 || d.dilation_w != 1) return std::nullopt;
  return pool_args(d.planes, d.in_h, d.in_w, d.out_h, d.out_w, {d.kernel_h, d.kernel_w}, {d.pad_h, d.pad_w},
                   {d.stride_h, d.stride_w},
                   d.count_include_pad ? PoolMode::average_count_include_pad : PoolMode::average_count_exclude_pad);
}

std::optional<CudnnPoolArgs> cudnn_adaptive_avg_pool_args(const kernels::AdaptivePool2dDesc& d) {
  if (d.out_h < 1 || d.out_w < 1 || d.in_h % d.out_h != 0 || d.in_w % d.out_w != 0) return std::nullopt;
  const std::array<int64_t, 2> window{d.in_h / d.out_h, d.in_w / d.out_w};
  return pool_args(d.planes, d.in_h, d.in_w, d.out_h, d.out_w, window, {0, 0}, window,
                   PoolMode::average_count_include_pad);
}

std::optional<Dims4> cudnn_softmax_dims(const kernels::SoftmaxDesc& d) {
  if (!fits_int({d.outer, d.size, d.inner})) return std::nullopt;
  const Dims4 dims{int(d.outer), int(d.size), int(d.inner), 1};
  if (!fits_tensor(dims)) return std::nullopt;
  return dims;
}

std::optional<Dims4> cudnn_batch_norm_dims(const kernels::BatchNormDesc& d) {
  if (!fits_int({d.n, d.c, d.hw})) return std::nullopt;
  const Dims4 dims{int(d.n), int(d.c), int(d.hw), 1};
  if (!fits_tensor(dims)) return std::nullopt;
  return dims;
}

double OutputDifference::relative() const {
  return max_abs_diff / std::max(max_abs_reference, 1e-30);
}

OutputDifference compare_outputs(std::span<const float> ours, std::span<const float> vendor) {
  OutputDifference d;
  if (ours.size() != vendor.size()) {
    d.max_abs_diff = std::numeric_limits<double>::infinity();
    return d;
  }
  for (size_t i = 0; i < ours.size(); ++i) {
    const double a = ours[i], b = vendor[i];
    if (std::isnan(a) || std::isnan(b)) {
      if (std::isnan(a) != std::isnan(b)) d.max_abs_diff = std::numeric_limits<double>::infinity();
      continue;
    }
    d.max_abs_reference = std::max(d.max_abs_reference, std::abs(a));
    d.max_abs_diff = std::max(d.max_abs_diff, std::abs(a - b));
  }
  return d;
}

double relative_tolerance(DType dtype) {
  switch (dtype) {
    case DType::f16: return 1e-2;
    case DType::bf16: return 3e-2;
    default: return 1e-3;
  }
}

std::vector<float> max_pool_gradient_moments(std::span<const float> grad_x, std::span<const float> x, int64_t planes) {
  SE_CHECK(planes >= 1 && grad_x.size() == x.size() && x.size() % static_cast<size_t>(planes) == 0,
           "max_pool_gradient_moments: ", grad_x.size(), " gradients and ", x.size(), " inputs in ", planes, " planes");
  const size_t plane_size = x.size() / static_cast<size_t>(planes);
  std::vector<float> moments(2 * static_cast<size_t>(planes));
  for (size_t p = 0; p < static_cast<size_t>(planes); ++p) {
    double sum = 0, weighted = 0;
    for (size_t i = p * plane_size; i < (p + 1) * plane_size; ++i) {
      sum += grad_x[i];
      weighted += double(grad_x[i]) * double(x[i]);
    }
    moments[2 * p] = static_cast<float>(sum);
    moments[2 * p + 1] = static_cast<float>(weighted);
  }
  return moments;
}

}  // namespace se::vendor
