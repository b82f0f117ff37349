// PNG line plots of training curves (loss, mIoU), drawn by our own code into an RGB buffer: axes,
// "nice" ticks with grid lines, labels in a built-in 5x8 bitmap font, a legend. Written with
// data/image_io.h's PNG writer (temporary file renamed into place), so an existing plot is never
// left half-written.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/image.h"  // Rgb

namespace se {


struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // (height, width, 3), row-major

  RgbImage() = default;
  RgbImage(int width, int height, Rgb fill);
  Rgb at(int x, int y) const;
  void set(int x, int y, Rgb color);  // ignores points outside the image
};

// The built-in font: 5x8 cells (the 8th row holds descenders), advance 6 pixels per character at
// scale 1. Characters outside printable ASCII draw as '?'.
inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 8;
inline constexpr int kGlyphAdvance = 6;
int text_width(std::string_view text, int scale = 1);
// (x, y) is the top-left corner of the first cell. vertical: rotated 90 degrees counter-clockwise,
// reading bottom to top, with (x, y) the top-left of the rotated text's box.
void draw_text(RgbImage& image, int x, int y, std::string_view text, Rgb color, int scale = 1, bool vertical = false);

// Tick positions at 1, 2 or 5 times a power of ten covering [lo, hi], about `target` of them; the
// first tick <= lo and the last >= hi.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);
// A tick label with as many decimals as the tick spacing needs ("0.25", "1500", "1e-05").
std::string format_tick(double value, double spacing);

struct PlotSeries {
  std::string label = {};
  std::vector<double> x, y;  // same length; non-finite points break the line
  Rgb color{31, 119, 180};
};

struct PlotOptions {
  std::string title = {};
  std::string x_label = "iteration";
  std::string y_label = {};
  int width = 800, height = 480;
};

RgbImage render_line_plot(const std::vector<PlotSeries>& series, const PlotOptions& options);
// Writes `image` as PNG at `path` atomically (a temporary file in the same directory, then a rename).
void write_png(const std::string& path, const RgbImage& image);
void save_line_plot(const std::string& path, const std::vector<PlotSeries>& series, const PlotOptions& options);

// The end-of-training plots: <dir>/loss.png (train loss, and val loss when given) and
// <dir>/miou.png (when mIoU points are given). Each vector holds (iteration, value) pairs.
struct TrainingCurves {
  std::vector<std::pair<double, double>> train_loss, val_loss, miou;
};
void save_training_curves(const std::string& dir, const TrainingCurves& curves);

}  // namespace se
