// Normalization layers: BatchNorm2d, LayerNorm, GroupNorm, forward and fused backward, for float,
// double, f16 and bf16 data. Tensors are contiguous: BatchNorm and GroupNorm see NCHW as (N, C, HW),
// LayerNorm sees (rows, cols) with cols = the product of normalized_shape.
//
// Parameters and statistics (weight, bias, running stats, mean, invstd, gradients of weight and bias)
// are norm_param_t<T>: double for double data, float otherwise, so 16-bit models keep their norm
// parameters in f32 (as cuDNN does). Sums and Welford/Chan statistics accumulate in
// reduce_ops::acc_t<T> (double for f32/f64, float for f16/bf16). Results do not depend on the number
// of threads.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/half.h"
#include "kernels/stream.h"

namespace se::kernels {

template <typename T>
using norm_param_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

struct BatchNormDesc {
  int64_t n = 1;
  int64_t c = 1;
  int64_t hw = 1;  // product of the spatial dims
  // A ReLU fused after the normalisation (Conv -> BN -> ReLU): the forward kernels write relu(y), rounded
  // to T first, as the element-wise ReLU would; the backward kernels take dy of the ReLU's output and count
  // it only where that output `y` is > 0, as relu's backward would (their y is not deduced, so it may be a
  // plain nullptr without the ReLU). Same bits as the two ops, without the ReLU's pass and tensor each way.
  bool relu = false;
};

struct LayerNormDesc {
  int64_t rows = 1;
  int64_t cols = 1;  // product of normalized_shape
};

struct GroupNormDesc {
  int64_t n = 1;
  int64_t c = 1;  // a multiple of groups
  int64_t hw = 1;
  int64_t groups = 1;
};

// Instantiated for float, double, f16, bf16.
namespace cpu {
// ---- BatchNorm, as four building blocks (PyTorch's SyncBatchNorm split) plus the running-stat step.
// Per-channel mean and biased variance of x over (N, HW), by Welford/Chan in acc_t<T>.
template <typename T>
void batch_norm_stats(norm_param_t<T>* mean,  // (C)
                      norm_param_t<T>* var,   // (C), biased: sum((x - mean)^2) / count
                      const T* x,             // (N, C, HW)
                      const BatchNormDesc& desc, Stream stream);
// invstd = 1 / sqrt(var + eps); when running_mean/running_var are non-null (both or neither) they
// move towards mean and the UNBIASED variance var * count / (count - 1) with `momentum` (PyTorch's
// semantics; count > 1 then). `count` is the number of values behind mean/var (N * HW, or the global
// count after an all-reduce).
template <typename T>
void batch_norm_finalize(norm_param_t<T>* invstd,        // (C)
                         norm_param_t<T>* running_mean,  // (C) or null, updated in place
                         norm_param_t<T>* running_var,   // (C) or null, updated in place
                         const norm_param_t<T>* mean,    // (C)
                         const norm_param_t<T>* var,     // (C), biased
                         int64_t channels, int64_t count, double momentum, double eps, Stream stream);
// y = (x - mean) * invstd * weight + bias; weight/bias null mean 1/0 (then relu(y) with desc.relu).
template <typename T>
void batch_norm_elemt(T* y,                           // (N, C, HW)
                      const T* x,                     // (N, C, HW)
                      const norm_param_t<T>* mean,    // (C)
                      const norm_param_t<T>* invstd,  // (C)
                      const norm_param_t<T>* weight,  // (C) or null
                      const norm_param_t<T>* bias,    // (C) or null
                      const BatchNormDesc& desc, Stream stream);
// One pass over dy and x: sum_dy = sum(dy), sum_dy_xmu = sum(dy * (x - mean)) per channel. Then
// grad_weight = sum_dy_xmu * invstd and grad_bias = sum_dy.
template <typename T>
void batch_norm_backward_reduce(norm_param_t<T>* sum_dy,           // (C)
                                norm_param_t<T>* sum_dy_xmu,       // (C)
                                const T* dy,                       // (N, C, HW)
                                const T* x,                        // (N, C, HW)
                                const std::type_identity_t<T>* y,  // (N, C, HW) if desc.relu, else ignored
                                const norm_param_t<T>* mean,       // (C)
                                const BatchNormDesc& desc, Stream stream);
// dx = weight * invstd * (dy - sum_dy / count - (x - mean) * invstd^2 * sum_dy_xmu / count). With
// sum_dy and sum_dy_xmu null the statistics are constants (eval mode): dx = weight * invstd * dy.
template <typename T>
void batch_norm_backward_elemt(T* dx,                              // (N, C, HW)
                               const T* dy,                        // (N, C, HW)
                               const T* x,                         // (N, C, HW)
                               const std::type_identity_t<T>* y,   // (N, C, HW) if desc.relu, else ignored
                               const norm_param_t<T>* mean,        // (C)
                               const norm_param_t<T>* invstd,      // (C)
                               const norm_param_t<T>* weight,      // (C) or null
                               const norm_param_t<T>* sum_dy,      // (C) or null
                               const norm_param_t<T>* sum_dy_xmu,  // (C) or null
                               int64_t count, const BatchNormDesc& desc, Stream stream);
// The training forward in one call: batch_norm_stats, batch_norm_finalize (count = N * HW) and
// batch_norm_elemt, with their results and bits. The CPU normalises each channel's planes right after
// their statistics, while they are in cache (one pass over x from memory instead of two); CUDA computes
// the statistics and finalizes them in one kernel, then runs the element-wise one.
template <typename T>
void batch_norm_forward_training(T* y,                           // (N, C, HW)
                                 norm_param_t<T>* mean,          // (C)
                                 norm_param_t<T>* invstd,        // (C)
                                 norm_param_t<T>* running_mean,  // (C) or null, updated in place
                                 norm_param_t<T>* running_var,   // (C) or null, updated in place
                                 const T* x,                     // (N, C, HW)
                                 const norm_param_t<T>* weight,  // (C) or null
                                 const norm_param_t<T>* bias,    // (C) or null
                                 const BatchNormDesc& desc, double momentum, double eps, Stream stream);
// The training backward in one call: batch_norm_backward_reduce, then (dx not null)
// batch_norm_backward_elemt with count = N * HW, with their results and bits; the CPU computes each
// channel's dx right after its sums, while dy and x are in cache.
template <typename T>
void batch_norm_backward_training(T* dx,                             // (N, C, HW) or null
                                  norm_param_t<T>* sum_dy,           // (C)
                                  norm_param_t<T>* sum_dy_xmu,       // (C)
                                  const T* dy,                       // (N, C, HW)
                                  const T* x,                        // (N, C, HW)
                                  const std::type_identity_t<T>* y,  // (N, C, HW) if desc.relu, else ignored
                                  const norm_param_t<T>* mean,       // (C)
                                  const norm_param_t<T>* invstd,     // (C)
                                  const norm_param_t<T>* weight,     // (C) or null
                                  const BatchNormDesc& desc, Stream stream);

// ---- LayerNorm over the trailing `cols` values of each row.
template <typename T>
void layer_norm_forward(T* y,                           // (rows, cols)
                        norm_param_t<T>* mean,          // (rows)
                        norm_param_t<T>* invstd,        // (rows)
                        const T* x,                     // (rows, cols)
                        const norm_param_t<T>* weight,  // (cols) or null
                        const norm_param_t<T>* bias,    // (cols) or null
                        const LayerNormDesc& desc, double eps, Stream stream);
// dx, and (when non-null) grad_weight / grad_bias, from the saved mean and invstd.
template <typename T>
void layer_norm_backward(T* dx,                          // (rows, cols)
                         norm_param_t<T>* grad_weight,   // (cols) or null
                         norm_param_t<T>* grad_bias,     // (cols) or null
                         const T* dy,                    // (rows, cols)
                         const T* x,                     // (rows, cols)
                         const norm_param_t<T>* mean,    // (rows)
                         const norm_param_t<T>* invstd,  // (rows)
                         const norm_param_t<T>* weight,  // (cols) or null
                         const LayerNormDesc& desc, Stream stream);

// ---- GroupNorm: statistics per (sample, group of C / groups channels), affine per channel.
template <typename T>
void group_norm_forward(T* y,                           // (N, C, HW)
                        norm_param_t<T>* mean,          // (N, groups)
                        norm_param_t<T>* invstd,        // (N, groups)
                        const T* x,                     // (N, C, HW)
                        const norm_param_t<T>* weight,  // (C) or null
                        const norm_param_t<T>* bias,    // (C) or null
                        const GroupNormDesc& desc, double eps, Stream stream);
template <typename T>
void group_norm_backward(T* dx,                          // (N, C, HW)
                         norm_param_t<T>* grad_weight,   // (C) or null
                         norm_param_t<T>* grad_bias,     // (C) or null
                         const T* dy,                    // (N, C, HW)
                         const T* x,                     // (N, C, HW)
                         const norm_param_t<T>* mean,    // (N, groups)
                         const norm_param_t<T>* invstd,  // (N, groups)
                         const norm_param_t<T>* weight,  // (C) or null
                         const GroupNormDesc& desc, Stream stream);
}  // namespace cpu

// The same functions on the device; every pointer is device memory.
namespace cuda {
// ---- BatchNorm, as four building blocks (PyTorch's SyncBatchNorm split) plus the running-stat step.
// Per-channel mean and biased variance of x over (N, HW), by Welford/Chan in acc_t<T>.
template <typename T>
void batch_norm_stats(norm_param_t<T>* mean,  // (C)
                      norm_param_t<T>* var,   // (C), biased: sum((x - mean)^2) / count
                      const T* x,             // (N, C, HW)
                      const BatchNormDesc& desc, Stream stream);
// invstd = 1 / sqrt(var + eps); when running_mean/running_var are non-null (both or neither) they
// move towards mean and the UNBIASED variance var * count / (count - 1) with `momentum` (PyTorch's
// semantics; count > 1 then). `count` is the number of values behind mean/var (N * HW, or the global
// count after an all-reduce).
template <typename T>
void batch_norm_finalize(norm_param_t<T>* invstd,        // (C)
                         norm_param_t<T>* running_mean,  // (C) or null, updated in place
                         norm_param_t<T>* running_var,   // (C) or null, updated in place
                         const norm_param_t<T>* mean,    // (C)
                         const norm_param_t<T>* var,     // (C), biased
                         int64_t channels, int64_t count, double momentum, double eps, Stream stream);
// y = (x - mean) * invstd * weight + bias; weight/bias null mean 1/0 (then relu(y) with desc.relu).
template <typename T>
void batch_norm_elemt(T* y,                           // (N, C, HW)
                      const T* x,                     // (N, C, HW)
                      const norm_param_t<T>* mean,    // (C)
                      const norm_param_t<T>* invstd,  // (C)
                      const norm_param_t<T>* weight,  // (C) or null
                      const norm_param_t<T>* bias,    // (C) or null
                      const BatchNormDesc& desc, Stream stream);
// One pass over dy and x: sum_dy = sum(dy), sum_dy_xmu = sum(dy * (x - mean)) per channel. Then
// grad_weight = sum_dy_xmu * invstd and grad_bias = sum_dy.
template <typename T>
void batch_norm_backward_reduce(norm_param_t<T>* sum_dy,           // (C)
                                norm_param_t<T>* sum_dy_xmu,       // (C)
                                const T* dy,                       // (N, C, HW)
                                const T* x,                        // (N, C, HW)
                                const std::type_identity_t<T>* y,  // (N, C, HW) if desc.relu, else ignored
                                const norm_param_t<T>* mean,       // (C)
                                const BatchNormDesc& desc, Stream stream);
// dx = weight * invstd * (dy - sum_dy / count - (x - mean) * invstd^2 * sum_dy_xmu / count). With
// sum_dy and sum_dy_xmu null the statistics are constants (eval mode): dx = weight * invstd * dy.
template <typename T>
void batch_norm_backward_elemt(T* dx,                              // (N, C, HW)
                               const T* dy,                        // (N, C, HW)
                               const T* x,                         // (N, C, HW)
                               const std::type_identity_t<T>* y,   // (N, C, HW) if desc.relu, else ignored
                               const norm_param_t<T>* mean,        // (C)
                               const norm_param_t<T>* invstd,      // (C)
                               const norm_param_t<T>* weight,      // (C) or null
                               const norm_param_t<T>* sum_dy,      // (C) or null
                               const norm_param_t<T>* sum_dy_xmu,  // (C) or null
                               int64_t count, const BatchNormDesc& desc, Stream stream);
// As cpu:: (the statistics and their finalize in one kernel, then the element-wise one).
template <typename T>
void batch_norm_forward_training(T* y,                           // (N, C, HW)
                                 norm_param_t<T>* mean,          // (C)
                                 norm_param_t<T>* invstd,        // (C)
                                 norm_param_t<T>* running_mean,  // (C) or null, updated in place
                                 norm_param_t<T>* running_var,   // (C) or null, updated in place
                                 const T* x,                     // (N, C, HW)
                                 const norm_param_t<T>* weight,  // (C) or null
                                 const norm_param_t<T>* bias,    // (C) or null
                                 const BatchNormDesc& desc, double momentum, double eps, Stream stream);
// As cpu:: (the reduce kernel, then the element-wise one).
template <typename T>
void batch_norm_backward_training(T* dx,                             // (N, C, HW) or null
                                  norm_param_t<T>* sum_dy,           // (C)
                                  norm_param_t<T>* sum_dy_xmu,       // (C)
                                  const T* dy,                       // (N, C, HW)
                                  const T* x,                        // (N, C, HW)
                                  const std::type_identity_t<T>* y,  // (N, C, HW) if desc.relu, else ignored
                                  const norm_param_t<T>* mean,       // (C)
                                  const norm_param_t<T>* invstd,     // (C)
                                  const norm_param_t<T>* weight,     // (C) or null
                                  const BatchNormDesc& desc, Stream stream);

// ---- LayerNorm over the trailing `cols` values of each row.
template <typename T>
void layer_norm_forward(T* y,                           // (rows, cols)
                        norm_param_t<T>* mean,          // (rows)
                        norm_param_t<T>* invstd,        // (rows)
                        const T* x,                     // (rows, cols)
                        const norm_param_t<T>* weight,  // (cols) or null
                        const norm_param_t<T>* bias,    // (cols) or null
                        const LayerNormDesc& desc, double eps, Stream stream);
// dx, and (when non-null) grad_weight / grad_bias, from the saved mean and invstd.
template <typename T>
void layer_norm_backward(T* dx,                          // (rows, cols)
                         norm_param_t<T>* grad_weight,   // (cols) or null
                         norm_param_t<T>* grad_bias,     // (cols) or null
                         const T* dy,                    // (rows, cols)
                         const T* x,                     // (rows, cols)
                         const norm_param_t<T>* mean,    // (rows)
                         const norm_param_t<T>* invstd,  // (rows)
                         const norm_param_t<T>* weight,  // (cols) or null
                         const LayerNormDesc& desc, Stream stream);

// ---- GroupNorm: statistics per (sample, group of C / groups channels), affine per channel.
template <typename T>
void group_norm_forward(T* y,                           // (N, C, HW)
                        norm_param_t<T>* mean,          // (N, groups)
                        norm_param_t<T>* invstd,        // (N, groups)
                        const T* x,                     // (N, C, HW)
                        const norm_param_t<T>* weight,  // (C) or null
                        const norm_param_t<T>* bias,    // (C) or null
                        const GroupNormDesc& desc, double eps, Stream stream);
template <typename T>
void group_norm_backward(T* dx,                          // (N, C, HW)
                         norm_param_t<T>* grad_weight,   // (C) or null
                         norm_param_t<T>* grad_bias,     // (C) or null
                         const T* dy,                    // (N, C, HW)
                         const T* x,                     // (N, C, HW)
                         const norm_param_t<T>* mean,    // (N, groups)
                         const norm_param_t<T>* invstd,  // (N, groups)
                         const norm_param_t<T>* weight,  // (C) or null
                         const GroupNormDesc& desc, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
