#include "nn/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"

namespace se::nn {
namespace {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

// The largest header the Python package accepts.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeCode {
  DType dtype;
  const char* code;
  int rank;  // position in the Rust crate's Dtype enum: the Python writer sorts by it, descending
};
constexpr DTypeCode kCodes[] = {
    {DType::boolean, "BOOL", 0}, {DType::u8, "U8", 1},    {DType::f16, "F16", 7}, {DType::bf16, "BF16", 8},
    {DType::i32, "I32", 9},      {DType::f32, "F32", 11}, {DType::f64, "F64", 12}, {DType::i64, "I64", 13},
};

const DTypeCode& code_of(DType dtype) {
  for (const auto& c : kCodes)
    if (c.dtype == dtype) return c;
  SE_THROW("safetensors: dtype ", dtype, " has no safetensors code");
}

std::string known_codes() {
  std::string out;
  for (const auto& c : kCodes) out += (out.empty() ? "" : ", ") + std::string(c.code);
  return out;
}

}  // namespace

std::string serialize_safetensors(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const auto& [name, tensor] : tensors) {
    SE_CHECK(tensor.defined(), "safetensors: tensor '", name, "' is undefined");
    SE_CHECK(names.insert(name).second, "safetensors: tensor name '", name, "' appears twice");
    SE_CHECK(name != "__metadata__", "safetensors: '__metadata__' is reserved and cannot name a tensor");
  }
  std::vector<const std::pair<std::string, Tensor>*> order;
  for (const auto& entry : tensors) order.push_back(&entry);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    const int ra = code_of(a->second.dtype()).rank, rb = code_of(b->second.dtype()).rank;
    return ra != rb ? ra > rb : a->first < b->first;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto* entry : order) {
    const Tensor& t = entry->second;
    const uint64_t bytes = t.nbytes();
    header[entry->first] = {{"dtype", code_of(t.dtype()).code}, {"shape", t.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  out.reserve(8 + json.size() + offset);
  out += json;
  for (const auto* entry : order) {
    const Tensor host = entry->second.to(Device::cpu()).contiguous();
    out.append(static_cast<const char*>(host.data_ptr()), host.nbytes());
  }
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

SafetensorsContents parse_safetensors(std::string_view bytes, const std::string& file, Device device) {
  SE_CHECK(bytes.size() >= 8, file, ": not a safetensors file (", bytes.size(), " bytes, shorter than the 8-byte header size)");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  SE_CHECK(n <= kMaxHeaderBytes && n <= bytes.size() - 8, file, ": not a safetensors file (header size ", n,
           " does not fit the ", bytes.size(), "-byte file)");
  const std::string_view text(bytes.data() + 8, n);
  SE_CHECK(!text.empty() && text.front() == '{', file, ": safetensors header does not start with '{'");
  nlohmann::ordered_json header;
  try {
    header = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    SE_THROW(file, ": safetensors header is not valid JSON: ", e.what());
  }
  SE_CHECK(header.is_object(), file, ": safetensors header is not a JSON object");

  SafetensorsContents out;
  const uint64_t data_begin = 8 + n;
  const uint64_t data_size = bytes.size() - data_begin;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      SE_CHECK(info.is_object(), file, ": __metadata__ must be an object of strings");
      for (const auto& [key, value] : info.items()) {
        SE_CHECK(value.is_string(), file, ": __metadata__ value of '", key, "' is not a string");
        out.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    SE_CHECK(info.is_object() && info.contains("dtype") && info.contains("shape") && info.contains("data_offsets"),
             file, ": tensor '", name, "' needs dtype, shape and data_offsets");
    SE_CHECK(info["dtype"].is_string(), file, ": tensor '", name, "': dtype is not a string");
    const std::string code = info["dtype"].get<std::string>();
    const DTypeCode* found = nullptr;
    for (const auto& c : kCodes)
      if (code == c.code) found = &c;
    SE_CHECK(found != nullptr, file, ": tensor '", name, "' has dtype ", code, ", which segengine does not support (",
             known_codes(), ")");
    Shape shape;
    SE_CHECK(info["shape"].is_array(), file, ": tensor '", name, "': shape is not an array");
    for (const auto& d : info["shape"]) {
      SE_CHECK(d.is_number_unsigned(), file, ": tensor '", name, "': shape entries must be non-negative integers");
      shape.push_back(d.get<int64_t>());
    }
    const auto& offsets = info["data_offsets"];
    SE_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                 offsets[1].is_number_unsigned(),
             file, ": tensor '", name, "': data_offsets must be [begin, end]");
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    const uint64_t expected = static_cast<uint64_t>(shape_numel(shape)) * dtype_size(found->dtype);
    SE_CHECK(begin <= end && end <= data_size, file, ": tensor '", name, "': data_offsets [", begin, ", ", end,
             "] fall outside the ", data_size, "-byte data section");
    SE_CHECK(end - begin == expected, file, ": tensor '", name, "' of shape ", shape_str(shape), " and dtype ", code,
             " needs ", expected, " bytes, data_offsets give ", end - begin);
    Tensor tensor = empty(shape, {found->dtype});
    if (expected > 0) std::memcpy(tensor.data_ptr(), bytes.data() + data_begin + begin, expected);
    out.tensors.emplace_back(name, device == Device::cpu() ? tensor : tensor.to(device));
    spans.push_back({begin, end, name});
  }
  // As the Python package: the tensors tile the data section exactly.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  uint64_t covered = 0;
  for (const auto& span : spans) {
    SE_CHECK(span.begin == covered, file, ": tensor '", span.name, "' starts at byte ", span.begin,
             " of the data section, expected ", covered, " (tensors must not overlap or leave gaps)");
    covered = span.end;
  }
  SE_CHECK(covered == data_size, file, ": the data section has ", data_size, " bytes but the tensors cover ", covered);
  return out;
}

SafetensorsContents load_safetensors(const std::string& path, Device device) {
  const std::vector<uint8_t> bytes = read_file(path);
  return parse_safetensors(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path, device);
}

void save_module(const Module& module, const std::string& path, const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, module.state_dict(), metadata);
}

LoadReport load_module(Module& module, const std::string& path, bool strict) {
  SafetensorsContents contents = load_safetensors(path);
  try {
    return module.load_state_dict(contents.tensors, strict);
  } catch (const Error& e) {
    SE_THROW(path, ": ", e.what());
  }
}

}  // namespace se::nn
