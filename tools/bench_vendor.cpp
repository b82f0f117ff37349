#include "tools/bench_vendor.h"

#include <algorithm>

#include "engine/stream.h"
#include "kernels/cuda/runtime.h"

namespace se::tools {

namespace {

template <typename Desc>
const Desc& desc_of(const VendorWork& work) {
  const Desc* desc = std::get_if<Desc>(&work.desc);
  SE_CHECK(desc != nullptr, "bench kernels: VendorOp ", static_cast<int>(work.op), " got another descriptor type");
  return *desc;
}

// (1, C, H, W) of cuDNN's dims as a Shape.
Shape shape_of(const vendor::Dims4& dims) {
  return {dims[0], dims[1], dims[2], dims[3]};
}

float* f32_data(const Tensor& t) {
  SE_CHECK(t.dtype() == DType::f32, "bench kernels: the vendor's per-channel tensors are f32, not ", t.dtype());
  return static_cast<float*>(t.data_ptr());
}

// The vendor's call for `work`, writing into `out` (copies of our outputs); nullopt without an equivalent.
// Tensors the call needs besides the work's go to `scratch`, to live as long as the call.
std::optional<vendor::Call> vendor_call(const VendorWork& w, const std::vector<Tensor>& out, Stream stream,
                                        std::vector<Tensor>& scratch) {
  const kernels::Stream s = stream.handle();
  const DType dtype = w.inputs.at(0).dtype();
  auto in = [&](size_t i) { return w.inputs.at(i).data_ptr(); };
  auto output = [&](size_t i) { return out.at(i).data_ptr(); };
  switch (w.op) {
    case VendorOp::conv2d_forward:
    case VendorOp::conv2d_backward_data:
    case VendorOp::conv2d_backward_weight: {
      const kernels::Conv2dDesc& d = desc_of<kernels::Conv2dDesc>(w);
      const auto args = vendor::cudnn_conv_args(d);
      if (!args) return std::nullopt;
      if (w.op == VendorOp::conv2d_forward) {
        return vendor::conv2d_forward(*args, in(0), in(1), d.has_bias ? in(2) : nullptr, output(0), s);
      }
      if (w.op == VendorOp::conv2d_backward_data) {
        return vendor::conv2d_backward_data(*args, in(0), in(1), output(0), s);
      }
      return vendor::conv2d_backward_weight(*args, in(0), in(1), output(0), output(1), s);
    }
    case VendorOp::conv_transpose2d_forward:
    case VendorOp::conv_transpose2d_backward_data:
    case VendorOp::conv_transpose2d_backward_weight: {
      const kernels::ConvTranspose2dDesc& d = desc_of<kernels::ConvTranspose2dDesc>(w);
      const auto mirror = vendor::cudnn_conv_args(kernels::conv2d_of_transpose(d));
      if (!mirror) return std::nullopt;
      if (w.op == VendorOp::conv_transpose2d_forward) {
        return vendor::conv_transpose2d_forward(*mirror, in(0), in(1), d.has_bias ? in(2) : nullptr, output(0), s);
      }
      if (w.op == VendorOp::conv_transpose2d_backward_data) {
        return vendor::conv_transpose2d_backward_data(*mirror, in(0), in(1), output(0), s);
      }
      return vendor::conv_transpose2d_backward_weight(*mirror, in(0), in(1), output(0), output(1), s);
    }
    case VendorOp::gemm: {
      const kernels::GemmDesc& d = desc_of<kernels::GemmDesc>(w);
      const auto args = vendor::cublas_gemm_args(d);
      if (!args) return std::nullopt;
      return vendor::gemm(*args, d.dtype, in(0), in(1), output(0), s);
    }
    case VendorOp::batch_norm_forward_training:
    case VendorOp::batch_norm_forward_inference:
    case VendorOp::batch_norm_backward: {
      const BatchNormWork& bn = desc_of<BatchNormWork>(w);
      const auto dims = vendor::cudnn_batch_norm_dims(bn.desc);
      if (!dims) return std::nullopt;
      auto param = [&](size_t i) { return f32_data(w.inputs.at(i)); };
      if (w.op == VendorOp::batch_norm_forward_training) {
        return vendor::batch_norm_forward_training(*dims, dtype, in(0), output(0), param(1), param(2),
                                                   f32_data(out.at(3)), f32_data(out.at(4)), f32_data(out.at(1)),
                                                   f32_data(out.at(2)), bn.momentum, bn.eps, s);
      }
      if (w.op == VendorOp::batch_norm_forward_inference) {
        return vendor::batch_norm_forward_inference(*dims, dtype, in(0), output(0), param(1), param(2), param(3),
                                                    param(4), bn.eps, s);
      }
      // Ours writes dx and sum_dy (= grad_bias); cuDNN writes grad_weight too.
      Tensor grad_weight = empty_like(out.at(1));
      scratch.push_back(grad_weight);
      return vendor::batch_norm_backward(*dims, dtype, in(0), in(1), output(0), param(2), f32_data(grad_weight),
                                         f32_data(out.at(1)), param(3), param(4), bn.eps, s);
    }
    case VendorOp::max_pool2d_forward:
    case VendorOp::max_pool2d_backward: {
      const auto args = vendor::cudnn_max_pool_args(desc_of<kernels::Pool2dDesc>(w));
      if (!args) return std::nullopt;
      if (w.op == VendorOp::max_pool2d_forward) {
        return vendor::pool2d_forward(*args, dtype, in(0), output(0), s);
      }
      return vendor::pool2d_backward(*args, dtype, in(0), in(1), in(2), output(0), s);
    }
    case VendorOp::avg_pool2d_forward:
    case VendorOp::avg_pool2d_backward: {
      const auto* pool = std::get_if<kernels::Pool2dDesc>(&w.desc);
      const auto args = pool != nullptr ? vendor::cudnn_avg_pool_args(*pool)
                                        : vendor::cudnn_adaptive_avg_pool_args(desc_of<kernels::AdaptivePool2dDesc>(w));
      if (!args) return std::nullopt;
      if (w.op == VendorOp::avg_pool2d_forward) {
        return vendor::pool2d_forward(*args, dtype, in(0), output(0), s);
      }
      // cuDNN's backward takes the forward's x and y too, which averaging does not need: zeros.
      Tensor x = zeros(shape_of(args->x), {dtype, stream.device()});
      Tensor y = zeros(shape_of(args->y), {dtype, stream.device()});
      scratch.insert(scratch.end(), {x, y});
      return vendor::pool2d_backward(*args, dtype, x.data_ptr(), y.data_ptr(), in(0), output(0), s);
    }
    case VendorOp::softmax_forward:
    case VendorOp::softmax_backward: {
      const auto dims = vendor::cudnn_softmax_dims(desc_of<kernels::SoftmaxDesc>(w));
      if (!dims) return std::nullopt;
      if (w.op == VendorOp::softmax_forward) {
        return vendor::softmax_forward(*dims, dtype, in(0), output(0), s);
      }
      return vendor::softmax_backward(*dims, dtype, in(0), in(1), output(0), s);
    }
  }
  SE_THROW("bench kernels: VendorOp ", static_cast<int>(w.op), " has no vendor call");
}

// The largest of two differences, by their relative size.
vendor::OutputDifference worse(const vendor::OutputDifference& a, const vendor::OutputDifference& b) {
  return a.relative() >= b.relative() ? a : b;
}

}  // namespace

std::optional<VendorRun> prepare_vendor(const VendorWork& work, Device device) {
  SE_CHECK(device.is_cuda(), "bench kernels: the vendor references run on CUDA devices, not ", device.str());
  kernels::cuda::set_device(device.index);
  const Stream stream = current_stream(device);
  // Copies of our outputs: the same shapes and, for outputs updated in place (running statistics), the
  // same starting values, taken before our kernel runs for the check.
  std::vector<Tensor> out;
  for (const Tensor& t : work.outputs) out.push_back(t.clone());
  std::vector<Tensor> scratch;
  const std::optional<vendor::Call> call = vendor_call(work, out, stream, scratch);
  if (!call) return std::nullopt;

  VendorRun run;
  run.library = call->library();
  run.call = call->description();
  run.tolerance = vendor::relative_tolerance(work.inputs.at(0).dtype());
  run.run = [call = *call, scratch] { call(); };
  run.compare = [work, theirs = out] {
    vendor::OutputDifference worst;
    for (size_t i = 0; i < work.outputs.size(); ++i) {
      const std::vector<float> ours_values = work.outputs[i].to_vector<float>();
      const std::vector<float> their_values = theirs.at(i).to_vector<float>();
      if (work.op == VendorOp::max_pool2d_backward) {
        // Tied maxima may route a gradient to another input; compare what does not depend on that.
        const std::vector<float> x = work.inputs.at(0).to_vector<float>();
        const int64_t planes = desc_of<kernels::Pool2dDesc>(work).planes;
        worst = worse(worst, vendor::compare_outputs(vendor::max_pool_gradient_moments(ours_values, x, planes),
                                                     vendor::max_pool_gradient_moments(their_values, x, planes)));
      } else {
        worst = worse(worst, vendor::compare_outputs(ours_values, their_values));
      }
    }
    return worst;
  };
  return run;
}

}  // namespace se::tools
