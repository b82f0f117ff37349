#include "engine/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <utility>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "kernels/copy.h"

namespace se {

TensorImpl::TensorImpl() = default;
TensorImpl::~TensorImpl() = default;

namespace {

const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  SE_CHECK(impl != nullptr, "Tensor: operation on an undefined tensor");
  return *impl;
}

}  // namespace

// ---- shape helpers

std::string shape_str(const Shape& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  if (shape.size() == 1) text += ",";
  return text + ")";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

Shape channels_last_strides(const Shape& shape) {
  SE_CHECK(shape.size() == 4, "channels_last: needs a 4-d shape (N, C, H, W), got ", shape_str(shape));
  const int64_t c = std::max<int64_t>(shape[1], 1), h = std::max<int64_t>(shape[2], 1),
                w = std::max<int64_t>(shape[3], 1);
  return {h * w * c, 1, w * c, c};
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t rank = std::max<int64_t>(ndim, 1);  // a 0-d tensor accepts dim 0 and -1
  SE_CHECK(dim >= -rank && dim < rank, op, ": dim ", dim, " is out of range for a tensor with ", ndim,
           " dims (expected ", -rank, " to ", rank - 1, ")");
  return dim < 0 ? dim + rank : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t ndim = std::max(a.size(), b.size());
  Shape out(ndim);
  for (size_t i = 0; i < ndim; ++i) {
    const int64_t sa = i < ndim - a.size() ? 1 : a[i - (ndim - a.size())];
    const int64_t sb = i < ndim - b.size() ? 1 : b[i - (ndim - b.size())];
    SE_CHECK(sa == sb || sa == 1 || sb == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
             " do not broadcast (dim ", i, ": ", sa, " vs ", sb, ")");
    out[i] = sa == 1 ? sb : sa;
  }
  return out;
}

// ---- metadata

const Shape& Tensor::shape() const { return checked(impl_).sizes; }
int64_t Tensor::size(int64_t dim) const { return shape()[wrap_dim(dim, this->dim(), "size")]; }
const Shape& Tensor::strides() const { return checked(impl_).strides; }
int64_t Tensor::stride(int64_t dim) const { return strides()[wrap_dim(dim, this->dim(), "stride")]; }
int64_t Tensor::dim() const { return static_cast<int64_t>(shape().size()); }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).storage->device(); }
int64_t Tensor::storage_offset() const { return checked(impl_).offset; }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked(impl_).storage; }

void* Tensor::data_ptr() const {
  const TensorImpl& impl = checked(impl_);
  return static_cast<char*>(impl.storage->data()) + impl.offset * static_cast<int64_t>(dtype_size(impl.dtype));
}

bool Tensor::is_pinned() const { return storage()->pinned(); }

bool Tensor::is_contiguous(MemoryFormat format) const {
  const Shape& sizes = shape();
  const Shape& st = strides();
  Shape expected;
  if (format == MemoryFormat::channels_last) {
    if (sizes.size() != 4) return false;
    expected = channels_last_strides(sizes);
  } else {
    expected = contiguous_strides(sizes);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] != 1 && st[i] != expected[i]) return false;
  }
  return true;
}

bool Tensor::is_non_overlapping_and_dense() const {
  const Shape& sizes = shape();
  const Shape& st = strides();
  std::vector<size_t> order(sizes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return st[a] < st[b]; });
  int64_t expected = 1;
  for (size_t i : order) {
    if (sizes[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sizes[i];
  }
  return true;
}

bool Tensor::has_internal_overlap() const {
  for (size_t i = 0; i < shape().size(); ++i) {
    if (shape()[i] > 1 && strides()[i] == 0) return true;
  }
  return false;
}

namespace {

// The bytes [first, last) that a tensor's elements span in its storage (numel > 0).
std::pair<const char*, const char*> byte_span(const Tensor& t) {
  const char* base = static_cast<const char*>(t.data_ptr());
  int64_t low = 0, high = 0;  // element offsets from data_ptr
  for (size_t i = 0; i < t.shape().size(); ++i) {
    const int64_t reach = (t.shape()[i] - 1) * t.strides()[i];
    (reach < 0 ? low : high) += reach;
  }
  const auto element = static_cast<int64_t>(t.element_size());
  return {base + low * element, base + (high + 1) * element};
}

}  // namespace

bool partially_overlaps(const Tensor& a, const Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0 || a.storage() != b.storage()) return false;
  if (a.data_ptr() == b.data_ptr() && a.shape() == b.shape() && a.strides() == b.strides() && a.dtype() == b.dtype()) {
    return false;
  }
  const auto [a_first, a_last] = byte_span(a);
  const auto [b_first, b_last] = byte_span(b);
  return a_first < b_last && b_first < a_last;
}

// ---- creation

