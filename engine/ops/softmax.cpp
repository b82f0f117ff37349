// softmax and log_softmax over one dim: x.contiguous() is the kernels' (outer, size, inner) form
// directly. The backward kernels need only the forward output, which is saved.
#include <algorithm>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/softmax.h"

namespace se {
namespace {

kernels::SoftmaxDesc softmax_desc(const Shape& shape, int64_t dim) {
  kernels::SoftmaxDesc d;
  for (int64_t k = 0; k < static_cast<int64_t>(shape.size()); ++k) {
    int64_t& part = k < dim ? d.outer : (k == dim ? d.size : d.inner);
    part *= shape[k];
  }
  return d;
}

Tensor softmax_backward_of(const Tensor& grad, const Tensor& y, int64_t dim, bool log) {
  Tensor g = grad.contiguous();
  Tensor out = empty(y.shape(), {y.dtype(), y.device()});
  const kernels::SoftmaxDesc d = softmax_desc(y.shape(), dim);
  dispatch_floating(y.dtype(), log ? "log_softmax backward" : "softmax backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (log) {
      SE_DISPATCH(y.device(), log_softmax_backward<T>, out.data<T>(), g.data<T>(), y.data<T>(), d);
    } else {
      SE_DISPATCH(y.device(), softmax_backward<T>, out.data<T>(), g.data<T>(), y.data<T>(), d);
    }
  });
  return out;
}

Tensor softmax_op(const Tensor& x_arg, int64_t dim, bool log) {
  // Autocast (engine/autocast.h): computed in f32.
  const Tensor x = autocast::to_f32(x_arg);
  const char* name = log ? "log_softmax" : "softmax";
  SE_CHECK(x.defined(), name, ": input tensor is undefined");
  // A 0-d tensor behaves as one element along dim 0 or -1, as in PyTorch.
  const int64_t wrapped = wrap_dim(dim, std::max<int64_t>(x.dim(), 1), name);
  Tensor input = x.contiguous();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  const kernels::SoftmaxDesc d = softmax_desc(x.shape(), wrapped);
  dispatch_floating(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (log) {
      SE_DISPATCH(x.device(), log_softmax_forward<T>, y.data<T>(), input.data<T>(), d);
    } else {
      SE_DISPATCH(x.device(), softmax_forward<T>, y.data<T>(), input.data<T>(), d);
    }
  });
  if (autograd::needs_grad({x})) {
    autograd::record(name, {x}, {y}, [saved_y = SavedTensor(y), wrapped, log](const GradOutputs& g, const NeedsGrad&) {
      return GradInputs{softmax_backward_of(g[0], saved_y.unpack(), wrapped, log)};
    });
  }
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, true); }

}  // namespace se
