// Loss kernels over NCHW logits, forward and backward side by side.
//
// Softmax cross-entropy, PyTorch's F.cross_entropy semantics. Logits are viewed as (N, C, S) with S = H * W
// (S = 1 for (N, C) logits), targets as (N, S) class indices. For a pixel i with target y that is not
// ignore_index, eps = label_smoothing and class weights w (all ones when absent):
//   loss_i = -sum_c q_c * log_softmax(z_i)_c,   q_c = (1 - eps) * w_y * [c == y] + eps / C * w_c
// and its weight in a mean reduction is w_y (mean = sum_i loss_i / sum_i w_y, as PyTorch's nll_loss and
// label-smoothing term both normalise). Ignored pixels give loss 0 and weight 0. The forward saves the
// per-pixel log-sum-exp, so the backward is one elementwise pass:
//   d loss_i / d z_c = softmax_c * sum_k q_k - q_c
//
// Targets outside [0, C) that are not ignore_index: the kernels skip the pixel and write its value into
// *bad_target, which the caller initialises to ignore_index (the one value that can never be bad) and reads
// back once afterwards; on CUDA it is device memory set with an atomic compare-and-swap, so the reported
// value is one of the bad ones, not necessarily the first.
//
// Binary cross-entropy with logits, PyTorch's F.binary_cross_entropy_with_logits, elementwise over logits
// viewed as (outer, channels, inner) with pos_weight p indexed by the channel (1 when absent):
//   loss = (1 - y) * x + (1 + (p - 1) * y) * softplus(-x)
//   d loss / d x = (1 - y) - (1 + (p - 1) * y) * sigmoid(-x)
// with softplus(-x) = max(-x, 0) + log1p(exp(-|x|)), stable for any x.
//
// Softmax focal loss, the semantics of AdeelH/pytorch-multi-class-focal-loss FocalLoss (Lin et al.'s focal
// term on the softmax): for a pixel with target y that is not ignore_index, p = softmax(z)_y and class weight
// alpha_y (1 when absent),
//   loss = -alpha_y * (1 - p)^gamma * log p,   d loss / d z_c = F * ([c == y] - softmax(z)_c),
//   F = alpha_y * (gamma * (1 - p)^(gamma - 1) * p * log p - (1 - p)^gamma).
// The forward writes per-pixel losses, a 1/0 valid mask (the mean's denominator) and the log-sum-exp for the
// backward; bad targets are reported as for cross-entropy. gamma = 0 is cross-entropy with weight alpha.
//
// Compute (and the saved log-sum-exp) is in loss_compute_t<T>: double for f64, float otherwise.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/half.h"
#include "kernels/stream.h"

