// Channels-last (Conv2dLayout::nhwc) Conv2d on the CPU: the NCHW kernels of conv.cpp run on permuted
// copies of the operands. The CPU path's im2col, GEMM tiling and depthwise loops are built around
// contiguous planes, so a permutation each way (memory-bound, a fraction of a 3x3 conv's time) is
// cheaper than a second set of kernels, except for depthwise convs, which are memory-bound
// themselves: the stride-1 ones run on loops of their own (conv_depthwise_nhwc.cpp, where
// conv2d_runs_nhwc_natively). Called by the entry points of conv.cpp after validation.
#pragma once

#include "kernels/conv.h"

namespace se::kernels::cpu {

// desc.layout == nhwc; shapes as in kernels/conv.h for nhwc.
void conv2d_forward_channels_last(const Conv2dDesc& desc, const void* x,          // (N, H, W, C_in)
                                  const void* w,                                  // (C_out, KH, KW, Cg)
                                  const void* bias,                               // (C_out) or nullptr
                                  void* y);                                       // (N, OH, OW, C_out)
void conv2d_backward_data_channels_last(const Conv2dDesc& desc, const void* dy,   // (N, OH, OW, C_out)
                                        const void* w,                            // (C_out, KH, KW, Cg)
                                        void* dx);                                // (N, H, W, C_in)
void conv2d_backward_weight_channels_last(const Conv2dDesc& desc, const void* x,  // (N, H, W, C_in)
                                          const void* dy,                         // (N, OH, OW, C_out)
                                          void* dw,                               // (C_out, KH, KW, Cg)
                                          void* db);                              // (C_out) or nullptr

// The native depthwise loops (conv_depthwise_nhwc.cpp); desc as conv2d_runs_nhwc_natively accepts.
void depthwise_nhwc_forward(const Conv2dDesc& desc, const void* x,  // (N, H, W, C)
                            const void* w,                          // (C, KH, KW, 1)
                            const void* bias,                       // (C) or nullptr
                            void* y);                               // (N, OH, OW, C)
void depthwise_nhwc_backward_data(const Conv2dDesc& desc, const void* dy,  // (N, OH, OW, C)
                                  const void* w,                           // (C, KH, KW, 1)
                                  void* dx);                               // (N, H, W, C)
void depthwise_nhwc_backward_weight(const Conv2dDesc& desc, const void* x,  // (N, H, W, C)
                                    const void* dy,                         // (N, OH, OW, C)
                                    void* dw,                               // (C, KH, KW, 1)
                                    void* db);                              // (C) or nullptr

}  // namespace se::kernels::cpu
