// CPU ConvTranspose2d on the Conv2d kernels (kernels/conv.h): the mirror conv2d's backward-data is the forward,
// its forward the backward-data, and its backward-weight with x and dy swapped the weight gradient. What the
// conv kernels do not cover is the transpose's own bias: added after the forward, and reduced from dy here.
#include <omp.h>

#include <type_traits>

#include "kernels/conv.h"
#include "kernels/cpu/channel_sum.h"

namespace se::kernels::cpu {
namespace {

// y (N, C, P) += bias (C), computed in float for f16/bf16.
template <typename T>
void add_bias(T* y, const T* bias, int64_t n, int64_t c, int64_t p) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
#pragma omp parallel for schedule(static) if (n * c * p >= 16384)
  for (int64_t plane = 0; plane < n * c; ++plane) {
    const A b = static_cast<A>(bias[plane % c]);
    T* row = y + plane * p;
    for (int64_t i = 0; i < p; ++i) row[i] = static_cast<T>(static_cast<A>(row[i]) + b);
  }
}

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
  dispatch_floating(desc.dtype, "conv_transpose2d_forward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    add_bias(static_cast<T*>(y), static_cast<const T*>(bias), desc.n, desc.c_out, output_pixels(desc));
  });
}

void conv_transpose2d_backward_data(const ConvTranspose2dDesc& desc, const void* dy, const void* w, void* dx,
                                    Stream stream) {
  validate_conv_transpose2d(desc);
  conv2d_forward(conv2d_of_transpose(desc), dy, w, nullptr, dx, stream);
}

void conv_transpose2d_backward_weight(const ConvTranspose2dDesc& desc, const void* x, const void* dy, void* dw,
                                      void* db, Stream stream) {
  validate_conv_transpose2d(desc);
  conv2d_backward_weight(conv2d_of_transpose(desc), dy, x, dw, nullptr, stream);
  if (db == nullptr) return;
  dispatch_floating(desc.dtype, "conv_transpose2d_backward_weight", [&](auto tag) {
    using T = typename decltype(tag)::type;
    channel_sums(static_cast<const T*>(dy), desc.n, desc.c_out, output_pixels(desc), static_cast<T*>(db));
  });
}

}  // namespace se::kernels::cpu
