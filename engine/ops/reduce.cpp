// Reductions over a list of dims (negative allowed, empty = all) with keepdim. Every call is mapped
// to the kernels' contiguous (outer, size, inner) form: reduced dims that are adjacent need no
// permutation (x.contiguous() already is that form); otherwise the kept dims are moved to the front
// and the reduced ones to the back (one copy), giving (outer, size, 1). The output is contiguous in
// the order of the kept dims either way.
//
// Gradients: sum and mean spread the gradient evenly; var uses 2 (x - mean) / (n - correction);
// max and min route the whole gradient to the first extremum of each reduced group (like PyTorch's
// max(dim); PyTorch's all-dims max() instead splits it evenly among ties).
#include <algorithm>
#include <numeric>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/index.h"
#include "kernels/reduce.h"

namespace se {
namespace {

using kernels::ArgReduceOp;
using kernels::ReduceDesc;
using kernels::ReduceOp;

const char* reduce_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::mean: return "mean";
    case ReduceOp::prod: return "prod";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
    case ReduceOp::var: return "var";
  }
  return "reduce";
}

// x laid out for the kernels, and how to map results and gradients back.
struct Arranged {
  Tensor input;          // contiguous, (outer, size, inner) in memory
  ReduceDesc desc;
  Shape arranged_shape;  // input's shape: x's shape, or x's shape permuted by `perm`
  Shape perm;            // empty when x was not permuted
  Shape out_shape;       // the op's output shape (with or without the reduced dims)
};

Arranged arrange(const Tensor& x, const Shape& dims, bool keepdim, const char* op) {
  const int64_t ndim = x.dim();
  std::vector<bool> reduced(static_cast<size_t>(ndim), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, ndim, op);
    SE_CHECK(!reduced[w], op, ": dim ", d, " appears more than once in ", shape_str(dims));
    reduced[w] = true;
  }
  Arranged a;
  const Shape& sizes = x.shape();
  int64_t first = ndim, last = -1;
  for (int64_t d = 0; d < ndim; ++d) {
    if (reduced[d]) first = std::min(first, d), last = std::max(last, d);
    if (!reduced[d] || keepdim) a.out_shape.push_back(reduced[d] ? 1 : sizes[d]);
  }
  bool adjacent = true;
  for (int64_t d = first; d <= last; ++d) adjacent = adjacent && reduced[d];
  a.desc.size = 1;
  if (adjacent) {
    a.input = x.contiguous();
    a.arranged_shape = sizes;
    for (int64_t d = 0; d < ndim; ++d) {
      int64_t& part = d < first ? a.desc.outer : (d <= last ? a.desc.size : a.desc.inner);
      part *= sizes[d];
    }
    return a;
  }
  for (int64_t d = 0; d < ndim; ++d) {
    if (!reduced[d]) a.perm.push_back(d), a.desc.outer *= sizes[d];
  }
  for (int64_t d = 0; d < ndim; ++d) {
    if (reduced[d]) a.perm.push_back(d), a.desc.size *= sizes[d];
  }
  a.input = x.permute(a.perm).contiguous();
  a.arranged_shape = a.input.shape();
  return a;
}

// A gradient computed in the arranged layout, viewed back in x's dim order.
Tensor unarrange(const Tensor& grad, const Arranged& a) {
  Tensor g = grad.view(a.arranged_shape);
  if (a.perm.empty()) return g;
  Shape inverse(a.perm.size());
  for (size_t k = 0; k < a.perm.size(); ++k) inverse[a.perm[k]] = static_cast<int64_t>(k);
  return g.permute(inverse);
}

// Calls f(TypeTag<T>) for the dtypes the reduce kernels are instantiated for.
template <typename F>
void dispatch_reduce_dtype(DType dtype, const char* op, bool floating_only, F&& f) {
  if (floating_only || is_floating(dtype)) {
    dispatch_floating(dtype, op, f);
    return;
  }
  switch (dtype) {
    case DType::i32: f(TypeTag<int32_t>{}); return;
    case DType::i64: f(TypeTag<int64_t>{}); return;
    case DType::u8: f(TypeTag<uint8_t>{}); return;
    default: SE_THROW(op, ": dtype ", dtype_name(dtype), " is not supported");
  }
}

Tensor reduce_values(const Arranged& a, const Tensor& x, ReduceOp op) {
  Tensor out = empty(a.out_shape, {x.dtype(), x.device()});
  const bool floating_only = op == ReduceOp::mean || op == ReduceOp::var;
  dispatch_reduce_dtype(x.dtype(), reduce_name(op), floating_only, [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(x.device(), reduce<T>, op, out.data<T>(), a.input.data<T>(), a.desc);
  });
  return out;
}

// Indices of the first extremum per (outer, inner), shaped (outer, inner).
Tensor arg_indices(const Arranged& a, const Tensor& x, ArgReduceOp op) {
  Tensor out = empty({a.desc.outer, a.desc.inner}, {DType::i64, x.device()});
  dispatch_reduce_dtype(x.dtype(), op == ArgReduceOp::argmax ? "argmax" : "argmin", false, [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(x.device(), arg_reduce<T>, op, out.data<int64_t>(), a.input.data<T>(), a.desc);
  });
  return out;
}

