#include <gtest/gtest.h>

#include <optional>

#include "engine/device.h"
#include "engine/ops.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "tests/engine/test_util.h"

namespace se::nn {
namespace {

using testing::error_of;

// A torchvision-style residual block: the names its state_dict must have are PyTorch's.
class Block : public UnaryModule {
 public:
  explicit Block(int64_t channels) : UnaryModule("Block") {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(channels, channels, 3, Conv2dOptions{.padding = 1, .bias = false}));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(channels));
    downsample = register_module("downsample", std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                                                   std::make_shared<Conv2d>(channels, channels, 1),
                                                   std::make_shared<BatchNorm2d>(channels)}));
  }
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  std::shared_ptr<Sequential> downsample;

 protected:
  Tensor forward_impl(const Tensor& x) override {
    Tensor main = bn1->forward(conv1->forward(x));
    return relu(add(main, downsample->forward(x)));
  }
};

class Net : public UnaryModule {
 public:
  Net() : UnaryModule("Net") {
    scale = register_parameter("scale", ones({1}));
    layer1 = register_module("layer1", std::make_shared<ModuleList>());
    layer1->push_back(std::make_shared<Block>(2));
    layer1->push_back(std::make_shared<Block>(2));
    fc = register_module("fc", std::make_shared<Linear>(2, 3));
  }
  Tensor scale;
  std::shared_ptr<ModuleList> layer1;
  std::shared_ptr<Linear> fc;

 protected:
  Tensor forward_impl(const Tensor& x) override {
    Tensor y = mul(x, scale);
    for (size_t i = 0; i < layer1->size(); ++i) y = layer1->at<Block>(i)->forward(y);
    return fc->forward(mean(y, {2, 3}));
  }
};

std::vector<std::string> names_of(const NamedTensors& tensors) {
  std::vector<std::string> out;
  for (const auto& [name, _] : tensors) out.push_back(name);
  return out;
}

TEST(Module, NamesFollowPyTorch) {
  Net net;
  const std::vector<std::string> expected_parameters = {
      "scale",
      "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias",
      "layer1.0.downsample.0.weight", "layer1.0.downsample.0.bias",
      "layer1.0.downsample.1.weight", "layer1.0.downsample.1.bias",
      "layer1.1.conv1.weight", "layer1.1.bn1.weight", "layer1.1.bn1.bias",
      "layer1.1.downsample.0.weight", "layer1.1.downsample.0.bias",
      "layer1.1.downsample.1.weight", "layer1.1.downsample.1.bias",
      "fc.weight", "fc.bias"};
  EXPECT_EQ(names_of(net.named_parameters()), expected_parameters);
  const NamedTensors state = net.state_dict();
  // PyTorch order: a module's own parameters, then its own buffers, then its children.
  const std::vector<std::string> first_block = {
      "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias", "layer1.0.bn1.running_mean",
      "layer1.0.bn1.running_var", "layer1.0.bn1.num_batches_tracked"};
  std::vector<std::string> state_names = names_of(state);
  ASSERT_GE(state_names.size(), 7u);
  EXPECT_EQ(std::vector<std::string>(state_names.begin() + 1, state_names.begin() + 7), first_block);
  EXPECT_EQ(state.size(), expected_parameters.size() + 2 * 2 * 3);  // 3 BN buffers, 2 BNs per block, 2 blocks
  EXPECT_EQ(names_of(net.named_parameters(false)), std::vector<std::string>{"scale"});
  // conv 2*2*3*3 = 36, bn 2+2, 1x1 conv 4+2, bn 2+2 = 50 per block; fc 6+3; scale 1
  EXPECT_EQ(net.num_parameters(), 1 + 2 * 50 + 9);
  net.fc->requires_grad_(false);
  EXPECT_EQ(net.num_parameters(/*trainable_only=*/true), 1 + 2 * 50);
  std::vector<std::string> modules;
  for (const auto& [name, _] : net.named_modules()) modules.push_back(name);
  EXPECT_EQ(modules.front(), "");
  EXPECT_EQ(modules[3], "layer1.0.conv1");
  EXPECT_EQ(modules.back(), "fc");
}