namespace se::kernels {

template <typename T>
using loss_compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

struct CrossEntropyDesc {
  int64_t batch = 1;    // N
  int64_t classes = 1;  // C
  int64_t spatial = 1;  // S = H * W
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;  // in [0, 1]
};

struct FocalLossDesc {
  int64_t batch = 1;    // N
  int64_t classes = 1;  // C
  int64_t spatial = 1;  // S = H * W
  int64_t ignore_index = -100;
  double gamma = 2.0;  // >= 0
};

struct BinaryCrossEntropyDesc {
  int64_t outer = 1;
  int64_t channels = 1;  // pos_weight's length
  int64_t inner = 1;
};

// Instantiated for float, double, f16, bf16.
namespace cpu {
template <typename T>
void cross_entropy_forward(T* loss,                 // (N, S), per pixel
                           T* pixel_weight,         // (N, S), w_y (0 where ignored)
                           loss_compute_t<T>* lse,  // (N, S), saved for the backward
                           int64_t* bad_target,     // (1), see above
                           const T* logits,         // (N, C, S)
                           const int64_t* target,   // (N, S)
                           const T* weight,         // (C), or null for all ones
                           const CrossEntropyDesc& desc, Stream stream);
// grad_loss_stride 1: one gradient per pixel (reduction none); 0: one gradient for all pixels, already
// divided by the mean's denominator where the reduction is mean.
template <typename T>
void cross_entropy_backward(T* grad_logits,      // (N, C, S)
                            const T* grad_loss,  // (N, S), or (1) with grad_loss_stride 0
                            int64_t grad_loss_stride,
                            const T* logits,               // (N, C, S)
                            const loss_compute_t<T>* lse,  // (N, S)
                            const int64_t* target,         // (N, S)
                            const T* weight,               // (C), or null
                            const CrossEntropyDesc& desc, Stream stream);
template <typename T>
void binary_cross_entropy_forward(T* loss,              // (outer, channels, inner)
                                  const T* logits,      // (outer, channels, inner)
                                  const T* target,      // (outer, channels, inner), probabilities
                                  const T* pos_weight,  // (channels), or null
                                  const BinaryCrossEntropyDesc& desc, Stream stream);
// grad_loss_stride 1: one gradient per element; 0: one for all, already divided by the mean's count.
template <typename T>
void binary_cross_entropy_backward(T* grad_logits,      // (outer, channels, inner)
                                   const T* grad_loss,  // (outer, channels, inner), or (1) with stride 0
                                   int64_t grad_loss_stride,
                                   const T* logits,      // (outer, channels, inner)
                                   const T* target,      // (outer, channels, inner)
                                   const T* pos_weight,  // (channels), or null
                                   const BinaryCrossEntropyDesc& desc, Stream stream);
template <typename T>
void focal_loss_forward(T* loss,                 // (N, S), per pixel
                        T* valid,                // (N, S), 1 where the target is not ignore_index, else 0
                        loss_compute_t<T>* lse,  // (N, S), saved for the backward
                        int64_t* bad_target,     // (1), as for cross_entropy_forward
                        const T* logits,         // (N, C, S)
                        const int64_t* target,   // (N, S)
                        const T* alpha,          // (C), or null for all ones
                        const FocalLossDesc& desc, Stream stream);
// grad_loss_stride as for cross_entropy_backward.
template <typename T>
void focal_loss_backward(T* grad_logits,      // (N, C, S)
                         const T* grad_loss,  // (N, S), or (1) with grad_loss_stride 0
                         int64_t grad_loss_stride,
                         const T* logits,               // (N, C, S)
                         const loss_compute_t<T>* lse,  // (N, S)
                         const int64_t* target,         // (N, S)
                         const T* alpha,                // (C), or null
                         const FocalLossDesc& desc, Stream stream);
}  // namespace cpu

namespace cuda {
template <typename T>
void cross_entropy_forward(T* loss,                 // (N, S), per pixel
                           T* pixel_weight,         // (N, S), w_y (0 where ignored)
                           loss_compute_t<T>* lse,  // (N, S), saved for the backward
                           int64_t* bad_target,     // (1), device memory, see above
                           const T* logits,         // (N, C, S)
                           const int64_t* target,   // (N, S)
                           const T* weight,         // (C), or null for all ones
                           const CrossEntropyDesc& desc, Stream stream);
template <typename T>
void cross_entropy_backward(T* grad_logits,      // (N, C, S)
                            const T* grad_loss,  // (N, S), or (1) with grad_loss_stride 0
                            int64_t grad_loss_stride,
                            const T* logits,               // (N, C, S)
                            const loss_compute_t<T>* lse,  // (N, S)
                            const int64_t* target,         // (N, S)
                            const T* weight,               // (C), or null
                            const CrossEntropyDesc& desc, Stream stream);
template <typename T>
void binary_cross_entropy_forward(T* loss,              // (outer, channels, inner)
                                  const T* logits,      // (outer, channels, inner)
                                  const T* target,      // (outer, channels, inner), probabilities
                                  const T* pos_weight,  // (channels), or null
                                  const BinaryCrossEntropyDesc& desc, Stream stream);
// grad_loss_stride 1: one gradient per element; 0: one for all, already divided by the mean's count.
template <typename T>
void binary_cross_entropy_backward(T* grad_logits,      // (outer, channels, inner)
                                   const T* grad_loss,  // (outer, channels, inner), or (1) with stride 0
                                   int64_t grad_loss_stride,
                                   const T* logits,      // (outer, channels, inner)
                                   const T* target,      // (outer, channels, inner)
                                   const T* pos_weight,  // (channels), or null
                                   const BinaryCrossEntropyDesc& desc, Stream stream);
template <typename T>
void focal_loss_forward(T* loss,                 // (N, S), per pixel
                        T* valid,                // (N, S), 1 where the target is not ignore_index, else 0
                        loss_compute_t<T>* lse,  // (N, S), saved for the backward
                        int64_t* bad_target,     // (1), as for cross_entropy_forward
                        const T* logits,         // (N, C, S)
                        const int64_t* target,   // (N, S)
                        const T* alpha,          // (C), or null for all ones
                        const FocalLossDesc& desc, Stream stream);
// grad_loss_stride as for cross_entropy_backward.
template <typename T>
void focal_loss_backward(T* grad_logits,      // (N, C, S)
                         const T* grad_loss,  // (N, S), or (1) with grad_loss_stride 0
                         int64_t grad_loss_stride,
                         const T* logits,               // (N, C, S)
                         const loss_compute_t<T>* lse,  // (N, S)
                         const int64_t* target,         // (N, S)
                         const T* alpha,                // (C), or null
                         const FocalLossDesc& desc, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
