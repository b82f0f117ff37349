// Copies between layouts, dtypes and devices: contiguous(), clone(), to(), copy_(), fill_(), zero_().
#include <cstring>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/host_allocator.h"
#include "engine/stream.h"
#include "kernels/copy.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace se {

namespace {

kernels::StridedLayout layout_of(const Shape& sizes, const Shape& strides) {
  SE_CHECK(sizes.size() <= static_cast<size_t>(kernels::kMaxDims), "copy: tensors with ", sizes.size(),
           " dims are not supported (at most ", kernels::kMaxDims, ")");
  kernels::StridedLayout layout;
  layout.ndim = static_cast<int>(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    layout.sizes[i] = sizes[i];
    layout.strides[i] = strides[i];
  }
  return layout;
}

// Same-device strided copy with conversion; `src` already has dst's shape (possibly expanded). A source
// that overlaps the destination (x[1:].copy_(x[:-1])) is read whole into a temporary first, so the copy
// has the values src held before it (NumPy's semantics; the kernels alone would race).
void copy_same_device(const Tensor& dst, const Tensor& src) {
  if (partially_overlaps(dst, src)) {
    Tensor staged = empty(src.shape(), {src.dtype(), src.device()});
    copy_same_device(staged, src);
    copy_same_device(dst, staged);
    return;
  }
  kernels::CopyDesc desc{layout_of(src.shape(), src.strides()), layout_of(dst.shape(), dst.strides()), src.dtype(),
                         dst.dtype()};
  SE_DISPATCH(dst.device(), copy_strided, desc, src.data_ptr(), dst.data_ptr());
}

// A fresh tensor with `src`'s values on `device` in `dtype` and the given layout; no autograd.
Tensor copy_to_new(const Tensor& src, Device device, DType dtype, MemoryFormat format, bool non_blocking = false) {
  TensorOptions options{dtype, device, false};
  Tensor out;
  if (format == MemoryFormat::channels_last) {
    out = empty_strided(src.shape(), channels_last_strides(src.shape()), options);
  } else if (format == MemoryFormat::preserve && src.is_non_overlapping_and_dense()) {
    out = empty_strided(src.shape(), src.strides(), options);
  } else {
    out = empty(src.shape(), options);
  }
  NoGradGuard no_grad;
  out.copy_(src, non_blocking);
  return out;
}

// Records the backward of a value-preserving copy: the gradient goes back converted to the input's
// device and dtype.
void record_copy(const char* name, const Tensor& input, const Tensor& output) {
  if (!autograd::needs_grad({input}) || !is_floating(output.dtype())) return;
  Device device = input.device();
  DType dtype = input.dtype();
  autograd::record(name, {input}, {output}, [device, dtype](const GradOutputs& grads, const NeedsGrad&) {
    return GradInputs{grads[0].to(device, dtype)};
  });
}

}  // namespace

Tensor Tensor::contiguous(MemoryFormat format) const {
  if (is_contiguous(format)) return *this;
  Tensor out = copy_to_new(*this, device(), dtype(), format);
  record_copy("contiguous", *this, out);
  return out;
}

Tensor Tensor::clone(MemoryFormat format) const {
  Tensor out = copy_to_new(*this, device(), dtype(), format);
  record_copy("clone", *this, out);
  return out;
}

Tensor Tensor::to(Device device, bool non_blocking) const { return to(device, dtype(), non_blocking); }
Tensor Tensor::to(DType dtype) const { return to(device(), dtype); }

Tensor Tensor::to(Device device, DType dtype, bool non_blocking) const {
  if (device == this->device() && dtype == this->dtype()) return *this;
  check_device(device, "to");
  Tensor out = copy_to_new(*this, device, dtype, MemoryFormat::preserve, non_blocking);
  record_copy("to", *this, out);
  return out;
}

Tensor Tensor::pin_memory() const {
  SE_CHECK(device().is_cpu(), "pin_memory: only CPU tensors can be pinned, this one is on ", device().str());
  if (is_pinned()) return *this;
  Tensor out = empty_pinned(shape(), dtype());
  {
    NoGradGuard no_grad;
    out.copy_(*this);
  }
  record_copy("pin_memory", *this, out);
  return out;
}

Tensor& Tensor::copy_(const Tensor& src, bool non_blocking) {
  SE_CHECK(src.defined(), "copy_: source tensor is undefined");
  SE_CHECK(!has_internal_overlap(), "copy_: the destination of shape ", shape_str(shape()), " and strides ",
           shape_str(strides()), " has several elements at one memory location (an expanded view); clone() it first");
  autograd::prepare_inplace(*this, "copy_");
  SE_CHECK(broadcast_shapes(shape(), src.shape(), "copy_") == shape(), "copy_: source of shape ",
           shape_str(src.shape()), " does not broadcast to destination shape ", shape_str(shape()));
  if (numel() == 0) return *this;
  Tensor source = src.detach().expand(shape());
  if (source.device() == device()) {
    copy_same_device(*this, source);
    return *this;
  }
#ifndef SEGENGINE_HAS_CUDA
  SE_THROW("copy_: from ", source.device().str(), " to ", device().str(), " in a build without CUDA");
#else
  if (device().is_cuda() && source.device().is_cpu()) {
    // Convert and densify on the host unless the source is already dense in the target dtype, transfer,
    // then lay out on the device if needed.
    const bool direct = source.is_contiguous() && source.dtype() == dtype();
    Tensor host = direct ? source : copy_to_new(source, Device::cpu(), dtype(), MemoryFormat::contiguous);
    Tensor staging = is_contiguous() ? *this : empty(shape(), {dtype(), device()});
    const kernels::Stream stream = current_stream(device()).handle();
    kernels::cuda::set_device(device().index);
    kernels::cuda::copy_host_to_device(staging.data_ptr(), host.data_ptr(), host.nbytes(), stream);
    if (host.is_pinned()) {
      // From pageable memory the runtime has read the source before it returns; from pinned memory the
      // copy is still queued. Keep the block from reuse until the stream has run it, and unless the
      // caller asked for non_blocking, wait for it (the caller may overwrite the source next).
      pinned_host_allocator().record_stream(host.storage()->data(), device().index, stream);
      if (!non_blocking) kernels::cuda::stream_synchronize(stream);
    }
    if (!staging.same(*this)) copy_same_device(*this, staging);
  } else if (device().is_cpu() && source.device().is_cuda()) {
    Tensor dense = copy_to_new(source, source.device(), dtype(), MemoryFormat::contiguous);
    Tensor staging = is_contiguous() ? *this : empty(shape(), {dtype(), Device::cpu()});
    kernels::cuda::set_device(source.device().index);
    kernels::cuda::copy_device_to_host(staging.data_ptr(), dense.data_ptr(), dense.nbytes(),
                                       current_stream(source.device()).handle());
    if (!staging.same(*this)) copy_same_device(*this, staging);
  } else {
    // Between two CUDA devices: through the host (peer-to-peer copies come with multi-GPU work).
    copy_(source.to(Device::cpu()));
  }
  return *this;
#endif
}

Tensor& Tensor::fill_(double value) {
  autograd::prepare_inplace(*this, "fill_");
  if (numel() == 0) return *this;
  kernels::FillDesc desc{layout_of(shape(), strides()), dtype(), value};
  SE_DISPATCH(device(), fill, desc, data_ptr());
  return *this;
}

Tensor& Tensor::zero_() { return fill_(0.0); }

}  // namespace se
