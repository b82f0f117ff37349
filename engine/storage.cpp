#include "engine/storage.h"

#include "core/error.h"
#include "engine/allocator.h"
#include "engine/host_allocator.h"
#include "engine/stream.h"

namespace se {

Storage::Storage(size_t nbytes, Device device) : Storage(nbytes, device, false) {}

Storage::Storage(size_t nbytes, Device device, bool pinned) : nbytes_(nbytes), device_(device), pinned_(pinned) {
  check_device(device, "Storage");
  if (pinned) {
    SE_CHECK(device.is_cpu(), "Storage: pinned memory is host memory, not ", device.str());
    data_ = pinned_host_allocator().allocate(nbytes);
  } else if (device.is_cpu()) {
    data_ = cpu_allocate(nbytes);
  } else {
    data_ = cuda_allocator(device.index).allocate(nbytes, current_stream(device).handle());
  }
}

Storage::~Storage() {
  if (pinned_) {
    pinned_host_allocator().free(data_);
  } else if (device_.is_cpu()) {
    cpu_free(data_, nbytes_);
  } else {
    cuda_allocator(device_.index).free(data_);
  }
}

}  // namespace se
