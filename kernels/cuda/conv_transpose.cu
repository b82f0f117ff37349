// CUDA ConvTranspose2d on the Conv2d kernels (kernels/conv.h), as on the CPU: the mirror conv2d's
// backward-data (implicit GEMM, no atomics) is the forward, its forward the backward-data, its backward-weight
// with x and dy swapped the weight gradient. Here only the transpose's bias: an elementwise add after the
// forward and one block per output channel for its gradient.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/conv.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/group_reduce.cuh"

namespace se::kernels::cuda {
namespace {

template <typename T> using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int kThreads = 256;

// y (N, C, P) += bias (C), grid-stride.
template <typename T>
__global__ void add_bias_kernel(T* y, const T* bias, int64_t c, int64_t p, int64_t total) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[e] = static_cast<T>(static_cast<acc_t<T>>(y[e]) + static_cast<acc_t<T>>(bias[e / p % c]));
  }
}

template <typename A>
struct Sum {
  __device__ A operator()(A a, A b) const { return a + b; }
};

// One block per channel: db[ch] = the sum of dy (N, C, P) over images and pixels.
template <typename T>
__global__ void bias_grad_kernel(const T* dy, T* db, int64_t n, int64_t c, int64_t p) {
  using A = acc_t<T>;
  alignas(16) __shared__ A scratch[32];
  const int64_t ch = blockIdx.x;
  A sum = A(0);
  for (int64_t e = threadIdx.x; e < n * p; e += blockDim.x) sum += static_cast<A>(dy[(e / p * c + ch) * p + e % p]);
  sum = block_allreduce(sum, Sum<A>{}, scratch);
  if (threadIdx.x == 0) db[ch] = static_cast<T>(sum);
}

#define SE_CONV_TRANSPOSE_INSTANTIATE(T)                                                  \
  template __global__ void add_bias_kernel<T>(T*, const T*, int64_t, int64_t, int64_t); \
  template __global__ void bias_grad_kernel<T>(const T*, T*, int64_t, int64_t, int64_t);
SE_CONV_TRANSPOSE_INSTANTIATE(float)
SE_CONV_TRANSPOSE_INSTANTIATE(double)
SE_CONV_TRANSPOSE_INSTANTIATE(__half)
SE_CONV_TRANSPOSE_INSTANTIATE(__nv_bfloat16)
#undef SE_CONV_TRANSPOSE_INSTANTIATE

int64_t output_pixels(const ConvTranspose2dDesc& d) {
  return conv_transpose2d_output_h(d) * conv_transpose2d_output_w(d);
}

}  // namespace

void conv_transpose2d_forward(const ConvTranspose2dDesc& desc, const void* x, const void* w, const void* bias,
                              void* y, Stream stream) {
  validate_conv_transpose2d(desc);
  SE_CHECK(!desc.has_bias || bias != nullptr, "conv_transpose2d_forward: has_bias is set but bias is null");
  conv2d_backward_data(conv2d_of_transpose(desc), x, w, y, stream);
  if (!desc.has_bias || desc.n == 0) return;
  const int64_t total = conv_transpose2d_y_elements(desc);
  dispatch_floating_cuda(desc.dtype, "conv_transpose2d_forward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_LAUNCH(add_bias_kernel<T>, std::min<int64_t>(ceil_div(total, kThreads), 65536), kThreads, 0, stream,
              static_cast<T*>(y), static_cast<const T*>(bias), desc.c_out, output_pixels(desc), total);
  });
}

void conv_transpose2d_backward_data(const ConvTranspose2dDesc& desc, const void* dy, const void* w, void* dx,
                                    Stream stream) {
  validate_conv_transpose2d(desc);
  conv2d_forward(conv2d_of_transpose(desc), dy, w, nullptr, dx, stream);
}

void conv_transpose2d_backward_weight(const ConvTranspose2dDesc& desc, const void* x, const void* dy, void* dw,
                                      void* db, void* workspace, Stream stream) {
  validate_conv_transpose2d(desc);
  conv2d_backward_weight(conv2d_of_transpose(desc), dy, x, dw, nullptr, workspace, stream);
  if (db == nullptr) return;
  if (desc.n == 0) {
    CUDA_CHECK(cudaMemsetAsync(db, 0, static_cast<size_t>(desc.c_out) * dtype_size(desc.dtype), stream));
    return;
  }
  dispatch_floating_cuda(desc.dtype, "conv_transpose2d_backward_weight", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_LAUNCH(bias_grad_kernel<T>, static_cast<unsigned int>(desc.c_out), kThreads, 0, stream,
              static_cast<const T*>(dy), static_cast<T*>(db), desc.n, desc.c_out, output_pixels(desc));
  });
}

}  // namespace se::kernels::cuda
