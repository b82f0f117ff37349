#include "core/dtype.h"

namespace se {

DType parse_dtype(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "float") return DType::f32;
  if (name == "f16" || name == "float16" || name == "half") return DType::f16;
  if (name == "bf16" || name == "bfloat16") return DType::bf16;
  if (name == "f64" || name == "float64" || name == "double") return DType::f64;
  if (name == "i32" || name == "int32") return DType::i32;
  if (name == "i64" || name == "int64") return DType::i64;
  if (name == "u8" || name == "uint8") return DType::u8;
  if (name == "bool") return DType::boolean;
  SE_THROW("dtype: unknown dtype '", name, "' (expected one of f32, f16, bf16, f64, i32, i64, u8, bool)");
}

}  // namespace se