Tensor empty_strided(const Shape& shape, const Shape& strides, const TensorOptions& options) {
  SE_CHECK(shape.size() == strides.size(), "empty_strided: shape ", shape_str(shape), " and strides ",
           shape_str(strides), " differ in length");
  int64_t extent = 1;  // elements spanned: 1 + sum (size - 1) * stride
  for (size_t i = 0; i < shape.size(); ++i) {
    SE_CHECK(shape[i] >= 0, "empty: negative size ", shape[i], " in shape ", shape_str(shape));
    if (shape[i] == 0) extent = 0;
  }
  if (extent != 0) {
    for (size_t i = 0; i < shape.size(); ++i) extent += (shape[i] - 1) * strides[i];
  }
  auto impl = std::make_shared<TensorImpl>();
  const DType dtype = options.dtype.value_or(DType::f32);
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(extent) * dtype_size(dtype), options.device);
  impl->sizes = shape;
  impl->strides = strides;
  impl->dtype = dtype;
  Tensor tensor(std::move(impl));
  if (options.requires_grad) tensor.requires_grad_(true);
  return tensor;
}

Tensor empty(const Shape& shape, const TensorOptions& options) {
  return empty_strided(shape, contiguous_strides(shape), options);
}

Tensor empty_pinned(const Shape& shape, DType dtype) {
  int64_t count = 1;
  for (int64_t size : shape) {
    SE_CHECK(size >= 0, "empty_pinned: negative size ", size, " in shape ", shape_str(shape));
    count *= size;
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(count) * dtype_size(dtype), Device::cpu(), true);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor empty_like(const Tensor& like, MemoryFormat format) {
  TensorOptions options{like.dtype(), like.device(), false};
  if (format == MemoryFormat::channels_last) {
    return empty_strided(like.shape(), channels_last_strides(like.shape()), options);
  }
  if (format == MemoryFormat::preserve && like.is_non_overlapping_and_dense()) {
    return empty_strided(like.shape(), like.strides(), options);
  }
  return empty(like.shape(), options);
}

Tensor full(const Shape& shape, double value, const TensorOptions& options) {
  TensorOptions no_grad = options;
  no_grad.requires_grad = false;
  Tensor tensor = empty(shape, no_grad);
  tensor.fill_(value);
  if (options.requires_grad) tensor.requires_grad_(true);
  return tensor;
}

Tensor zeros(const Shape& shape, const TensorOptions& options) { return full(shape, 0.0, options); }
Tensor ones(const Shape& shape, const TensorOptions& options) { return full(shape, 1.0, options); }
Tensor zeros_like(const Tensor& like) { return zeros(like.shape(), {like.dtype(), like.device()}); }
Tensor ones_like(const Tensor& like) { return ones(like.shape(), {like.dtype(), like.device()}); }
Tensor full_like(const Tensor& like, double value) { return full(like.shape(), value, {like.dtype(), like.device()}); }
Tensor scalar_tensor(double value, const TensorOptions& options) { return full({}, value, options); }

Tensor arange(double end, const TensorOptions& options) { return arange(0.0, end, 1.0, options); }

Tensor arange(double start, double end, double step, const TensorOptions& options) {
  SE_CHECK(step != 0.0 && std::isfinite(step) && std::isfinite(start) && std::isfinite(end),
           "arange: start ", start, ", end ", end, ", step ", step, " (expected finite values and a nonzero step)");
  SE_CHECK((end - start) / step >= 0.0, "arange: step ", step, " moves away from end ", end, " (start ", start, ")");
  const auto count = static_cast<int64_t>(std::ceil((end - start) / step));
  TensorOptions no_grad = options;
  no_grad.requires_grad = false;
  Tensor out = empty({count}, no_grad);
  SE_DISPATCH(out.device(), arange, kernels::ArangeDesc{count, start, step, out.dtype()}, out.data_ptr());
  if (options.requires_grad) out.requires_grad_(true);
  return out;
}

namespace {

struct GlobalGenerator {
  std::mutex mutex;
  uint64_t seed = 0x5eed5e9e5eedULL;
  uint64_t offset = 0;
};

GlobalGenerator& generator() {
  static GlobalGenerator instance;
  return instance;
}

Tensor random_tensor(const Shape& shape, const TensorOptions& options, kernels::Distribution distribution) {
  const DType dtype = options.dtype.value_or(DType::f32);
  SE_CHECK(is_floating(dtype), distribution == kernels::Distribution::uniform ? "rand" : "randn",
           ": dtype ", dtype, " is not supported (expected f32, f16, bf16 or f64)");
  TensorOptions no_grad = options;
  no_grad.requires_grad = false;
  Tensor out = empty(shape, no_grad);
  auto [seed, offset] = reserve_random_numbers(static_cast<uint64_t>(out.numel()));
  kernels::RandomDesc desc{out.numel(), seed, offset, distribution, 0.0, 1.0, out.dtype()};
  SE_DISPATCH(out.device(), random, desc, out.data_ptr());
  if (options.requires_grad) out.requires_grad_(true);
  return out;
}

}  // namespace

void manual_seed(uint64_t seed) {
  GlobalGenerator& gen = generator();
  std::lock_guard<std::mutex> lock(gen.mutex);
  gen.seed = seed;
  gen.offset = 0;
}

RandomState random_state() {
  GlobalGenerator& gen = generator();
  std::lock_guard<std::mutex> lock(gen.mutex);
  return {gen.seed, gen.offset};
}

void set_random_state(const RandomState& state) {
  GlobalGenerator& gen = generator();
  std::lock_guard<std::mutex> lock(gen.mutex);
  gen.seed = state.seed;
  gen.offset = state.offset;
}

std::pair<uint64_t, uint64_t> reserve_random_numbers(uint64_t count) {
  GlobalGenerator& gen = generator();
  std::lock_guard<std::mutex> lock(gen.mutex);
  uint64_t offset = gen.offset;
  gen.offset += (count + 3) / 4 * 4;  // whole Philox blocks, so streams never overlap
  return {gen.seed, offset};
}

Tensor rand(const Shape& shape, const TensorOptions& options) {
  return random_tensor(shape, options, kernels::Distribution::uniform);
}
Tensor randn(const Shape& shape, const TensorOptions& options) {
  return random_tensor(shape, options, kernels::Distribution::normal);
}
Tensor rand_like(const Tensor& like) { return rand(like.shape(), {like.dtype(), like.device()}); }
Tensor randn_like(const Tensor& like) { return randn(like.shape(), {like.dtype(), like.device()}); }

Tensor from_host(const void* data, DType data_dtype, const Shape& shape, const TensorOptions& options) {
  // Wrap the host data as a CPU tensor without copying, then copy (and convert) into the result.
  auto impl = std::make_shared<TensorImpl>();
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(data_dtype);
  impl->storage = std::make_shared<Storage>(nbytes, Device::cpu());
  if (nbytes > 0) std::memcpy(impl->storage->data(), data, nbytes);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = data_dtype;
  Tensor host(std::move(impl));
  Tensor out = host.to(options.device, options.dtype.value_or(data_dtype));
  if (out.same(host)) out = host;  // already right: keep the copy we made
  if (options.requires_grad) out.requires_grad_(true);
  return out;
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, const TensorOptions& options) {
  SE_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
           " values do not fill shape ", shape_str(shape), " (", shape_numel(shape), " elements)");
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> bytes(values.begin(), values.end());
    return from_host(bytes.data(), DType::boolean, shape, options);
  } else {
    return from_host(values.data(), dtype_of<T>(), shape, options);
  }
}

