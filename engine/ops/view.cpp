// View ops: new sizes/strides/offset over the same storage, no copy. Each is differentiable; the
// backward maps the gradient of the view back to the shape of its base.
#include <algorithm>
#include <numeric>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace se {

namespace {

Tensor make_view(const Tensor& base, Shape sizes, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->sizes = std::move(sizes);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Strides for viewing a tensor of (sizes, strides) as `shape` without a copy, if possible
// (PyTorch's computeStride: each run of merged dims must be contiguous within itself).
std::optional<Shape> view_strides(const Shape& sizes, const Shape& strides, const Shape& shape) {
  if (shape_numel(sizes) == 0 || sizes.empty()) return contiguous_strides(shape);
  Shape out(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    tensor_numel *= sizes[d];
    if (d == 0 || (sizes[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

Shape infer_shape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      SE_CHECK(infer < 0, op, ": only one dimension can be -1 in ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      SE_CHECK(out[i] >= 0, op, ": invalid size ", out[i], " in ", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    SE_CHECK(known != 0 && numel % known == 0, op, ": shape ", shape_str(shape), " is invalid for ", numel,
             " elements");
    out[infer] = numel / known;
  }
  SE_CHECK(shape_numel(out) == numel, op, ": shape ", shape_str(shape), " is invalid for ", numel, " elements");
  return out;
}

// The gradient of a view whose base had `base_shape`: reshape back.
void record_reshape_view(const char* name, const Tensor& base, const Tensor& view) {
  if (!autograd::needs_grad({base})) return;
  Shape base_shape = base.shape();
  autograd::record(name, {base}, {view}, [base_shape](const GradOutputs& g, const NeedsGrad&) {
    return GradInputs{g[0].reshape(base_shape)};
  });
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  Shape target = infer_shape(shape, numel(), "view");
  auto strides = view_strides(this->shape(), this->strides(), target);
  SE_CHECK(strides.has_value(), "view: shape ", shape_str(target), " is not compatible with the strides ",
           shape_str(this->strides()), " of a tensor of shape ", shape_str(this->shape()), "; use reshape()");
  Tensor out = make_view(*this, target, *strides, storage_offset());
  record_reshape_view("view", *this, out);
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape target = infer_shape(shape, numel(), "reshape");
  if (view_strides(this->shape(), this->strides(), target)) return view(target);
  return contiguous().view(target);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t start = wrap_dim(start_dim, dim(), "flatten");
  int64_t end = wrap_dim(end_dim, dim(), "flatten");
  SE_CHECK(start <= end, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape target(shape().begin(), shape().begin() + start);
  int64_t merged = 1;
  for (int64_t d = start; d <= end; ++d) merged *= shape()[d];
  target.push_back(merged);
  target.insert(target.end(), shape().begin() + end + 1, shape().end());
  return reshape(target);
}

Tensor Tensor::permute(const Shape& dims) const {
  SE_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: ", dims.size(), " dims given for a tensor with ",
           dim(), " dims");
  Shape sizes(dims.size()), strides(dims.size()), inverse(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    SE_CHECK(!seen[d], "permute: dim ", d, " appears twice in ", shape_str(dims));
    seen[d] = true;
    sizes[i] = shape()[d];
    strides[i] = this->strides()[d];
    inverse[d] = static_cast<int64_t>(i);
  }
  Tensor out = make_view(*this, sizes, strides, storage_offset());
  if (autograd::needs_grad({*this})) {
    autograd::record("permute", {*this}, {out}, [inverse](const GradOutputs& g, const NeedsGrad&) {
      return GradInputs{g[0].permute(inverse)};
    });
  }
  return out;
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  Shape order(static_cast<size_t>(dim()));
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[wrap_dim(dim0, dim(), "transpose")], order[wrap_dim(dim1, dim(), "transpose")]);
  return permute(order);
}

Tensor Tensor::t() const {
  SE_CHECK(dim() <= 2, "t: expects a tensor with at most 2 dims, got ", dim());
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::slice(int64_t dim, int64_t start, int64_t end, int64_t step) const {
  int64_t d = wrap_dim(dim, this->dim(), "slice");
  SE_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sizes = shape(), strides = this->strides();
  sizes[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  Tensor out = make_view(*this, sizes, strides, storage_offset() + start * this->strides()[d]);
  if (autograd::needs_grad({*this})) {
    Shape base_shape = shape();
    TensorOptions options{this->dtype(), device()};
    autograd::record("slice", {*this}, {out}, [=](const GradOutputs& g, const NeedsGrad&) {
      Tensor grad = zeros(base_shape, options);
      grad.slice(d, start, end, step).copy_(g[0]);
      return GradInputs{grad};
    });
  }
  return out;
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  int64_t d = wrap_dim(dim, this->dim(), "narrow");
  SE_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d], "narrow: start ", start, " and length ", length,
           " exceed size ", shape()[d], " of dim ", d);
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t dim, int64_t index) const {
  int64_t d = wrap_dim(dim, this->dim(), "select");
  const int64_t n = shape()[d];
  SE_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dim ", d, " of size ", n);
  if (index < 0) index += n;
  return slice(d, index, index + 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& shape) const {
  SE_CHECK(static_cast<int64_t>(shape.size()) >= dim(), "expand: target ", shape_str(shape), " has fewer dims than ",
           shape_str(this->shape()));
  const size_t lead = shape.size() - static_cast<size_t>(dim());
  Shape sizes(shape.size()), strides(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      SE_CHECK(shape[i] >= 0, "expand: size -1 not allowed in leading new dim ", i, " of ", shape_str(shape));
      sizes[i] = shape[i];
      strides[i] = 0;
      continue;
    }
    const int64_t own = this->shape()[i - lead];
    const int64_t want = shape[i] == -1 ? own : shape[i];
    SE_CHECK(own == want || own == 1, "expand: cannot expand ", shape_str(this->shape()), " to ", shape_str(shape),
             " (dim ", i, ": ", own, " to ", want, ")");
    sizes[i] = want;
    strides[i] = own == want ? this->strides()[i - lead] : 0;
  }
  if (sizes == this->shape()) return *this;
  Tensor out = make_view(*this, sizes, strides, storage_offset());
  if (autograd::needs_grad({*this})) {
    Shape base_shape = this->shape();
    autograd::record("expand", {*this}, {out}, [base_shape](const GradOutputs& g, const NeedsGrad&) {
      return GradInputs{sum_to(g[0], base_shape)};
    });
  }
  return out;
}

Tensor Tensor::squeeze() const {
  Shape sizes;
  for (int64_t s : shape()) {
    if (s != 1) sizes.push_back(s);
  }
  return sizes.size() == shape().size() ? *this : reshape(sizes);
}

Tensor Tensor::squeeze(int64_t dim) const {
  int64_t d = wrap_dim(dim, this->dim(), "squeeze");
  if (this->dim() == 0 || shape()[d] != 1) return *this;
  Shape sizes = shape(), strides = this->strides();
  sizes.erase(sizes.begin() + d);
  strides.erase(strides.begin() + d);
  Tensor out = make_view(*this, sizes, strides, storage_offset());
  record_reshape_view("squeeze", *this, out);
  return out;
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  int64_t d = wrap_dim(dim, this->dim() + 1, "unsqueeze");
  Shape sizes = shape(), strides = this->strides();
  int64_t stride = d < this->dim() ? strides[d] * sizes[d] : 1;
  sizes.insert(sizes.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  Tensor out = make_view(*this, sizes, strides, storage_offset());
  record_reshape_view("unsqueeze", *this, out);
  return out;
}

Tensor Tensor::as_strided(const Shape& sizes, const Shape& strides, int64_t storage_offset) const {
  SE_CHECK(!autograd::needs_grad({*this}), "as_strided: not differentiable; detach() the tensor first");
  SE_CHECK(sizes.size() == strides.size(), "as_strided: sizes ", shape_str(sizes), " and strides ",
           shape_str(strides), " differ in length");
  int64_t last = storage_offset;
  for (size_t i = 0; i < sizes.size(); ++i) {
    SE_CHECK(sizes[i] >= 0 && strides[i] >= 0, "as_strided: negative size or stride in ", shape_str(sizes), " / ",
             shape_str(strides));
    if (sizes[i] == 0) last = -1;
    if (last >= 0) last += (sizes[i] - 1) * strides[i];
  }
  SE_CHECK(storage_offset >= 0 && (last < 0 || static_cast<size_t>(last + 1) * element_size() <= storage()->nbytes()),
           "as_strided: view reaches element ", last, " beyond the storage of ", storage()->nbytes() / element_size(),
           " elements");
  return make_view(*this, sizes, strides, storage_offset);
}

}  // namespace se
