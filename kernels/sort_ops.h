// Order-preserving maps from sort keys to unsigned integers, shared by kernels/cpu/sort.cpp and
// kernels/cuda/sort.cu so both backends order (and tie) keys identically. Internal to kernels/.
//   floats: NaN -> the canonical positive quiet NaN (above +inf), -0.0 -> +0.0, then the IEEE bits with the
//           sign bit flipped for positives and all bits flipped for negatives;
//   signed integers: the sign bit flipped.
// Descending order flips every bit of the key, so a stable ascending sort of the keys is a stable descending
// sort of the values.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/half.h"

namespace se::kernels::sort_ops {

template <typename T> struct KeyOf;
template <> struct KeyOf<float> { using type = uint32_t; };
template <> struct KeyOf<int32_t> { using type = uint32_t; };
template <> struct KeyOf<double> { using type = uint64_t; };
template <> struct KeyOf<int64_t> { using type = uint64_t; };
template <typename T> using key_t = typename KeyOf<T>::type;

template <typename T>
SE_HOST_DEVICE inline key_t<T> sort_key(T value, bool descending) {
  using K = key_t<T>;
  constexpr K kSign = K(1) << (8 * sizeof(K) - 1);
  K bits;
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (value != value) {  // one NaN for every payload and sign
      bits = std::is_same_v<T, float> ? K(0x7fc00000u) : K(0x7ff8000000000000ull);
    } else {
      if (value == T(0)) value = T(0);  // -0.0 -> +0.0
      memcpy(&bits, &value, sizeof(K));
    }
    bits = (bits & kSign) ? ~bits : (bits | kSign);
  } else {
    memcpy(&bits, &value, sizeof(K));
    bits ^= kSign;
  }
  return descending ? ~bits : bits;
}

}  // namespace se::kernels::sort_ops
