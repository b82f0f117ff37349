// The README's library example, built and run as a test so the README stays true.
#include <iostream>

#include "engine/autograd.h"
#include "engine/ops.h"

using namespace se;

int main() {
  Device device = best_device();  // cuda:0 when there is one, else cpu
  manual_seed(0);
  Tensor w = randn({3, 4}, {.device = device, .requires_grad = true});
  Tensor x = randn({8, 3}, {.device = device});
  Tensor loss = mean(relu(matmul(x, w)));  // differentiable ops on any device
  loss.backward();
  std::cout << "device: " << device << "\nloss: " << loss.item() << "\ngrad:\n" << w.grad() << "\n";
  return w.grad().shape() == w.shape() ? 0 : 1;
}
