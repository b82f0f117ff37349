// Host-side 16-bit float storage types. Bit-compatible with CUDA's __half and __nv_bfloat16, so a
// pointer to se::f16 data can be reinterpreted as __half* inside a CUDA kernel. Arithmetic goes through
// float; conversions round to nearest even, as CUDA's __float2half_rn / __float2bfloat16_rn do.
#pragma once

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define SE_HOST_DEVICE __host__ __device__
#else
#define SE_HOST_DEVICE
#endif

namespace se {

SE_HOST_DEVICE inline uint32_t float_bits(float value) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(value);
#else
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
#endif
}

SE_HOST_DEVICE inline float bits_float(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
#endif
}

struct f16 {
  uint16_t bits = 0;

  f16() = default;
  SE_HOST_DEVICE f16(float value) : bits(from_float(value)) {}  // NOLINT: implicit like a float type
  SE_HOST_DEVICE operator float() const { return to_float(bits); }
  SE_HOST_DEVICE static f16 from_bits(uint16_t b) {
    f16 h;
    h.bits = b;
    return h;
  }

  SE_HOST_DEVICE static uint16_t from_float(float value) {
    uint32_t x = float_bits(value);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t abs = x & 0x7fffffffu;
    if (abs >= 0x7f800000u) {  // inf or nan
      return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    }
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
    if (abs < 0x38800000u) {  // result is subnormal or zero: scale into the subnormal grid
      // value * 2^24 rounded to nearest even gives the subnormal mantissa.
      float scaled = bits_float(abs) * 16777216.0f;
      uint32_t mant = static_cast<uint32_t>(scaled);
      float rem = scaled - static_cast<float>(mant);
      if (rem > 0.5f || (rem == 0.5f && (mant & 1u))) ++mant;
      return static_cast<uint16_t>(sign | mant);
    }
    uint32_t rounding = 0xfffu + ((abs >> 13) & 1u);  // round half to even on the 13 dropped bits
    abs += rounding;
    return static_cast<uint16_t>(sign | ((abs - 0x38000000u) >> 13));
  }

  SE_HOST_DEVICE static float to_float(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
      float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24
      return sign ? -v : v;
    }
    return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
  }
};

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  SE_HOST_DEVICE bf16(float value) : bits(from_float(value)) {}  // NOLINT: implicit like a float type
  SE_HOST_DEVICE operator float() const { return bits_float(static_cast<uint32_t>(bits) << 16); }
  SE_HOST_DEVICE static bf16 from_bits(uint16_t b) {
    bf16 h;
    h.bits = b;
    return h;
  }

  SE_HOST_DEVICE static uint16_t from_float(float value) {
    uint32_t x = float_bits(value);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet nan
    x += 0x7fffu + ((x >> 16) & 1u);  // round half to even
    return static_cast<uint16_t>(x >> 16);
  }
};

static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2, "16-bit float types must be 2 bytes");

}  // namespace se
