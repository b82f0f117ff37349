// Element conversion between any two dtypes, identical on the host and in CUDA kernels (the 16-bit
// types convert through float with round-to-nearest-even; anything to bool is "!= 0").
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/half.h"

namespace se::kernels {

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, se::f16> || std::is_same_v<T, se::bf16>;

template <typename Dst, typename Src>
SE_HOST_DEVICE inline Dst convert(Src value) {
  if constexpr (std::is_same_v<Dst, Src>) {
    return value;
  } else if constexpr (is_half_v<Src>) {
    return convert<Dst>(static_cast<float>(value));
  } else if constexpr (std::is_same_v<Dst, bool>) {
    return value != Src(0);
  } else if constexpr (is_half_v<Dst>) {
    return Dst(static_cast<float>(value));
  } else {
    return static_cast<Dst>(value);
  }
}

}  // namespace se::kernels
