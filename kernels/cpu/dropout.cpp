#include "core/philox.h"
#include "kernels/convert.h"
#include "kernels/dropout.h"

#include <type_traits>

namespace se::kernels::cpu {

namespace {
// f64 is scaled in double; the others in float, as in the CUDA kernels.
template <typename T>
using ScaleT = std::conditional_t<std::is_same_v<T, double>, double, float>;
}  // namespace

void dropout_forward(const DropoutDesc& desc, const void* x, void* y, uint8_t* mask, Stream) {
  dispatch_floating(desc.dtype, "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = static_cast<const T*>(x);
    T* out = static_cast<T*>(y);
    using S = ScaleT<T>;
    const S scale = S(1) / (S(1) - desc.p);
#pragma omp parallel for if (desc.count > (1 << 15))
    for (int64_t i = 0; i < desc.count; ++i) {
      const bool keep = philox::uniform_at(desc.seed, desc.offset + static_cast<uint64_t>(i)) >= desc.p;
      mask[i] = keep ? 1 : 0;
      out[i] = keep ? convert<T>(convert<S>(in[i]) * scale) : convert<T>(S(0));
    }
  });
}

void dropout_backward(const DropoutDesc& desc, const void* grad_y, const uint8_t* mask, void* grad_x, Stream) {
  dispatch_floating(desc.dtype, "dropout_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* gy = static_cast<const T*>(grad_y);
    T* gx = static_cast<T*>(grad_x);
    using S = ScaleT<T>;
    const S scale = S(1) / (S(1) - desc.p);
#pragma omp parallel for if (desc.count > (1 << 15))
    for (int64_t i = 0; i < desc.count; ++i) gx[i] = mask[i] ? convert<T>(convert<S>(gy[i]) * scale) : convert<T>(S(0));
  });
}

}  // namespace se::kernels::cpu
