#include "engine/autograd.h"

#include <atomic>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace se {

namespace {

thread_local bool tls_grad_mode = true;
thread_local BackwardObserver* tls_backward_observer = nullptr;
std::atomic<uint64_t> sequence_counter{0};

AutogradMeta& meta_of(const Tensor& tensor) {
  TensorImpl* impl = tensor.impl();
  SE_CHECK(impl != nullptr, "autograd: operation on an undefined tensor");
  if (!impl->autograd) impl->autograd = std::make_unique<AutogradMeta>();
  return *impl->autograd;
}

const AutogradMeta* meta_if_any(const Tensor& tensor) {
  return tensor.defined() ? tensor.impl()->autograd.get() : nullptr;
}

// A node whose backward is a function (usually a lambda holding SavedTensors).
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : Node(std::move(name)), fn_(std::move(fn)) {}

  std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) override {
    SE_CHECK(!released_, "backward: trying to backward through the graph of '", name(),
             "' a second time (its saved tensors were freed after the first backward)");
    bool any_grad = false;
    for (const Tensor& g : grad_outputs) any_grad = any_grad || g.defined();
    if (!any_grad) return {};  // no gradient reached this node's outputs
    NeedsGrad needs(next_edges.size());
    for (size_t i = 0; i < next_edges.size(); ++i) needs[i] = next_edges[i].node != nullptr;
    return fn_(grad_outputs, needs);
  }

  void release_saved() override {
    released_ = true;
    fn_ = nullptr;  // frees the captured saved tensors
  }

 private:
  BackwardFn fn_;
};

// Sink of a leaf's gradient: adds it into leaf.grad and calls the leaf's grad-ready hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf) : Node("AccumulateGrad"), leaf_(leaf) {}

  std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) override {
    std::shared_ptr<TensorImpl> leaf = leaf_.lock();
    if (!leaf || !grad_outputs[0].defined()) return {};
    Tensor leaf_tensor(leaf);
    AutogradMeta& meta = meta_of(leaf_tensor);
    const Tensor& incoming = grad_outputs[0];
    if (!meta.grad.defined()) {
      // Take the incoming gradient over when nothing else refers to its memory (the usual case);
      // otherwise it may alias another gradient or a saved value, so keep a private copy.
      const bool sole_owner = incoming.impl_ptr().use_count() == 1 && incoming.storage().use_count() == 1;
      meta.grad = sole_owner && incoming.is_contiguous() ? incoming.detach()
                                                         : incoming.detach().clone(MemoryFormat::contiguous);
    } else {
      add_(meta.grad, incoming);
    }
    for (auto& hook : meta.grad_ready_hooks) hook(meta.grad);
    return {};
  }

  void release_saved() override {}  // nothing saved; the accumulator survives backward

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  AutogradMeta& meta = meta_of(leaf);
  if (auto existing = meta.grad_accumulator.lock()) return existing;
  auto accumulator = std::make_shared<AccumulateGrad>(leaf.impl_ptr());
  accumulator->input_specs.push_back({leaf.shape(), leaf.dtype(), leaf.device()});
  meta.grad_accumulator = accumulator;
  return accumulator;
}

Edge gradient_edge(const Tensor& tensor) {
  const AutogradMeta* meta = meta_if_any(tensor);
  if (meta == nullptr || !meta->requires_grad) return {};
  if (meta->grad_fn) return {meta->grad_fn, meta->output_nr};
  return {grad_accumulator(tensor), 0};
}

void check_grad(const Node& node, size_t input, const Tensor& grad, const GradSpec& spec) {
  SE_CHECK(grad.shape() == spec.shape, "backward of '", node.name(), "': gradient of input ", input, " has shape ",
           shape_str(grad.shape()), ", expected ", shape_str(spec.shape));
  SE_CHECK(grad.device() == spec.device, "backward of '", node.name(), "': gradient of input ", input, " is on ",
           grad.device().str(), ", expected ", spec.device.str());
}

}  // namespace

Node::Node(std::string name) : name_(std::move(name)), sequence_nr_(sequence_counter.fetch_add(1)) {}

uint64_t Node::next_sequence_nr() { return sequence_counter.load(); }

BackwardObserverScope::BackwardObserverScope(BackwardObserver* observer) : previous_(tls_backward_observer) {
  tls_backward_observer = observer;
}
BackwardObserverScope::~BackwardObserverScope() { tls_backward_observer = previous_; }

