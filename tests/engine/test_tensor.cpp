#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

template <typename T>
std::vector<T> values(const Tensor& t) {
  return t.to_vector<T>();
}

using testing::error_of;

TEST(TensorCreation, FillsAndShapes) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.strides(), (Shape{3, 1}));
  EXPECT_EQ(values<float>(z), std::vector<float>(6, 0.0f));
  EXPECT_EQ(values<int64_t>(full({4}, 7, {DType::i64})), (std::vector<int64_t>{7, 7, 7, 7}));
  EXPECT_EQ(values<double>(arange(0, 1, 0.25, {DType::f64})), (std::vector<double>{0, 0.25, 0.5, 0.75}));
  EXPECT_EQ(arange(10).numel(), 10);
  EXPECT_EQ(arange(1, 2.5, 0.5).numel(), 3);  // ceil((2.5 - 1) / 0.5)
  Tensor v = from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {3, 2}, {DType::f16});
  EXPECT_EQ(v.dtype(), DType::f16);
  EXPECT_EQ(values<float>(v), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(scalar_tensor(2.5).dim(), 0);
  EXPECT_EQ(scalar_tensor(2.5).item(), 2.5);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(empty({3}).data_ptr()) % 64, 0u);
}

TEST(TensorCreation, RejectsBadArguments) {
  EXPECT_NE(error_of([] { empty({2, -1}); }).find("negative size -1 in shape (2, -1)"), std::string::npos);
  EXPECT_NE(error_of([] { from_vector<float>({1, 2, 3}, {2, 2}); }).find("3 values do not fill shape (2, 2)"),
            std::string::npos);
  EXPECT_NE(error_of([] { arange(0, 5, -1); }).find("step -1 moves away"), std::string::npos);
  EXPECT_NE(error_of([] { rand({2}, {DType::i32}); }).find("rand: dtype i32 is not supported"), std::string::npos);
}

TEST(TensorRandom, IsSeededAndHasTheRightMoments) {
  manual_seed(7);
  std::vector<float> a = values<float>(rand({1000}));
  manual_seed(7);
  std::vector<float> b = values<float>(rand({1000}));
  EXPECT_EQ(a, b);
  std::vector<float> c = values<float>(rand({1000}));
  EXPECT_NE(a, c);  // the generator advanced
  manual_seed(3);
  std::vector<double> n = values<double>(randn({20000}, {DType::f64}));
  double mean = 0, sq = 0;
  for (double x : n) {
    mean += x;
    sq += x * x;
  }
  EXPECT_NEAR(mean / n.size(), 0.0, 0.03);
  EXPECT_NEAR(sq / n.size(), 1.0, 0.03);
}

// contiguous() of permuted views, which the CPU copies in tiles (kernels/cpu/copy.cpp): every element
// where index arithmetic puts it, for sizes around and past the 32-element tile, 2-4 dims, several outer
// dims, and with a conversion on the way (f32 -> f64, f32 -> f16).
TEST(TensorViews, ContiguousOfPermutedViewsPutsEveryElementInPlace) {
  struct Case {
    Shape shape;
    std::vector<int64_t> order;
  };
  const Case cases[] = {{{33, 70}, {1, 0}},
                        {{2, 256, 45}, {0, 2, 1}},
                        {{3, 5, 40, 33}, {0, 2, 3, 1}},
                        {{4, 31, 7, 65}, {3, 1, 0, 2}},
                        {{1, 1, 300}, {2, 0, 1}},
                        {{2, 3, 64, 64}, {2, 0, 3, 1}}};
  for (const Case& c : cases) {
    const Tensor x = arange(0, static_cast<double>(shape_numel(c.shape))).reshape(c.shape);
    const Tensor p = x.permute(c.order);
    // The element at multi-index i of p is x's element sum_d i[d] * x.stride(order[d]), that is its value.
    std::vector<float> want(static_cast<size_t>(p.numel()));
    std::vector<int64_t> index(p.dim(), 0);
    for (float& w : want) {
      int64_t offset = 0;
      for (int64_t d = 0; d < p.dim(); ++d) offset += index[d] * x.stride(c.order[d]);
      w = static_cast<float>(offset);
      for (int64_t d = p.dim() - 1; d >= 0 && ++index[d] == p.size(d); --d) index[d] = 0;
    }
    EXPECT_EQ(values<float>(p.contiguous()), want) << shape_str(c.shape);
    const std::vector<double> as_f64 = values<double>(p.to(DType::f64));
    EXPECT_EQ(std::vector<float>(as_f64.begin(), as_f64.end()), want) << shape_str(c.shape) << " to f64";
    const Tensor small = (x - 1000.0).permute(c.order);  // within f16's exact integers (|v| <= 2048)
    if (x.numel() <= 3000) {
      std::vector<float> want_small = want;
      for (float& w : want_small) w -= 1000.0f;
      EXPECT_EQ(values<float>(small.to(DType::f16)), want_small) << shape_str(c.shape) << " to f16";
    }
  }
}

