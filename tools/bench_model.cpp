// `segengine bench model CONFIG`: times a segmentation model the way `caffe time` does.
//
// Per layer, one observed pass is a forward (eval mode, or train mode with --train) with autograd on
// and a backward from a cross-entropy loss. The layers are the leaf modules (modules without
// children). A layer's forward time is measured between the nn::ForwardObserver's calls around it;
// its backward time is that of the autograd nodes its forward created (their sequence numbers fall
// between the observer's two calls), timed by an autograd BackwardObserver. On CUDA the device is
// synchronised around every layer and node, so an observed pass is slower than a plain one. The
// "(other)" row is the rest of the observed pass: the model's own code between layers
// (concatenations, resizes, residual adds), the loss, gradients summed where a tensor fed several
// layers, and the observers' cost. Observed, a BatchNorm2d and the ReLU after it run apart (each its own
// row); unobserved they run as one kernel (BatchNorm2d::forward_relu).
//
// Whole model, unobserved: inference is a forward in eval mode without autograd; a training step is a
// forward in train mode plus the loss, then the backward, each synchronised only at its end. Peak
// memory is the allocator's high-water mark over the training steps (the caching allocator on CUDA,
// the CPU allocator on the CPU): parameters, gradients and activations.
#include "tools/bench_model.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/config.h"
#include "core/error.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/stream.h"
#include "tools/model_config.h"

namespace se::tools {

namespace {

// Errors stay one line (scripts grep them); the usage is in `segengine --help`.
constexpr const char* kSeeHelp = " (usage: segengine --help)";

struct Options {
  std::string config_path;
  std::vector<std::string> overrides;  // --set, applied in order
  std::optional<InputSize> input;
  std::optional<int64_t> batch;
  Device device = Device::cpu();
  int64_t iterations = 10;
  int64_t warmup = 2;
  std::string json_path;
  bool train_mode_layers = false;  // --train: the per-layer pass runs the model in train mode
};

int64_t parse_count(const std::string& text, std::string_view flag) {  // 0 allowed, unlike parse_positive
  return text == "0" ? 0 : parse_positive(text, "bench model", flag);
}

Options parse_options(const std::vector<std::string_view>& args) {
  Options options;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&](std::string_view flag) -> std::string {
      SE_CHECK(i + 1 < args.size(), "bench model: ", flag, " needs a value", kSeeHelp);
      return std::string(args[++i]);
    };
    const std::string_view arg = args[i];
    if (arg == "--set") {
      std::string assignment = value("--set");
      SE_CHECK(assignment.find('=') != std::string::npos, "bench model: --set '", assignment,
               "' (expected key=value, e.g. model.num_classes=19)");
      options.overrides.push_back(std::move(assignment));
    } else if (arg == "--input") {
      options.input = parse_input_size(value("--input"), "bench model");
    } else if (arg == "--batch") {
      options.batch = parse_positive(value("--batch"), "bench model", "--batch");
    } else if (arg == "--device") {
      options.device = Device::parse(value("--device"));
    } else if (arg == "--iterations") {
      options.iterations = parse_positive(value("--iterations"), "bench model", "--iterations");
    } else if (arg == "--warmup") {
      options.warmup = parse_count(value("--warmup"), "--warmup");
    } else if (arg == "--json") {
      options.json_path = value("--json");
    } else if (arg == "--train") {
      options.train_mode_layers = true;
    } else if (arg.starts_with("-")) {
      SE_THROW("bench model: unknown option '", arg, "'", kSeeHelp);
    } else {
      SE_CHECK(options.config_path.empty(), "bench model: a second CONFIG '", arg, "' (after '",
               options.config_path, "')", kSeeHelp);
      options.config_path = std::string(arg);
    }
  }
  SE_CHECK(!options.config_path.empty(), "bench model: CONFIG is required", kSeeHelp);
  check_device(options.device, "bench model");
  return options;
}

// f32 only: Module::to(f16/bf16) also converts the norm layers' weights, which batch_norm takes in
// f32 only (mixed precision), so no model with a BatchNorm runs in half precision yet.
constexpr DType kDtype = DType::f32;

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> samples) {
  if (samples.empty()) return 0;
  const size_t middle = samples.size() / 2;
  std::nth_element(samples.begin(), samples.begin() + middle, samples.end());
  if (samples.size() % 2 == 1) return samples[middle];
  return (samples[middle] + *std::max_element(samples.begin(), samples.begin() + middle)) / 2;
}

