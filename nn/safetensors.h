// The safetensors format (huggingface/safetensors), byte-compatible with the Python package:
//   8 bytes   N, the header length, unsigned little-endian
//   N bytes   a JSON object {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..],
//             "data_offsets": [begin, end]}, ...}, padded with spaces to a multiple of 8
//   the rest  the tensors' bytes, row-major little-endian, back to back with no gaps
// We write tensors in the Python writer's order (dtype alignment descending, then name) so that the
// same tensors give the same bytes. Files are written to a temporary file and renamed into place.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "nn/module.h"

namespace se::nn {

struct SafetensorsContents {
  NamedTensors tensors;  // in file order
  std::map<std::string, std::string> metadata;
};

// Tensors of any device, layout and dtype among f32, f16, bf16, f64, i32, i64, u8, bool; names unique.
std::string serialize_safetensors(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata = {});
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Validates the whole file (header size, JSON, dtypes, shapes against offsets, contiguous coverage of
// the data) and loads every tensor onto `device`. Errors name the file and, where there is one, the key.
SafetensorsContents load_safetensors(const std::string& path, Device device = Device::cpu());
SafetensorsContents parse_safetensors(std::string_view bytes, const std::string& name_for_errors,
                                      Device device = Device::cpu());

// Convenience for modules: state_dict() to a file and back (strict as Module::load_state_dict).
void save_module(const Module& module, const std::string& path, const std::map<std::string, std::string>& metadata = {});
LoadReport load_module(Module& module, const std::string& path, bool strict = true);

}  // namespace se::nn
