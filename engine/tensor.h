// Tensor: a strided view (sizes, strides, offset, dtype) of reference-counted Storage on a device,
// plus the autograd state of the value it holds. Copying a Tensor copies the handle (both refer to
// the same tensor), as in PyTorch. Shapes are logical (NCHW for images); a channels-last memory
// layout is a choice of strides.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "engine/device.h"
#include "engine/storage.h"

namespace se {

using Shape = std::vector<int64_t>;

enum class MemoryFormat {
  contiguous,     // row-major over the logical shape
  channels_last,  // 4-d only: (N, C, H, W) stored as N, H, W, C
  preserve,       // clone(): keep a dense input's layout, else contiguous
};

struct TensorOptions {
  std::optional<DType> dtype = std::nullopt;  // unset: f32, or the element type of the data for from_vector/from_host
  Device device = Device::cpu();
  bool requires_grad = false;
};

class Node;
struct AutogradMeta;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape sizes;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements, into storage
  DType dtype = DType::f32;
  std::unique_ptr<AutogradMeta> autograd;  // null until autograd touches the tensor

  TensorImpl();
  ~TensorImpl();
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }  // the same tensor object

  // ---- metadata
  const Shape& shape() const;
  int64_t size(int64_t dim) const;  // negative counts from the end
  const Shape& strides() const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  int64_t storage_offset() const;
  size_t element_size() const { return dtype_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous(MemoryFormat format = MemoryFormat::contiguous) const;
  // True when the elements cover a dense block without gaps or overlap, in any order of dims.
  bool is_non_overlapping_and_dense() const;
  // True when some elements share one memory location: a stride 0 over a size above 1 (an expanded
  // view). Such a tensor cannot be written element by element.
  bool has_internal_overlap() const;
  const std::shared_ptr<Storage>& storage() const;
  void* data_ptr() const;  // address of the first element (device memory for CUDA tensors)
  template <typename T> T* data() const {
    SE_CHECK(dtype() == dtype_of<T>(), "Tensor::data: tensor has dtype ", dtype(), ", requested ",
             dtype_of<T>());
    return static_cast<T*>(data_ptr());
  }

  // ---- views (no copy; differentiable)
  Tensor view(const Shape& shape) const;     // one dim may be -1; needs compatible strides
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor t() const;  // 2-d transpose
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;  // python-style bounds
  Tensor select(int64_t dim, int64_t index) const;  // removes `dim`
  Tensor expand(const Shape& shape) const;           // -1 keeps a size; broadcast dims get stride 0
  Tensor expand_as(const Tensor& other) const { return expand(other.shape()); }
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  // A view with explicit geometry over the same storage (not differentiable unless `*this` does not
  // require grad). For kernels and tests that need odd layouts.
  Tensor as_strided(const Shape& sizes, const Shape& strides, int64_t storage_offset) const;

  // ---- copies (differentiable)
  Tensor contiguous(MemoryFormat format = MemoryFormat::contiguous) const;  // self when already so
  // From pinned host memory to a CUDA device with non_blocking, the copy is queued on the device's
  // current stream and the call returns at once (the source must not be written until that stream has
  // run the copy, as in PyTorch); otherwise the call returns when the source may be reused.
  Tensor to(Device device, bool non_blocking = false) const;
  Tensor to(DType dtype) const;
  Tensor to(Device device, DType dtype, bool non_blocking = false) const;
  Tensor clone(MemoryFormat format = MemoryFormat::preserve) const;
  // A copy in page-locked host memory (self when already pinned): CPU tensors only. Copies from pinned
  // memory to a GPU run asynchronously and at full bus speed.
  Tensor pin_memory() const;
  bool is_pinned() const;  // in page-locked host memory

  // ---- in-place (bump the version counter; not allowed on tensors that require grad unless
  // grad mode is off and the tensor is a leaf)
  Tensor& copy_(const Tensor& src, bool non_blocking = false);  // broadcasts src, casts, copies across devices
  Tensor& zero_();
  Tensor& fill_(double value);

  // ---- autograd
  bool requires_grad() const;
  Tensor& requires_grad_(bool requires_grad = true);  // leaves only
  bool is_leaf() const;                               // no grad_fn
  Tensor grad() const;                                // undefined until a backward reached it
  void set_grad(const Tensor& grad) const;            // e.g. to clear it: set_grad(Tensor())
  const std::shared_ptr<Node>& grad_fn() const;
  uint32_t output_nr() const;
  // Backpropagates from this tensor: a scalar, or any shape with `gradient` of the same shape.
  void backward(const Tensor& gradient = Tensor()) const;
  Tensor detach() const;  // same storage, no history
  // Makes this tensor, and so every handle to it, refer to `other`'s storage, geometry and dtype
  // while keeping its identity, requires_grad and hooks: how nn::Module::to() moves parameters in
  // place. Leaves only; clears .grad (its device or dtype would no longer match).
  void set_data(const Tensor& other) const;
  // Called with the accumulated gradient each time a backward pass has finished accumulating into
  // this leaf's .grad (data-parallel training starts the all-reduce of that gradient there).
  void register_grad_ready_hook(std::function<void(const Tensor& grad)> hook) const;

  // ---- host access (synchronises with the device)
  template <typename T> std::vector<T> to_vector() const;  // converts from any dtype, row-major
  double item() const;                                      // one-element tensors
  std::string str() const;                                  // PyTorch-like printing

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& out, const Tensor& tensor);
// (name, tensor) pairs in a meaningful order: a module's parameters, a state_dict, optimizer state.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
std::string shape_str(const Shape& shape);  // "(2, 3, 4)"
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
Shape channels_last_strides(const Shape& shape);  // 4-d
// Normalises a possibly negative `dim` for a tensor of `ndim` dims; throws naming `op`.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
// The broadcast of two shapes (numpy rules); throws naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Whether a and b view one storage with intersecting bytes, other than as the very same elements in the
// same dtype: writing one element by element while reading the other would read overwritten values.
bool partially_overlaps(const Tensor& a, const Tensor& b);