// Waits for the device's queued work: CUDA kernels run asynchronously, CPU ops do not.
void wait_for(Device device) {
  if (device.is_cuda()) synchronize(device);
}

struct LayerRow {
  std::string name, type;  // dotted path as in PyTorch; Module::type_name()
  Shape output_shape;      // of the first call
  int64_t calls = 0;       // per pass
  std::vector<double> forward_ms, backward_ms;  // per measured pass, all calls summed
};

// Times leaf modules' forwards and the backward nodes they created; see the file comment.
class LayerProfiler final : public nn::ForwardObserver, public BackwardObserver {
 public:
  LayerProfiler(nn::Module& model, Device device) : device_(device) {
    for (const auto& [name, module] : model.named_modules()) names_[module] = name;
  }

  void begin_pass() {
    calls_.clear();
    pass_forward_.assign(rows_.size(), 0);
    pass_backward_.assign(rows_.size(), 0);
    pass_calls_.assign(rows_.size(), 0);
  }

  // Keeps the pass's per-layer sums (warm-up passes are dropped but fix the rows' order).
  void end_pass(bool measured) {
    for (size_t row = 0; row < rows_.size(); ++row) {
      rows_[row].calls = pass_calls_[row];
      if (!measured) continue;
      rows_[row].forward_ms.push_back(pass_forward_[row]);
      rows_[row].backward_ms.push_back(pass_backward_[row]);
    }
  }

  double pass_forward_sum() const { return sum(pass_forward_); }
  double pass_backward_sum() const { return sum(pass_backward_); }
  const std::vector<LayerRow>& rows() const { return rows_; }

  void before_forward(const nn::Module& module, const Tensor&) override {
    if (!is_leaf(module) || leaf_depth_++ > 0) return;  // an unregistered module inside a leaf counts as the leaf
    wait_for(device_);
    first_node_ = Node::next_sequence_nr();
    start_ = Clock::now();
  }

  void after_forward(const nn::Module& module, const Tensor&, const Tensor& output) override {
    if (!is_leaf(module) || --leaf_depth_ > 0) return;
    wait_for(device_);
    const double ms = ms_since(start_);
    const size_t row = row_of(module, output);
    pass_forward_[row] += ms;
    ++pass_calls_[row];
    calls_.push_back({first_node_, Node::next_sequence_nr(), row});
  }

  void before_node(const Node&) override {
    wait_for(device_);
    start_ = Clock::now();
  }

  void after_node(const Node& node) override {
    wait_for(device_);
    const double ms = ms_since(start_);
    if (const std::optional<size_t> row = row_of_node(node.sequence_nr())) pass_backward_[*row] += ms;
  }

 private:
  struct Call {
    uint64_t first_node, end_node;  // sequence numbers of the nodes the call created: [first, end)
    size_t row;
  };

  static bool is_leaf(const nn::Module& module) { return module.named_children().empty(); }
  static double sum(const std::vector<double>& values) {
    double total = 0;
    for (double v : values) total += v;
    return total;
  }

  size_t row_of(const nn::Module& module, const Tensor& output) {
    auto [it, added] = row_index_.try_emplace(&module, rows_.size());
    if (added) {
      auto name = names_.find(&module);
      LayerRow row;
      row.name = name != names_.end() ? name->second : "(unregistered)";
      row.type = module.type_name();
      row.output_shape = output.shape();
      rows_.push_back(std::move(row));
      pass_forward_.push_back(0);
      pass_backward_.push_back(0);
      pass_calls_.push_back(0);
    }
    return it->second;
  }

  // Calls run one after another, so their node ranges are disjoint and ascending.
  std::optional<size_t> row_of_node(uint64_t sequence_nr) const {
    auto after = std::upper_bound(calls_.begin(), calls_.end(), sequence_nr,
                                  [](uint64_t nr, const Call& call) { return nr < call.first_node; });
    if (after == calls_.begin()) return std::nullopt;
    const Call& call = *std::prev(after);
    if (sequence_nr >= call.end_node) return std::nullopt;
    return call.row;
  }

  Device device_;
  std::unordered_map<const nn::Module*, std::string> names_;
  std::unordered_map<const nn::Module*, size_t> row_index_;
  std::vector<LayerRow> rows_;  // in order of first call
  std::vector<Call> calls_;     // this pass's
  std::vector<double> pass_forward_, pass_backward_;
  std::vector<int64_t> pass_calls_;
  int leaf_depth_ = 0;
  uint64_t first_node_ = 0;
  Clock::time_point start_;
};

