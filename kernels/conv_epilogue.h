// The fused epilogue of conv2d_forward (ConvActivation in kernels/conv.h), shared by the CPU and CUDA
// kernels so both apply the very same formula: the elementwise kernels' ReLU and exact GELU.
#pragma once

#include "kernels/conv.h"
#include "kernels/elementwise_math.h"

namespace se::kernels {

// C: the compute type (float for f32/f16/bf16, double for f64).
template <typename C>
SE_HOST_DEVICE inline C conv_epilogue(ConvActivation activation, C value) {
  switch (activation) {
    case ConvActivation::relu: return elementwise::unary_fn<UnaryOp::relu>(value, elementwise::ScalarArgs<C>{});
    case ConvActivation::gelu: return elementwise::unary_fn<UnaryOp::gelu>(value, elementwise::ScalarArgs<C>{});
    default: return value;
  }
}

}  // namespace se::kernels
