// nn::Module: a tree of layers owning named parameters and buffers, like torch.nn.Module. Names are
// dotted paths in PyTorch's convention ("backbone.layer1.0.conv1.weight"), so a state_dict moves
// between segengine and PyTorch through safetensors (nn/safetensors.h).
//
// Parameters are plain leaf Tensors that require grad; buffers are Tensors that do not (BatchNorm's
// running statistics). Modules are created on the CPU in f32 and moved with to(), which swaps the
// data behind every handle in place (Tensor::set_data), so members and parameter lists stay valid.
//
// Writing a layer:
//   class Scale : public UnaryModule {
//    public:
//     explicit Scale(int64_t channels) : UnaryModule("Scale") {
//       weight = register_parameter("weight", ones({channels, 1, 1}));
//     }
//     Tensor weight;  // (C, 1, 1)
//    protected:
//     Tensor forward_impl(const Tensor& x) override { return mul(x, weight); }
//   };
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace se::nn {

// What load_state_dict found; shape mismatches are always errors.
struct LoadReport {
  std::vector<std::string> missing_keys;     // in the module, absent from the state
  std::vector<std::string> unexpected_keys;  // in the state, absent from the module
};

class Module {
 public:
  explicit Module(std::string type_name);
  virtual ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const { return type_name_; }

  // ---- structure, in registration order (own entries first, then each child's, depth first)
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
  // This module as "" followed by every descendant with its dotted path.
  std::vector<std::pair<std::string, Module*>> named_modules();
  std::vector<std::pair<std::string, const Module*>> named_modules() const;
  int64_t num_parameters(bool trainable_only = false) const;  // elements, not tensors

  // ---- mode and placement
  void train(bool on = true);  // recursively; layers such as Dropout and BatchNorm read it
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void to(Device device);
  void to(DType dtype);  // floating parameters and buffers only (BatchNorm's step counter stays i64)
  void to(Device device, DType dtype);
  void zero_grad();                           // sets every parameter's gradient to none
  void requires_grad_(bool requires_grad = true);  // freezes (false) or unfreezes all parameters

  // ---- state: parameters and persistent buffers by dotted name
  NamedTensors state_dict() const;  // aliases of the live tensors, detached
  // Copies matching entries in (casting dtype and moving device as needed). Throws listing every
  // shape-mismatched key; when strict, also every missing and unexpected key.
  LoadReport load_state_dict(const NamedTensors& state, bool strict = true);

  // ---- printing: the module tree as PyTorch prints it
  std::string str() const;
  virtual std::string extra_repr() const { return ""; }

 protected:
  // Registers a parameter (made a leaf that requires grad) and returns its handle.
  Tensor register_parameter(const std::string& name, Tensor value);
  // Non-persistent buffers are moved by to() but not saved in state_dict.
  Tensor register_buffer(const std::string& name, Tensor value, bool persistent = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }
  // Replaces an already registered child (e.g. a classifier head for another number of classes).
  void replace_module(const std::string& name, std::shared_ptr<Module> module);

 private:
  struct Buffer {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name) const;
  void collect_state(const std::string& prefix, NamedTensors& out) const;
  void apply_to_tensors(const std::function<void(Tensor&, bool is_parameter)>& fn);
  void print_tree(std::ostream& out, int indent) const;

  std::string type_name_;
  bool training_ = true;
  NamedTensors parameters_;
  std::vector<Buffer> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Watches module calls on the calling thread (segengine info counts MACs and memory with it, bench
// model times layers). Installed with ForwardObserverScope.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  virtual void before_forward(const Module& module, const Tensor& input) = 0;
  virtual void after_forward(const Module& module, const Tensor& input, const Tensor& output) = 0;
};

// The observer installed on this thread, or null: for modules whose forward takes more than one
// tensor (not UnaryModules), which report their calls themselves.
ForwardObserver* current_forward_observer();

class ForwardObserverScope {
 public:
  explicit ForwardObserverScope(ForwardObserver* observer);
  ~ForwardObserverScope();
  ForwardObserverScope(const ForwardObserverScope&) = delete;
  ForwardObserverScope& operator=(const ForwardObserverScope&) = delete;

 private:
  ForwardObserver* previous_;
};

// A module mapping one tensor to one tensor: the layers, and what Sequential chains.
class UnaryModule : public Module {
 public:
  using Module::Module;
  Tensor forward(const Tensor& x);  // forward_impl, reported to the thread's ForwardObserver
  Tensor operator()(const Tensor& x) { return forward(x); }

 protected:
  virtual Tensor forward_impl(const Tensor& x) = 0;
};

// Children named "0", "1", ... applied in order, as torch.nn.Sequential.
class Sequential : public UnaryModule {
 public:
  Sequential();
  explicit Sequential(std::vector<std::shared_ptr<UnaryModule>> modules);
  void push_back(std::shared_ptr<UnaryModule> module);
  size_t size() const { return layers_.size(); }
  const std::shared_ptr<UnaryModule>& operator[](size_t index) const;

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  std::vector<std::shared_ptr<UnaryModule>> layers_;
};

// Children named "0", "1", ... without a forward of their own, as torch.nn.ModuleList.
class ModuleList : public Module {
 public:
  ModuleList();
  void push_back(std::shared_ptr<Module> module);
  size_t size() const { return items_.size(); }
  const std::shared_ptr<Module>& operator[](size_t index) const;
  template <typename M> std::shared_ptr<M> at(size_t index) const {
    auto typed = std::dynamic_pointer_cast<M>((*this)[index]);
    SE_CHECK(typed != nullptr, "ModuleList::at: item ", index, " is a ", (*this)[index]->type_name(),
             ", not the requested type");
    return typed;
  }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

}  // namespace se::nn