// What a training step minimises; its value does not matter, its cost is the usual one.
Tensor training_loss(const models::SegmentationOutput& output, const Tensor& target) {
  Tensor loss = cross_entropy(output.logits, target);
  if (output.aux_logits.defined()) loss = add(loss, cross_entropy(output.aux_logits, target));
  return loss;
}

struct Report {
  std::string model_name, model_type;
  int64_t num_classes = 0, parameters = 0, parameter_bytes = 0;
  Shape input_shape;
  std::vector<LayerRow> layers;
  double other_forward_ms = 0, other_backward_ms = 0;  // medians
  double inference_forward_ms = 0;
  double train_forward_ms = 0, train_backward_ms = 0, train_step_ms = 0;
  std::string memory_source;
  size_t peak_allocated_bytes = 0, peak_reserved_bytes = 0, allocated_before_step_bytes = 0;
};

AllocatorStats allocator_stats(Device device) {
  return device.is_cuda() ? cuda_allocator(device.index).stats() : cpu_allocator_stats();
}

void reset_peak_memory(Device device) {
  if (device.is_cuda()) {
    cuda_allocator(device.index).reset_peak_stats();
  } else {
    cpu_reset_peak_stats();
  }
}

void profile_layers(models::SegmentationModel& model, const Tensor& input, const Tensor& target, const Options& o,
                    Report& report) {
  model.train(o.train_mode_layers);
  LayerProfiler profiler(model, o.device);
  std::vector<double> other_forward, other_backward;
  for (int64_t pass = 0; pass < o.warmup + o.iterations; ++pass) {
    model.zero_grad();
    profiler.begin_pass();
    wait_for(o.device);
    const Clock::time_point start = Clock::now();
    Tensor loss;
    {
      nn::ForwardObserverScope scope(&profiler);
      loss = training_loss(model.forward(input), target);
    }
    wait_for(o.device);
    const double forward_ms = ms_since(start);
    const Clock::time_point backward_start = Clock::now();
    {
      BackwardObserverScope scope(&profiler);
      loss.backward();
    }
    wait_for(o.device);
    const double backward_ms = ms_since(backward_start);
    const bool measured = pass >= o.warmup;
    if (measured) {
      other_forward.push_back(std::max(0.0, forward_ms - profiler.pass_forward_sum()));
      other_backward.push_back(std::max(0.0, backward_ms - profiler.pass_backward_sum()));
    }
    profiler.end_pass(measured);
  }
  report.layers = profiler.rows();
  report.other_forward_ms = median(other_forward);
  report.other_backward_ms = median(other_backward);
}

void time_inference(models::SegmentationModel& model, const Tensor& input, const Options& o, Report& report) {
  model.eval();
  NoGradGuard no_grad;
  std::vector<double> samples;
  for (int64_t pass = 0; pass < o.warmup + o.iterations; ++pass) {
    wait_for(o.device);
    const Clock::time_point start = Clock::now();
    model.forward(input);
    wait_for(o.device);
    if (pass >= o.warmup) samples.push_back(ms_since(start));
  }
  report.inference_forward_ms = median(samples);
}

void time_training_steps(models::SegmentationModel& model, const Tensor& input, const Tensor& target,
                         const Options& o, Report& report) {
  model.train();
  std::vector<double> forward, backward, step;
  for (int64_t pass = 0; pass < o.warmup + o.iterations; ++pass) {
    model.zero_grad();  // gradients are made anew by every step, as with zero_grad(set_to_none=True)
    wait_for(o.device);
    const bool measured = pass >= o.warmup;
    if (measured) {
      report.allocated_before_step_bytes = allocator_stats(o.device).allocated_bytes;
      reset_peak_memory(o.device);
    }
    const Clock::time_point start = Clock::now();
    Tensor loss = training_loss(model.forward(input), target);
    wait_for(o.device);
    const double forward_ms = ms_since(start);
    const Clock::time_point backward_start = Clock::now();
    loss.backward();
    wait_for(o.device);
    if (!measured) continue;
    const double backward_ms = ms_since(backward_start);
    forward.push_back(forward_ms);
    backward.push_back(backward_ms);
    step.push_back(forward_ms + backward_ms);
    const AllocatorStats stats = allocator_stats(o.device);
    report.peak_allocated_bytes = std::max(report.peak_allocated_bytes, stats.peak_allocated_bytes);
    report.peak_reserved_bytes = std::max(report.peak_reserved_bytes, stats.peak_reserved_bytes);
  }
  report.train_forward_ms = median(forward);
  report.train_backward_ms = median(backward);
  report.train_step_ms = median(step);
}

