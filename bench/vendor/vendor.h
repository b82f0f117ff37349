// cuDNN and cuBLAS references for the kernel benchmarks (`segengine bench kernels --device cuda` and the
// Google Benchmark programs of bench/): the vendor call that does the same work as one of our kernels, on
// the same device buffers, queued on the same stream, so both are timed alike (CUDA events, median of
// repeats after warm-up). Benchmarks only: the engine and its kernels never call cuDNN or cuBLAS.
// Built in the real CUDA build when cuDNN is found (CMake option SEGENGINE_VENDOR_BENCH, which defines the
// macro of the same name for the code that links se_vendor). The arguments come from the host-side
// mappings of vendor_mapping.h.
//
// Precision: f32 runs strict FP32 math (CUDNN_FMA_MATH, CUBLAS_COMPUTE_32F without TF32), as our f32
// kernels; f16 and bf16 accumulate in f32 and may use tensor cores, as ours.
// Every library status is checked: a failure throws se::Error naming the call, the shape and the library's
// message; a configuration the library does not support throws NotSupported.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "bench/vendor/vendor_mapping.h"
#include "core/error.h"
#include "kernels/stream.h"

namespace se::vendor {

using kernels::Stream;

// CUDNN_STATUS_NOT_SUPPORTED*, CUBLAS_STATUS_NOT_SUPPORTED: the library has no kernel for this
// configuration (e.g. a dtype on this GPU): no equivalent, not a mistake of ours.
class NotSupported : public Error {
 public:
  using Error::Error;
};

// "cuDNN 9.19.0, cuBLAS 13.1.0": the versions of the libraries loaded at run time.
std::string library_versions();

// ---- Descriptor checks that need no GPU (cuDNN builds descriptors and computes output shapes without a
// device): each builds the descriptors its calls use and throws se::Error where cuDNN's output shape
// differs from the arguments'. For tests on machines without a GPU.
void check_conv_descriptors(const CudnnConvArgs& args);
void check_pool_descriptors(const CudnnPoolArgs& args, DType dtype);
void check_batch_norm_descriptors(const Dims4& x_dims, DType dtype);
void check_softmax_descriptors(const Dims4& dims, DType dtype);

// One prepared vendor call. Its descriptors, chosen algorithm and workspace live as long as the Call
// (copies share them).
class Call {
 public:
  Call(std::string library, std::string description, std::function<void()> launch)
      : library_(std::move(library)), description_(std::move(description)), launch_(std::move(launch)) {}
  // Queues the work on the stream given at preparation; returns without waiting.
  void operator()() const { launch_(); }
  const std::string& library() const { return library_; }  // "cuDNN" or "cuBLAS"
  // The functions it calls and, for convolutions, the algorithm cudnnFind*AlgorithmEx chose, e.g.
  // "cudnnConvolutionForward IMPLICIT_PRECOMP_GEMM (tensor cores, 2.3 MiB workspace) + cudnnAddTensor".
  const std::string& description() const { return description_; }