template Tensor from_vector(const std::vector<float>&, const Shape&, const TensorOptions&);
template Tensor from_vector(const std::vector<double>&, const Shape&, const TensorOptions&);
template Tensor from_vector(const std::vector<f16>&, const Shape&, const TensorOptions&);
template Tensor from_vector(const std::vector<bf16>&, const Shape&, const TensorOptions&);
template Tensor from_vector(const std::vector<int32_t>&, const Shape&, const TensorOptions&);
template Tensor from_vector(const std::vector<int64_t>&, const Shape&, const TensorOptions&);
template Tensor from_vector(const std::vector<uint8_t>&, const Shape&, const TensorOptions&);
template Tensor from_vector(const std::vector<bool>&, const Shape&, const TensorOptions&);

// ---- host access

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = detach().to(Device::cpu(), dtype_of<T>()).contiguous();
  std::vector<T> values(static_cast<size_t>(host.numel()));
  if constexpr (std::is_same_v<T, bool>) {
    const auto* bytes = static_cast<const uint8_t*>(host.data_ptr());
    for (size_t i = 0; i < values.size(); ++i) values[i] = bytes[i] != 0;
  } else {
    if (!values.empty()) std::memcpy(values.data(), host.data_ptr(), values.size() * sizeof(T));
  }
  return values;
}

template std::vector<float> Tensor::to_vector() const;
template std::vector<double> Tensor::to_vector() const;
template std::vector<f16> Tensor::to_vector() const;
template std::vector<bf16> Tensor::to_vector() const;
template std::vector<int32_t> Tensor::to_vector() const;
template std::vector<int64_t> Tensor::to_vector() const;
template std::vector<uint8_t> Tensor::to_vector() const;
template std::vector<bool> Tensor::to_vector() const;

double Tensor::item() const {
  SE_CHECK(numel() == 1, "item: tensor of shape ", shape_str(shape()), " has ", numel(),
           " elements (expected exactly one)");
  return to_vector<double>()[0];
}

}  // namespace se
