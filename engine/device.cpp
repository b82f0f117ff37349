#include "engine/device.h"

#include <charconv>

#include "core/error.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace se {

Device Device::parse(std::string_view text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.starts_with("cuda:")) {
    std::string_view digits = text.substr(5);
    int index = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (ec == std::errc() && end == digits.data() + digits.size() && index >= 0) return cuda(index);
  }
  SE_THROW("device: cannot parse '", text, "' (expected cpu, cuda or cuda:N)");
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

int cuda_device_count() {
#ifdef SEGENGINE_HAS_CUDA
  static const int count = kernels::cuda::device_count();
  return count;
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

Device best_device() { return cuda_available() ? Device::cuda(0) : Device::cpu(); }

void check_device(const Device& device, std::string_view op) {
  if (device.is_cpu()) return;
#ifndef SEGENGINE_HAS_CUDA
  SE_THROW(op, ": device ", device.str(), " is not available: this build has CUDA off (configure with "
           "-DSEGENGINE_CUDA=real or emulated)");
#else
  int count = cuda_device_count();
  SE_CHECK(device.index >= 0 && device.index < count, op, ": device ", device.str(), " is not available (",
           count, " CUDA device", count == 1 ? "" : "s", " found)");
#endif
}

}  // namespace se