std::string format(const char* pattern, auto... values) {
  char text[1024];
  std::snprintf(text, sizeof(text), pattern, values...);
  return text;
}

std::string mebibytes(size_t bytes) { return format("%.1f MiB", double(bytes) / (1 << 20)); }

double images_per_second(int64_t batch, double ms) { return ms > 0 ? double(batch) * 1000.0 / ms : 0.0; }

double layers_total_ms(const Report& r) {
  double total = r.other_forward_ms + r.other_backward_ms;
  for (const LayerRow& row : r.layers) total += median(row.forward_ms) + median(row.backward_ms);
  return total;
}

double percent(double ms, double total) { return total > 0 ? 100.0 * ms / total : 0.0; }

void print_report(const Report& r, const Options& o) {
  const int64_t batch = r.input_shape[0];
  std::cout << "model: " << r.model_name << " (" << r.model_type << "), " << r.num_classes << " classes, "
            << r.parameters << " parameters; input " << shape_str(r.input_shape) << " " << kDtype << " on "
            << o.device << "\n";
  std::cout << "per layer: leaf modules in execution order, " << (o.train_mode_layers ? "train" : "eval")
            << " mode, median of " << o.iterations << " pass(es) after " << o.warmup << " warm-up; backward = the"
            << " autograd nodes the layer's forward created" << (o.device.is_cuda() ? "; device synchronised around"
            " each layer and node" : "") << "\n\n";

  const std::string other = "(other)";
  std::vector<std::string> names;  // "name (xN)" for a layer called N > 1 times per pass
  size_t name_width = other.size(), type_width = 4, shape_width = 12;
  for (const LayerRow& row : r.layers) {
    names.push_back(row.calls > 1 ? row.name + format(" (x%lld)", static_cast<long long>(row.calls)) : row.name);
    name_width = std::max(name_width, names.back().size());
    type_width = std::max(type_width, row.type.size());
    shape_width = std::max(shape_width, shape_str(row.output_shape).size());
  }
  auto line = [&](const std::string& name, const std::string& type, const std::string& shape, double forward_ms,
                  double backward_ms, double total_ms) {
    std::cout << format("%-*s  %-*s  %-*s  %11.3f  %11.3f  %6.1f\n", int(name_width), name.c_str(), int(type_width),
                        type.c_str(), int(shape_width), shape.c_str(), forward_ms, backward_ms,
                        percent(forward_ms + backward_ms, total_ms));
  };
  const double total_ms = layers_total_ms(r);
  std::cout << format("%-*s  %-*s  %-*s  %11s  %11s  %6s\n", int(name_width), "layer", int(type_width), "type",
                      int(shape_width), "output shape", "forward ms", "backward ms", "%");
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const LayerRow& row = r.layers[i];
    line(names[i], row.type, shape_str(row.output_shape), median(row.forward_ms), median(row.backward_ms), total_ms);
  }
  line(other, "", "", r.other_forward_ms, r.other_backward_ms, total_ms);
  std::cout << format("%-*s  %11.3f ms (observed pass: forward + backward of every row)\n\n",
                      int(name_width + type_width + shape_width + 4), "total", total_ms);

  std::cout << "inference (eval, no grad):  forward " << format("%.3f", r.inference_forward_ms) << " ms  ->  "
            << format("%.1f", images_per_second(batch, r.inference_forward_ms)) << " images/s\n";
  std::cout << "training step (train mode): forward + loss " << format("%.3f", r.train_forward_ms) << " ms, backward "
            << format("%.3f", r.train_backward_ms) << " ms, step " << format("%.3f", r.train_step_ms) << " ms  ->  "
            << format("%.1f", images_per_second(batch, r.train_step_ms)) << " images/s\n";
  std::cout << "peak memory of a training step (" << r.memory_source << "): " << mebibytes(r.peak_allocated_bytes)
            << " allocated, " << mebibytes(r.peak_reserved_bytes) << " reserved; "
            << mebibytes(r.allocated_before_step_bytes) << " held before the step (parameters "
            << mebibytes(r.parameter_bytes) << ", input, target)\n";
}

