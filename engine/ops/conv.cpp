// conv2d on top of the Conv2d kernels (kernels/conv.h), which take NCHW contiguous activations and
// (C_out, C_in / groups, KH, KW) contiguous weights, or both channels-last (their nhwc layout). The
// backward calls the two backward kernels directly: grad_x = conv2d_backward_data(dy, w),
// (grad_w, grad_b) = conv2d_backward_weight(x, dy).
#include "kernels/conv.h"
#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/workspace.h"

namespace se {

namespace {

bool conv2d_dtype_supported(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f64 || dtype == DType::f16 || dtype == DType::bf16;
}

// Checks what the kernels' validate_conv2d cannot phrase in terms of the op's tensors.
void check_conv2d_inputs(const Tensor& x,       // (N, C_in, H, W)
                         const Tensor& weight,  // (C_out, C_in / groups, KH, KW)
                         const Tensor& bias,    // (C_out) or undefined
                         const Conv2dParams& p) {
  SE_CHECK(x.defined() && weight.defined(), "conv2d: x and weight must be defined tensors");
  SE_CHECK(x.dim() == 4, "conv2d: x has shape ", shape_str(x.shape()), ", expected 4-d (N, C_in, H, W)");
  SE_CHECK(weight.dim() == 4, "conv2d: weight has shape ", shape_str(weight.shape()),
           ", expected 4-d (C_out, C_in / groups, KH, KW)");
  SE_CHECK(conv2d_dtype_supported(x.dtype()), "conv2d: dtype ", x.dtype(), " is not supported on ", x.device().str(),
           " (expected f32, f64, f16 or bf16)");
  SE_CHECK(weight.dtype() == x.dtype(), "conv2d: x has dtype ", x.dtype(), " but weight has dtype ", weight.dtype(),
           " (expected equal dtypes)");
  SE_CHECK(weight.device() == x.device(), "conv2d: x is on ", x.device().str(), " but weight is on ",
           weight.device().str());
  SE_CHECK(p.groups >= 1, "conv2d: groups = ", p.groups, " (expected >= 1)");
  const int64_t c_in = x.size(1), c_out = weight.size(0);
  SE_CHECK(c_in % p.groups == 0, "conv2d: groups = ", p.groups, " does not divide the ", c_in, " input channels of x ",
           shape_str(x.shape()));
  SE_CHECK(c_out % p.groups == 0, "conv2d: groups = ", p.groups, " does not divide the ", c_out,
           " output channels of weight ", shape_str(weight.shape()));
  SE_CHECK(weight.size(1) == c_in / p.groups, "conv2d: weight ", shape_str(weight.shape()), " does not fit x ",
           shape_str(x.shape()), " with groups = ", p.groups,
           " (expected weight.size(1) = C_in / groups = ", c_in / p.groups, ")");
  if (bias.defined()) {
    SE_CHECK(bias.dim() == 1 && bias.size(0) == c_out, "conv2d: bias has shape ", shape_str(bias.shape()),
             ", expected (", c_out, ") to match weight ", shape_str(weight.shape()));
    SE_CHECK(bias.dtype() == x.dtype(), "conv2d: x has dtype ", x.dtype(), " but bias has dtype ", bias.dtype(),
             " (expected equal dtypes)");
    SE_CHECK(bias.device() == x.device(), "conv2d: x is on ", x.device().str(), " but bias is on ",
             bias.device().str());
  }
}

kernels::Conv2dDesc make_conv2d_desc(const Tensor& x, const Tensor& weight, bool has_bias, const Conv2dParams& p) {
  kernels::Conv2dDesc d;
  d.n = x.size(0);
  d.c_in = x.size(1);
  d.h = x.size(2);
  d.w = x.size(3);
  d.c_out = weight.size(0);
  d.kernel_h = weight.size(2);
  d.kernel_w = weight.size(3);
  d.stride_h = p.stride_h;
  d.stride_w = p.stride_w;
  d.pad_h = p.pad_h;
  d.pad_w = p.pad_w;
  d.dilation_h = p.dilation_h;
  d.dilation_w = p.dilation_w;
  d.groups = p.groups;
  d.has_bias = has_bias;
  d.dtype = x.dtype();
  d.activation = p.activation;
  return d;
}

bool prefers_channels_last(const Tensor& t) {
  return !t.is_contiguous() && t.is_contiguous(MemoryFormat::channels_last);
}

// PyTorch's choice of memory format for a convolution, on CUDA: channels-last when x or the weight is (a
// tensor that is both, e.g. with one channel, counts as contiguous). The CPU's kernels run most nhwc convs
// on NCHW copies, which costs a permutation of y more than making x contiguous (SegFormer's token maps
// arrive channels-last: a CPU training step took ~10 % longer), so the CPU keeps NCHW except for the convs
// it runs channels-last natively (its depthwise ones: SegFormer's Mix-FFN then copies nothing).
bool runs_channels_last(const Tensor& x, const Tensor& weight, kernels::Conv2dDesc desc) {
  if (!prefers_channels_last(x) && !prefers_channels_last(weight)) return false;
  desc.layout = kernels::Conv2dLayout::nhwc;
  return x.device().is_cuda() || kernels::cpu::conv2d_runs_nhwc_natively(desc);
}

// An uninitialized (N, C, H, W) tensor, stored (N, H, W, C) when channels_last.
Tensor empty_4d(const Shape& shape, bool channels_last, const TensorOptions& options) {
  return channels_last ? empty_strided(shape, channels_last_strides(shape), options) : empty(shape, options);
}

}  // namespace

Tensor conv2d(const Tensor& x_arg, const Tensor& weight_arg, const Tensor& bias_arg, const Conv2dParams& params) {
  if (params.activation == kernels::ConvActivation::gelu && autograd::needs_grad({x_arg, weight_arg, bias_arg})) {
    Conv2dParams plain = params;  // GELU's backward needs the pre-activation: keep it
    plain.activation = kernels::ConvActivation::none;
    return gelu(conv2d(x_arg, weight_arg, bias_arg, plain));
  }
  // Autocast (engine/autocast.h): computed in f16/bf16.
  const Tensor x = autocast::to_low_precision(x_arg), weight = autocast::to_low_precision(weight_arg),
               bias = autocast::to_low_precision(bias_arg);
  check_conv2d_inputs(x, weight, bias, params);
  kernels::Conv2dDesc desc = make_conv2d_desc(x, weight, bias.defined(), params);
  const bool channels_last = runs_channels_last(x, weight, desc);
  const MemoryFormat format = channels_last ? MemoryFormat::channels_last : MemoryFormat::contiguous;
  if (channels_last) desc.layout = kernels::Conv2dLayout::nhwc;
  kernels::validate_conv2d(desc);

  const Tensor xc = x.detach().contiguous(format);                           // (N, C_in, H, W)
  const Tensor wc = weight.detach().contiguous(format);                      // (C_out, C_in / groups, KH, KW)
  const Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();  // (C_out)
  Tensor y = empty_4d({desc.n, desc.c_out, kernels::conv2d_output_h(desc), kernels::conv2d_output_w(desc)},
                      channels_last, {x.dtype(), x.device()});  // (N, C_out, OH, OW)
  SE_DISPATCH(y.device(), conv2d_forward, desc, xc.data_ptr(), wc.data_ptr(), bc.defined() ? bc.data_ptr() : nullptr,
              y.data_ptr());

  std::vector<Tensor> inputs = {x, weight};
  if (bias.defined()) inputs.push_back(bias);
  if (!autograd::needs_grad(inputs)) return y;

  // grad_x needs only the weight; grad_w and grad_b need only x: save no more than the backward uses.
  // A fused ReLU also saves its output, whose sign is the ReLU's derivative.
  const bool x_grad = x.requires_grad();
  const bool w_or_b_grad = weight.requires_grad() || (bias.defined() && bias.requires_grad());
  const bool fused_relu = desc.activation == kernels::ConvActivation::relu;
  autograd::record(
      fused_relu ? "conv2d_relu" : "conv2d", inputs, {y},
      [desc, saved_x = SavedTensor(w_or_b_grad ? xc : Tensor()), saved_w = SavedTensor(x_grad ? wc : Tensor()),
       saved_y = SavedTensor(fused_relu ? y.detach() : Tensor()), channels_last,
       format](const GradOutputs& g, const NeedsGrad& needs) {
        GradInputs grads(needs.size());
        Tensor dy = g[0].contiguous(format);  // (N, C_out, OH, OW), with respect to the output
        if (desc.activation == kernels::ConvActivation::relu) {  // with respect to the pre-activation
          const Tensor y = saved_y.unpack();
          dy = relu_backward(dy, y).contiguous(format);  // y > 0 exactly where the pre-activation is
        }
        const TensorOptions options{dy.dtype(), dy.device()};
        if (needs[0]) {
          const Tensor w = saved_w.unpack();
          grads[0] = empty_4d({desc.n, desc.c_in, desc.h, desc.w}, channels_last, options);
          SE_DISPATCH(dy.device(), conv2d_backward_data, desc, dy.data_ptr(), w.data_ptr(), grads[0].data_ptr());
        }
        const bool bias_grad = needs.size() > 2 && needs[2];
        if (needs[1] || bias_grad) {
          const Tensor x = saved_x.unpack();
          // The kernel always writes dw; it is dropped when only the bias needs a gradient.
          const Tensor dw =
              empty_4d({desc.c_out, desc.c_in / desc.groups, desc.kernel_h, desc.kernel_w}, channels_last, options);
          const Tensor db = bias_grad ? empty({desc.c_out}, options) : Tensor();
          const Tensor workspace = kernel_workspace(kernels::conv2d_backward_weight_workspace_bytes(desc), dy.device());
          SE_DISPATCH(dy.device(), conv2d_backward_weight, desc, x.data_ptr(), dy.data_ptr(), dw.data_ptr(),
                      data_or_null(db), data_or_null(workspace));
          if (needs[1]) grads[1] = dw;
          if (bias_grad) grads[2] = db;
        }
        return grads;
      });
  return y;
}

}  // namespace se