TEST(Module, RegistrationErrorsNameTheMember) {
  class Bad : public Module {
   public:
    Bad() : Module("Bad") {
      register_parameter("w", ones({1}));
      EXPECT_NE(error_of([&] { register_buffer("w", ones({1})); }).find("'w' is already registered"),
                std::string::npos);
      EXPECT_NE(error_of([&] { register_parameter("a.b", ones({1})); }).find("invalid member name 'a.b'"),
                std::string::npos);
    }
  };
  Bad bad;
  EXPECT_EQ(bad.num_parameters(), 1);
}

TEST(Module, TrainEvalReachesEveryLayer) {
  Net net;
  net.eval();
  for (const auto& [_, module] : net.named_modules()) EXPECT_FALSE(module->is_training());
  net.train();
  for (const auto& [_, module] : net.named_modules()) EXPECT_TRUE(module->is_training());
}

TEST(Module, ToDtypeConvertsFloatingTensorsInPlace) {
  Net net;
  Tensor weight = net.fc->weight;  // a handle taken before the move stays valid
  net.to(DType::f64);
  EXPECT_EQ(weight.dtype(), DType::f64);
  EXPECT_TRUE(weight.requires_grad());
  for (const auto& [name, tensor] : net.state_dict()) {
    const bool counter = name.ends_with("num_batches_tracked");
    EXPECT_EQ(tensor.dtype(), counter ? DType::i64 : DType::f64) << name;
  }
  Tensor y = net.forward(randn({2, 2, 4, 4}, {DType::f64}));
  sum(y).backward();
  EXPECT_EQ(net.fc->weight.grad().dtype(), DType::f64);
  net.zero_grad();
  EXPECT_FALSE(net.fc->weight.grad().defined());
}

TEST(Module, LoadStateDictCopiesAndReportsProblems) {
  manual_seed(1);
  Net source;
  manual_seed(2);
  Net target;
  target.load_state_dict(source.state_dict());
  EXPECT_EQ(target.fc->weight.to_vector<float>(), source.fc->weight.to_vector<float>());
  EXPECT_EQ(target.layer1->at<Block>(1)->conv1->weight.to_vector<float>(),
            source.layer1->at<Block>(1)->conv1->weight.to_vector<float>());
  // The copy does not alias the source.
  {
    NoGradGuard no_grad;
    source.fc->weight.fill_(7);
  }
  EXPECT_NE(target.fc->weight.to_vector<float>()[0], 7.0f);

  NamedTensors state = source.state_dict();
  state.erase(state.begin());  // drop "scale"
  state.emplace_back("head.weight", ones({1}));
  const std::string strict_error = error_of([&] { target.load_state_dict(state); });
  EXPECT_NE(strict_error.find("missing: scale"), std::string::npos) << strict_error;
  EXPECT_NE(strict_error.find("unexpected: head.weight"), std::string::npos) << strict_error;
  LoadReport report = target.load_state_dict(state, /*strict=*/false);
  EXPECT_EQ(report.missing_keys, std::vector<std::string>{"scale"});
  EXPECT_EQ(report.unexpected_keys, std::vector<std::string>{"head.weight"});

  // A shape mismatch is an error even when not strict, and nothing is modified.
  const std::vector<float> before = target.fc->weight.to_vector<float>();
  NamedTensors wrong = source.state_dict();
  for (auto& [name, tensor] : wrong) {
    if (name == "fc.bias") tensor = zeros({4});
    if (name == "fc.weight") tensor = zeros({3, 2});
  }
  const std::string shape_error = error_of([&] { target.load_state_dict(wrong, false); });
  EXPECT_NE(shape_error.find("fc.bias: checkpoint (4,), model (3,)"), std::string::npos) << shape_error;
  EXPECT_EQ(target.fc->weight.to_vector<float>(), before);
}

TEST(Module, PrintsLikePyTorch) {
  Block block(2);
  EXPECT_EQ(block.str(),
            "Block(\n"
            "  (conv1): Conv2d(2, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)\n"
            "  (bn1): BatchNorm2d(2, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
            "  (downsample): Sequential(\n"
            "    (0): Conv2d(2, 2, kernel_size=(1, 1), stride=(1, 1))\n"
            "    (1): BatchNorm2d(2, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
            "  )\n"
            ")");
}

