// Joining, splitting, padding and indexing. cat copies each input into a slice of the output
// (kernels/copy.h via copy_), split returns narrow views, pad fills then copies the kept block;
// gather and index_select use kernels/index.h, whose scatter_add is their backward.
#include <algorithm>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/index.h"

namespace se {
namespace {

// Calls f(TypeTag<T>) for the dtypes scatter_add (and so every differentiable index op) supports;
// gather-only calls may also pass bool.
template <typename F>
void dispatch_index_dtype(DType dtype, const char* op, bool allow_bool, F&& f) {
  if (is_floating(dtype)) {
    dispatch_floating(dtype, op, f);
    return;
  }
  switch (dtype) {
    case DType::i32: f(TypeTag<int32_t>{}); return;
    case DType::i64: f(TypeTag<int64_t>{}); return;
    case DType::u8: f(TypeTag<uint8_t>{}); return;
    case DType::boolean:
      if (allow_bool) {
        f(TypeTag<bool>{});
        return;
      }
      break;
    default: break;
  }
  SE_THROW(op, ": dtype ", dtype_name(dtype), " is not supported");
}

// Throws unless every index lies in [0, size). The CPU kernels check as they go; CUDA kernels do not,
// so CUDA indices are checked here (one small reduction and a synchronising read).
void check_index_range(const Tensor& index, int64_t size, const char* op) {
  if (index.device().is_cpu() || index.numel() == 0) return;
  NoGradGuard no_grad;
  const auto lo = static_cast<int64_t>(min(index).item()), hi = static_cast<int64_t>(max(index).item());
  SE_CHECK(lo >= 0 && hi < size, op, ": index ", lo < 0 ? lo : hi, " is out of range for size ", size);
}

// Gradient of gather/index_select: scatter-add grad into zeros shaped like the source.
Tensor scatter_backward(const Tensor& grad, const Tensor& index, kernels::GatherDesc desc, const Shape& src_shape,
                        const char* op) {
  Tensor g = grad.contiguous();
  Tensor out = zeros(src_shape, {grad.dtype(), grad.device()});
  const Shape strides = contiguous_strides(src_shape);
  std::copy(strides.begin(), strides.end(), desc.strides);
  dispatch_index_dtype(grad.dtype(), op, false, [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(grad.device(), scatter_add<T>, out.data<T>(), g.data<T>(), index.data<int64_t>(), desc);
  });
  return out;
}

Tensor gather_with(const Tensor& x, const Tensor& index, kernels::GatherDesc desc, const Shape& out_shape,
                   const char* op) {
  SE_CHECK(x.dim() <= kernels::kMaxDims, op, ": at most ", kernels::kMaxDims, " dims, got ", x.dim());
  check_index_range(index, desc.dim_size, op);
  std::copy(x.strides().begin(), x.strides().end(), desc.strides);
  Tensor out = empty(out_shape, {x.dtype(), x.device()});
  dispatch_index_dtype(x.dtype(), op, true, [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(x.device(), gather<T>, out.data<T>(), x.data<T>(), index.data<int64_t>(), desc);
  });
  if (autograd::needs_grad({x})) {
    autograd::record(op, {x}, {out}, [index, desc, shape = x.shape(), op](const GradOutputs& g, const NeedsGrad&) {
      return GradInputs{scatter_backward(g[0], index, desc, shape, op)};
    });
  }
  return out;
}

void check_index_tensor(const Tensor& x, const Tensor& index, const char* op) {
  SE_CHECK(x.defined() && index.defined(), op, ": undefined tensor");
  SE_CHECK(index.dtype() == DType::i64, op, ": index must be i64, got ", dtype_name(index.dtype()));
  SE_CHECK(index.device() == x.device(), op, ": index is on ", index.device().str(), ", input on ",
           x.device().str());
}

}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index_tensor(x, index, "gather");
  const int64_t d = wrap_dim(dim, x.dim(), "gather");
  SE_CHECK(index.dim() == x.dim(), "gather: index has ", index.dim(), " dims, input ", x.dim());
  for (int64_t k = 0; k < x.dim(); ++k) {
    SE_CHECK(k == d || index.size(k) <= x.size(k), "gather: index shape ", shape_str(index.shape()),
             " exceeds input shape ", shape_str(x.shape()), " in dim ", k);
  }
  Tensor idx = index.contiguous();
  kernels::GatherDesc desc;
  desc.ndim = static_cast<int>(x.dim());
  desc.dim = static_cast<int>(d);
  desc.dim_size = x.size(d);
  const Shape index_strides = contiguous_strides(idx.shape());
  for (int64_t k = 0; k < x.dim(); ++k) desc.sizes[k] = idx.size(k), desc.index_strides[k] = index_strides[k];
  return gather_with(x, idx, desc, idx.shape(), "gather");
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index_tensor(x, index, "index_select");
  SE_CHECK(index.dim() == 1, "index_select: index must be 1-d, got shape ", shape_str(index.shape()));
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  Tensor idx = index.contiguous();
  Shape out_shape = x.shape();
  out_shape[d] = idx.numel();
  kernels::GatherDesc desc;
  desc.ndim = static_cast<int>(x.dim());
  desc.dim = static_cast<int>(d);
  desc.dim_size = x.size(d);
  for (int64_t k = 0; k < x.dim(); ++k) desc.sizes[k] = out_shape[k], desc.index_strides[k] = k == d ? 1 : 0;
  return gather_with(x, idx, desc, out_shape, "index_select");
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  SE_CHECK(!tensors.empty(), "cat: no tensors given");
  if (autocast_enabled()) {  // mixed floating dtypes compute in the widest
    std::vector<Tensor> promoted = tensors;
    if (autocast::promote(promoted)) return cat(promoted, dim);
  }
  const Tensor& first = tensors[0];
  const int64_t d = wrap_dim(dim, first.dim(), "cat");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    SE_CHECK(t.dim() == first.dim(), "cat: tensor ", i, " has shape ", shape_str(t.shape()), ", tensor 0 ",
             shape_str(first.shape()));
    SE_CHECK(t.dtype() == first.dtype() && t.device() == first.device(), "cat: tensor ", i, " is ",
             dtype_name(t.dtype()), " on ", t.device().str(), ", tensor 0 is ", dtype_name(first.dtype()), " on ",
             first.device().str());
    for (int64_t k = 0; k < t.dim(); ++k) {
      SE_CHECK(k == d || t.size(k) == first.size(k), "cat: tensor ", i, " has shape ", shape_str(t.shape()),
               ", tensor 0 ", shape_str(first.shape()), ": sizes must match except in dim ", d);
    }
    out_shape[d] += t.size(d);
  }
  Tensor out = empty(out_shape, {first.dtype(), first.device()});
  std::vector<int64_t> lengths;
  {
    NoGradGuard no_grad;
    int64_t offset = 0;
    for (const Tensor& t : tensors) {
      out.narrow(d, offset, t.size(d)).copy_(t);
      offset += t.size(d);
      lengths.push_back(t.size(d));
    }
  }
  if (autograd::needs_grad(tensors)) {
    autograd::record("cat", tensors, {out}, [d, lengths](const GradOutputs& g, const NeedsGrad&) {
      GradInputs grads;
      int64_t offset = 0;
      for (int64_t length : lengths) {
        grads.push_back(g[0].narrow(d, offset, length));
        offset += length;
      }
      return grads;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  SE_CHECK(!tensors.empty(), "stack: no tensors given");
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> expanded;
  for (size_t i = 0; i < tensors.size(); ++i) {
    SE_CHECK(tensors[i].shape() == tensors[0].shape(), "stack: tensor ", i, " has shape ",
             shape_str(tensors[i].shape()), ", tensor 0 ", shape_str(tensors[0].shape()));
    expanded.push_back(tensors[i].unsqueeze(d));
  }
  return cat(expanded, d);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    SE_CHECK(s >= 0, "split: negative size ", s);
    total += s;
  }
  SE_CHECK(total == x.size(d), "split: sizes sum to ", total, " but dim ", d, " of ", shape_str(x.shape()),
           " has size ", x.size(d));
  std::vector<Tensor> parts;
  int64_t offset = 0;
  for (int64_t s : sizes) {
    parts.push_back(x.narrow(d, offset, s));
    offset += s;
  }
  return parts;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  SE_CHECK(split_size > 0, "split: split_size must be positive, got ", split_size);
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  std::vector<int64_t> sizes;
  for (int64_t offset = 0; offset < x.size(d); offset += split_size) sizes.push_back(std::min(split_size, x.size(d) - offset));
  if (sizes.empty()) sizes.push_back(0);
  return split(x, sizes, d);
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  SE_CHECK(x.defined(), "pad: input tensor is undefined");
  SE_CHECK(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) <= 2 * x.dim(), "pad: ", pads.size(),
           " pad amounts for a ", x.dim(), "-d tensor (expected an even number, at most ", 2 * x.dim(), ")");
  // Per dim: output size, and the kept block [in_start, in_start + length) -> [out_start, ...).
  const int64_t ndim = x.dim();
  Shape out_shape = x.shape(), in_start(ndim, 0), out_start(ndim, 0), length = x.shape();
  for (size_t p = 0; p < pads.size(); p += 2) {
    const int64_t d = ndim - 1 - static_cast<int64_t>(p / 2), before = pads[p], after = pads[p + 1];
    out_shape[d] = x.size(d) + before + after;
    SE_CHECK(out_shape[d] >= 0, "pad: padding (", before, ", ", after, ") of dim ", d, " of ", shape_str(x.shape()),
             " gives a negative size");
    in_start[d] = std::max<int64_t>(-before, 0);
    out_start[d] = std::max<int64_t>(before, 0);
    length[d] = std::max<int64_t>(0, x.size(d) - in_start[d] - std::max<int64_t>(-after, 0));
  }
  auto block = [ndim, length](Tensor t, const Shape& start) {
    for (int64_t d = 0; d < ndim; ++d) t = t.narrow(d, start[d], length[d]);
    return t;
  };
  Tensor out = full(out_shape, value, {x.dtype(), x.device()});
  {
    NoGradGuard no_grad;
    block(out, out_start).copy_(block(x, in_start));
  }
  if (autograd::needs_grad({x})) {
    autograd::record("pad", {x}, {out}, [block, in_start, out_start, shape = x.shape()](const GradOutputs& g,
                                                                                           const NeedsGrad&) {
      Tensor grad = zeros(shape, {g[0].dtype(), g[0].device()});
      NoGradGuard no_grad;
      block(grad, in_start).copy_(block(g[0], out_start));
      return GradInputs{grad};
    });
  }
  return out;
}

}  // namespace se
