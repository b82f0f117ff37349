// batch_norm, layer_norm and group_norm over contiguous inputs, differentiable w.r.t. x, weight and
// bias. Parameters and statistics are f32 for f32/f16/bf16 inputs and f64 for f64 (kernels/norm.h).
// batch_norm in training normalises with the batch statistics and, when given, updates the running
// stats in place (outside autograd); in eval it normalises with the running stats, which backward
// then treats as constants. Backwards call the fused kernels with the saved mean and invstd.
#include <algorithm>
#include <type_traits>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/norm.h"

namespace se {
namespace {

DType param_dtype(DType x) {
  return x == DType::f64 ? DType::f64 : DType::f32;
}

template <typename P>
P* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<P>() : nullptr;
}

void check_input(const Tensor& x, const char* op, int64_t min_dim) {
  SE_CHECK(x.defined(), op, ": input tensor is undefined");
  SE_CHECK(is_floating(x.dtype()), op, ": dtype ", dtype_name(x.dtype()),
           " is not supported (expected f32, f16, bf16 or f64)");
  SE_CHECK(x.dim() >= min_dim, op, ": expected an input with at least ", min_dim, " dims, got shape ",
           shape_str(x.shape()));
}

// An optional parameter (weight, bias, running stat): undefined, or `shape`, of the parameter dtype
// and on x's device. Returned contiguous.
Tensor checked_param(const Tensor& p, const Tensor& x, const Shape& shape, const char* op, const char* what) {
  if (!p.defined()) return p;
  SE_CHECK(p.shape() == shape, op, ": ", what, " has shape ", shape_str(p.shape()), ", expected ", shape_str(shape));
  SE_CHECK(p.dtype() == param_dtype(x.dtype()), op, ": ", what, " is ", dtype_name(p.dtype()), ", expected ",
           dtype_name(param_dtype(x.dtype())), " for a ", dtype_name(x.dtype()), " input");
  SE_CHECK(p.device() == x.device(), op, ": ", what, " is on ", p.device(), " but the input on ", x.device());
  return p.contiguous();
}

kernels::BatchNormDesc batch_norm_desc(const Shape& shape) {
  kernels::BatchNormDesc d{shape[0], shape[1], 1};
  for (size_t k = 2; k < shape.size(); ++k) d.hw *= shape[k];
  return d;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps, bool relu) {
  // On the CPU the 16-bit types run the two ops: their masked backward sums do not vectorize yet
  // (kernels/cpu/norm.cpp has the f32 loop on vectors), and a branch per value costs more than the ReLU's
  // own pass. CUDA selects without branching: every dtype fuses there.
  if (relu && x.device().is_cpu() && x.dtype() != DType::f32 && x.dtype() != DType::f64) {
    return se::relu(batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps));
  }
  const char* op = relu ? "batch_norm_relu" : "batch_norm";
  check_input(x, op, 2);
  kernels::BatchNormDesc d = batch_norm_desc(x.shape());
  d.relu = relu;
  const Shape channels{d.c};
  const Tensor w = checked_param(weight, x, channels, op, "weight"), b = checked_param(bias, x, channels, op, "bias");
  const Tensor rm = checked_param(running_mean, x, channels, op, "running_mean");
  const Tensor rv = checked_param(running_var, x, channels, op, "running_var");
  SE_CHECK(rm.defined() == rv.defined(), op, ": give both running_mean and running_var or neither");
  SE_CHECK(training || rm.defined(), op, ": eval mode needs running_mean and running_var");
  const int64_t count = d.n * d.hw;
  SE_CHECK(!training || count > 1, op, ": expected more than 1 value per channel when training, got input of shape ",
           shape_str(x.shape()));
  // The running stats are written in place: they must be the caller's tensors, not copies.
  SE_CHECK(!rm.defined() || (rm.same(running_mean) && rv.same(running_var)), op,
           ": running_mean and running_var must be contiguous");

