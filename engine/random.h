// Random tensors from an explicit seed (engine/ops/random.cpp), independent of the global generator
// behind rand/randn/manual_seed (engine/tensor.h): for results that must depend on their own seed
// only, e.g. the Siamese U-Net's view generator. Element i is the counter-based generator's number at
// (seed, i), so the same seed gives the same tensor on every device and at any time.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace se {

Tensor rand_seeded(const Shape& shape, uint64_t seed, const TensorOptions& options = {});   // uniform [0, 1)
Tensor randn_seeded(const Shape& shape, uint64_t seed, const TensorOptions& options = {});  // standard normal

}  // namespace se
