// The __half / __nv_bfloat16 intrinsics that the CUDA 13 headers declare for device code only. The headers'
// host paths already give conversions, comparisons and + - * / (through float); these complete the set
// kernels use: fused multiply-add, the h* math functions and their half2 forms. Each computes in float and
// rounds once to the 16-bit type, as the GPU's single-instruction versions do.
#pragma once

#include <cmath>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define SE_EMU_HALF_UNARY(T, name, expr)       \
  inline T name(const T a) {                   \
    const float x = static_cast<float>(a);     \
    return T(expr);                            \
  }

#define SE_EMU_HALF_FUNCTIONS(T, T2, lo, hi, make2)                                                          \
  inline T __hfma(const T a, const T b, const T c) {                                                       \
    return T(std::fma(static_cast<float>(a), static_cast<float>(b), static_cast<float>(c)));               \
  }                                                                                                        \
  inline T __hfma_relu(const T a, const T b, const T c) {                                                  \
    const float r = std::fma(static_cast<float>(a), static_cast<float>(b), static_cast<float>(c));         \
    return T(r < 0.0f ? 0.0f : r);                                                                         \
  }                                                                                                        \
  inline T2 __hfma2(const T2 a, const T2 b, const T2 c) {                                                  \
    return make2(__hfma(lo(a), lo(b), lo(c)), __hfma(hi(a), hi(b), hi(c)));                                \
  }                                                                                                        \
  SE_EMU_HALF_UNARY(T, hexp, std::exp(x))                                                                  \
  SE_EMU_HALF_UNARY(T, hexp2, std::exp2(x))                                                                \
  SE_EMU_HALF_UNARY(T, hexp10, std::pow(10.0f, x))                                                         \
  SE_EMU_HALF_UNARY(T, hlog, std::log(x))                                                                  \
  SE_EMU_HALF_UNARY(T, hlog2, std::log2(x))                                                                \
  SE_EMU_HALF_UNARY(T, hlog10, std::log10(x))                                                              \
  SE_EMU_HALF_UNARY(T, hsqrt, std::sqrt(x))                                                                \
  SE_EMU_HALF_UNARY(T, hrsqrt, 1.0f / std::sqrt(x))                                                        \
  SE_EMU_HALF_UNARY(T, hrcp, 1.0f / x)                                                                     \
  SE_EMU_HALF_UNARY(T, hsin, std::sin(x))                                                                  \
  SE_EMU_HALF_UNARY(T, hcos, std::cos(x))                                                                  \
  SE_EMU_HALF_UNARY(T, htanh, std::tanh(x))                                                                \
  SE_EMU_HALF_UNARY(T, hfloor, std::floor(x))                                                              \
  SE_EMU_HALF_UNARY(T, hceil, std::ceil(x))                                                                \
  SE_EMU_HALF_UNARY(T, htrunc, std::trunc(x))                                                              \
  SE_EMU_HALF_UNARY(T, hrint, std::nearbyint(x))                                                           \
  inline T2 h2exp(const T2 a) { return make2(hexp(lo(a)), hexp(hi(a))); }                                  \
  inline T2 h2exp2(const T2 a) { return make2(hexp2(lo(a)), hexp2(hi(a))); }                               \
  inline T2 h2log(const T2 a) { return make2(hlog(lo(a)), hlog(hi(a))); }                                  \
  inline T2 h2sqrt(const T2 a) { return make2(hsqrt(lo(a)), hsqrt(hi(a))); }                               \
  inline T2 h2rsqrt(const T2 a) { return make2(hrsqrt(lo(a)), hrsqrt(hi(a))); }                            \
  inline T2 h2rcp(const T2 a) { return make2(hrcp(lo(a)), hrcp(hi(a))); }                                  \
  inline T2 h2sin(const T2 a) { return make2(hsin(lo(a)), hsin(hi(a))); }                                  \
  inline T2 h2cos(const T2 a) { return make2(hcos(lo(a)), hcos(hi(a))); }

SE_EMU_HALF_FUNCTIONS(__half, __half2, __low2half, __high2half, __halves2half2)
SE_EMU_HALF_FUNCTIONS(__nv_bfloat16, __nv_bfloat162, __low2bfloat16, __high2bfloat16, __halves2bfloat162)
#undef SE_EMU_HALF_FUNCTIONS
#undef SE_EMU_HALF_UNARY

inline int __half2int_rn(const __half a) { return static_cast<int>(std::nearbyint(static_cast<float>(a))); }
inline int __bfloat162int_rn(const __nv_bfloat16 a) { return static_cast<int>(std::nearbyint(static_cast<float>(a))); }
