#include "train/losses.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <exception>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <thread>

#include "core/config.h"
#include "core/error.h"
#include "data/dataset.h"
#include "engine/ops.h"

namespace se {

// ---- class pixel statistics

ClassPixelCounts count_class_pixels(const Dataset& dataset, int64_t max_samples, int num_threads) {
  const int64_t size = dataset.size();
  const int64_t num_classes = dataset.num_classes();
  const int ignore_index = dataset.info().ignore_index;
  SE_CHECK(num_classes > 0, "count_class_pixels: dataset '", dataset.info().name, "' has no classes");
  const int64_t count = max_samples <= 0 || max_samples >= size ? size : max_samples;
  // Evenly spaced, so a subset still covers every part of an ordered dataset (e.g. city by city).
  auto sample_index = [&](int64_t i) { return i * size / count; };

  unsigned threads = num_threads > 0 ? static_cast<unsigned>(num_threads) : std::thread::hardware_concurrency();
  threads = static_cast<unsigned>(std::clamp<int64_t>(threads, 1, std::max<int64_t>(count, 1)));
  std::vector<std::vector<int64_t>> per_thread(threads, std::vector<int64_t>(static_cast<size_t>(num_classes), 0));
  std::vector<std::exception_ptr> errors(threads);
  std::atomic<int64_t> next{0};

  auto work = [&](unsigned t) {
    try {
      for (int64_t i = next++; i < count; i = next++) {
        const Sample sample = dataset.get(sample_index(i));
        SE_CHECK(sample.mask.channels == 1, "count_class_pixels: sample '", sample.id, "' has a mask of ",
                 image_shape_str(sample.mask), " (expected 1 channel)");
        std::array<int64_t, 256> histogram{};  // masks are 8-bit
        for (uint8_t value : sample.mask.pixels) ++histogram[value];
        for (int value = 0; value < 256; ++value) {
          if (histogram[value] == 0 || value == ignore_index) continue;
          SE_CHECK(value < num_classes, "count_class_pixels: sample '", sample.id, "' has mask value ", value,
                   " (expected a class in [0, ", num_classes, ") or the ignore index ", ignore_index, ")");
          per_thread[t][value] += histogram[value];
        }
      }
    } catch (...) {
      errors[t] = std::current_exception();
      next = count;  // the other threads stop after their current sample
    }
  };
  if (threads == 1) {
    work(0);
  } else {
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) workers.emplace_back(work, t);
    for (std::thread& worker : workers) worker.join();
  }
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }

  ClassPixelCounts counts;
  counts.pixels.assign(static_cast<size_t>(num_classes), 0);
  for (const auto& partial : per_thread) {
    for (size_t c = 0; c < partial.size(); ++c) counts.pixels[c] += partial[c];
  }
  counts.images = count;
  return counts;
}

const std::vector<std::string>& class_weight_methods() {
  static const std::vector<std::string> methods = {"inverse_frequency", "inverse_sqrt", "inverse_log",
                                                   "effective_number"};
  return methods;
}

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? std::string() : std::string(", ")) + name;
  return text;
}

}  // namespace

std::vector<double> class_weights_from_counts(const ClassPixelCounts& counts, const std::string& method, double beta) {
  const auto& methods = class_weight_methods();
  SE_CHECK(std::find(methods.begin(), methods.end(), method) != methods.end(),
           "class_weights_from_counts: unknown method '", method, "' (valid methods: ", join(methods), ")");
  SE_CHECK(!counts.pixels.empty(), "class_weights_from_counts: no classes in the counts");
  int64_t total = 0;
  for (size_t c = 0; c < counts.pixels.size(); ++c) {
    SE_CHECK(counts.pixels[c] >= 0, "class_weights_from_counts: class ", c, " has ", counts.pixels[c], " pixels");
    total += counts.pixels[c];
  }
  SE_CHECK(total > 0, "class_weights_from_counts: no class has labelled pixels (", counts.images, " images counted)");
  if (method == "effective_number") {
    SE_CHECK(beta >= 0.0 && beta < 1.0, "class_weights_from_counts: effective_number beta = ", beta,
             " (expected in [0, 1))");
  }

  // Raw weights of the classes that have pixels (formulas and sources in train/losses.h).
  std::vector<double> weights(counts.pixels.size(), 0.0);
  double present_sum = 0.0, present_max = 0.0;
  int64_t present = 0;
  for (size_t c = 0; c < counts.pixels.size(); ++c) {
    const int64_t n = counts.pixels[c];
    if (n == 0) continue;
    const double p = static_cast<double>(n) / static_cast<double>(total);
    double w = 0.0;
    if (method == "inverse_frequency") {
      w = 1.0 / p;
    } else if (method == "inverse_sqrt") {
      w = 1.0 / std::sqrt(p);
    } else if (method == "inverse_log") {
      w = 1.0 / std::log(1.02 + p);  // ENet's c = 1.02
    } else {
      // 1 - beta^n as -expm1(n ln beta): exact for beta close to 1, where 1 - pow() cancels.
      w = (1.0 - beta) / -std::expm1(static_cast<double>(n) * std::log(beta));
    }
    weights[c] = w;
    present_sum += w;
    ++present;
  }
  // Mean 1 over the classes with pixels; classes without pixels get the largest weight (see the header).
  const double mean = present_sum / static_cast<double>(present);
  for (size_t c = 0; c < weights.size(); ++c) {
    weights[c] /= mean;
    present_max = std::max(present_max, weights[c]);
  }
  for (size_t c = 0; c < weights.size(); ++c) {
    if (counts.pixels[c] == 0) weights[c] = present_max;
  }
  return weights;
}

