// Automatic mixed precision after torch.autocast. While an AutocastGuard with a low-precision dtype
// (f16 or bf16) is alive on this thread, the ops that gain most from tensor cores compute in that dtype
// and the ops that need range or accumulate many terms stay in f32:
// - low precision: conv2d, conv_transpose2d, matmul / mm / bmm, linear and scaled_dot_product_attention
//   cast their floating inputs to the autocast dtype; the cast is differentiable, so the gradients reach
//   f32 parameters (the master weights) as f32;
// - f32: softmax, log_softmax and every loss (cross_entropy, binary_cross_entropy_with_logits, mse_loss,
//   cosine_distance, focal_loss, ohem_cross_entropy, dice_loss, lovasz_softmax) cast f16/bf16 inputs to f32;
// - promote: binary elementwise ops, where, cat and stack whose operands have different floating dtypes
//   compute in the widest of them (outside autocast mixed dtypes stay an error).
// Every other op runs in its input's dtype (the norms take f16/bf16 inputs with f32 parameters and
// statistics). f64 tensors are never cast. The cast of a parameter (a leaf that requires grad) is made
// once per outermost guard and reused while its storage is unchanged, so a weight used by both Siamese
// branches is converted once. Run backward and the optimizer step outside the guard, as in PyTorch.
#pragma once

#include <cstddef>
#include <vector>

#include "core/dtype.h"
#include "engine/tensor.h"

namespace se {

class AutocastGuard {
 public:
  // dtype: f16 or bf16 (anything else is an error). enabled = false switches autocast off inside the
  // scope, e.g. for a region that must run in f32.
  explicit AutocastGuard(DType dtype, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool previous_enabled_;
  DType previous_dtype_;
};

bool autocast_enabled();  // on this thread
DType autocast_dtype();   // meaningful while autocast_enabled()

namespace autocast {
// The op-side casts; each returns its input unchanged when autocast is off or the input is undefined,
// not floating or f64.
Tensor to_low_precision(const Tensor& t);  // -> autocast_dtype()
Tensor to_f32(const Tensor& t);            // f16 / bf16 -> f32
// True when autocast is on and `a` and `b` are floating tensors of different dtypes: the test binary
// ops make before promoting, so the common case costs no copies.
bool mixes_floating_dtypes(const Tensor& a, const Tensor& b);
// Casts the operands to the widest of their floating dtypes (f16 and bf16 together give f32); false
// when autocast is off or nothing needed a cast.
bool promote(std::vector<Tensor>& tensors);
// Parameter casts held by the current outermost guard (tests).
size_t cached_casts();
}  // namespace autocast

}  // namespace se
