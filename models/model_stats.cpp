#include "models/model_stats.h"

#include <mutex>

#include "core/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "nn/layers.h"
#include "nn/transformer.h"

namespace se::models {

namespace {

struct CounterRegistry {
  std::mutex mutex;
  std::map<std::string, MacCounter> counters;
};

CounterRegistry& counter_registry() {
  static CounterRegistry registry;
  return registry;
}

// weight (C_out, C_in / groups, k, k) of Conv2d, (C_in, C_out / groups, k, k) of ConvTranspose2d: every
// output (resp. input) element takes weight[0].numel() products.
double per_element(const Tensor& weight) {
  return double(weight.numel() / weight.size(0));
}

class MacObserver : public nn::ForwardObserver {
 public:
  explicit MacObserver(ModelStats& stats) : stats_(stats) {
    std::lock_guard<std::mutex> lock(counter_registry().mutex);
    counters_ = counter_registry().counters;
  }

  void before_forward(const nn::Module&, const Tensor&) override {}

  void after_forward(const nn::Module& module, const Tensor& input, const Tensor& output) override {
    if (module.named_children().empty()) {
      stats_.activation_bytes += static_cast<int64_t>(output.nbytes());
      ++stats_.leaf_calls;
    }
    double macs = 0;
    if (auto* conv = dynamic_cast<const nn::Conv2d*>(&module)) {
      macs = double(output.numel()) * per_element(conv->weight);
    } else if (auto* transposed = dynamic_cast<const nn::ConvTranspose2d*>(&module)) {
      macs = double(input.numel()) * per_element(transposed->weight);
    } else if (auto* linear = dynamic_cast<const nn::Linear*>(&module)) {
      macs = double(output.numel()) * double(linear->weight.size(1));
    } else if (auto* attention = dynamic_cast<const nn::EfficientSelfAttention*>(&module)) {
      // q k^T and p v: each N x heads x Lq x Lk x head_dim, i.e. N x Lq x Lk x C in all. The q/k/v
      // projections and the spatial-reduction conv are its children, counted on their own.
      macs = 2.0 * double(output.numel()) * double(attention->last_key_tokens());
    } else if (auto it = counters_.find(module.type_name()); it != counters_.end()) {
      macs = it->second(module, input, output);
    }
    if (macs > 0) {
      stats_.macs += macs;
      stats_.macs_by_type[module.type_name()] += macs;
    }
  }

 private:
  ModelStats& stats_;
  std::map<std::string, MacCounter> counters_;
};

}  // namespace

void register_mac_counter(const std::string& type_name, MacCounter counter) {
  std::lock_guard<std::mutex> lock(counter_registry().mutex);
  counter_registry().counters[type_name] = std::move(counter);
}

ModelStats measure_model(SegmentationModel& model, const Shape& input_shape, Device device) {
  SE_CHECK(input_shape.size() == 4 && shape_numel(input_shape) > 0, "measure_model: input shape ",
           shape_str(input_shape), " (expected (N, C, H, W) with positive sizes)");
  ModelStats stats;
  stats.parameters = model.num_parameters();
  stats.trainable_parameters = model.num_parameters(/*trainable_only=*/true);
  for (const Tensor& p : model.parameters()) stats.parameter_bytes += static_cast<int64_t>(p.nbytes());
  stats.input_shape = input_shape;

  const bool was_training = model.is_training();
  const NamedTensors state = model.state_dict();
  const Device home = state.empty() ? Device::cpu() : state.front().second.device();
  model.eval();
  model.to(device);
  try {
    NoGradGuard no_grad;
    Tensor input = zeros(input_shape, {.device = device});
    stats.activation_bytes = static_cast<int64_t>(input.nbytes());
    MacObserver observer(stats);
    nn::ForwardObserverScope scope(&observer);
    stats.logits_shape = model.forward(input).logits.shape();
  } catch (...) {
    model.to(home);
    model.train(was_training);
    throw;
  }
  model.to(home);
  model.train(was_training);
  return stats;
}

}  // namespace se::models