bool grad_mode_enabled() { return tls_grad_mode; }
NoGradGuard::NoGradGuard() : previous_(tls_grad_mode) { tls_grad_mode = false; }
NoGradGuard::~NoGradGuard() { tls_grad_mode = previous_; }

SavedTensor::SavedTensor(const Tensor& tensor) {
  if (!tensor.defined()) return;
  data_ = tensor.detach();
  version_ = tensor.storage()->version();
}

Tensor SavedTensor::unpack() const {
  if (data_.defined()) {
    SE_CHECK(data_.storage()->version() == version_, "backward: a tensor of shape ", shape_str(data_.shape()),
             " saved for backward was modified in place after it was saved (version ", data_.storage()->version(),
             ", saved at version ", version_, "); clone it before modifying it");
  }
  return data_;
}

// ---- Tensor's autograd methods

bool Tensor::requires_grad() const {
  const AutogradMeta* meta = meta_if_any(*this);
  return meta != nullptr && meta->requires_grad;
}

Tensor& Tensor::requires_grad_(bool requires_grad) {
  SE_CHECK(is_leaf(), "requires_grad_: only leaf tensors can change requires_grad (this one was computed by '",
           grad_fn()->name(), "'); use detach() first");
  SE_CHECK(!requires_grad || is_floating(dtype()), "requires_grad_: only floating tensors can require grad, got ",
           dtype());
  meta_of(*this).requires_grad = requires_grad;
  return *this;
}

bool Tensor::is_leaf() const { return grad_fn() == nullptr; }

Tensor Tensor::grad() const {
  const AutogradMeta* meta = meta_if_any(*this);
  return meta != nullptr ? meta->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  if (grad.defined()) {
    SE_CHECK(grad.shape() == shape(), "set_grad: gradient of shape ", shape_str(grad.shape()),
             " for a tensor of shape ", shape_str(shape()));
  }
  meta_of(*this).grad = grad;
}

void Tensor::set_data(const Tensor& other) const {
  SE_CHECK(defined() && other.defined(), "set_data: both tensors must be defined");
  SE_CHECK(is_leaf(), "set_data: only leaf tensors can take new data (this one was computed by '", grad_fn()->name(),
           "')");
  SE_CHECK(!requires_grad() || is_floating(other.dtype()), "set_data: a tensor that requires grad cannot take ",
           other.dtype(), " data");
  TensorImpl& self = *impl();
  const TensorImpl& source = *other.impl();
  self.storage = source.storage;
  self.sizes = source.sizes;
  self.strides = source.strides;
  self.offset = source.offset;
  self.dtype = source.dtype;
  if (self.autograd != nullptr) {
    self.autograd->grad = Tensor();
    self.autograd->grad_accumulator.reset();  // its gradient spec describes the old data
  }
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  const AutogradMeta* meta = meta_if_any(*this);
  return meta != nullptr ? meta->grad_fn : none;
}

uint32_t Tensor::output_nr() const {
  const AutogradMeta* meta = meta_if_any(*this);
  return meta != nullptr ? meta->output_nr : 0;
}

Tensor Tensor::detach() const {
  const TensorImpl& self = *impl();
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = self.storage;
  impl->sizes = self.sizes;
  impl->strides = self.strides;
  impl->offset = self.offset;
  impl->dtype = self.dtype;
  return Tensor(std::move(impl));
}

void Tensor::register_grad_ready_hook(std::function<void(const Tensor&)> hook) const {
  SE_CHECK(is_leaf() && requires_grad(), "register_grad_ready_hook: only for leaf tensors that require grad");
  meta_of(*this).grad_ready_hooks.push_back(std::move(hook));
}

void Tensor::backward(const Tensor& gradient) const {
  SE_CHECK(requires_grad(), "backward: the tensor does not require grad and has no grad_fn");
  Tensor seed = gradient;
  if (!seed.defined()) {
    SE_CHECK(numel() == 1, "backward: a gradient is needed for a non-scalar output of shape ", shape_str(shape()));
    seed = ones(shape(), {dtype(), device()});
  }
  autograd::backward({*this}, {seed});
}

namespace autograd {

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!tls_grad_mode) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!tls_grad_mode) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

