// What `segengine info` reports about a model at an input size: parameters, multiply-accumulates and
// an activation-memory estimate, measured by one forward pass under an nn::ForwardObserver.
//
// MACs count the layers that dominate a segmentation network: Conv2d (output elements x C_in / groups
// x k x k), ConvTranspose2d (input elements x C_out / groups x k x k), Linear (output elements x
// in_features), SegFormer's EfficientSelfAttention (its q k^T and p v products: 2 x N x Lq x Lk x C),
// plus any module type with a registered counter (register_mac_counter). Elementwise ops, norms and pooling
// are not counted, as in the usual FLOP tables (fvcore, ptflops).
//
// The activation estimate sums the outputs of every leaf module call (modules without children),
// plus the input: what the backward of a training step keeps, up to the few tensors made between
// layers (concatenations, padding, resizes in a model's own forward code).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "models/model.h"

namespace se::models {

struct ModelStats {
  int64_t parameters = 0;            // elements
  int64_t trainable_parameters = 0;  // elements of parameters that require grad
  int64_t parameter_bytes = 0;
  double macs = 0;                             // for the whole batch
  std::map<std::string, double> macs_by_type;  // by module type name
  int64_t activation_bytes = 0;                // leaf-layer outputs plus the input
  int64_t leaf_calls = 0;                      // leaf module calls observed
  Shape input_shape, logits_shape;
};

// MACs of one call of a module of `type_name` (Module::type_name()) from its input and output.
using MacCounter = std::function<double(const nn::Module& module, const Tensor& input, const Tensor& output)>;
// Adds or replaces the counter for a module type; counted modules' children are still observed, so
// a counter should count only the work its children do not (an attention block: its matmuls, not
// its Linear projections).
void register_mac_counter(const std::string& type_name, MacCounter counter);

// Runs one forward pass of zeros of `input_shape` (N, C, H, W) on `device` in eval mode without
// autograd (the model's mode and device are restored afterwards).
ModelStats measure_model(SegmentationModel& model, const Shape& input_shape, Device device = Device::cpu());

}  // namespace se::models