// ---- creation
Tensor empty(const Shape& shape, const TensorOptions& options = {});
Tensor empty_strided(const Shape& shape, const Shape& strides, const TensorOptions& options = {});
Tensor empty_like(const Tensor& like, MemoryFormat format = MemoryFormat::contiguous);
// An uninitialised contiguous CPU tensor in page-locked memory (needs a build with CUDA).
Tensor empty_pinned(const Shape& shape, DType dtype = DType::f32);
Tensor zeros(const Shape& shape, const TensorOptions& options = {});
Tensor ones(const Shape& shape, const TensorOptions& options = {});
Tensor full(const Shape& shape, double value, const TensorOptions& options = {});
Tensor zeros_like(const Tensor& like);
Tensor ones_like(const Tensor& like);
Tensor full_like(const Tensor& like, double value);
Tensor scalar_tensor(double value, const TensorOptions& options = {});
// [start, end) by step, like torch.arange (the count is ceil((end - start) / step)).
Tensor arange(double end, const TensorOptions& options = {});
Tensor arange(double start, double end, double step = 1.0, const TensorOptions& options = {});
// Uniform [0, 1) and standard normal from the global counter-based generator: the same numbers on
// every device for the same seed.
Tensor rand(const Shape& shape, const TensorOptions& options = {});
Tensor randn(const Shape& shape, const TensorOptions& options = {});
Tensor rand_like(const Tensor& like);
Tensor randn_like(const Tensor& like);
void manual_seed(uint64_t seed);
// The global generator's whole state, for checkpoints: restoring it makes the random numbers that
// follow (dropout masks, rand, randn) those an uninterrupted run would have drawn.
struct RandomState {
  uint64_t seed = 0;
  uint64_t offset = 0;
};
RandomState random_state();
void set_random_state(const RandomState& state);
// The (seed, offset) to use for `count` random numbers, advancing the global generator.
std::pair<uint64_t, uint64_t> reserve_random_numbers(uint64_t count);
// From host data of element type T, copied; in options.dtype when set (converted), else T's dtype.
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, const TensorOptions& options = {});
Tensor from_host(const void* data, DType data_dtype, const Shape& shape, const TensorOptions& options = {});

}  // namespace se
