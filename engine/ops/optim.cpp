// Optimizer steps over whole lists of tensors with the multi-tensor kernels of kernels/optim.h.
#include <string>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/workspace.h"

namespace se {

namespace {

// Host-side tables of the tensors' data pointers and sizes, kept alive for the kernel call.
struct ListTables {
  std::vector<int64_t> numels;
  std::vector<float*> pointers[kernels::kMaxListsPerStep];
  kernels::MultiTensorList list;
  Device device;
};

// Checks that every list matches `reference` (same count, shapes, f32, contiguous, one device).
ListTables make_tables(const char* op, const std::vector<const std::vector<Tensor>*>& lists) {
  SE_CHECK(lists.size() <= static_cast<size_t>(kernels::kMaxListsPerStep), op, ": too many tensor lists");
  ListTables tables;
  const std::vector<Tensor>& reference = *lists[0];
  tables.device = reference.empty() ? Device::cpu() : reference[0].device();
  for (size_t l = 0; l < lists.size(); ++l) {
    const std::vector<Tensor>& list = *lists[l];
    SE_CHECK(list.size() == reference.size(), op, ": tensor list ", l, " has ", list.size(), " tensors, expected ",
             reference.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const Tensor& t = list[i];
      SE_CHECK(t.defined(), op, ": tensor ", i, " of list ", l, " is undefined");
      SE_CHECK(t.dtype() == DType::f32, op, ": tensor ", i, " of list ", l, " has dtype ", t.dtype(),
               " (expected f32)");
      SE_CHECK(t.device() == tables.device, op, ": tensor ", i, " of list ", l, " is on ", t.device(), ", expected ",
               tables.device);
      SE_CHECK(t.is_contiguous(), op, ": tensor ", i, " of list ", l, " is not contiguous");
      SE_CHECK(t.shape() == reference[i].shape(), op, ": tensor ", i, " of list ", l, " has shape ",
               shape_str(t.shape()), ", expected ", shape_str(reference[i].shape()));
      tables.pointers[l].push_back(static_cast<float*>(t.data_ptr()));
    }
  }
  for (const Tensor& t : reference) tables.numels.push_back(t.numel());
  tables.list.count = static_cast<int64_t>(reference.size());
  tables.list.numels = tables.numels.data();
  for (size_t l = 0; l < lists.size(); ++l) tables.list.lists[l] = tables.pointers[l].data();
  return tables;
}

// Device workspace for the CUDA kernels; none on the CPU.
Tensor workspace_for(const ListTables& tables) {
  return kernel_workspace(kernels::multi_tensor_workspace_bytes(tables.list), tables.device);
}

// The in-place writes below must not be recorded and must invalidate saved copies.
void mark_written(const std::vector<Tensor>& tensors, const char* op) {
  for (const Tensor& t : tensors) autograd::prepare_inplace(t, op);
}

}  // namespace

void sgd_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
               const std::vector<Tensor>& momentum_buffers, const kernels::SgdDesc& desc) {
  NoGradGuard no_grad;
  std::vector<const std::vector<Tensor>*> lists{&params, &grads};
  if (desc.momentum != 0.0f) {
    SE_CHECK(momentum_buffers.size() == params.size(), "sgd_step_: momentum ", desc.momentum, " needs ",
             params.size(), " momentum buffers, got ", momentum_buffers.size());
    lists.push_back(&momentum_buffers);
  }
  ListTables tables = make_tables("sgd_step_", lists);
  mark_written(params, "sgd_step_");
  if (desc.momentum != 0.0f) mark_written(momentum_buffers, "sgd_step_");
  Tensor workspace = workspace_for(tables);
  SE_DISPATCH(tables.device, sgd_step, desc, tables.list, data_or_null(workspace));
}

void adam_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avgs,
                const std::vector<Tensor>& exp_avg_sqs, const kernels::AdamDesc& desc) {
  NoGradGuard no_grad;
  ListTables tables = make_tables("adam_step_", {&params, &grads, &exp_avgs, &exp_avg_sqs});
  mark_written(params, "adam_step_");
  mark_written(exp_avgs, "adam_step_");
  mark_written(exp_avg_sqs, "adam_step_");
  Tensor workspace = workspace_for(tables);
  SE_DISPATCH(tables.device, adam_step, desc, tables.list, data_or_null(workspace));
}

Tensor global_norm(const std::vector<Tensor>& tensors) {
  NoGradGuard no_grad;
  ListTables tables = make_tables("global_norm", {&tensors});
  Tensor sum_sq = empty({}, {DType::f32, tables.device});
  Tensor workspace = workspace_for(tables);
  SE_DISPATCH(tables.device, sum_of_squares, tables.list, static_cast<float*>(sum_sq.data_ptr()),
              data_or_null(workspace));
  return sqrt(sum_sq);
}

Tensor unscale_and_check_(const std::vector<Tensor>& grads, double inv_scale) {
  NoGradGuard no_grad;
  ListTables tables = make_tables("unscale_and_check_", {&grads});
  mark_written(grads, "unscale_and_check_");
  Tensor found_inf = zeros({}, {DType::f32, tables.device});
  Tensor workspace = workspace_for(tables);
  SE_DISPATCH(tables.device, unscale_and_check, tables.list, static_cast<float>(inv_scale),
              static_cast<float*>(found_inf.data_ptr()), data_or_null(workspace));
  return found_inf;
}

}  // namespace se