// ---- building the loss from the config

namespace {

using Type = SegmentationLoss::Type;
using Term = SegmentationLoss::Term;

constexpr std::array<std::pair<Type, const char*>, 5> kTypes = {{
    {Type::ce, "ce"},
    {Type::ohem, "ohem"},
    {Type::dice, "dice"},
    {Type::focal, "focal"},
    {Type::lovasz, "lovasz"},
}};

const char* type_name(Type type) {
  for (const auto& [t, name] : kTypes) {
    if (t == type) return name;
  }
  return "?";
}

// The dotted path of `key` in `section`, as Config's own errors spell it ("loss[1].class_weight").
std::string key_path(const Config& section, const std::string& key) {
  return section.path().empty() ? key : section.path() + std::string(".") + key;
}

Type parse_type(const Config& section) {
  const std::string name = section.get<std::string>("type");
  std::vector<std::string> valid;
  for (const auto& [type, type_text] : kTypes) {
    if (name == type_text) return type;
    valid.emplace_back(type_text);
  }
  const std::string* closest = nullptr;
  size_t closest_distance = SIZE_MAX;
  for (const std::string& candidate : valid) {
    const size_t distance = edit_distance(name, candidate);
    if (distance < closest_distance) closest_distance = distance, closest = &candidate;
  }
  std::string hint;
  if (closest_distance <= 2) hint = std::string(": did you mean '") + *closest + "'?";
  SE_THROW("loss: key '", key_path(section, "type"), "': unknown loss type '", name, "'", hint,
           " (valid types: ", join(valid), ")");
}

double non_negative(const Config& section, const std::string& key, double fallback) {
  const double value = section.get<double>(key, fallback);
  SE_CHECK(std::isfinite(value) && value >= 0.0, "loss: key '", key_path(section, key), "' = ", value,
           " (expected a finite number >= 0)");
  return value;
}

// `key` ("class_weight" or "alpha"): a list of num_classes numbers or a method name computed from `stats`.
void read_class_weights(const Config& section, const std::string& key, int64_t num_classes,
                        const ClassPixelCounts* stats, Term& term) {
  if (!section.has(key)) return;
  const std::string path = key_path(section, key);
  const nlohmann::json value = section.get<nlohmann::json>(key);
  if (value.is_string()) {
    const std::string method = value.get<std::string>();
    const auto& methods = class_weight_methods();
    SE_CHECK(std::find(methods.begin(), methods.end(), method) != methods.end(), "loss: key '", path,
             "': unknown class weight method '", method, "' (valid methods: ", join(methods), ", or a list of ",
             num_classes, " numbers)");
    // beta belongs to effective_number only, so elsewhere it stays an unknown key for Config::finish().
    const double beta = method == "effective_number" ? section.get<double>("beta", 0.9999) : 0.9999;
    SE_CHECK(stats != nullptr, "loss: key '", path, "' = '", method,
             "' needs the training set's class pixel counts, and none were given");
    SE_CHECK(static_cast<int64_t>(stats->pixels.size()) == num_classes, "loss: key '", path, "' = '", method,
             "': the pixel counts have ", stats->pixels.size(), " classes, the model has ", num_classes);
    term.class_weights = class_weights_from_counts(*stats, method, beta);
    term.class_weight_source = method;
    if (method == "effective_number" && beta != 0.9999) {
      std::ostringstream source;
      source << method << "(beta=" << beta << ")";
      term.class_weight_source = source.str();
    }
    return;
  }
  SE_CHECK(value.is_array(), "loss: key '", path, "': expected a list of ", num_classes, " numbers or a method name (",
           join(class_weight_methods()), "), got ", value.dump());
  std::vector<double> weights = section.get<std::vector<double>>(key);  // its error names a non-number
  SE_CHECK(static_cast<int64_t>(weights.size()) == num_classes, "loss: key '", path, "' has ", weights.size(),
           " values, expected num_classes = ", num_classes);
  for (size_t c = 0; c < weights.size(); ++c) {
    SE_CHECK(std::isfinite(weights[c]) && weights[c] >= 0.0, "loss: key '", path, "': value ", weights[c],
             " for class ", c, " (expected a finite number >= 0)");
  }
  term.class_weights = std::move(weights);
  term.class_weight_source = "list";
}

Term parse_term(const Config& section, int64_t num_classes, const ClassPixelCounts* stats) {
  Term term;
  term.type = parse_type(section);
  term.weight = non_negative(section, "weight", 1.0);
  switch (term.type) {
    case Type::ce:
      term.label_smoothing = section.get<double>("label_smoothing", 0.0);
      SE_CHECK(term.label_smoothing >= 0.0 && term.label_smoothing <= 1.0, "loss: key '",
               key_path(section, "label_smoothing"), "' = ", term.label_smoothing, " (expected in [0, 1])");
      read_class_weights(section, "class_weight", num_classes, stats, term);
      break;
    case Type::ohem:
      term.thresh = section.get<double>("thresh", 0.7);
      SE_CHECK(term.thresh >= 0.0 && term.thresh <= 1.0, "loss: key '", key_path(section, "thresh"),
               "' = ", term.thresh, " (expected a probability in [0, 1])");
      term.min_kept = section.get<int64_t>("min_kept", 100000);
      SE_CHECK(term.min_kept >= 0, "loss: key '", key_path(section, "min_kept"), "' = ", term.min_kept,
               " (expected >= 0)");
      read_class_weights(section, "class_weight", num_classes, stats, term);
      break;
    case Type::dice:
      term.smooth = non_negative(section, "smooth", 0.0);
      term.eps = non_negative(section, "eps", 1e-7);
      term.log_loss = section.get<bool>("log_loss", false);
      break;
    case Type::focal:
      term.gamma = non_negative(section, "gamma", 2.0);
      read_class_weights(section, "alpha", num_classes, stats, term);
      break;
    case Type::lovasz: break;
  }
  return term;
}

// "1.0", "0.5", "1e-07": at least one decimal so weights read as weights.
std::string format_number(double value) {
  std::ostringstream out;
  out << value;
  std::string text = out.str();
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return text;
}

}  // namespace

