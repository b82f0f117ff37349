// Multi-tensor optimizer kernels: one call updates every parameter tensor of a group (the weights
// of a whole model), instead of one launch per tensor per elementwise op. Also the global gradient
// norm for clipping and the unscale-and-check-for-inf/NaN step of dynamic loss scaling.
// Parameters, gradients and optimizer state are f32 (master weights in mixed precision).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/stream.h"

namespace se::kernels {

inline constexpr int kMaxListsPerStep = 4;
// Each tensor is processed in chunks of this many elements (one CUDA block per chunk).
inline constexpr int64_t kMultiTensorChunk = 1 << 16;

// `count` tensors; lists[l][i] is the i-th tensor of list l, a contiguous f32 array of numels[i]
// elements. All arrays here are host arrays; the pointers they hold are device pointers on CUDA.
// Which lists an op reads is documented with the op.
struct MultiTensorList {
  int64_t count = 0;
  const int64_t* numels = nullptr;                  // (count,)
  float* const* lists[kMaxListsPerStep] = {};       // each (count,) pointers, or nullptr when unused
};

// Bytes of device workspace the CUDA entry points need for `list`: the pointer tables of all lists,
// the numels, the chunk table and one partial sum per chunk, each part 16-byte aligned. The CPU
// entry points ignore the workspace (pass nullptr).
inline size_t multi_tensor_workspace_bytes(const MultiTensorList& list) {
  auto align = [](size_t bytes) { return (bytes + 15) / 16 * 16; };
  int64_t chunks = 0;
  for (int64_t i = 0; i < list.count; ++i) chunks += (list.numels[i] + kMultiTensorChunk - 1) / kMultiTensorChunk;
  const size_t count = static_cast<size_t>(list.count);
  return align(kMaxListsPerStep * count * sizeof(float*)) + align(count * sizeof(int64_t)) +
         align(static_cast<size_t>(chunks) * 2 * sizeof(int64_t)) + align(static_cast<size_t>(chunks) * sizeof(float));
}

// torch.optim.SGD: lists[0] params, [1] grads, [2] momentum buffers (needed when momentum != 0).
struct SgdDesc {
  float lr = 0.01f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool first_step = false;  // the momentum buffer starts as the gradient, as in PyTorch
};

// torch.optim.Adam / AdamW: lists[0] params, [1] grads, [2] exp_avg, [3] exp_avg_sq.
struct AdamDesc {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool decoupled_weight_decay = true;  // AdamW (p *= 1 - lr * wd); false: Adam's L2 term added to the grad
  int64_t step = 1;                    // 1-based step number after this update, for bias correction
};

namespace cpu {
void sgd_step(const SgdDesc& desc, const MultiTensorList& list, void* workspace, Stream stream);
void adam_step(const AdamDesc& desc, const MultiTensorList& list, void* workspace, Stream stream);
// out (1,) = sum of squares of every element of lists[0] (the global L2 norm squared).
void sum_of_squares(const MultiTensorList& list, float* out, void* workspace, Stream stream);
// lists[0][i] *= inv_scale in place; found_inf (1,) is set to 1 when any element is inf or NaN (it
// is never cleared, so one flag can collect several calls).
void unscale_and_check(const MultiTensorList& list, float inv_scale, float* found_inf, void* workspace,
                       Stream stream);
}  // namespace cpu

namespace cuda {
void sgd_step(const SgdDesc& desc, const MultiTensorList& list, void* workspace, Stream stream);
void adam_step(const AdamDesc& desc, const MultiTensorList& list, void* workspace, Stream stream);
void sum_of_squares(const MultiTensorList& list, float* out, void* workspace, Stream stream);
void unscale_and_check(const MultiTensorList& list, float inv_scale, float* found_inf, void* workspace,
                       Stream stream);
}  // namespace cuda

}  // namespace se::kernels
