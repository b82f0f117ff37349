// interpolate over (N, C, H, W): x.contiguous() is the kernels' (planes, H, W) form. The backward
// needs only the shapes and the mapping, which the descriptor holds.
#include <cmath>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/resize.h"

namespace se {
namespace {

kernels::ResizeDesc resize_desc(const Tensor& x, const InterpolateParams& p) {
  SE_CHECK(x.defined(), "interpolate: input tensor is undefined");
  SE_CHECK(x.dim() == 4, "interpolate: expected a 4-d (N, C, H, W) input, got shape ", shape_str(x.shape()));
  SE_CHECK(p.size.has_value() != p.scale_factor.has_value(), "interpolate: give exactly one of size and scale_factor");
  SE_CHECK(!p.align_corners || p.mode == InterpolateMode::bilinear, "interpolate: align_corners needs mode bilinear");
  kernels::ResizeDesc d;
  d.planes = x.size(0) * x.size(1);
  d.in_h = x.size(2), d.in_w = x.size(3);
  d.mode = p.mode == InterpolateMode::bilinear ? kernels::ResizeMode::bilinear : kernels::ResizeMode::nearest;
  d.align_corners = p.align_corners;
  if (p.size) {
    d.out_h = (*p.size)[0], d.out_w = (*p.size)[1];
  } else {
    const auto [sh, sw] = *p.scale_factor;
    SE_CHECK(sh > 0 && sw > 0 && std::isfinite(sh) && std::isfinite(sw),
             "interpolate: scale_factor must be positive and finite, got (", sh, ", ", sw, ")");
    // As PyTorch: the output size is floor(in * scale) in double, and the coordinates use the scale.
    d.out_h = static_cast<int64_t>(std::floor(static_cast<double>(d.in_h) * sh));
    d.out_w = static_cast<int64_t>(std::floor(static_cast<double>(d.in_w) * sw));
    d.scale_h = sh, d.scale_w = sw;
  }
  SE_CHECK(d.in_h > 0 && d.in_w > 0 && d.out_h > 0 && d.out_w > 0, "interpolate: input ", shape_str(x.shape()),
           " and output size (", d.out_h, ", ", d.out_w, ") must be non-empty");
  return d;
}

}  // namespace

Tensor interpolate(const Tensor& x, const InterpolateParams& params) {
  const kernels::ResizeDesc d = resize_desc(x, params);
  Tensor input = x.contiguous();
  Tensor y = empty({x.size(0), x.size(1), d.out_h, d.out_w}, {x.dtype(), x.device()});
  dispatch_floating(x.dtype(), "interpolate", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(x.device(), resize_forward<T>, y.data<T>(), input.data<T>(), d);
  });
  if (autograd::needs_grad({x})) {
    autograd::record("interpolate", {x}, {y}, [d, in_shape = x.shape()](const GradOutputs& g, const NeedsGrad&) {
      Tensor grad = g[0].contiguous();
      Tensor grad_x = empty(in_shape, {grad.dtype(), grad.device()});
      dispatch_floating(grad.dtype(), "interpolate backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        SE_DISPATCH(grad.device(), resize_backward<T>, grad_x.data<T>(), grad.data<T>(), d);
      });
      return GradInputs{grad_x};
    });
  }
  return y;
}

}  // namespace se