void write_json(const Report& r, const Options& o) {
  using Json = nlohmann::ordered_json;
  const int64_t batch = r.input_shape[0];
  const double total_ms = layers_total_ms(r);
  Json layers = Json::array();
  for (const LayerRow& row : r.layers) {
    const double forward_ms = median(row.forward_ms), backward_ms = median(row.backward_ms);
    layers.push_back({{"name", row.name},
                      {"type", row.type},
                      {"output_shape", row.output_shape},
                      {"calls", row.calls},
                      {"forward_ms", forward_ms},
                      {"backward_ms", backward_ms},
                      {"percent", percent(forward_ms + backward_ms, total_ms)}});
  }
  Json report = {
      {"model", r.model_name},
      {"model_type", r.model_type},
      {"num_classes", r.num_classes},
      {"parameters", r.parameters},
      {"input_shape", r.input_shape},
      {"device", o.device.str()},
      {"dtype", std::string(dtype_name(kDtype))},
      {"iterations", o.iterations},
      {"warmup", o.warmup},
      {"layer_mode", o.train_mode_layers ? "train" : "eval"},
      {"layers", layers},
      {"other", {{"forward_ms", r.other_forward_ms},
                 {"backward_ms", r.other_backward_ms},
                 {"percent", percent(r.other_forward_ms + r.other_backward_ms, total_ms)}}},
      {"layers_total_ms", total_ms},
      {"inference", {{"forward_ms", r.inference_forward_ms},
                     {"images_per_second", images_per_second(batch, r.inference_forward_ms)}}},
      {"training", {{"forward_ms", r.train_forward_ms},
                    {"backward_ms", r.train_backward_ms},
                    {"forward_backward_ms", r.train_step_ms},
                    {"images_per_second", images_per_second(batch, r.train_step_ms)}}},
      {"memory", {{"source", r.memory_source},
                  {"peak_allocated_bytes", r.peak_allocated_bytes},
                  {"peak_reserved_bytes", r.peak_reserved_bytes},
                  {"allocated_before_step_bytes", r.allocated_before_step_bytes},
                  {"parameter_bytes", r.parameter_bytes}}},
  };
  write_file_atomic(o.json_path, report.dump(2) + "\n");
}

}  // namespace

int bench_model(const std::vector<std::string_view>& args) {
  Options o = parse_options(args);
  Config file = Config::load(o.config_path);
  file.set_all(o.overrides);

  // Defaults from the config's optional "bench" object, judged on its own (flags override).
  Config bench = Config::from_json(file.sub("bench").document(), o.config_path + ": bench");
  const std::vector<int64_t> input_size = bench.get<std::vector<int64_t>>("input_size", {512, 512});
  // Batch 2 by default: train-mode BatchNorm after a global pooling (PSPNet, ASPP) needs more than one value.
  const int64_t batch_size = bench.get<int64_t>("batch_size", 2);
  bench.finish();
  SE_CHECK(input_size.size() == 2 && input_size[0] > 0 && input_size[1] > 0, "bench model: ", o.config_path,
           ": bench.input_size (expected [height, width], positive)");
  SE_CHECK(batch_size > 0, "bench model: ", o.config_path, ": bench.batch_size ", batch_size, " (expected > 0)");
  if (!o.input) o.input = InputSize{input_size[0], input_size[1]};
  if (!o.batch) o.batch = batch_size;

  ConfiguredModel configured = build_configured_model(file, o.config_path, "bench model");
  models::SegmentationModel& model = *configured.model;
  Report report;
  report.model_name = configured.name;
  report.model_type = model.type_name();
  report.num_classes = model.num_classes();
  report.parameters = model.num_parameters();
  report.input_shape = {*o.batch, model_input_channels(model), o.input->height, o.input->width};

  model.to(o.device, kDtype);
  for (const Tensor& p : model.parameters()) report.parameter_bytes += static_cast<int64_t>(p.nbytes());
  const Tensor input = randn(report.input_shape, {kDtype, o.device});
  const Tensor target = zeros({*o.batch, o.input->height, o.input->width}, {DType::i64, o.device});
  report.memory_source = o.device.is_cuda() ? o.device.str() + " caching allocator" : "cpu allocator";

  profile_layers(model, input, target, o, report);
  time_inference(model, input, o, report);
  time_training_steps(model, input, target, o, report);

  print_report(report, o);
  if (!o.json_path.empty()) write_json(report, o);
  return 0;
}

}  // namespace se::tools
