// Random tensors from an explicit seed (engine/random.h).
#include "engine/random.h"

#include "engine/dispatch.h"
#include "kernels/copy.h"

namespace se {

namespace {

Tensor seeded_random(const char* op, const Shape& shape, uint64_t seed, const TensorOptions& options,
                     kernels::Distribution distribution) {
  const DType dtype = options.dtype.value_or(DType::f32);
  SE_CHECK(is_floating(dtype), op, ": dtype ", dtype, " is not supported (expected f32, f16, bf16 or f64)");
  TensorOptions no_grad = options;
  no_grad.requires_grad = false;
  Tensor out = empty(shape, no_grad);
  const kernels::RandomDesc desc{out.numel(), seed, 0, distribution, 0.0, 1.0, out.dtype()};
  SE_DISPATCH(out.device(), random, desc, out.data_ptr());
  if (options.requires_grad) out.requires_grad_(true);
  return out;
}

}  // namespace

Tensor rand_seeded(const Shape& shape, uint64_t seed, const TensorOptions& options) {
  return seeded_random("rand_seeded", shape, seed, options, kernels::Distribution::uniform);
}

Tensor randn_seeded(const Shape& shape, uint64_t seed, const TensorOptions& options) {
  return seeded_random("randn_seeded", shape, seed, options, kernels::Distribution::normal);
}

}  // namespace se
