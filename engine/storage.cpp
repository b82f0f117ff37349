#include "engine/storage.h"

#include "engine/allocator.h"
#include "engine/stream.h"

namespace se {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  check_device(device, "Storage");
  if (device.is_cpu()) {
    data_ = cpu_allocate(nbytes);
  } else {
    data_ = cuda_allocator(device.index).allocate(nbytes, current_stream(device).handle());
  }
}

Storage::~Storage() {
  if (device_.is_cpu()) {
    cpu_free(data_, nbytes_);
  } else {
    cuda_allocator(device_.index).free(data_);
  }
}

}  // namespace se
