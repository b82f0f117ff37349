#include "nn/module.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "core/error.h"
#include "engine/autograd.h"
#include "nn/layers.h"  // Sequential runs BatchNorm2d + ReLU as one

namespace se::nn {
namespace {

thread_local ForwardObserver* tls_observer = nullptr;

std::string join(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name;
  return name.empty() ? prefix : detail::concat(prefix, ".", name);
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

}  // namespace

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}
Module::~Module() = default;

void Module::check_new_name(const std::string& name) const {
  SE_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name_, ": invalid member name '", name,
           "' (must be non-empty and contain no '.')");
  auto taken = [&](const std::string& n) {
    for (const auto& [key, _] : parameters_)
      if (key == n) return true;
    for (const auto& buffer : buffers_)
      if (buffer.name == n) return true;
    for (const auto& [key, _] : children_)
      if (key == n) return true;
    return false;
  };
  SE_CHECK(!taken(name), type_name_, ": member name '", name, "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name);
  SE_CHECK(value.defined(), type_name_, ": parameter '", name, "' is undefined");
  SE_CHECK(value.is_leaf(), type_name_, ": parameter '", name, "' must be a leaf tensor (detach it first)");
  value.requires_grad_(true);
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value, bool persistent) {
  check_new_name(name);
  SE_CHECK(value.defined(), type_name_, ": buffer '", name, "' is undefined");
  buffers_.push_back({name, value, persistent});
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  SE_CHECK(module != nullptr, type_name_, ": child module '", name, "' is null");
  children_.emplace_back(name, std::move(module));
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> module) {
  SE_CHECK(module != nullptr, type_name_, ": replacement for child module '", name, "' is null");
  for (auto& [key, child] : children_) {
    if (key == name) {
      child = std::move(module);
      return;
    }
  }
  SE_THROW(type_name_, ": no child module named '", name, "' to replace");
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  for (const auto& [prefix, module] : named_modules()) {
    if (!recurse && module != this) continue;
    for (const auto& [name, tensor] : module->parameters_) out.emplace_back(join(prefix, name), tensor);
  }
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [_, tensor] : named_parameters(recurse)) out.push_back(tensor);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  for (const auto& [prefix, module] : named_modules()) {
    if (!recurse && module != this) continue;
    for (const auto& buffer : module->buffers_) out.emplace_back(join(prefix, buffer.name), buffer.tensor);
  }
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out{{"", this}};
  for (const auto& [name, child] : children_) {
    for (const auto& [sub, module] : static_cast<const Module&>(*child).named_modules()) {
      out.emplace_back(join(name, sub), module);
    }
  }
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  for (const auto& [name, module] : static_cast<const Module&>(*this).named_modules()) {
    out.emplace_back(name, const_cast<Module*>(module));
  }
  return out;
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t count = 0;
  for (const auto& [_, tensor] : named_parameters()) {
    if (!trainable_only || tensor.requires_grad()) count += tensor.numel();
  }
  return count;
}

void Module::train(bool on) {
  for (auto& [_, module] : named_modules()) module->training_ = on;
}

void Module::apply_to_tensors(const std::function<void(Tensor&, bool)>& fn) {
  for (auto& [_, module] : named_modules()) {
    for (auto& [name, tensor] : module->parameters_) fn(tensor, true);
    for (auto& buffer : module->buffers_) fn(buffer.tensor, false);
  }
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  apply_to_tensors([&](Tensor& tensor, bool) {
    if (tensor.device() != device) tensor.set_data(tensor.to(device));
  });
}

void Module::to(DType dtype) {
  SE_CHECK(is_floating(dtype), type_name_, ".to: modules convert to floating dtypes only, got ", dtype);
  NoGradGuard no_grad;
  apply_to_tensors([&](Tensor& tensor, bool) {
    if (is_floating(tensor.dtype()) && tensor.dtype() != dtype) tensor.set_data(tensor.to(dtype));
  });
}

void Module::to(Device device, DType dtype) {
  to(dtype);
  to(device);
}

void Module::zero_grad() {
  for (auto& [_, tensor] : named_parameters()) tensor.set_grad(Tensor());
}

void Module::requires_grad_(bool requires_grad) {
  for (auto& [_, tensor] : named_parameters()) tensor.requires_grad_(requires_grad);
}

void Module::collect_state(const std::string& prefix, NamedTensors& out) const {
  for (const auto& [name, tensor] : parameters_) out.emplace_back(join(prefix, name), tensor.detach());
  for (const auto& buffer : buffers_) {
    if (buffer.persistent) out.emplace_back(join(prefix, buffer.name), buffer.tensor.detach());
  }
  for (const auto& [name, child] : children_) child->collect_state(join(prefix, name), out);
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect_state("", out);
  return out;
}

