// max_pool2d, avg_pool2d and adaptive_avg_pool2d over (N, C, H, W): x.contiguous() is the kernels'
// (planes, H, W) form. max_pool2d saves its i64 argmax indices for backward, the average pools save
// nothing but shapes.
#include "kernels/pool.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"

namespace se {
namespace {

void check_input(const Tensor& x, const char* op) {
  SE_CHECK(x.defined(), op, ": input tensor is undefined");
  SE_CHECK(x.dim() == 4, op, ": expected a 4-d (N, C, H, W) input, got shape ", shape_str(x.shape()));
}

kernels::Pool2dDesc pool_desc(const Tensor& x, const Pool2dParams& p, bool max, const char* op) {
  check_input(x, op);
  kernels::Pool2dDesc d;
  d.planes = x.size(0) * x.size(1);
  d.in_h = x.size(2), d.in_w = x.size(3);
  d.kernel_h = p.kernel_size[0], d.kernel_w = p.kernel_size[1];
  d.stride_h = p.stride[0] == 0 ? p.kernel_size[0] : p.stride[0];
  d.stride_w = p.stride[1] == 0 ? p.kernel_size[1] : p.stride[1];
  d.pad_h = p.padding[0], d.pad_w = p.padding[1];
  d.dilation_h = p.dilation[0], d.dilation_w = p.dilation[1];
  d.count_include_pad = p.count_include_pad;
  SE_CHECK(d.kernel_h > 0 && d.kernel_w > 0, op, ": kernel_size must be positive, got (", d.kernel_h, ", ", d.kernel_w,
           ")");
  SE_CHECK(d.stride_h > 0 && d.stride_w > 0, op, ": stride must be positive (or 0 for kernel_size), got (", p.stride[0],
           ", ", p.stride[1], ")");
  SE_CHECK(d.dilation_h > 0 && d.dilation_w > 0, op, ": dilation must be positive, got (", d.dilation_h, ", ",
           d.dilation_w, ")");
  SE_CHECK(max || (d.dilation_h == 1 && d.dilation_w == 1), op, ": dilation is not supported (got (", d.dilation_h,
           ", ", d.dilation_w, "))");
  const int64_t span_h = (d.kernel_h - 1) * d.dilation_h + 1, span_w = (d.kernel_w - 1) * d.dilation_w + 1;
  SE_CHECK(d.pad_h >= 0 && d.pad_w >= 0 && 2 * d.pad_h <= span_h && 2 * d.pad_w <= span_w, op, ": padding (", d.pad_h,
           ", ", d.pad_w, ") must be non-negative and at most half the effective kernel size (", span_h, ", ", span_w,
           ")");
  d.out_h = kernels::pool_output_size(d.in_h, d.kernel_h, d.stride_h, d.pad_h, d.dilation_h, p.ceil_mode);
  d.out_w = kernels::pool_output_size(d.in_w, d.kernel_w, d.stride_w, d.pad_w, d.dilation_w, p.ceil_mode);
  SE_CHECK(d.out_h > 0 && d.out_w > 0, op, ": input ", shape_str(x.shape()), " gives output size (", d.out_h, ", ",
           d.out_w, "), which is too small");
  return d;
}

Shape output_shape(const Tensor& x, int64_t out_h, int64_t out_w) {
  return {x.size(0), x.size(1), out_h, out_w};
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dParams& params) {
  const kernels::Pool2dDesc d = pool_desc(x, params, true, "max_pool2d");
  Tensor input = x.contiguous();
  Tensor y = empty(output_shape(x, d.out_h, d.out_w), {x.dtype(), x.device()});
  Tensor indices = empty(y.shape(), {DType::i64, x.device()});
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(x.device(), max_pool2d_forward<T>, y.data<T>(), indices.data<int64_t>(), input.data<T>(), d);
  });
  if (autograd::needs_grad({x})) {
    autograd::record("max_pool2d", {x}, {y},
                     [saved = SavedTensor(indices), d, in_shape = x.shape()](const GradOutputs& g, const NeedsGrad&) {
                       Tensor grad = g[0].contiguous(), idx = saved.unpack();
                       Tensor grad_x = empty(in_shape, {grad.dtype(), grad.device()});
                       dispatch_floating(grad.dtype(), "max_pool2d backward", [&](auto tag) {
                         using T = typename decltype(tag)::type;
                         SE_DISPATCH(grad.device(), max_pool2d_backward<T>, grad_x.data<T>(), grad.data<T>(),
                                     idx.data<int64_t>(), d);
                       });
                       return GradInputs{grad_x};
                     });
  }
  return y;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dParams& params) {
  const kernels::Pool2dDesc d = pool_desc(x, params, false, "avg_pool2d");
  Tensor input = x.contiguous();
  Tensor y = empty(output_shape(x, d.out_h, d.out_w), {x.dtype(), x.device()});
  dispatch_floating(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(x.device(), avg_pool2d_forward<T>, y.data<T>(), input.data<T>(), d);
  });
  if (autograd::needs_grad({x})) {
    autograd::record("avg_pool2d", {x}, {y}, [d, in_shape = x.shape()](const GradOutputs& g, const NeedsGrad&) {
      Tensor grad = g[0].contiguous();
      Tensor grad_x = empty(in_shape, {grad.dtype(), grad.device()});
      dispatch_floating(grad.dtype(), "avg_pool2d backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        SE_DISPATCH(grad.device(), avg_pool2d_backward<T>, grad_x.data<T>(), grad.data<T>(), d);
      });
      return GradInputs{grad_x};
    });
  }
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size) {
  check_input(x, "adaptive_avg_pool2d");
  SE_CHECK(output_size[0] > 0 && output_size[1] > 0, "adaptive_avg_pool2d: output_size must be positive, got (",
           output_size[0], ", ", output_size[1], ")");
  SE_CHECK(x.size(2) > 0 && x.size(3) > 0, "adaptive_avg_pool2d: input ", shape_str(x.shape()),
           " has an empty spatial dim");
  const kernels::AdaptivePool2dDesc d{x.size(0) * x.size(1), x.size(2), x.size(3), output_size[0], output_size[1]};
  Tensor input = x.contiguous();
  Tensor y = empty(output_shape(x, d.out_h, d.out_w), {x.dtype(), x.device()});
  dispatch_floating(x.dtype(), "adaptive_avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(x.device(), adaptive_avg_pool2d_forward<T>, y.data<T>(), input.data<T>(), d);
  });
  if (autograd::needs_grad({x})) {
    autograd::record(
        "adaptive_avg_pool2d", {x}, {y}, [d, in_shape = x.shape()](const GradOutputs& g, const NeedsGrad&) {
          Tensor grad = g[0].contiguous();
          Tensor grad_x = empty(in_shape, {grad.dtype(), grad.device()});
          dispatch_floating(grad.dtype(), "adaptive_avg_pool2d backward", [&](auto tag) {
            using T = typename decltype(tag)::type;
            SE_DISPATCH(grad.device(), adaptive_avg_pool2d_backward<T>, grad_x.data<T>(), grad.data<T>(), d);
          });
          return GradInputs{grad_x};
        });
  }
  return y;
}

}  // namespace se
