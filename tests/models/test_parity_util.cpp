#include <gtest/gtest.h>

#include "tests/models/parity_util.h"

namespace se::testing {
namespace {

// Reference values printed by tools/fixtures/deterministic_weights.py (float hex), so the C++ twin
// provably produces the same weights as the PyTorch side of every parity fixture.
TEST(ParityUtil, MatchesThePythonFormula) {
  EXPECT_EQ(crc32_of("backbone.conv1.weight"), 269001110u);
  struct Case {
    const char* name;
    Shape shape;
    float first, second, last;
  };
  const Case cases[] = {
      {"backbone.conv1.weight", {4, 3, 2, 2}, 0x1.48d556p-2f, 0x1.ef659p-2f, -0x1.fd5accp-2f},
      {"bn1.running_var", {3}, 0x1.7c9d42p+0f, 0x1.40843ap+0f, 0x1.03b9a2p+0f},
      {"bn1.weight", {3}, 0x1.e13502p-1f, 0x1.fe9a7p-1f, 0x1.0e4212p+0f},
      {"fc.bias", {2}, 0x1.946f86p-5f, 0x1.6f32c6p-5f, 0x1.6f32c6p-5f},
  };
  for (const Case& c : cases) {
    const std::vector<float> v = deterministic_values(c.name, c.shape);
    EXPECT_EQ(v[0], c.first) << c.name;
    EXPECT_EQ(v[1], c.second) << c.name;
    EXPECT_EQ(v.back(), c.last) << c.name;
  }
}

}  // namespace
}  // namespace se::testing
