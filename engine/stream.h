// CUDA streams and events as the engine uses them. Every op on a CUDA tensor is enqueued on the
// current stream of its device (per host thread; the default stream unless a StreamGuard says
// otherwise), so ops on one stream run in order without host synchronisation.
#pragma once

#include <memory>

#include "engine/device.h"
#include "kernels/stream.h"

namespace se {

// A stream owned by the engine (destroyed with the last copy of the handle), or the default stream.
class Stream {
 public:
  Stream() = default;  // the CPU "stream": no-op
  static Stream default_stream(Device device);
  static Stream create(Device device);

  Device device() const { return device_; }
  kernels::Stream handle() const { return handle_; }
  void synchronize() const;

 private:
  Device device_;
  kernels::Stream handle_ = nullptr;
  std::shared_ptr<void> owner_;  // destroys a created stream
};

// The stream ops on `device` are enqueued on, for this host thread.
Stream current_stream(Device device);
// Sets the current stream of its device for this thread while alive.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Stream previous_;
};

// A marker in a stream: for ordering between streams and for timing.
class Event {
 public:
  explicit Event(Device device, bool enable_timing = true);
  void record(const Stream& stream);
  void synchronize() const;
  bool query() const;                            // true when the recorded work has finished
  float elapsed_ms(const Event& later) const;    // between this record and `later`'s
  void block(const Stream& stream) const;        // make `stream` wait for this event

 private:
  Device device_;
  std::shared_ptr<void> handle_;
};

void synchronize(Device device);  // waits for all work on the device

class Tensor;
// `tensor`'s memory is used by work queued on `stream` (a stream other than the one it was allocated
// on): the allocator does not reuse it after it is freed until that work has run. As
// torch.Tensor.record_stream. For CUDA tensors and pinned host tensors; a no-op for other CPU tensors.
void record_stream(const Tensor& tensor, const Stream& stream);

}  // namespace se
