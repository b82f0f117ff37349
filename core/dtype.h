// Element types of tensors and kernels, their names and sizes, and a dispatch helper that turns a
// runtime DType into a compile-time C++ type.
#pragma once

#include <cstdint>
#include <string>
#include <ostream>
#include <string_view>

#include "core/error.h"
#include "core/half.h"

namespace se {

enum class DType : uint8_t { f32, f16, bf16, f64, i32, i64, u8, boolean };

inline constexpr DType kAllDTypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64,
                                       DType::i32, DType::i64, DType::u8,   DType::boolean};

inline constexpr std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
    case DType::boolean: return "bool";
  }
  return "?";
}

inline constexpr size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: case DType::i32: return 4;
    case DType::f16: case DType::bf16: return 2;
    case DType::f64: case DType::i64: return 8;
    case DType::u8: case DType::boolean: return 1;
  }
  return 0;
}

inline constexpr bool is_floating(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::f64;
}

inline constexpr bool is_integral(DType dtype) {  // bool excluded
  return dtype == DType::i32 || dtype == DType::i64 || dtype == DType::u8;
}

// Parses "f32", "float32", "f16", "half", ... Throws se::Error naming the accepted spellings.
DType parse_dtype(std::string_view name);

inline std::ostream& operator<<(std::ostream& out, DType dtype) { return out << dtype_name(dtype); }

// The C++ type holding one element of a DType on the host.
template <DType D> struct DTypeTraits;
template <> struct DTypeTraits<DType::f32> { using type = float; };
template <> struct DTypeTraits<DType::f16> { using type = f16; };
template <> struct DTypeTraits<DType::bf16> { using type = bf16; };
template <> struct DTypeTraits<DType::f64> { using type = double; };
template <> struct DTypeTraits<DType::i32> { using type = int32_t; };
template <> struct DTypeTraits<DType::i64> { using type = int64_t; };
template <> struct DTypeTraits<DType::u8> { using type = uint8_t; };
template <> struct DTypeTraits<DType::boolean> { using type = bool; };

template <typename T> struct TypeTag { using type = T; };

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<f16>() { return DType::f16; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<bool>() { return DType::boolean; }

// dispatch_dtype(dtype, [&](auto tag) { using T = typename decltype(tag)::type; ... });
template <typename F>
decltype(auto) dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f16: return f(TypeTag<f16>{});
    case DType::bf16: return f(TypeTag<bf16>{});
    case DType::f64: return f(TypeTag<double>{});
    case DType::i32: return f(TypeTag<int32_t>{});
    case DType::i64: return f(TypeTag<int64_t>{});
    case DType::u8: return f(TypeTag<uint8_t>{});
    case DType::boolean: return f(TypeTag<bool>{});
  }
  SE_THROW("dispatch_dtype: invalid dtype value ", static_cast<int>(dtype));
}

// Floating types only (f32, f16, bf16, f64); any other dtype throws naming `op`.
template <typename F>
decltype(auto) dispatch_floating(DType dtype, std::string_view op, F&& f) {
  switch (dtype) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f16: return f(TypeTag<f16>{});
    case DType::bf16: return f(TypeTag<bf16>{});
    case DType::f64: return f(TypeTag<double>{});
    default: SE_THROW(op, ": dtype ", dtype_name(dtype), " is not supported (expected f32, f16, bf16 or f64)");
  }
}

}  // namespace se