// Gradient of sum/mean/var in the arranged layout. `mean` is needed for var only.
Tensor broadcast_backward(const Arranged& a, ReduceOp op, const Tensor& grad, const Tensor& input, const Tensor& mean) {
  Tensor g = grad.contiguous();
  Tensor out = empty(a.arranged_shape, {grad.dtype(), grad.device()});
  dispatch_floating(grad.dtype(), reduce_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = input.defined() ? input.data<T>() : nullptr;
    const T* m = mean.defined() ? mean.data<T>() : nullptr;
    SE_DISPATCH(grad.device(), reduce_backward<T>, op, out.data<T>(), g.data<T>(), in, m, a.desc);
  });
  return unarrange(out, a);
}

// Routes grad (outer, inner) to positions `index` (outer, inner) of a zero (outer, size, inner).
Tensor route_to_index(const Arranged& a, const Tensor& grad, const Tensor& index) {
  Tensor g = grad.contiguous();
  Tensor out = zeros(a.arranged_shape, {grad.dtype(), grad.device()});
  kernels::GatherDesc desc;
  desc.ndim = 3;
  desc.dim = 1;
  desc.dim_size = a.desc.size;
  const int64_t sizes[3] = {a.desc.outer, 1, a.desc.inner};
  const int64_t index_strides[3] = {a.desc.inner, 0, 1};
  const int64_t strides[3] = {a.desc.size * a.desc.inner, a.desc.inner, 1};
  std::copy(sizes, sizes + 3, desc.sizes);
  std::copy(index_strides, index_strides + 3, desc.index_strides);
  std::copy(strides, strides + 3, desc.strides);
  dispatch_floating(grad.dtype(), "max/min backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(grad.device(), scatter_add<T>, out.data<T>(), g.data<T>(), index.data<int64_t>(), desc);
  });
  return unarrange(out, a);
}

Tensor reduce_op(const Tensor& x, const Shape& dims, bool keepdim, ReduceOp op, int64_t correction) {
  const char* name = reduce_name(op);
  SE_CHECK(x.defined(), name, ": input tensor is undefined");
  Arranged a = arrange(x, dims, keepdim, name);
  a.desc.correction = correction;
  if ((op == ReduceOp::max || op == ReduceOp::min) && a.desc.size == 0) {
    SE_THROW(name, ": cannot reduce over an empty dim of a tensor of shape ", shape_str(x.shape()));
  }
  Tensor out = reduce_values(a, x, op);
  if (!autograd::needs_grad({x})) return out;
  SE_CHECK(is_floating(x.dtype()), name, ": gradients need a floating dtype, got ", dtype_name(x.dtype()));
  if (op == ReduceOp::max || op == ReduceOp::min) {
    Tensor index = arg_indices(a, x, op == ReduceOp::max ? ArgReduceOp::argmax : ArgReduceOp::argmin);
    autograd::record(name, {x}, {out}, [a, index](const GradOutputs& g, const NeedsGrad&) {
      return GradInputs{route_to_index(a, g[0], index)};
    });
    return out;
  }
  Tensor input, mean_values;
  if (op == ReduceOp::var) {
    input = a.input;
    mean_values = reduce_values(a, x, ReduceOp::mean);
  }
  // The saved copies are private (the arranged input is a fresh contiguous copy or x itself, which
  // SavedTensor guards against in-place changes).
  autograd::record(name, {x}, {out},
                   [a, op, saved_input = SavedTensor(input.defined() ? input : Tensor()), mean_values](
                       const GradOutputs& g, const NeedsGrad&) {
                     Tensor in = saved_input.defined() ? saved_input.unpack() : Tensor();
                     return GradInputs{broadcast_backward(a, op, g[0], in, mean_values)};
                   });
  return out;
}

Tensor arg_op(const Tensor& x, int64_t dim, bool keepdim, ArgReduceOp op) {
  const char* name = op == ArgReduceOp::argmax ? "argmax" : "argmin";
  SE_CHECK(x.defined(), name, ": input tensor is undefined");
  Arranged a = arrange(x, {dim}, keepdim, name);
  SE_CHECK(a.desc.size > 0, name, ": cannot reduce over an empty dim of a tensor of shape ", shape_str(x.shape()));
  return arg_indices(a, x, op).view(a.out_shape);
}

}  // namespace

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) { return reduce_op(x, dims, keepdim, ReduceOp::sum, 0); }
Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) { return reduce_op(x, dims, keepdim, ReduceOp::mean, 0); }
Tensor max(const Tensor& x, const Shape& dims, bool keepdim) { return reduce_op(x, dims, keepdim, ReduceOp::max, 0); }
Tensor min(const Tensor& x, const Shape& dims, bool keepdim) { return reduce_op(x, dims, keepdim, ReduceOp::min, 0); }
Tensor var(const Tensor& x, const Shape& dims, int64_t correction, bool keepdim) {
  return reduce_op(x, dims, keepdim, ReduceOp::var, correction);
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return arg_op(x, dim, keepdim, ArgReduceOp::argmax); }
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) { return arg_op(x, dim, keepdim, ArgReduceOp::argmin); }

Tensor sum_to(const Tensor& x, const Shape& shape) {
  const int64_t ndim = x.dim(), lead = ndim - static_cast<int64_t>(shape.size());
  SE_CHECK(lead >= 0, "sum_to: shape ", shape_str(shape), " has more dims than ", shape_str(x.shape()));
  Shape dims;
  for (int64_t d = 0; d < ndim; ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    const int64_t target = shape[d - lead];
    SE_CHECK(target == x.size(d) || target == 1, "sum_to: shape ", shape_str(shape), " does not broadcast to ",
             shape_str(x.shape()));
    if (target == 1 && x.size(d) != 1) dims.push_back(d);
  }
  if (dims.empty()) return x.view(shape);
  return sum(x, dims, true).view(shape);
}

}  // namespace se
