// The README's module example, built and run as a test so the README stays true: a small network
// from nn layers, a few SGD steps, and a state_dict round trip through a safetensors file.
#include <cstdio>
#include <iostream>
#include <memory>

#include "engine/ops.h"
#include "nn/layers.h"
#include "nn/safetensors.h"
#include "train/optimizer.h"

using namespace se;

int main() {
  manual_seed(0);
  auto net = std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::UnaryModule>>{
      std::make_shared<nn::Conv2d>(3, 16, 3, nn::Conv2dOptions{.padding = 1, .bias = false}),
      std::make_shared<nn::BatchNorm2d>(16), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Conv2d>(16, 4, 1)});  // 4 classes
  net->to(best_device());
  std::cout << net->str() << "\n" << net->num_parameters() << " parameters\n";

  Tensor images = randn({2, 3, 16, 16}, {.device = best_device()});  // (N, 3, H, W)
  Tensor masks = (rand({2, 16, 16}, {.device = best_device()}) * 4.0).to(DType::i64);  // (N, H, W)
  Optimizer sgd(make_param_groups(net->named_parameters()), {.type = OptimizerType::sgd, .lr = 0.1, .momentum = 0.9});
  double first = 0, last = 0;
  for (int step = 0; step < 10; ++step) {
    Tensor loss = cross_entropy(net->forward(images), masks);
    loss.backward();
    sgd.step();
    sgd.zero_grad();
    (step == 0 ? first : last) = loss.item();
  }
  std::cout << "loss " << first << " -> " << last << "\n";

  nn::save_module(*net, "module_example.safetensors");  // opens in Python: safetensors.torch.load_file
  nn::load_module(*net, "module_example.safetensors");  // strict: names and shapes must match
  std::remove("module_example.safetensors");
  return last < first ? 0 : 1;
}