TEST(Module, ObserverSeesEveryLayerCall) {
  struct Recorder : ForwardObserver {
    std::vector<std::string> calls;
    void before_forward(const Module& m, const Tensor&) override { calls.push_back(">" + m.type_name()); }
    void after_forward(const Module& m, const Tensor&, const Tensor& y) override {
      calls.push_back("<" + m.type_name() + shape_str(y.shape()));
    }
  };
  Block block(2);
  Recorder recorder;
  {
    ForwardObserverScope scope(&recorder);
    block.forward(zeros({1, 2, 3, 3}));
  }
  block.forward(zeros({1, 2, 3, 3}));  // no longer observed
  const std::vector<std::string> expected = {
      ">Block",      ">Conv2d", "<Conv2d(1, 2, 3, 3)", ">BatchNorm2d", "<BatchNorm2d(1, 2, 3, 3)", ">Sequential",
      ">Conv2d",     "<Conv2d(1, 2, 3, 3)", ">BatchNorm2d", "<BatchNorm2d(1, 2, 3, 3)", "<Sequential(1, 2, 3, 3)",
      "<Block(1, 2, 3, 3)"};
  EXPECT_EQ(recorder.calls, expected);
}

// A Sequential runs BatchNorm2d + ReLU as one op (batch_norm's fused ReLU) with the bits of the two
// modules, which it runs apart under an observer, so that bench model and info still see the ReLU.
TEST(Module, SequentialFusesBatchNormAndReluWithTheSameBits) {
  struct Recorder : ForwardObserver {
    std::vector<std::string> calls;
    void before_forward(const Module& m, const Tensor&) override { calls.push_back(m.type_name()); }
    void after_forward(const Module&, const Tensor&, const Tensor&) override {}
  };
  manual_seed(5);
  Sequential seq({std::make_shared<Conv2d>(3, 4, 3, Conv2dOptions{.padding = 1}), std::make_shared<BatchNorm2d>(4),
                  std::make_shared<ReLU>()});
  const Tensor x = randn({2, 3, 9, 8}), dy = randn({2, 4, 9, 8});
  auto run = [&](ForwardObserver* observer) {
    std::optional<ForwardObserverScope> scope;
    if (observer != nullptr) scope.emplace(observer);
    seq.zero_grad();
    Tensor input = x.detach().requires_grad_(true);
    Tensor y = seq.forward(input);
    y.backward(dy);
    std::vector<Tensor> out = {y.detach(), input.grad()};
    for (const auto& [name, p] : seq.named_parameters()) out.push_back(p.grad().clone());
    return out;
  };
  const std::vector<Tensor> fused = run(nullptr);
  Recorder recorder;
  const std::vector<Tensor> apart = run(&recorder);
  EXPECT_EQ(recorder.calls, (std::vector<std::string>{"Sequential", "Conv2d", "BatchNorm2d", "ReLU"}));
  ASSERT_EQ(fused.size(), apart.size());
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_EQ(fused[i].to_vector<float>(), apart[i].to_vector<float>()) << "tensor " << i;
  }
  // The running statistics moved twice, as the module's twice-run forward says.
  EXPECT_EQ(std::dynamic_pointer_cast<BatchNorm2d>(seq[1])->num_batches_tracked.item(), 2.0);
}

TEST(ModuleCuda, ToDeviceMovesEveryTensorAndMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(3);
  Net net;
  net.eval();
  Tensor x = randn({2, 2, 5, 5});
  const std::vector<float> cpu = net.forward(x).to_vector<float>();
  net.to(Device::cuda(0));
  for (const auto& [name, tensor] : net.state_dict()) EXPECT_EQ(tensor.device(), Device::cuda(0)) << name;
  const std::vector<float> gpu = net.forward(x.to(Device::cuda(0))).to_vector<float>();
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) EXPECT_NEAR(gpu[i], cpu[i], 1e-4f * (1 + std::abs(cpu[i])));
}

}  // namespace
}  // namespace se::nn