  const Tensor input = x.contiguous();
  const TensorOptions popts{param_dtype(x.dtype()), x.device()};
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  Tensor mean, invstd;
  if (training) {
    mean = empty(channels, popts), invstd = empty(channels, popts);
    if (rm.defined()) {
      autograd::prepare_inplace(rm, op);
      autograd::prepare_inplace(rv, op);
    }
  } else {
    NoGradGuard no_grad;
    mean = rm.clone();  // a snapshot: backward must not see later updates
    invstd = rsqrt(add(rv, eps));
  }
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using P = kernels::norm_param_t<T>;
    if (training) {
      SE_DISPATCH(x.device(), batch_norm_forward_training<T>, y.data<T>(), mean.data<P>(), invstd.data<P>(),
                  ptr_or_null<P>(rm), ptr_or_null<P>(rv), input.data<T>(), ptr_or_null<P>(w), ptr_or_null<P>(b), d,
                  momentum, eps);
    } else {
      SE_DISPATCH(x.device(), batch_norm_elemt<T>, y.data<T>(), input.data<T>(), mean.data<P>(), invstd.data<P>(),
                  ptr_or_null<P>(w), ptr_or_null<P>(b), d);
    }
  });
  if (autograd::needs_grad({x, weight, bias})) {
    autograd::record(
        op, {x, weight, bias}, {y},
        [saved_x = SavedTensor(input), saved_w = w.defined() ? SavedTensor(w) : SavedTensor(),
         saved_y = SavedTensor(relu ? y.detach() : Tensor()), mean, invstd, training, count,
         d](const GradOutputs& g, const NeedsGrad& needs) {
          const Tensor x = saved_x.unpack(), dy = g[0].contiguous();
          const Tensor w = saved_w.defined() ? saved_w.unpack() : Tensor();
          const Tensor y = d.relu ? saved_y.unpack() : Tensor();  // where > 0, the ReLU passed dy
          const TensorOptions popts{mean.dtype(), mean.device()};
          Tensor dx, sum_dy, sum_dy_xmu;
          if (training || needs[1] || needs[2]) {
            sum_dy = empty(mean.shape(), popts), sum_dy_xmu = empty(mean.shape(), popts);
          }
          if (needs[0]) dx = empty(x.shape(), {x.dtype(), x.device()});
          dispatch_floating(x.dtype(), "batch_norm backward", [&](auto tag) {
            using T = typename decltype(tag)::type;
            using P = kernels::norm_param_t<T>;
            if (training) {
              SE_DISPATCH(x.device(), batch_norm_backward_training<T>, ptr_or_null<T>(dx), sum_dy.data<P>(),
                          sum_dy_xmu.data<P>(), dy.data<T>(), x.data<T>(), ptr_or_null<T>(y), mean.data<P>(),
                          invstd.data<P>(), ptr_or_null<P>(w), d);
              return;
            }
            if (sum_dy.defined()) {
              SE_DISPATCH(x.device(), batch_norm_backward_reduce<T>, sum_dy.data<P>(), sum_dy_xmu.data<P>(),
                          dy.data<T>(), x.data<T>(), ptr_or_null<T>(y), mean.data<P>(), d);
            }
            if (dx.defined()) {
              // In eval the statistics are constants: no mean/projection terms.
              SE_DISPATCH(x.device(), batch_norm_backward_elemt<T>, dx.data<T>(), dy.data<T>(), x.data<T>(),
                          ptr_or_null<T>(y), mean.data<P>(), invstd.data<P>(), ptr_or_null<P>(w), nullptr, nullptr,
                          count, d);
            }
          });
          return GradInputs{dx, needs[1] ? mul(sum_dy_xmu, invstd) : Tensor(), needs[2] ? sum_dy : Tensor()};
        });
  }
  return y;
}