 private:
  std::string library_, description_;
  std::function<void()> launch_;
};

// ---- cuDNN convolution. Preparing one runs cudnnFind*AlgorithmEx on the given buffers (it writes the
// output) with up to 1 GiB of workspace and keeps the fastest algorithm with its workspace.
// Shapes below are those of CudnnConvArgs: x (N, C_in, H, W), w (C_out, C_in / groups, KH, KW),
// y (N, C_out, OH, OW).
Call conv2d_forward(const CudnnConvArgs& args, const void* x,  // (N, C_in, H, W)
                    const void* w,                             // (C_out, C_in / groups, KH, KW)
                    const void* bias,                          // (C_out), or null: no bias
                    void* y,                                   // (N, C_out, OH, OW)
                    Stream stream);
Call conv2d_backward_data(const CudnnConvArgs& args, const void* dy,  // (N, C_out, OH, OW)
                          const void* w,                              // (C_out, C_in / groups, KH, KW)
                          void* dx,                                   // (N, C_in, H, W)
                          Stream stream);
Call conv2d_backward_weight(const CudnnConvArgs& args, const void* x,  // (N, C_in, H, W)
                            const void* dy,                            // (N, C_out, OH, OW)
                            void* dw,                                  // (C_out, C_in / groups, KH, KW)
                            void* db,                                  // (C_out), or null: no bias gradient
                            Stream stream);

// ---- Transposed convolution, computed on the mirror conv2d (kernels::conv2d_of_transpose, whose args
// are `mirror`: input = the transpose's output shape, output = the transpose's input shape), as
// kernels/conv.h describes: forward = the mirror's backward data plus the bias, backward data = the
// mirror's forward, backward weight = the mirror's backward filter with x and dy swapped. Below,
// x (N, C_in, H, W) and y (N, C_out, OH, OW) are the transpose's; w is (C_in, C_out / groups, KH, KW).
Call conv_transpose2d_forward(const CudnnConvArgs& mirror, const void* x,  // (N, C_in, H, W)
                              const void* w,                               // (C_in, C_out / groups, KH, KW)
                              const void* bias,                            // (C_out), or null: no bias
                              void* y,                                     // (N, C_out, OH, OW)
                              Stream stream);
Call conv_transpose2d_backward_data(const CudnnConvArgs& mirror, const void* dy,  // (N, C_out, OH, OW)
                                    const void* w,                                // (C_in, C_out / groups, KH, KW)
                                    void* dx,                                     // (N, C_in, H, W)
                                    Stream stream);
Call conv_transpose2d_backward_weight(const CudnnConvArgs& mirror, const void* x,  // (N, C_in, H, W)
                                      const void* dy,                              // (N, C_out, OH, OW)
                                      void* dw,                                    // (C_in, C_out / groups, KH, KW)
                                      void* db,                                    // (C_out), or null: no bias gradient
                                      Stream stream);

// ---- cuDNN batch normalization, spatial mode, on x of cudnn_batch_norm_dims (N, C, HW, 1). The
// per-channel tensors are f32 (C) for f32, f16 and bf16 data.
// Training forward: y, the batch mean and 1 / sqrt(biased var + eps) saved for the backward, and the
// running statistics moved by `momentum` towards the batch mean and unbiased variance (PyTorch's and our
// semantics; cuDNN's exponentialAverageFactor is the momentum).
Call batch_norm_forward_training(const Dims4& x_dims, DType dtype, const void* x,  // (N, C, HW)
                                 void* y,                                          // (N, C, HW)
                                 const float* weight, const float* bias,           // (C) each
                                 float* running_mean, float* running_var,          // (C) each, updated in place
                                 float* save_mean, float* save_invstd,             // (C) each
                                 double momentum, double eps, Stream stream);
// Inference: y = (x - mean) / sqrt(var + eps) * weight + bias.
Call batch_norm_forward_inference(const Dims4& x_dims, DType dtype, const void* x,  // (N, C, HW)
                                  void* y,                                          // (N, C, HW)
                                  const float* weight, const float* bias,           // (C) each
                                  const float* mean, const float* var,              // (C) each
                                  double eps, Stream stream);
// Training backward from the saved statistics: dx, grad_weight and grad_bias.
Call batch_norm_backward(const Dims4& x_dims, DType dtype, const void* x,   // (N, C, HW)
                         const void* dy,                                    // (N, C, HW)
                         void* dx,                                          // (N, C, HW)
                         const float* weight,                               // (C)
                         float* grad_weight, float* grad_bias,              // (C) each
                         const float* save_mean, const float* save_invstd,  // (C) each, from the forward
                         double eps, Stream stream);

// ---- cuDNN pooling (max: NaN propagates, as ours). Shapes of CudnnPoolArgs: x (1, planes, H, W),
// y (1, planes, OH, OW). The backward reads x and y (max pooling finds the maximum again).
Call pool2d_forward(const CudnnPoolArgs& args, DType dtype, const void* x,  // (planes, H, W)
                    void* y,                                                // (planes, OH, OW)
                    Stream stream);
Call pool2d_backward(const CudnnPoolArgs& args, DType dtype, const void* x,  // (planes, H, W)
                     const void* y,                                          // (planes, OH, OW), the forward's
                     const void* dy,                                         // (planes, OH, OW)
                     void* dx,                                               // (planes, H, W)
                     Stream stream);

// ---- cuDNN softmax over C of cudnn_softmax_dims (outer, size, inner, 1), CUDNN_SOFTMAX_ACCURATE.
Call softmax_forward(const Dims4& dims, DType dtype, const void* x,  // (outer, size, inner)
                     void* y,                                        // (outer, size, inner)
                     Stream stream);
Call softmax_backward(const Dims4& dims, DType dtype, const void* y,  // (outer, size, inner), the forward's
                      const void* dy,                                 // (outer, size, inner)
                      void* dx,                                       // (outer, size, inner)
                      Stream stream);

// ---- cuBLAS GEMM on our row-major operands (cublas_gemm_args swaps them): cublasGemmEx, or
// cublasGemmStridedBatchedEx when args.batch > 1, with f32 compute.
Call gemm(const CublasGemmArgs& args, DType dtype, const void* a,  // our A: (batch, m, k), or (batch, k, m)
          const void* b,                                           // our B: (batch, k, n), or (batch, n, k)
          void* c,                                                 // (batch, m, n)
          Stream stream);

}  // namespace se::vendor
