#include "engine/stream.h"

#include <array>
#include <chrono>

#include "core/error.h"
#include "engine/allocator.h"
#include "engine/host_allocator.h"
#include "engine/tensor.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace se {

namespace {
constexpr int kMaxCudaDevices = 16;
thread_local std::array<Stream, kMaxCudaDevices> tls_current_streams;
thread_local std::array<bool, kMaxCudaDevices> tls_has_current_stream{};
}  // namespace

Stream Stream::default_stream(Device device) {
  Stream stream;
  stream.device_ = device;
  return stream;
}

Stream Stream::create(Device device) {
  check_device(device, "Stream::create");
  Stream stream;
  stream.device_ = device;
#ifdef SEGENGINE_HAS_CUDA
  if (device.is_cuda()) {
    kernels::cuda::set_device(device.index);
    stream.handle_ = kernels::cuda::stream_create();
    stream.owner_ = std::shared_ptr<void>(stream.handle_, [](void* h) {
      kernels::cuda::stream_destroy(static_cast<kernels::Stream>(h));
    });
  }
#endif
  return stream;
}

void Stream::synchronize() const {
#ifdef SEGENGINE_HAS_CUDA
  if (device_.is_cuda()) {
    kernels::cuda::set_device(device_.index);
    kernels::cuda::stream_synchronize(handle_);
  }
#endif
}

Stream current_stream(Device device) {
  if (device.is_cuda() && device.index < kMaxCudaDevices && tls_has_current_stream[device.index]) {
    return tls_current_streams[device.index];
  }
  return Stream::default_stream(device);
}

StreamGuard::StreamGuard(const Stream& stream) : previous_(current_stream(stream.device())) {
  Device device = stream.device();
  if (device.is_cuda()) {
    SE_CHECK(device.index < kMaxCudaDevices, "StreamGuard: device index ", device.index, " is out of range");
    tls_current_streams[device.index] = stream;
    tls_has_current_stream[device.index] = true;
  }
}

StreamGuard::~StreamGuard() {
  Device device = previous_.device();
  if (device.is_cuda()) tls_current_streams[device.index] = previous_;
}

Event::Event(Device device, bool enable_timing) : device_(device) {
  check_device(device, "Event");
#ifdef SEGENGINE_HAS_CUDA
  if (device.is_cuda()) {
    kernels::cuda::set_device(device.index);
    handle_ = std::shared_ptr<void>(kernels::cuda::event_create(enable_timing),
                                    [](void* e) { kernels::cuda::event_destroy(static_cast<kernels::cuda::Event>(e)); });
    return;
  }
#endif
  // CPU: an event is the host time at which it was recorded (CPU ops are synchronous).
  handle_ = std::make_shared<std::chrono::steady_clock::time_point>();
}

void Event::record(const Stream& stream) {
  SE_CHECK(stream.device() == device_, "Event::record: event of ", device_.str(), " recorded on a stream of ",
           stream.device().str());
#ifdef SEGENGINE_HAS_CUDA
  if (device_.is_cuda()) {
    kernels::cuda::event_record(static_cast<kernels::cuda::Event>(handle_.get()), stream.handle());
    return;
  }
#endif
  *static_cast<std::chrono::steady_clock::time_point*>(handle_.get()) = std::chrono::steady_clock::now();
}

void Event::synchronize() const {
#ifdef SEGENGINE_HAS_CUDA
  if (device_.is_cuda()) kernels::cuda::event_synchronize(static_cast<kernels::cuda::Event>(handle_.get()));
#endif
}

bool Event::query() const {
#ifdef SEGENGINE_HAS_CUDA
  if (device_.is_cuda()) return kernels::cuda::event_query(static_cast<kernels::cuda::Event>(handle_.get()));
#endif
  return true;
}

float Event::elapsed_ms(const Event& later) const {
  SE_CHECK(later.device_ == device_, "Event::elapsed_ms: events on ", device_.str(), " and ", later.device_.str());
#ifdef SEGENGINE_HAS_CUDA
  if (device_.is_cuda()) {
    return kernels::cuda::event_elapsed_ms(static_cast<kernels::cuda::Event>(handle_.get()),
                                           static_cast<kernels::cuda::Event>(later.handle_.get()));
  }
#endif
  using TimePoint = std::chrono::steady_clock::time_point;
  auto start = *static_cast<const TimePoint*>(handle_.get());
  auto end = *static_cast<const TimePoint*>(later.handle_.get());
  return std::chrono::duration<float, std::milli>(end - start).count();
}

void Event::block(const Stream& stream) const {
#ifdef SEGENGINE_HAS_CUDA
  if (device_.is_cuda()) {
    kernels::cuda::stream_wait_event(stream.handle(), static_cast<kernels::cuda::Event>(handle_.get()));
  }
#endif
}

void synchronize(Device device) {
#ifdef SEGENGINE_HAS_CUDA
  if (device.is_cuda()) {
    check_device(device, "synchronize");
    kernels::cuda::set_device(device.index);
    kernels::cuda::device_synchronize();
  }
#endif
}

void record_stream(const Tensor& tensor, const Stream& stream) {
  SE_CHECK(tensor.defined(), "record_stream: undefined tensor");
  if (!stream.device().is_cuda()) return;
  void* block = tensor.storage()->data();
  if (tensor.device().is_cuda()) {
    SE_CHECK(tensor.device() == stream.device(), "record_stream: tensor on ", tensor.device().str(), ", stream on ",
             stream.device().str());
    cuda_allocator(tensor.device().index).record_stream(block, stream.handle());
  } else if (tensor.is_pinned()) {
    pinned_host_allocator().record_stream(block, stream.device().index, stream.handle());
  }
}

}  // namespace se