namespace {

// layer_norm and group_norm: one normalisation per row of `rows` (statistics saved for backward),
// the kernel family picked by the descriptor type.
template <typename Desc>
Tensor row_norm_op(const Tensor& x, const Tensor& weight, const Tensor& bias, const Desc& d, int64_t rows,
                   const Shape& param_shape, double eps, const char* op) {
  constexpr bool kGroup = std::is_same_v<Desc, kernels::GroupNormDesc>;
  const Tensor w = checked_param(weight, x, param_shape, op, "weight"),
               b = checked_param(bias, x, param_shape, op, "bias");
  const Tensor input = x.contiguous();
  const TensorOptions popts{param_dtype(x.dtype()), x.device()};
  Tensor y = empty(x.shape(), {x.dtype(), x.device()}), mean = empty({rows}, popts), invstd = empty({rows}, popts);
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using P = kernels::norm_param_t<T>;
    if constexpr (kGroup) {
      SE_DISPATCH(x.device(), group_norm_forward<T>, y.data<T>(), mean.data<P>(), invstd.data<P>(), input.data<T>(),
                  ptr_or_null<P>(w), ptr_or_null<P>(b), d, eps);
    } else {
      SE_DISPATCH(x.device(), layer_norm_forward<T>, y.data<T>(), mean.data<P>(), invstd.data<P>(), input.data<T>(),
                  ptr_or_null<P>(w), ptr_or_null<P>(b), d, eps);
    }
  });
  if (autograd::needs_grad({x, weight, bias})) {
    autograd::record(op, {x, weight, bias}, {y},
                     [saved_x = SavedTensor(input), saved_w = w.defined() ? SavedTensor(w) : SavedTensor(), mean,
                      invstd, d, param_shape](const GradOutputs& g, const NeedsGrad& needs) {
                       const Tensor x = saved_x.unpack(), dy = g[0].contiguous();
                       const Tensor w = saved_w.defined() ? saved_w.unpack() : Tensor();
                       const TensorOptions popts{mean.dtype(), mean.device()};
                       Tensor dx = needs[0] ? empty(x.shape(), {x.dtype(), x.device()}) : Tensor();
                       Tensor dw = needs[1] ? empty(param_shape, popts) : Tensor();
                       Tensor db = needs[2] ? empty(param_shape, popts) : Tensor();
                       dispatch_floating(
                           x.dtype(), kGroup ? "group_norm backward" : "layer_norm backward", [&](auto tag) {
                             using T = typename decltype(tag)::type;
                             using P = kernels::norm_param_t<T>;
                             if constexpr (kGroup) {
                               SE_DISPATCH(x.device(), group_norm_backward<T>, ptr_or_null<T>(dx), ptr_or_null<P>(dw),
                                           ptr_or_null<P>(db), dy.data<T>(), x.data<T>(), mean.data<P>(),
                                           invstd.data<P>(), ptr_or_null<P>(w), d);
                             } else {
                               SE_DISPATCH(x.device(), layer_norm_backward<T>, ptr_or_null<T>(dx), ptr_or_null<P>(dw),
                                           ptr_or_null<P>(db), dy.data<T>(), x.data<T>(), mean.data<P>(),
                                           invstd.data<P>(), ptr_or_null<P>(w), d);
                             }
                           });
                       return GradInputs{dx, dw, db};
                     });
  }
  return y;
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  const char* op = "layer_norm";
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  check_input(x, op, std::max<int64_t>(k, 1));
  SE_CHECK(k >= 1, op, ": normalized_shape is empty");
  const Shape trailing(x.shape().end() - k, x.shape().end());
  SE_CHECK(trailing == normalized_shape, op, ": normalized_shape ", shape_str(normalized_shape),
           " does not match the trailing dims of the input of shape ", shape_str(x.shape()));
  const kernels::LayerNormDesc d{x.numel() / std::max<int64_t>(shape_numel(normalized_shape), 1),
                                 shape_numel(normalized_shape)};
  return row_norm_op(x, weight, bias, d, d.rows, normalized_shape, eps, op);
}

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  const char* op = "group_norm";
  check_input(x, op, 2);
  const kernels::BatchNormDesc nc = batch_norm_desc(x.shape());
  SE_CHECK(num_groups >= 1 && nc.c % num_groups == 0, op, ": ", nc.c, " channels cannot be split into ", num_groups,
           " groups");
  const kernels::GroupNormDesc d{nc.n, nc.c, nc.hw, num_groups};
  return row_norm_op(x, weight, bias, d, d.n * num_groups, {nc.c}, eps, op);
}

}  // namespace se
