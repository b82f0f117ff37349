// Define-by-run reverse-mode autodiff. An op whose inputs require grad records a Node holding only
// what its backward needs; Tensor::backward() runs the reachable nodes once each, in an order where
// every node runs after all nodes that feed it gradients, and frees their saved tensors afterwards.
//
// Writing a differentiable op (see engine/ops/*.cpp):
//   Tensor y = <compute forward>;
//   if (autograd::needs_grad({x})) {
//     autograd::record("exp", {x}, {y}, [saved_y = SavedTensor(y)](const GradOutputs& g, const NeedsGrad&) {
//       return GradInputs{mul(g[0], saved_y.unpack())};
//     });
//   }
// Backward functions run with grad mode off and use ordinary ops, so they work on every device.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace se {

struct Edge {
  std::shared_ptr<Node> node;  // null: this input needs no gradient
  uint32_t input_nr = 0;       // which output of `node` the gradient flows into
};

// What a gradient flowing into an edge must look like.
struct GradSpec {
  Shape shape;
  DType dtype = DType::f32;
  Device device;
};

class Node {
 public:
  explicit Node(std::string name);
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }
  uint64_t sequence_nr() const { return sequence_nr_; }
  // The sequence number the next node created will get: nodes created between two readings on one
  // thread (e.g. by one layer's forward) have numbers in that range.
  static uint64_t next_sequence_nr();
  // Gradients of this node's outputs (undefined where no gradient arrived) -> gradients of its inputs,
  // one per edge (undefined where needs_input_grad is false).
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) = 0;
  // Drops saved tensors after a backward pass; a second backward through the node then fails.
  virtual void release_saved() { released_ = true; }
  bool released() const { return released_; }

  std::vector<Edge> next_edges;
  std::vector<GradSpec> input_specs;  // per edge
  size_t num_outputs = 1;

 protected:
  bool released_ = false;

 private:
  std::string name_;
  uint64_t sequence_nr_;
};

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;
  std::weak_ptr<Node> grad_accumulator;  // leaves: the node that accumulates into .grad
  std::vector<std::function<void(const Tensor&)>> grad_ready_hooks;
};

// Watches the nodes a backward pass runs on the calling thread (`segengine bench model` times each
// layer's backward with it, matching nodes to layers by sequence number). Installed with
// BackwardObserverScope. after_node follows the node's apply() and the release of its saved tensors.
class BackwardObserver {
 public:
  virtual ~BackwardObserver() = default;
  virtual void before_node(const Node& node) = 0;
  virtual void after_node(const Node& node) = 0;
};

class BackwardObserverScope {
 public:
  explicit BackwardObserverScope(BackwardObserver* observer);
  ~BackwardObserverScope();
  BackwardObserverScope(const BackwardObserverScope&) = delete;
  BackwardObserverScope& operator=(const BackwardObserverScope&) = delete;

 private:
  BackwardObserver* previous_;
};

// Grad mode: on by default, per thread.
bool grad_mode_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// A tensor kept for backward. Remembers the storage version at save time; unpack() throws se::Error
// when the tensor has been modified in place since (rather than computing a wrong gradient).
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& tensor);
  Tensor unpack() const;
  bool defined() const { return data_.defined(); }

 private:
  Tensor data_;  // detached alias: saving an op's own output must not create a reference cycle
  uint64_t version_ = 0;
};

using GradOutputs = std::vector<Tensor>;
using NeedsGrad = std::vector<bool>;
using GradInputs = std::vector<Tensor>;
using BackwardFn = std::function<GradInputs(const GradOutputs& grad_outputs, const NeedsGrad& needs_input_grad)>;

namespace autograd {

// True when grad mode is on and any of `inputs` requires grad.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Records that `outputs` were computed from `inputs` by op `name`. `backward` receives one gradient
// per output and returns one per input. Inputs that do not require grad get no gradient.
void record(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward);

// Runs backward from `roots`, seeded with `grad_roots` (same shapes).
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots);

// Called by every in-place op before writing into `tensor`: throws when that would corrupt autograd
// (a leaf that requires grad while grad mode is on; a tensor with history), then bumps the version.
void prepare_inplace(const Tensor& tensor, const char* op);

}  // namespace autograd
}  // namespace se