SegmentationLoss SegmentationLoss::from_config(const Config& root, int64_t num_classes, int64_t ignore_index,
                                               const ClassPixelCounts* stats) {
  SE_CHECK(num_classes > 0, "loss: num_classes = ", num_classes, " (expected > 0)");
  SegmentationLoss loss;
  loss.num_classes_ = num_classes;
  loss.ignore_index_ = ignore_index;
  if (!root.has("loss")) {
    loss.terms_.push_back(Term{});  // plain cross-entropy, weight 1
  } else {
    const nlohmann::json& value = root.document().at("loss");
    std::vector<Config> sections;
    if (value.is_object()) {
      sections.push_back(root.sub("loss"));
    } else {
      SE_CHECK(value.is_array(), "loss: key '", key_path(root, "loss"),
               "': expected a loss object or a list of them, got ", value.dump());
      sections = root.sub_list("loss");  // its error names a list element that is not an object
      SE_CHECK(!sections.empty(), "loss: key '", key_path(root, "loss"), "' is an empty list (expected terms)");
    }
    for (const Config& section : sections) loss.terms_.push_back(parse_term(section, num_classes, stats));
  }

  // Unique part names: a type used more than once is numbered in config order.
  for (size_t i = 0; i < loss.terms_.size(); ++i) {
    Term& term = loss.terms_[i];
    term.name = type_name(term.type);
    const auto same_type = [&](const Term& other) { return other.type == term.type; };
    if (std::count_if(loss.terms_.begin(), loss.terms_.end(), same_type) > 1) {
      const auto ordinal =
          std::count_if(loss.terms_.begin(), loss.terms_.begin() + static_cast<ptrdiff_t>(i) + 1, same_type);
      term.name += std::string("_") + std::to_string(ordinal);
    }
  }
  return loss;
}

bool SegmentationLoss::needs_class_pixel_counts(const Config& root) {
  const nlohmann::json& document = root.document();
  const auto loss = document.find("loss");
  if (loss == document.end()) return false;
  auto names_method = [](const nlohmann::json& term) {
    if (!term.is_object()) return false;
    for (const char* key : {"class_weight", "alpha"}) {
      const auto value = term.find(key);
      if (value != term.end() && value->is_string()) return true;
    }
    return false;
  };
  if (loss->is_object()) return names_method(*loss);
  return loss->is_array() && std::any_of(loss->begin(), loss->end(), names_method);
}

