// Losses. cross_entropy runs the fused kernels of kernels/loss.h: the forward writes per-pixel losses,
// per-pixel target weights and the log-sum-exp; the reductions are the engine's deterministic sums; the
// backward is one kernel pass from the saved log-sum-exp. binary_cross_entropy_with_logits is one
// elementwise kernel each way. mse_loss and cosine_distance are composites: memory-bound passes over the
// two maps whose every step is already one kernel (a fused kernel would save about one pass).
#include <algorithm>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/loss.h"

namespace se {
namespace {

// Validates logits (N, C, d1, ...) against target (N, d1, ...) and returns the kernels' view.
kernels::CrossEntropyDesc cross_entropy_desc(const Tensor& logits, const Tensor& target, const CrossEntropyParams& p) {
  const char* op = "cross_entropy";
  SE_CHECK(logits.defined() && target.defined(), op, ": undefined tensor");
  SE_CHECK(logits.dim() >= 2, op, ": logits must be (N, C) or (N, C, d1, ...), got ", shape_str(logits.shape()));
  SE_CHECK(target.dtype() == DType::i64, op, ": target must be i64, got ", dtype_name(target.dtype()));
  SE_CHECK(target.device() == logits.device(), op, ": target is on ", target.device().str(), ", logits on ",
           logits.device().str());
  Shape expected = {logits.size(0)};
  for (int64_t k = 2; k < logits.dim(); ++k) expected.push_back(logits.size(k));
  SE_CHECK(target.shape() == expected, op, ": target shape ", shape_str(target.shape()), " does not match logits ",
           shape_str(logits.shape()), " (expected ", shape_str(expected), ")");
  SE_CHECK(p.label_smoothing >= 0 && p.label_smoothing <= 1, op, ": label_smoothing must be in [0, 1], got ",
           p.label_smoothing);
  kernels::CrossEntropyDesc d;
  d.batch = logits.size(0);
  d.classes = logits.size(1);
  d.spatial = shape_numel(expected) / std::max<int64_t>(d.batch, 1);
  if (d.batch == 0) d.spatial = 0;
  d.ignore_index = p.ignore_index;
  d.label_smoothing = p.label_smoothing;
  if (p.weight.defined()) {
    SE_CHECK(p.weight.shape() == Shape{d.classes}, op, ": weight must be ", shape_str({d.classes}), ", got ",
             shape_str(p.weight.shape()));
    SE_CHECK(p.weight.dtype() == logits.dtype() && p.weight.device() == logits.device(), op,
             ": weight must have the logits' dtype and device (", dtype_name(logits.dtype()), ", ",
             logits.device().str(), ")");
  }
  return d;
}

Tensor cross_entropy_backward_of(const Tensor& grad, const Tensor& logits, const Tensor& lse, const Tensor& target,
                                 const Tensor& weight, const kernels::CrossEntropyDesc& d) {
  Tensor g = grad.contiguous();
  Tensor out = empty(logits.shape(), {logits.dtype(), logits.device()});
  const int64_t grad_stride = g.numel() == 1 ? 0 : 1;
  dispatch_floating(logits.dtype(), "cross_entropy backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(logits.device(), cross_entropy_backward<T>, out.data<T>(), g.data<T>(), grad_stride, logits.data<T>(),
                lse.data<kernels::loss_compute_t<T>>(), target.data<int64_t>(),
                weight.defined() ? weight.data<T>() : nullptr, d);
  });
  return out;
}

Tensor reduce_loss(const Tensor& loss, Reduction reduction) {
  switch (reduction) {
    case Reduction::none: return loss;
    case Reduction::sum: return sum(loss);
    case Reduction::mean: return mean(loss);
  }
  SE_THROW("loss: invalid reduction ", static_cast<int>(reduction));
}

// pos_weight as (channels) along one dim of the logits: the (outer, channels, inner) view.
kernels::BinaryCrossEntropyDesc bce_desc(const Tensor& logits, const Tensor& pos_weight) {
  const char* op = "binary_cross_entropy_with_logits";
  kernels::BinaryCrossEntropyDesc d;
  d.inner = logits.numel();
  if (!pos_weight.defined()) return d;
  SE_CHECK(pos_weight.dtype() == logits.dtype() && pos_weight.device() == logits.device(), op,
           ": pos_weight must have the logits' dtype and device");
  SE_CHECK(broadcast_shapes(pos_weight.shape(), logits.shape(), op) == logits.shape(), op, ": pos_weight shape ",
           shape_str(pos_weight.shape()), " does not broadcast to logits ", shape_str(logits.shape()));
  const int64_t offset = logits.dim() - pos_weight.dim();
  int64_t channel_dim = -1;
  for (int64_t k = 0; k < pos_weight.dim(); ++k) {
    if (pos_weight.size(k) == 1) continue;
    SE_CHECK(channel_dim < 0, op, ": pos_weight ", shape_str(pos_weight.shape()),
             " may be longer than 1 along one dim only");
    channel_dim = k + offset;
  }
  if (channel_dim < 0) {
    d.inner = 1;
    d.outer = logits.numel();
    return d;
  }
  d.outer = d.inner = 1;
  for (int64_t k = 0; k < logits.dim(); ++k) {
    if (k < channel_dim) d.outer *= logits.size(k);
    if (k > channel_dim) d.inner *= logits.size(k);
  }
  d.channels = logits.size(channel_dim);
  return d;
}

