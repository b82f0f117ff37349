// sort, topk, kthvalue and cumsum on the kernels of kernels/sort.h, which work along the last dim of a
// contiguous tensor (sort) or an (outer, length, inner) view (cumsum). sort's values take their gradient from
// gather(x, dim, indices), which is exactly the PyTorch rule (the gradient is scattered back to the sorted
// positions); topk and kthvalue slice a sort.
#include <algorithm>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/workspace.h"
#include "kernels/sort.h"

namespace se {
namespace {

void check_sortable(const Tensor& x, const char* op) {
  SE_CHECK(x.defined(), op, ": undefined tensor");
  SE_CHECK(kernels::sort_dtype_supported(x.dtype()), op, ": dtype ", dtype_name(x.dtype()), " is not supported on ",
           x.device().str(), " (expected f32, f64, i32 or i64)");
}

// Indices of the stable sort of x along d (the kernel's values as a by-product).
SortResult sort_along(const Tensor& x, int64_t d, bool descending) {
  const int64_t last = x.dim() - 1;
  const Tensor xt = x.detach().transpose(d, last).contiguous();  // (..., L)
  kernels::SortDesc desc;
  desc.length = xt.size(last);
  desc.rows = desc.length == 0 ? 0 : xt.numel() / desc.length;
  desc.descending = descending;
  desc.dtype = x.dtype();
  Tensor values = empty(xt.shape(), {x.dtype(), x.device()});
  Tensor indices = empty(xt.shape(), {DType::i64, x.device()});
  const Tensor workspace =
      kernel_workspace(desc.length > kernels::kSortTile ? kernels::sort_workspace_bytes(desc) : 0, x.device());
  SE_DISPATCH(x.device(), sort, desc, xt.data_ptr(), values.data_ptr(), indices.data<int64_t>(),
              data_or_null(workspace));
  return {values.transpose(d, last), indices.transpose(d, last)};
}

}  // namespace

SortResult sort(const Tensor& x, int64_t dim, bool descending) {
  check_sortable(x, "sort");
  if (x.dim() == 0) return {x.clone(), zeros({}, {DType::i64, x.device()})};
  const int64_t d = wrap_dim(dim, x.dim(), "sort");
  SortResult r = sort_along(x, d, descending);
  r.indices = r.indices.contiguous();
  r.values = autograd::needs_grad({x}) ? gather(x, d, r.indices) : r.values.contiguous();
  return r;
}

SortResult topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  check_sortable(x, "topk");
  const int64_t d = wrap_dim(dim, std::max<int64_t>(x.dim(), 1), "topk");
  const int64_t length = x.dim() == 0 ? 1 : x.size(d);
  SE_CHECK(k >= 0 && k <= length, "topk: k = ", k, " is out of range for dim ", d, " of size ", length);
  if (x.dim() == 0) return sort(x);
  SortResult r = sort_along(x, d, largest);
  r.indices = r.indices.narrow(d, 0, k).contiguous();
  r.values = autograd::needs_grad({x}) ? gather(x, d, r.indices) : r.values.narrow(d, 0, k).contiguous();
  return r;
}

SortResult kthvalue(const Tensor& x, int64_t k, int64_t dim, bool keepdim) {
  check_sortable(x, "kthvalue");
  const int64_t d = wrap_dim(dim, std::max<int64_t>(x.dim(), 1), "kthvalue");
  const int64_t length = x.dim() == 0 ? 1 : x.size(d);
  SE_CHECK(k >= 1 && k <= length, "kthvalue: k = ", k, " is out of range for dim ", d, " of size ", length,
           " (expected 1 <= k <= ", length, ")");
  if (x.dim() == 0) return sort(x);
  SortResult r = sort_along(x, d, false);
  Tensor index = r.indices.narrow(d, k - 1, 1).contiguous();  // keeps dim
  Tensor values = autograd::needs_grad({x}) ? gather(x, d, index) : r.values.narrow(d, k - 1, 1).contiguous();
  if (!keepdim) {
    index = index.squeeze(d);
    values = values.squeeze(d);
  }
  return {values, index};
}

Tensor cumsum(const Tensor& x, int64_t dim) {
  SE_CHECK(x.defined(), "cumsum: undefined tensor");
  const DType dt = x.dtype();
  SE_CHECK(dt == DType::f32 || dt == DType::f64 || dt == DType::i32 || dt == DType::i64, "cumsum: dtype ",
           dtype_name(dt), " is not supported on ", x.device().str(), " (expected f32, f64, i32 or i64)");
  const int64_t d = wrap_dim(dim, std::max<int64_t>(x.dim(), 1), "cumsum");
  const Tensor xc = x.detach().contiguous();
  kernels::CumsumDesc desc;
  desc.dtype = dt;
  desc.length = x.dim() == 0 ? 1 : x.size(d);
  desc.outer = 1;
  desc.inner = 1;
  for (int64_t k = 0; k < x.dim(); ++k) {
    if (k < d) desc.outer *= x.size(k);
    if (k > d) desc.inner *= x.size(k);
  }
  Tensor y = empty(x.shape(), {dt, x.device()});
  SE_DISPATCH(x.device(), cumsum, desc, xc.data_ptr(), y.data_ptr());
  if (autograd::needs_grad({x})) {
    autograd::record("cumsum", {x}, {y}, [desc](const GradOutputs& g, const NeedsGrad&) {
      kernels::CumsumDesc reversed = desc;
      reversed.reverse = !desc.reverse;
      const Tensor grad = g[0].contiguous();
      Tensor out = empty(grad.shape(), {grad.dtype(), grad.device()});
      SE_DISPATCH(grad.device(), cumsum, reversed, grad.data_ptr(), out.data_ptr());
      return GradInputs{out};
    });
  }
  return y;
}

}  // namespace se
