// Internal to the CPU Conv2d (conv.cpp): a direct stride-1 convolution in AVX-512, for shallow convs,
// those whose GEMM depth K = Cg * KH * KW is small (U-Net's RGB input layer has K = 27), and for deeper
// ones over wide rows. As a GEMM such a conv spends much of its time in im2col, packing and passes over
// its output (and for backward data, col2im); computed directly, each 16-pixel vector of a row is
// loaded once per tap and feeds a register tile of output channels, and the finished tile goes
// straight from registers to y (non-temporal stores for large outputs). The backward data of a
// stride-1 conv is itself such a convolution, of dy with the flipped, transposed weights; the backward
// weight runs directly for shallow convs and for those with few outputs.
#pragma once

#include <cstdint>

#include "kernels/conv.h"

namespace se::kernels::cpu {

// Below this GEMM depth a conv does few FMAs per byte of x, y and dy (conv.cpp's GEMM path also
// chunks and stores such convs differently).
constexpr int64_t kShallowConvDepth = 128;

enum class DirectPass { forward, backward_data, backward_weight };

// Whether the direct kernel takes this pass of d (NCHW; the caller passes f32): stride 1, not 1x1
// unpadded (a GEMM reads such an x in place), not depthwise (conv.cpp's own loop), a kernel at most 16
// wide, an x86-64 CPU with AVX-512 whose GEMM has not been switched to another micro-kernel family
// (set_gemm_isa: tests use it to run the GEMM path of the same convs); and either shallow
// (K < kShallowConvDepth), or for forward and backward data, output rows of the pass at least 128 wide
// (64 for a K of the pass up to 288) whose staged input rows (Cg * ((KH - 1) * dh + 1) rows per thread)
// fit in 3/4 of the L2 cache; for backward weight, fewer than 32 outputs per group and rows at least
// 64 wide, whose staged rows (of a band of output rows) and f32 sums (C_out * (K + 1) * 16) fit there.
bool conv2d_runs_direct(const Conv2dDesc& d, DirectPass pass);

// As conv2d_forward (bias nullptr when none, the fused activation of d); `stream` writes y with
// non-temporal stores (an output far larger than the caches). Every output sums its (c, i, j) terms in
// that order after the bias, whatever the threads.
void conv2d_forward_direct(const Conv2dDesc& d, const float* x,  // (N, C_in, H, W)
                           const float* w,                       // (C_out, Cg, KH, KW)
                           const float* bias,                    // (C_out) or nullptr
                           bool stream, float* y);               // (N, C_out, OH, OW)

// As conv2d_backward_data; `stream` as above, for dx.
void conv2d_backward_data_direct(const Conv2dDesc& d, const float* dy,  // (N, C_out, OH, OW)
                                 const float* w,                        // (C_out, Cg, KH, KW)
                                 bool stream, float* dx);               // (N, C_in, H, W)

// As conv2d_backward_weight (db nullptr when not wanted). Bands of output rows go in slots, ranges fixed
// by the shape (and the L2 size): each slot's products are summed in f32 vector lanes, folded into the
// slot's f64 sums every few bands, and the slots' sums added in slot order, so dW and db do not depend
// on the thread count.
void conv2d_backward_weight_direct(const Conv2dDesc& d, const float* x,  // (N, C_in, H, W)
                                   const float* dy,                      // (N, C_out, OH, OW)
                                   float* dw,                            // (C_out, Cg, KH, KW)
                                   float* db);                           // (C_out) or nullptr

}  // namespace se::kernels::cpu
