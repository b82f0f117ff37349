// Dropout (fused kernel, mask kept as bytes for the backward) and DropPath (per-sample mask).
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/dropout.h"

namespace se {

namespace {

void check_probability(const char* op, double p) {
  SE_CHECK(p >= 0.0 && p <= 1.0, op, ": drop probability p = ", p, " is outside [0, 1]");
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training) {
  SE_CHECK(x.defined(), "dropout: input tensor is undefined");
  check_probability("dropout", p);
  SE_CHECK(is_floating(x.dtype()), "dropout: dtype ", x.dtype(), " is not supported (expected a floating dtype)");
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);  // everything dropped; keeps the graph (gradient zero)
  Tensor input = x.contiguous();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  Tensor mask = empty(x.shape(), {DType::u8, x.device()});
  auto [seed, offset] = reserve_random_numbers(static_cast<uint64_t>(x.numel()));
  const kernels::DropoutDesc desc{x.numel(), seed, offset, static_cast<float>(p), x.dtype()};
  SE_DISPATCH(x.device(), dropout_forward, desc, input.data_ptr(), y.data_ptr(), static_cast<uint8_t*>(mask.data_ptr()));
  if (autograd::needs_grad({x})) {
    autograd::record("dropout", {x}, {y}, [desc, saved_mask = SavedTensor(mask)](const GradOutputs& g, const NeedsGrad&) {
      const Tensor mask = saved_mask.unpack();
      const Tensor grad_y = g[0].contiguous();
      Tensor grad_x = empty(grad_y.shape(), {grad_y.dtype(), grad_y.device()});
      SE_DISPATCH(grad_y.device(), dropout_backward, desc, grad_y.data_ptr(),
                  static_cast<const uint8_t*>(mask.data_ptr()), grad_x.data_ptr());
      return GradInputs{grad_x};
    });
  }
  return y;
}

Tensor drop_path(const Tensor& x, double p, bool training) {
  SE_CHECK(x.defined(), "drop_path: input tensor is undefined");
  check_probability("drop_path", p);
  SE_CHECK(x.dim() >= 1, "drop_path: expects a batch dim, got a 0-d tensor");
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);
  Shape mask_shape(static_cast<size_t>(x.dim()), 1);
  mask_shape[0] = x.size(0);
  // keep = (U >= p) / (1 - p) per sample, broadcast over the other dims.
  Tensor keep = div(ge(rand(mask_shape, {x.dtype(), x.device()}), p).to(x.dtype()), 1.0 - p);
  return mul(x, keep);
}

}  // namespace se
