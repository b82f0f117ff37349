// The vendor side of `segengine bench kernels` (compiled with SEGENGINE_VENDOR_BENCH only): a case's
// VendorWork run by cuDNN or cuBLAS on the case's inputs, writing into copies of our outputs, and the
// check of those copies against ours.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "bench/vendor/vendor.h"
#include "tools/bench_kernel_cases.h"

namespace se::tools {

struct VendorRun {
  std::string library;   // "cuDNN" or "cuBLAS"
  std::string call;      // vendor::Call::description()
  Run run;               // one timed call, queued on the device's current stream
  double tolerance = 0;  // the largest relative difference accepted (vendor::relative_tolerance)
  // After one run of ours and one of `run`: the largest difference over the outputs (synchronises).
  std::function<vendor::OutputDifference()> compare;
};

// The vendor's call for `work` on `device`; std::nullopt when the library has no call for exactly this work
// (the case shows "-"). Throws vendor::NotSupported when the library rejects the configuration, se::Error
// for any other failure (naming the call and the shape).
std::optional<VendorRun> prepare_vendor(const VendorWork& work, Device device);

}  // namespace se::tools