TEST(TensorViews, ShareStorageAndIndexCorrectly) {
  Tensor x = arange(24).reshape({2, 3, 4});
  Tensor p = x.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.storage(), x.storage());
  EXPECT_FALSE(p.is_contiguous());
  // p[i][j][k] = x[j][k][i] = 12 j + 4 k + i
  std::vector<float> pv = values<float>(p);
  EXPECT_EQ(pv[0 * 6 + 1 * 3 + 2], 12 + 8 + 0);
  EXPECT_EQ(pv[3 * 6 + 0 * 3 + 1], 0 + 4 + 3);
  Tensor s = x.slice(2, 1, 4, 2);  // columns 1 and 3
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(values<float>(s.select(0, 1).select(0, 2)), (std::vector<float>{21, 23}));
  EXPECT_EQ(values<float>(x.narrow(1, 1, 1).flatten()), (std::vector<float>{4, 5, 6, 7, 16, 17, 18, 19}));
  Tensor e = from_vector<float>({1, 2, 3}, {3, 1}).expand({3, 4});
  EXPECT_EQ(e.strides(), (Shape{1, 0}));
  EXPECT_EQ(values<float>(e.select(1, 3)), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(x.unsqueeze(1).shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(x.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  EXPECT_EQ(x.unsqueeze(1).squeeze().shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(x.select(0, 0).t().shape(), (Shape{4, 3}));
}

TEST(TensorViews, ViewNeedsCompatibleStridesReshapeCopies) {
  Tensor x = arange(6).reshape({2, 3});
  Tensor t = x.t();
  EXPECT_NE(error_of([&] { t.view({6}); }).find("is not compatible with the strides"), std::string::npos);
  Tensor r = t.reshape({6});
  EXPECT_NE(r.storage(), x.storage());
  EXPECT_EQ(values<float>(r), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(x.view({3, -1}).shape(), (Shape{3, 2}));
  EXPECT_EQ(x.view({3, -1}).storage(), x.storage());
  EXPECT_NE(error_of([&] { x.view({4, -1}); }).find("invalid for 6 elements"), std::string::npos);
  EXPECT_NE(error_of([&] { x.permute({0, 0}); }).find("appears twice"), std::string::npos);
  EXPECT_NE(error_of([&] { x.size(2); }).find("dim 2 is out of range for a tensor with 2 dims"), std::string::npos);
  EXPECT_NE(error_of([&] { x.expand({3, 3}); }).find("cannot expand (2, 3) to (3, 3)"), std::string::npos);
}

TEST(TensorCopies, ContiguousChannelsLastCastAndCopy) {
  Tensor x = arange(2 * 3 * 2 * 2).reshape({2, 3, 2, 2});
  Tensor cl = x.contiguous(MemoryFormat::channels_last);
  EXPECT_TRUE(cl.is_contiguous(MemoryFormat::channels_last));
  EXPECT_FALSE(cl.is_contiguous());
  EXPECT_EQ(cl.strides(), (Shape{12, 1, 6, 3}));
  EXPECT_EQ(values<float>(cl), values<float>(x));  // same logical values
  EXPECT_TRUE(cl.clone().is_contiguous(MemoryFormat::channels_last)) << "clone preserves a dense layout";
  EXPECT_EQ(values<int32_t>(from_vector<float>({-1.7f, 2.5f, 3.9f}, {3}).to(DType::i32)),
            (std::vector<int32_t>{-1, 2, 3}));
  EXPECT_EQ(values<bool>(from_vector<float>({0.0f, 0.5f}, {2}).to(DType::boolean)), (std::vector<bool>{false, true}));
  EXPECT_EQ(values<float>(from_vector<float>({1.0f / 3}, {1}).to(DType::bf16)), (std::vector<float>{0.333984375f}));

  Tensor dst = zeros({2, 3});
  dst.copy_(from_vector<double>({1, 2, 3}, {3}));  // broadcasts and casts
  EXPECT_EQ(values<float>(dst), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  dst.t().copy_(from_vector<float>({9, 8}, {2}));  // into a non-contiguous view
  EXPECT_EQ(values<float>(dst), (std::vector<float>{9, 9, 9, 8, 8, 8}));
  const uint64_t version = dst.storage()->version();
  dst.fill_(1);
  EXPECT_GT(dst.storage()->version(), version);
}

// A source overlapping its destination in one storage is read whole before anything is written (NumPy's
// semantics): shifts both ways, a transpose onto itself and a cast in place of its neighbour, on every
// device this build has.
TEST(TensorConversion, CopyFromAnOverlappingViewReadsTheSourceFirst) {
  std::vector<Device> devices = {Device::cpu()};
  if (cuda_available()) devices.push_back(Device::cuda());
  for (const Device& device : devices) {
    Tensor x = arange(8, {DType::f32, device});
    x.slice(0, 1, 8).copy_(x.slice(0, 0, 7));  // shift right: a forward loop would smear x[0]
    EXPECT_EQ(values<float>(x), (std::vector<float>{0, 0, 1, 2, 3, 4, 5, 6})) << device.str();
    Tensor y = arange(8, {DType::f32, device});
    y.slice(0, 0, 7).copy_(y.slice(0, 1, 8));  // shift left
    EXPECT_EQ(values<float>(y), (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 7})) << device.str();
    Tensor square = arange(9, {DType::f32, device}).reshape({3, 3});
    square.copy_(square.t());  // every off-diagonal element is read and written by different threads
    EXPECT_EQ(values<float>(square), (std::vector<float>{0, 3, 6, 1, 4, 7, 2, 5, 8})) << device.str();
    Tensor same = arange(4, {DType::f32, device});
    same.copy_(same);  // the same elements: nothing to stage, nothing changes
    EXPECT_EQ(values<float>(same), (std::vector<float>{0, 1, 2, 3})) << device.str();
  }
}

TEST(TensorPrinting, LooksLikePyTorch) {
  EXPECT_EQ(from_vector<float>({1, 2, 3, 4}, {2, 2}).str(), "tensor([[1., 2.],\n        [3., 4.]])");
  EXPECT_EQ(from_vector<float>({0.5f, -1.25f}, {2}).str(), "tensor([ 0.5000, -1.2500])");
  EXPECT_EQ(from_vector<int64_t>({3, 10}, {2}).str(), "tensor([ 3, 10])");
  EXPECT_EQ(from_vector<int32_t>({3}, {1}).str(), "tensor([3], dtype=i32)");
  EXPECT_EQ(from_vector<bool>({true, false}, {2}).str(), "tensor([ True, False], dtype=bool)");
  EXPECT_EQ(scalar_tensor(2, {DType::f16}).str(), "tensor(2., dtype=f16)");
  EXPECT_EQ(zeros({1}, {.requires_grad = true}).str(), "tensor([0.], requires_grad=True)");
  std::string big = arange(2000).str();
  EXPECT_NE(big.find("0.,    1.,    2., ..., 1997., 1998., 1999.]"), std::string::npos) << big;
  EXPECT_NE(big.find("size=(2000,)"), std::string::npos);
}

TEST(CudaTensor, RoundTripsAndRandomMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Tensor x = arange(24, {DType::f32}).reshape({2, 3, 4});
  Tensor g = x.to(Device::cuda());
  EXPECT_TRUE(g.device().is_cuda());
  EXPECT_EQ(values<float>(g), values<float>(x));
  EXPECT_EQ(values<float>(g.permute({2, 0, 1}).contiguous()), values<float>(x.permute({2, 0, 1}).contiguous()));
  Tensor image = x.reshape({2, 3, 2, 2});
  Tensor image_cl = image.to(Device::cuda()).contiguous(MemoryFormat::channels_last);
  EXPECT_TRUE(image_cl.is_contiguous(MemoryFormat::channels_last));
  EXPECT_EQ(values<float>(image_cl), values<float>(image));
  EXPECT_EQ(image_cl.to(Device::cpu()).strides(), (Shape{12, 1, 6, 3})) << "to() preserves a dense layout";
  EXPECT_EQ(values<float>(g.to(DType::bf16)), values<float>(x.to(DType::bf16)));
  Tensor host = zeros({2, 3});
  host.copy_(g.select(0, 1).slice(1, 0, 2).t());  // a strided CUDA view into a CPU tensor
  EXPECT_EQ(values<float>(host), (std::vector<float>{12, 16, 20, 13, 17, 21}));
  Tensor device_dst = zeros({2, 3}, {.device = Device::cuda()});
  device_dst.t().copy_(x.select(0, 0).slice(1, 0, 2));  // a strided CPU view into a CUDA view
  EXPECT_EQ(values<float>(device_dst), (std::vector<float>{0, 4, 8, 1, 5, 9}));
  manual_seed(11);
  std::vector<float> cpu_u = values<float>(rand({1001}));
  std::vector<float> cpu_n = values<float>(randn({1001}));
  manual_seed(11);
  EXPECT_EQ(values<float>(rand({1001}, {.device = Device::cuda()})), cpu_u);
  EXPECT_EQ(values<float>(randn({1001}, {.device = Device::cuda()})), cpu_n);
  EXPECT_EQ(values<float>(arange(3, 10, 2, {.device = Device::cuda()})), (std::vector<float>{3, 5, 7, 9}));
}

}  // namespace
}  // namespace se