Tensor bce_backward_of(const Tensor& grad, const Tensor& logits, const Tensor& target, const Tensor& pos_weight,
                       const kernels::BinaryCrossEntropyDesc& d) {
  Tensor g = grad.contiguous();
  Tensor out = empty(logits.shape(), {logits.dtype(), logits.device()});
  const int64_t grad_stride = g.numel() == 1 ? 0 : 1;
  dispatch_floating(logits.dtype(), "binary_cross_entropy_with_logits backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(logits.device(), binary_cross_entropy_backward<T>, out.data<T>(), g.data<T>(), grad_stride,
                logits.data<T>(), target.data<T>(), pos_weight.defined() ? pos_weight.data<T>() : nullptr, d);
  });
  return out;
}

void check_same_maps(const Tensor& a, const Tensor& b, const char* op) {
  SE_CHECK(a.defined() && b.defined(), op, ": undefined tensor");
  SE_CHECK(a.shape() == b.shape(), op, ": shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()), " differ");
  SE_CHECK(a.dtype() == b.dtype() && a.device() == b.device(), op, ": inputs must share dtype and device, got ",
           dtype_name(a.dtype()), " on ", a.device().str(), " and ", dtype_name(b.dtype()), " on ", b.device().str());
}

}  // namespace

Tensor cross_entropy(const Tensor& logits_arg, const Tensor& target, const CrossEntropyParams& params_arg) {
  // Autocast (engine/autocast.h): computed in f32.
  const Tensor logits = autocast::to_f32(logits_arg);
  CrossEntropyParams params = params_arg;
  params.weight = autocast::to_f32(params.weight);
  const kernels::CrossEntropyDesc d = cross_entropy_desc(logits, target, params);
  Tensor x = logits.contiguous(), t = target.contiguous();
  Tensor weight = params.weight.defined() ? params.weight.contiguous() : Tensor();
  const TensorOptions options{logits.dtype(), logits.device()};
  Tensor loss = empty(t.shape(), options), pixel_weight = empty(t.shape(), options);
  Tensor lse = empty(t.shape(), {logits.dtype() == DType::f64 ? DType::f64 : DType::f32, logits.device()});
  Tensor bad_target = full({1}, static_cast<double>(d.ignore_index), {DType::i64, logits.device()});
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(logits.device(), cross_entropy_forward<T>, loss.data<T>(), pixel_weight.data<T>(),
                lse.data<kernels::loss_compute_t<T>>(), bad_target.data<int64_t>(), x.data<T>(), t.data<int64_t>(),
                weight.defined() ? weight.data<T>() : nullptr, d);
  });
  // One read of the flag (a synchronising copy on CUDA).
  const int64_t bad = bad_target.to_vector<int64_t>()[0];
  SE_CHECK(bad == d.ignore_index, "cross_entropy: target value ", bad, " is out of range for ", d.classes,
           " classes (expected [0, ", d.classes, ") or ignore_index ", d.ignore_index, ")");

  Tensor out, denominator;
  {
    NoGradGuard no_grad;
    switch (params.reduction) {
      case Reduction::none: out = loss; break;
      case Reduction::sum: out = sum(loss); break;
      case Reduction::mean:
        denominator = sum(pixel_weight);
        out = div(sum(loss), denominator);
        break;
    }
  }
  if (autograd::needs_grad({logits})) {
    autograd::record(
        "cross_entropy", {logits}, {out},
        [saved_x = SavedTensor(x), saved_t = SavedTensor(t), lse, weight, denominator, d](const GradOutputs& g,
                                                                                          const NeedsGrad&) {
          Tensor grad = denominator.defined() ? div(g[0], denominator) : g[0];
          return GradInputs{cross_entropy_backward_of(grad, saved_x.unpack(), lse, saved_t.unpack(), weight, d)};
        });
  }
  return out;
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits_arg, const Tensor& target_arg,
                                        const BinaryCrossEntropyParams& params_arg) {
  // Autocast (engine/autocast.h): computed in f32.
  const Tensor logits = autocast::to_f32(logits_arg), target = autocast::to_f32(target_arg);
  BinaryCrossEntropyParams params = params_arg;
  params.pos_weight = autocast::to_f32(params.pos_weight);
  const char* op = "binary_cross_entropy_with_logits";
  SE_CHECK(logits.defined() && target.defined(), op, ": undefined tensor");
  SE_CHECK(target.shape() == logits.shape(), op, ": target shape ", shape_str(target.shape()),
           " does not match logits ", shape_str(logits.shape()));
  SE_CHECK(target.dtype() == logits.dtype() && target.device() == logits.device(), op,
           ": target must have the logits' dtype and device (", dtype_name(logits.dtype()), ", ", logits.device().str(),
           "), got ", dtype_name(target.dtype()), ", ", target.device().str());
  Tensor pos_weight = params.pos_weight.defined() ? params.pos_weight.contiguous() : Tensor();
  const kernels::BinaryCrossEntropyDesc d = bce_desc(logits, pos_weight);
  Tensor x = logits.contiguous(), t = target.contiguous();
  Tensor loss = empty(x.shape(), {x.dtype(), x.device()});
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(x.device(), binary_cross_entropy_forward<T>, loss.data<T>(), x.data<T>(), t.data<T>(),
                pos_weight.defined() ? pos_weight.data<T>() : nullptr, d);
  });
  Tensor out;
  {
    NoGradGuard no_grad;
    out = reduce_loss(loss, params.reduction);
  }
  if (autograd::needs_grad({logits})) {
    const double scale = params.reduction == Reduction::mean ? 1.0 / static_cast<double>(x.numel()) : 1.0;
    autograd::record(op, {logits}, {out},
                     [saved_x = SavedTensor(x), saved_t = SavedTensor(t), pos_weight, d, scale](const GradOutputs& g,
                                                                                                const NeedsGrad&) {
                       Tensor grad = scale != 1.0 ? mul(g[0], scale) : g[0];
                       return GradInputs{bce_backward_of(grad, saved_x.unpack(), saved_t.unpack(), pos_weight, d)};
                     });
  }
  return out;
}