LossTerms SegmentationLoss::operator()(const Tensor& logits, const Tensor& target) const {
  SE_CHECK(logits.defined() && target.defined(), "segmentation loss: undefined logits or target");
  SE_CHECK(logits.dim() == 4 && is_floating(logits.dtype()) && logits.size(1) == num_classes_,
           "segmentation loss: logits ", shape_str(logits.shape()), " ", logits.dtype(), " (expected (N, ",
           num_classes_, ", H, W) floating)");
  SE_CHECK(target.dim() == 3 && target.dtype() == DType::i64 && target.size(0) == logits.size(0) &&
               target.size(1) == logits.size(2) && target.size(2) == logits.size(3),
           "segmentation loss: target ", shape_str(target.shape()), " ", target.dtype(), " for logits ",
           shape_str(logits.shape()), " (expected (N, H, W) i64)");
  const bool low_precision = logits.dtype() == DType::f16 || logits.dtype() == DType::bf16;
  const Tensor x = low_precision ? logits.to(DType::f32) : logits;  // (N, K, H, W) f32 or f64
  // Built per call (K values) so one loss serves logits of any device and dtype, from any thread.
  auto per_class = [&](const std::vector<double>& weights) {
    if (weights.empty()) return Tensor();
    return from_vector<double>(weights, {num_classes_}, TensorOptions{.dtype = x.dtype(), .device = x.device()});
  };

  LossTerms result;
  for (const Term& term : terms_) {
    Tensor value;  // ()
    switch (term.type) {
      case Type::ce: {
        CrossEntropyParams params;
        params.ignore_index = ignore_index_;
        params.weight = per_class(term.class_weights);
        params.label_smoothing = term.label_smoothing;
        value = cross_entropy(x, target, params);
        break;
      }
      case Type::ohem: {
        OhemCrossEntropyParams params;
        params.thresh = term.thresh;
        params.min_kept = term.min_kept;
        params.ignore_index = ignore_index_;
        params.weight = per_class(term.class_weights);
        value = ohem_cross_entropy(x, target, params);
        break;
      }
      case Type::dice: {
        DiceLossParams params;
        params.smooth = term.smooth;
        params.eps = term.eps;
        params.log_loss = term.log_loss;
        params.ignore_index = ignore_index_;
        value = dice_loss(x, target, params);
        break;
      }
      case Type::focal: {
        FocalLossParams params;
        params.gamma = term.gamma;
        params.alpha = per_class(term.class_weights);
        params.ignore_index = ignore_index_;
        value = focal_loss(x, target, params);
        break;
      }
      case Type::lovasz: value = lovasz_softmax(x, target, ignore_index_); break;
    }
    result.total = result.total.defined() ? add(result.total, value, term.weight) : mul(value, term.weight);
    result.parts.emplace_back(term.name, value);
  }
  return result;
}

std::string SegmentationLoss::describe() const {
  const Term defaults;
  std::string text;
  for (const Term& term : terms_) {
    std::vector<std::string> settings;
    auto setting = [&](const char* key, const std::string& value) {
      settings.push_back(std::string(key) + "=" + value);
    };
    if (term.label_smoothing != defaults.label_smoothing)
      setting("label_smoothing", format_number(term.label_smoothing));
    if (term.type == Type::ohem && term.thresh != defaults.thresh) setting("thresh", format_number(term.thresh));
    if (term.type == Type::ohem && term.min_kept != defaults.min_kept)
      setting("min_kept", std::to_string(term.min_kept));
    if (term.smooth != defaults.smooth) setting("smooth", format_number(term.smooth));
    if (term.eps != defaults.eps) setting("eps", format_number(term.eps));
    if (term.log_loss) setting("log_loss", "true");
    if (term.type == Type::focal && term.gamma != defaults.gamma) setting("gamma", format_number(term.gamma));
    if (!term.class_weight_source.empty()) {
      setting(term.type == Type::focal ? "alpha" : "class_weight", term.class_weight_source);
    }
    if (!text.empty()) text += " + ";
    text += format_number(term.weight) + " * " + term.name;
    if (!settings.empty()) text += std::string("(") + join(settings) + ")";
  }
  return text;
}

std::vector<std::string> SegmentationLoss::names() const {
  std::vector<std::string> result;
  for (const Term& term : terms_) result.push_back(term.name);
  return result;
}

}  // namespace se