LoadReport Module::load_state_dict(const NamedTensors& state, bool strict) {
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, tensor] : state) {
    SE_CHECK(given.emplace(name, &tensor).second, "load_state_dict: key '", name, "' appears twice in the state");
  }
  const NamedTensors own = state_dict();
  LoadReport report;
  std::vector<std::string> mismatched;
  std::vector<std::pair<Tensor, const Tensor*>> copies;
  for (const auto& [name, tensor] : own) {
    auto it = given.find(name);
    if (it == given.end()) {
      report.missing_keys.push_back(name);
      continue;
    }
    const Tensor& source = *it->second;
    if (source.shape() != tensor.shape()) {
      mismatched.push_back(
          detail::concat(name, ": checkpoint ", shape_str(source.shape()), ", model ", shape_str(tensor.shape())));
    } else if (is_floating(source.dtype()) != is_floating(tensor.dtype())) {
      mismatched.push_back(
          detail::concat(name, ": checkpoint dtype ", source.dtype(), ", model dtype ", tensor.dtype()));
    } else {
      copies.emplace_back(tensor, &source);
    }
    given.erase(it);
  }
  for (const auto& [name, _] : given) report.unexpected_keys.push_back(name);
  std::string problems;
  if (!mismatched.empty()) problems += detail::concat("\n  mismatched: ", join_list(mismatched));
  if (strict && !report.missing_keys.empty()) problems += detail::concat("\n  missing: ", join_list(report.missing_keys));
  if (strict && !report.unexpected_keys.empty()) {
    problems += detail::concat("\n  unexpected: ", join_list(report.unexpected_keys));
  }
  SE_CHECK(problems.empty(), "load_state_dict into ", type_name_, ":", problems);
  // Only now that everything checked out, so a failed load leaves the module untouched.
  NoGradGuard no_grad;
  for (auto& [target, source] : copies) target.copy_(*source);
  return report;
}

void Module::print_tree(std::ostream& out, int indent) const {
  out << type_name_ << "(";
  const std::string extra = extra_repr();
  if (children_.empty()) {
    out << extra << ")";
    return;
  }
  const std::string pad(static_cast<size_t>(indent + 2), ' ');
  if (!extra.empty()) out << "\n" << pad << extra;
  for (const auto& [name, child] : children_) {
    out << "\n" << pad << "(" << name << "): ";
    child->print_tree(out, indent + 2);
  }
  out << "\n" << std::string(static_cast<size_t>(indent), ' ') << ")";
}

std::string Module::str() const {
  std::ostringstream out;
  print_tree(out, 0);
  return out.str();
}

// ---- observers

ForwardObserverScope::ForwardObserverScope(ForwardObserver* observer) : previous_(tls_observer) {
  tls_observer = observer;
}
ForwardObserverScope::~ForwardObserverScope() { tls_observer = previous_; }

ForwardObserver* current_forward_observer() { return tls_observer; }

Tensor UnaryModule::forward(const Tensor& x) {
  ForwardObserver* observer = tls_observer;
  if (observer == nullptr) return forward_impl(x);
  observer->before_forward(*this, x);
  Tensor y = forward_impl(x);
  observer->after_forward(*this, x, y);
  return y;
}

// ---- containers

Sequential::Sequential() : UnaryModule("Sequential") {}

Sequential::Sequential(std::vector<std::shared_ptr<UnaryModule>> modules) : Sequential() {
  for (auto& module : modules) push_back(std::move(module));
}

void Sequential::push_back(std::shared_ptr<UnaryModule> module) {
  register_module(std::to_string(layers_.size()), module);
  layers_.push_back(std::move(module));
}

const std::shared_ptr<UnaryModule>& Sequential::operator[](size_t index) const {
  SE_CHECK(index < layers_.size(), "Sequential: index ", index, " out of range for ", layers_.size(), " layers");
  return layers_[index];
}

// A BatchNorm2d followed by a ReLU runs as one (BatchNorm2d::forward_relu).
Tensor Sequential::forward_impl(const Tensor& x) {
  Tensor y = x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto* bn = dynamic_cast<BatchNorm2d*>(layers_[i].get());
    auto* relu = i + 1 < layers_.size() ? dynamic_cast<ReLU*>(layers_[i + 1].get()) : nullptr;
    if (bn != nullptr && relu != nullptr) {
      y = bn->forward_relu(y, relu);
      ++i;
      continue;
    }
    y = layers_[i]->forward(y);
  }
  return y;
}

ModuleList::ModuleList() : Module("ModuleList") {}

void ModuleList::push_back(std::shared_ptr<Module> module) {
  register_module(std::to_string(items_.size()), module);
  items_.push_back(std::move(module));
}

const std::shared_ptr<Module>& ModuleList::operator[](size_t index) const {
  SE_CHECK(index < items_.size(), "ModuleList: index ", index, " out of range for ", items_.size(), " modules");
  return items_[index];
}

}  // namespace se::nn