Tensor mse_loss(const Tensor& a_arg, const Tensor& b_arg, Reduction reduction) {
  // Autocast (engine/autocast.h): computed in f32.
  const Tensor a = autocast::to_f32(a_arg), b = autocast::to_f32(b_arg);
  check_same_maps(a, b, "mse_loss");
  Tensor diff = sub(a, b);
  return reduce_loss(mul(diff, diff), reduction);
}

namespace {

// ||x||_2 over dim 1, kept: (N, 1, ...) of x (N, C, ...). Its gradient g x / ||x|| is 0 where the norm
// is 0, as torch.linalg.vector_norm's; through sqrt it would be inf * 0 = NaN there, and a feature
// vector of zeros (every channel of a pixel cut by a ReLU) would turn the whole gradient to NaN.
Tensor channel_norm(const Tensor& x) {
  Tensor norm;
  {
    NoGradGuard no_grad;
    norm = sqrt(sum(mul(x, x), {1}, true));
  }
  if (autograd::needs_grad({x})) {
    autograd::record(
        "cosine_distance", {x}, {norm},
        [saved_x = SavedTensor(x), saved_norm = SavedTensor(norm)](const GradOutputs& g, const NeedsGrad&) {
          const Tensor n = saved_norm.unpack();
          const Tensor scale = where(eq(n, 0.0), zeros_like(n), div(g[0], n));
          return GradInputs{mul(saved_x.unpack(), scale)};
        });
  }
  return norm;
}

}  // namespace

Tensor cosine_distance(const Tensor& a_arg, const Tensor& b_arg, Reduction reduction, double eps) {
  // Autocast (engine/autocast.h): computed in f32.
  const Tensor a = autocast::to_f32(a_arg), b = autocast::to_f32(b_arg);
  const char* op = "cosine_distance";
  check_same_maps(a, b, op);
  SE_CHECK(a.dim() >= 2, op, ": inputs must be (N, C, ...), got ", shape_str(a.shape()));
  // PyTorch clamps the norms without recording the clamp: the gradient flows through the unclamped norm.
  auto unit = [&](const Tensor& x) {
    Tensor norm = channel_norm(x);
    Tensor floor;
    {
      NoGradGuard no_grad;
      floor = sub(clamp(norm, eps, std::nullopt), norm);
    }
    return div(x, add(norm, floor));
  };
  return reduce_loss(rsub(sum(mul(unit(a), unit(b)), {1}), 1.0), reduction);
}

}  // namespace se