void record(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward) {
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  node->num_outputs = outputs.size();
  for (const Tensor& input : inputs) {
    node->next_edges.push_back(input.defined() ? gradient_edge(input) : Edge{});
    if (input.defined()) {
      node->input_specs.push_back({input.shape(), input.dtype(), input.device()});
    } else {
      node->input_specs.push_back({});
    }
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].defined()) continue;
    AutogradMeta& meta = meta_of(outputs[i]);
    SE_CHECK(meta.grad_fn == nullptr && !meta.requires_grad, "autograd::record('", name,
             "'): output ", i, " already has autograd history");
    meta.requires_grad = true;
    meta.grad_fn = node;
    meta.output_nr = static_cast<uint32_t>(i);
  }
}

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots) {
  SE_CHECK(roots.size() == grad_roots.size(), "backward: ", roots.size(), " roots but ", grad_roots.size(),
           " gradients");
  // Count, for every reachable node, how many edges lead into it.
  std::unordered_map<Node*, int> dependencies;
  std::unordered_map<Node*, std::shared_ptr<Node>> owners;
  std::vector<Node*> stack;
  std::vector<Edge> root_edges;
  for (size_t i = 0; i < roots.size(); ++i) {
    SE_CHECK(grad_roots[i].shape() == roots[i].shape(), "backward: gradient of shape ",
             shape_str(grad_roots[i].shape()), " for an output of shape ", shape_str(roots[i].shape()));
    Edge edge = gradient_edge(roots[i]);
    SE_CHECK(edge.node != nullptr, "backward: root ", i, " does not require grad");
    root_edges.push_back(edge);
    if (owners.emplace(edge.node.get(), edge.node).second) stack.push_back(edge.node.get());
  }
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Edge& edge : node->next_edges) {
      if (!edge.node) continue;
      ++dependencies[edge.node.get()];
      if (owners.emplace(edge.node.get(), edge.node).second) stack.push_back(edge.node.get());
    }
  }

  // Gradients waiting for each node, one slot per output, summed as they arrive.
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto deliver = [&](const Edge& edge, Tensor grad) {
    std::vector<Tensor>& slots = buffers[edge.node.get()];
    if (slots.empty()) slots.resize(edge.node->num_outputs);
    Tensor& slot = slots[edge.input_nr];
    slot = slot.defined() ? add(slot, grad) : std::move(grad);
  };
  for (size_t i = 0; i < roots.size(); ++i) deliver(root_edges[i], grad_roots[i].detach());

  // Ready nodes run latest-created first, which keeps memory low and the order deterministic.
  auto later_first = [](Node* a, Node* b) { return a->sequence_nr() < b->sequence_nr(); };
  std::priority_queue<Node*, std::vector<Node*>, decltype(later_first)> ready(later_first);
  for (const Edge& edge : root_edges) {
    if (dependencies[edge.node.get()] == 0) {
      dependencies[edge.node.get()] = -1;  // queued
      ready.push(edge.node.get());
    }
  }

  NoGradGuard no_grad;
  BackwardObserver* const observer = tls_backward_observer;
  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    std::vector<Tensor> grad_outputs = std::move(buffers[node]);
    buffers.erase(node);
    grad_outputs.resize(node->num_outputs);
    if (observer != nullptr) observer->before_node(*node);
    std::vector<Tensor> grad_inputs = node->apply(grad_outputs);
    node->release_saved();
    if (observer != nullptr) observer->after_node(*node);
    SE_CHECK(grad_inputs.empty() || grad_inputs.size() == node->next_edges.size(), "backward of '", node->name(),
             "': returned ", grad_inputs.size(), " gradients for ", node->next_edges.size(), " inputs");
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      const Edge& edge = node->next_edges[i];
      if (!edge.node) continue;
      if (i < grad_inputs.size() && grad_inputs[i].defined()) {
        check_grad(*node, i, grad_inputs[i], node->input_specs[i]);
        deliver(edge, std::move(grad_inputs[i]));
      }
      if (--dependencies[edge.node.get()] == 0) ready.push(edge.node.get());
    }
  }
}

void prepare_inplace(const Tensor& tensor, const char* op) {
  SE_CHECK(tensor.defined(), op, ": in-place operation on an undefined tensor");
  if (tls_grad_mode && tensor.requires_grad()) {
    if (tensor.is_leaf()) {
      SE_THROW(op, ": in-place operation on a leaf tensor that requires grad (wrap it in NoGradGuard, e.g. for an "
               "optimizer step)");
    }
    SE_THROW(op, ": in-place operation on a tensor computed by '", tensor.grad_fn()->name(),
             "' that requires grad is not supported; use the out-of-place op");
  }
  tensor.storage()->bump_version();
}

}  // namespace autograd
}  // namespace se
