#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "tests/engine/test_util.h"
#include "data/image_io.h"
#include "train/plot.h"

namespace se {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;

const Rgb kWhite{255, 255, 255}, kRed{220, 20, 20}, kBlue{20, 20, 220};

// The ink of one character rendered alone, as a set of (x, y) pixels.
std::set<std::pair<int, int>> ink_of(std::string_view text, bool vertical = false) {
  RgbImage image(60, 60, kWhite);
  draw_text(image, 4, 4, text, {0, 0, 0}, 1, vertical);
  std::set<std::pair<int, int>> ink;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      if (image.at(x, y) != kWhite) ink.insert({x, y});
    }
  }
  return ink;
}

TEST(PlotFont, EveryPrintableGlyphIsDistinctAndInsideItsCell) {
  std::set<std::set<std::pair<int, int>>> seen;
  for (char c = 33; c < 127; ++c) {
    const auto ink = ink_of(std::string(1, c));
    EXPECT_FALSE(ink.empty()) << "'" << c << "' draws nothing";
    for (const auto& [x, y] : ink) {
      EXPECT_TRUE(x >= 4 && x < 4 + kGlyphWidth && y >= 4 && y < 4 + kGlyphHeight) << "'" << c << "' leaves its cell";
    }
    EXPECT_TRUE(seen.insert(ink).second) << "'" << c << "' looks like an earlier character";
  }
  EXPECT_TRUE(ink_of(" ").empty());
  EXPECT_EQ(ink_of("\x01"), ink_of("?"));  // unprintable: '?'
  EXPECT_EQ(text_width("abc"), 17);
  EXPECT_EQ(text_width("abc", 2), 34);
  EXPECT_EQ(text_width(""), 0);
}

TEST(PlotFont, VerticalTextIsTheHorizontalTextRotated) {
  const auto horizontal = ink_of("mIoU"), vertical = ink_of("mIoU", true);
  ASSERT_EQ(horizontal.size(), vertical.size());
  // Rotating counter-clockwise maps (along, across) to (across, length - 1 - along).
  const int length = text_width("mIoU");
  std::set<std::pair<int, int>> rotated;
  for (const auto& [x, y] : horizontal) rotated.insert({4 + (y - 4), 4 + length - 1 - (x - 4)});
  EXPECT_EQ(rotated, vertical);
}

TEST(PlotTicks, NiceSteps) {
  auto expect_ticks = [](double lo, double hi, std::vector<double> expected) {
    std::vector<double> ticks = nice_ticks(lo, hi);
    ASSERT_EQ(ticks.size(), expected.size()) << lo << ".." << hi;
    for (size_t i = 0; i < ticks.size(); ++i) EXPECT_NEAR(ticks[i], expected[i], 1e-12) << lo << ".." << hi;
  };
  expect_ticks(0, 1, {0, 0.2, 0.4, 0.6, 0.8, 1.0});
  expect_ticks(0.13, 0.87, {0.0, 0.2, 0.4, 0.6, 0.8, 1.0});
  expect_ticks(0, 10000, {0, 2000, 4000, 6000, 8000, 10000});
  expect_ticks(-3, 7, {-4, -2, 0, 2, 4, 6, 8});
  expect_ticks(5, 5, {4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6});  // a flat curve gets a range of +-10%
  for (const auto& [lo, hi] : std::vector<std::pair<double, double>>{{0.0013, 0.0171}, {3.7, 1234.5}, {-1e-7, 0}}) {
    std::vector<double> t = nice_ticks(lo, hi);
    EXPECT_LE(t.front(), lo);
    EXPECT_GE(t.back(), hi);
    const double step = t[1] - t[0], mantissa = step / std::pow(10.0, std::floor(std::log10(step)));
    EXPECT_TRUE(std::abs(mantissa - 1) < 1e-9 || std::abs(mantissa - 2) < 1e-9 || std::abs(mantissa - 5) < 1e-9)
        << step;
  }
  EXPECT_EQ(format_tick(0.25, 0.05), "0.25");
  EXPECT_EQ(format_tick(0.4, 0.2), "0.4");
  EXPECT_EQ(format_tick(1500, 500), "1500");
  EXPECT_EQ(format_tick(2e-5, 1e-5), "2e-05");
  EXPECT_EQ(format_tick(0, 0.2), "0.0");
}

// Bounding box of the pixels of one colour.
struct Box {
  int x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;
  int count = 0;
};
Box box_of(const RgbImage& image, Rgb color) {
  Box b;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      if (image.at(x, y) != color) continue;
      b.x0 = std::min(b.x0, x), b.x1 = std::max(b.x1, x), b.y0 = std::min(b.y0, y), b.y1 = std::max(b.y1, y);
      ++b.count;
    }
  }
  return b;
}

TEST(Plot, CurvesAxesAndLegend) {
  // A falling red curve and a rising blue one with a gap (NaN).
  PlotSeries falling{"loss", {}, {}, kRed}, rising{"mIoU", {}, {}, kBlue};
  for (int i = 0; i <= 100; ++i) {
    falling.x.push_back(i * 10);
    falling.y.push_back(std::exp(-i / 30.0));
    rising.x.push_back(i * 10);
    rising.y.push_back(i >= 40 && i < 50 ? NAN : i / 100.0);
  }
  RgbImage image =
      render_line_plot({falling, rising}, {.title = "Loss", .y_label = "value", .width = 640, .height = 400});
  ASSERT_EQ(image.width, 640);
  ASSERT_EQ(image.height, 400);
  const Box red = box_of(image, kRed), blue = box_of(image, kBlue);
  ASSERT_GT(red.count, 200);
  ASSERT_GT(blue.count, 200);
  // Both curves span most of the plot's width; the red one starts high on the left.
  EXPECT_GT(red.x1 - red.x0, 400);
  EXPECT_GT(blue.x1 - blue.x0, 400);
  auto column_top = [&](int x, Rgb color) {
    for (int y = 0; y < image.height; ++y) {
      if (image.at(x, y) == color) return y;
    }
    return -1;
  };
  const int left_red = column_top(red.x0 + 2, kRed), right_red = column_top(red.x1 - 60, kRed);
  ASSERT_GE(left_red, 0);
  ASSERT_GE(right_red, 0);
  EXPECT_LT(left_red, right_red);  // y grows downwards: the falling curve starts higher
  // The NaN gap leaves blue columns empty in the middle of the blue curve.
  const int gap_x = blue.x0 + (blue.x1 - blue.x0) * 45 / 100;
  EXPECT_EQ(column_top(gap_x, kBlue), -1);
  // The axes: a long black vertical line left of the curves and a horizontal one below them.
  auto black_run = [&](bool vertical, int fixed) {
    int best = 0, run = 0;
    for (int i = 0; i < (vertical ? image.height : image.width); ++i) {
      const Rgb c = vertical ? image.at(fixed, i) : image.at(i, fixed);
      run = c == Rgb{0, 0, 0} ? run + 1 : 0;
      best = std::max(best, run);
    }
    return best;
  };
  int axis_x = -1;
  for (int x = 0; x <= red.x0 && axis_x < 0; ++x) {
    if (black_run(true, x) > 250) axis_x = x;
  }
  EXPECT_GE(axis_x, 0) << "no y axis";
  int axis_y = -1;
  for (int y = image.height - 1; y > red.y1 && axis_y < 0; --y) {
    if (black_run(false, y) > 500) axis_y = y;
  }
  EXPECT_GE(axis_y, 0) << "no x axis";
  // Title ink (black, scale 2) in the top rows, centred.
  const Box title = [&] {
    RgbImage top(image.width, 30, kWhite);
    for (int y = 0; y < 30; ++y) {
      for (int x = 0; x < image.width; ++x) top.set(x, y, image.at(x, y));
    }
    return box_of(top, {0, 0, 0});
  }();
  EXPECT_EQ(title.x1 - title.x0 + 1, text_width("Loss", 2));
  // The legend: with the labels removed, only pixels in the top-right quadrant change.
  falling.label.clear();
  rising.label.clear();
  RgbImage unlabelled =
      render_line_plot({falling, rising}, {.title = "Loss", .y_label = "value", .width = 640, .height = 400});
  int changed = 0;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      if (image.at(x, y) == unlabelled.at(x, y)) continue;
      ++changed;
      EXPECT_TRUE(x > image.width / 2 && y < image.height / 2) << "legend pixel at " << x << ", " << y;
    }
  }
  EXPECT_GT(changed, 100);
}

TEST(Plot, EmptyAndBadSeries) {
  RgbImage empty = render_line_plot({}, {});  // empty axes, no crash
  EXPECT_EQ(empty.width, 800);
  PlotSeries bad{"x", {1, 2}, {1}, kRed};
  expect_error([&] { render_line_plot({bad}, {}); }, "series 'x' has 2 x and 1 y values");
  expect_error([&] { render_line_plot({}, {.width = 50}); }, "expected at least 200x150");
  PlotSeries single{"one", {3}, {0.5}, kRed};
  EXPECT_GT(box_of(render_line_plot({single}, {}), kRed).count, 0);  // a lone point is drawn as a dot
}

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("se_plot_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(Plot, PngRoundTripThroughATemporaryFile) {
  const fs::path dir = fresh_dir("png");
  RgbImage image(37, 23, kWhite);
  for (int y = 0; y < 23; ++y) {
    for (int x = 0; x < 37; ++x) image.set(x, y, {static_cast<uint8_t>(x * 7), static_cast<uint8_t>(y * 11), 99});
  }
  const std::string path = (dir / "p.png").string();
  std::ofstream(path) << "old content";  // replaced atomically
  write_png(path, image);
  const Image back = read_image(path);  // an independent decoder (stb) reads what we wrote
  EXPECT_EQ(back.width, 37);
  EXPECT_EQ(back.height, 23);
  EXPECT_EQ(back.pixels, image.pixels);
  for (const auto& entry : fs::directory_iterator(dir)) {
    EXPECT_EQ(entry.path().filename(), "p.png") << "left behind: " << entry.path();
  }
  expect_error([&] { write_png((dir / "missing" / "p.png").string(), image); }, "cannot create a temporary file");
  fs::remove_all(dir);
}

TEST(Plot, TrainingCurves) {
  const fs::path dir = fresh_dir("curves");
  TrainingCurves curves;
  for (int i = 0; i < 50; ++i) curves.train_loss.push_back({i * 20.0, 2.0 / (1 + i)});
  save_training_curves((dir / "plots").string(), curves);
  EXPECT_TRUE(fs::exists(dir / "plots" / "loss.png"));
  EXPECT_FALSE(fs::exists(dir / "plots" / "miou.png"));  // no mIoU points
  curves.miou = {{200, 0.2}, {400, 0.35}, {600, 0.41}};
  curves.val_loss = {{200, 1.0}, {400, 0.8}, {600, 0.7}};
  save_training_curves((dir / "plots").string(), curves);
  const Image miou = read_image((dir / "plots" / "miou.png").string());
  EXPECT_EQ(miou.width, 800);
  EXPECT_EQ(miou.height, 480);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace se
