#include "train/plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "data/image_io.h"

namespace se {

// ---- font

namespace {

// Our 5x8 font for printable ASCII (32..126): eight rows of five columns, '#' for ink, rows
// separated by '|'. Rows 0-6 hold capitals and digits; row 7 the descenders of g, j, p, q, y.
constexpr const char* kGlyphs[95] = {
    "     |     |     |     |     |     |     |     ",  // ' '
    "  #  |  #  |  #  |  #  |  #  |     |  #  |     ",  // !
    " # # | # # |     |     |     |     |     |     ",  // "
    " # # |#####| # # | # # | # # |#####| # # |     ",  // #
    "  #  | ####|# #  | ### |  # #|#### |  #  |     ",  // $
    "##   |##  #|   # |  #  | #   |#  ##|   ##|     ",  // %
    " ##  |#  # |# #  | #   |# # #|#  # | ## #|     ",  // &
    "  #  |  #  |     |     |     |     |     |     ",  // '
    "   # |  #  | #   | #   | #   |  #  |   # |     ",  // (
    " #   |  #  |   # |   # |   # |  #  | #   |     ",  // )
    "     |  #  |# # #| ### |# # #|  #  |     |     ",  // *
    "     |  #  |  #  |#####|  #  |  #  |     |     ",  // +
    "     |     |     |     |     |  ## |  #  | #   ",  // ,
    "     |     |     |#####|     |     |     |     ",  // -
    "     |     |     |     |     | ##  | ##  |     ",  // .
    "     |    #|   # |  #  | #   |#    |     |     ",  // /
    " ### |#   #|#  ##|# # #|##  #|#   #| ### |     ",  // 0
    "  #  | ##  |  #  |  #  |  #  |  #  | ### |     ",  // 1
    " ### |#   #|    #|   # |  #  | #   |#####|     ",  // 2
    "#####|   # |  #  |   # |    #|#   #| ### |     ",  // 3
    "   # |  ## | # # |#  # |#####|   # |   # |     ",  // 4
    "#####|#    |#### |    #|    #|#   #| ### |     ",  // 5
    "  ## | #   |#    |#### |#   #|#   #| ### |     ",  // 6
    "#####|    #|   # |  #  | #   | #   | #   |     ",  // 7
    " ### |#   #|#   #| ### |#   #|#   #| ### |     ",  // 8
    " ### |#   #|#   #| ####|    #|   # | ##  |     ",  // 9
    "     | ##  | ##  |     | ##  | ##  |     |     ",  // :
    "     | ##  | ##  |     | ##  |  #  | #   |     ",  // ;
    "   # |  #  | #   |#    | #   |  #  |   # |     ",  // <
    "     |     |#####|     |#####|     |     |     ",  // =
    " #   |  #  |   # |    #|   # |  #  | #   |     ",  // >
    " ### |#   #|    #|   # |  #  |     |  #  |     ",  // ?
    " ### |#   #|    #| ## #|# # #|# # #| ### |     ",  // @
    " ### |#   #|#   #|#####|#   #|#   #|#   #|     ",  // A
    "#### |#   #|#   #|#### |#   #|#   #|#### |     ",  // B
    " ### |#   #|#    |#    |#    |#   #| ### |     ",  // C
    "###  |#  # |#   #|#   #|#   #|#  # |###  |     ",  // D
    "#####|#    |#    |#### |#    |#    |#####|     ",  // E
    "#####|#    |#    |#### |#    |#    |#    |     ",  // F
    " ### |#   #|#    |# ###|#   #|#   #| ####|     ",  // G
    "#   #|#   #|#   #|#####|#   #|#   #|#   #|     ",  // H
    " ### |  #  |  #  |  #  |  #  |  #  | ### |     ",  // I
    "  ###|   # |   # |   # |   # |#  # | ##  |     ",  // J
    "#   #|#  # |# #  |##   |# #  |#  # |#   #|     ",  // K
    "#    |#    |#    |#    |#    |#    |#####|     ",  // L
    "#   #|## ##|# # #|# # #|#   #|#   #|#   #|     ",  // M
    "#   #|#   #|##  #|# # #|#  ##|#   #|#   #|     ",  // N
    " ### |#   #|#   #|#   #|#   #|#   #| ### |     ",  // O
    "#### |#   #|#   #|#### |#    |#    |#    |     ",  // P
    " ### |#   #|#   #|#   #|# # #|#  # | ## #|     ",  // Q
    "#### |#   #|#   #|#### |# #  |#  # |#   #|     ",  // R
    " ####|#    |#    | ### |    #|    #|#### |     ",  // S
    "#####|  #  |  #  |  #  |  #  |  #  |  #  |     ",  // T
    "#   #|#   #|#   #|#   #|#   #|#   #| ### |     ",  // U
    "#   #|#   #|#   #|#   #|#   #| # # |  #  |     ",  // V
    "#   #|#   #|#   #|# # #|# # #|# # #| # # |     ",  // W
    "#   #|#   #| # # |  #  | # # |#   #|#   #|     ",  // X
    "#   #|#   #| # # |  #  |  #  |  #  |  #  |     ",  // Y
    "#####|    #|   # |  #  | #   |#    |#####|     ",  // Z
    " ### | #   | #   | #   | #   | #   | ### |     ",  // [
    "     |#    | #   |  #  |   # |    #|     |     ",  // backslash
    " ### |   # |   # |   # |   # |   # | ### |     ",  // ]
    "  #  | # # |#   #|     |     |     |     |     ",  // ^
    "     |     |     |     |     |     |#####|     ",  // _
    " #   |  #  |     |     |     |     |     |     ",  // `
    "     |     | ### |    #| ####|#   #| ####|     ",  // a
    "#    |#    |# ## |##  #|#   #|#   #|#### |     ",  // b
    "     |     | ### |#    |#    |#   #| ### |     ",  // c
    "    #|    #| ## #|#  ##|#   #|#   #| ####|     ",  // d
    "     |     | ### |#   #|#####|#    | ### |     ",  // e
    "  ## | #  #| #   |###  | #   | #   | #   |     ",  // f
    "     |     | ####|#   #|#   #| ####|    #| ### ",  // g
    "#    |#    |# ## |##  #|#   #|#   #|#   #|     ",  // h
    "  #  |     | ##  |  #  |  #  |  #  | ### |     ",  // i
    "   # |     |  ## |   # |   # |   # |#  # | ##  ",  // j
    "#    |#    |#  # |# #  |##   |# #  |#  # |     ",  // k
    " ##  |  #  |  #  |  #  |  #  |  #  | ### |     ",  // l
    "     |     |## # |# # #|# # #|#   #|#   #|     ",  // m
    "     |     |# ## |##  #|#   #|#   #|#   #|     ",  // n
    "     |     | ### |#   #|#   #|#   #| ### |     ",  // o
    "     |     |#### |#   #|#   #|#### |#    |#    ",  // p
    "     |     | ####|#   #|#   #| ####|    #|    #",  // q
    "     |     |# ## |##  #|#    |#    |#    |     ",  // r
    "     |     | ####|#    | ### |    #|#### |     ",  // s
    " #   | #   |###  | #   | #   | #  #|  ## |     ",  // t
    "     |     |#   #|#   #|#   #|#  ##| ## #|     ",  // u
    "     |     |#   #|#   #|#   #| # # |  #  |     ",  // v
    "     |     |#   #|#   #|# # #|# # #| # # |     ",  // w
    "     |     |#   #| # # |  #  | # # |#   #|     ",  // x
    "     |     |#   #|#   #|#   #| ####|    #| ### ",  // y
    "     |     |#####|   # |  #  | #   |#####|     ",  // z
    "   # |  #  |  #  | #   |  #  |  #  |   # |     ",  // {
    "  #  |  #  |  #  |  #  |  #  |  #  |  #  |     ",  // |
    " #   |  #  |  #  |   # |  #  |  #  | #   |     ",  // }
    "     |     | #   |# # #|   # |     |     |     ",  // ~
};

// Rows as bit masks (bit 4 = leftmost column), decoded once from the table above.
using Glyph = std::array<uint8_t, kGlyphHeight>;

const std::array<Glyph, 95>& glyphs() {
  static const std::array<Glyph, 95> table = [] {
    std::array<Glyph, 95> out{};
    for (size_t c = 0; c < 95; ++c) {
      const std::string_view rows = kGlyphs[c];
      SE_CHECK(rows.size() == kGlyphHeight * (kGlyphWidth + 1) - 1, "plot font: glyph ", c + 32, " is malformed");
      for (int r = 0; r < kGlyphHeight; ++r) {
        for (int col = 0; col < kGlyphWidth; ++col) {
          if (rows[static_cast<size_t>(r * (kGlyphWidth + 1) + col)] == '#') out[c][r] |= uint8_t(1u << (4 - col));
        }
      }
    }
    return out;
  }();
  return table;
}

const Glyph& glyph_of(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return glyphs()[u >= 32 && u <= 126 ? u - 32 : '?' - 32];
}

}  // namespace

RgbImage::RgbImage(int w, int h, Rgb fill) : width(w), height(h), pixels(static_cast<size_t>(w) * h * 3) {
  SE_CHECK(w > 0 && h > 0, "RgbImage: size ", w, "x", h, " (expected positive)");
  for (size_t i = 0; i < pixels.size(); i += 3) pixels[i] = fill[0], pixels[i + 1] = fill[1], pixels[i + 2] = fill[2];
}

Rgb RgbImage::at(int x, int y) const {
  SE_CHECK(x >= 0 && x < width && y >= 0 && y < height, "RgbImage::at(", x, ", ", y, ") outside ", width, "x", height);
  const size_t i = (static_cast<size_t>(y) * width + x) * 3;
  return {pixels[i], pixels[i + 1], pixels[i + 2]};
}

void RgbImage::set(int x, int y, Rgb color) {
  if (x < 0 || x >= width || y < 0 || y >= height) return;
  const size_t i = (static_cast<size_t>(y) * width + x) * 3;
  pixels[i] = color[0], pixels[i + 1] = color[1], pixels[i + 2] = color[2];
}

int text_width(std::string_view text, int scale) {
  return text.empty() ? 0 : (static_cast<int>(text.size()) * kGlyphAdvance - 1) * scale;
}

void draw_text(RgbImage& image, int x, int y, std::string_view text, Rgb color, int scale, bool vertical) {
  const int length = text_width(text, scale);
  for (size_t i = 0; i < text.size(); ++i) {
    const Glyph& g = glyph_of(text[i]);
    for (int r = 0; r < kGlyphHeight; ++r) {
      for (int c = 0; c < kGlyphWidth; ++c) {
        if (!(g[r] >> (4 - c) & 1)) continue;
        // Horizontal position along the text and vertical offset within the line, in pixels.
        const int along = static_cast<int>(i) * kGlyphAdvance * scale + c * scale;
        const int across = r * scale;
        for (int dy = 0; dy < scale; ++dy) {
          for (int dx = 0; dx < scale; ++dx) {
            if (vertical) {
              image.set(x + across + dy, y + length - 1 - (along + dx), color);
            } else {
              image.set(x + along + dx, y + across + dy, color);
            }
          }
        }
      }
    }
  }
}

// ---- ticks

std::vector<double> nice_ticks(double lo, double hi, int target) {
  SE_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi && target >= 2, "nice_ticks: range [", lo, ", ", hi,
           "] with ", target, " ticks");
  if (hi == lo) {
    const double pad = lo == 0.0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  const double raw = (hi - lo) / (target - 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude * 10;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * magnitude >= raw) {
      step = m * magnitude;
      break;
    }
  }
  std::vector<double> ticks;
  const double first = std::floor(lo / step + 1e-9) * step;
  for (double t = first; t < hi + step * (1 - 1e-9); t += step) {
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);  // no "-0" or 1e-17 at zero
    if (ticks.size() > 1000) break;
  }
  return ticks;
}

std::string format_tick(double value, double spacing) {
  char text[32];
  const double magnitude = std::abs(spacing);
  if (magnitude != 0.0 && (magnitude < 1e-3 || magnitude >= 1e6)) {
    std::snprintf(text, sizeof(text), "%.3g", value);
  } else {
    const int decimals =
        magnitude == 0.0 ? 0 : std::max(0, static_cast<int>(-std::floor(std::log10(magnitude) + 1e-9)));
    std::snprintf(text, sizeof(text), "%.*f", decimals, value);
  }
  return text;
}

// ---- plotting

namespace {

const Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kGrid{225, 225, 225}, kText{40, 40, 40};

void draw_line(RgbImage& image, int x0, int y0, int x1, int y1, Rgb color, int thickness) {
  // Bresenham, with a square pen of `thickness` pixels.
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  const int lo = -(thickness - 1) / 2, hi = thickness / 2;
  while (true) {
    for (int oy = lo; oy <= hi; ++oy) {
      for (int ox = lo; ox <= hi; ++ox) image.set(x0 + ox, y0 + oy, color);
    }
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

void fill_rect(RgbImage& image, int x0, int y0, int x1, int y1, Rgb color) {
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) image.set(x, y, color);
  }
}

}  // namespace

RgbImage render_line_plot(const std::vector<PlotSeries>& series, const PlotOptions& options) {
  SE_CHECK(options.width >= 200 && options.height >= 150, "render_line_plot: size ", options.width, "x", options.height,
           " (expected at least 200x150)");
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  for (const PlotSeries& s : series) {
    SE_CHECK(s.x.size() == s.y.size(), "render_line_plot: series '", s.label, "' has ", s.x.size(), " x and ",
             s.y.size(), " y values");
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]), y_hi = std::max(y_hi, s.y[i]);
    }
  }
  if (x_lo > x_hi) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;  // nothing to draw: empty axes
  const std::vector<double> x_ticks = nice_ticks(x_lo, x_hi), y_ticks = nice_ticks(y_lo, y_hi);
  const double x_min = x_ticks.front(), x_max = x_ticks.back(), y_min = y_ticks.front(), y_max = y_ticks.back();
  const double x_step = x_ticks.size() > 1 ? x_ticks[1] - x_ticks[0] : 1.0;
  const double y_step = y_ticks.size() > 1 ? y_ticks[1] - y_ticks[0] : 1.0;

  RgbImage image(options.width, options.height, kWhite);
  // The plot area, leaving room for the title, tick labels and axis labels.
  int widest_y_label = 0;
  for (double t : y_ticks) widest_y_label = std::max(widest_y_label, text_width(format_tick(t, y_step)));
  const int left = 12 + kGlyphHeight + 8 + widest_y_label + 6;
  const int right = options.width - 20;
  const int top = options.title.empty() ? 16 : 16 + 2 * kGlyphHeight + 8;
  const int bottom = options.height - (8 + kGlyphHeight + 6 + kGlyphHeight + 12);
  auto px = [&](double x) {
    return left + static_cast<int>(std::lround((x - x_min) / (x_max - x_min) * (right - left)));
  };
  auto py = [&](double y) {
    return bottom - static_cast<int>(std::lround((y - y_min) / (y_max - y_min) * (bottom - top)));
  };

  // Grid, ticks and their labels.
  for (double t : x_ticks) {
    const int x = px(t);
    draw_line(image, x, top, x, bottom, kGrid, 1);
    draw_line(image, x, bottom, x, bottom + 4, kBlack, 1);
    const std::string label = format_tick(t, x_step);
    draw_text(image, x - text_width(label) / 2, bottom + 8, label, kText);
  }
  for (double t : y_ticks) {
    const int y = py(t);
    draw_line(image, left, y, right, y, kGrid, 1);
    draw_line(image, left - 4, y, left, y, kBlack, 1);
    const std::string label = format_tick(t, y_step);
    draw_text(image, left - 8 - text_width(label), y - kGlyphHeight / 2, label, kText);
  }
  // Axes.
  draw_line(image, left, top, left, bottom, kBlack, 1);
  draw_line(image, left, bottom, right, bottom, kBlack, 1);
  // Title (scale 2), axis labels.
  if (!options.title.empty()) {
    draw_text(image, (left + right - text_width(options.title, 2)) / 2, 10, options.title, kBlack, 2);
  }
  draw_text(image, (left + right - text_width(options.x_label)) / 2, options.height - 12 - kGlyphHeight,
            options.x_label, kText);
  if (!options.y_label.empty()) {
    draw_text(image, 10, (top + bottom - text_width(options.y_label)) / 2, options.y_label, kText, 1, true);
  }
  // Curves: segments between consecutive finite points.
  for (const PlotSeries& s : series) {
    for (size_t i = 1; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i - 1]) || !std::isfinite(s.y[i - 1]) || !std::isfinite(s.x[i]) ||
          !std::isfinite(s.y[i])) {
        continue;
      }
      draw_line(image, px(s.x[i - 1]), py(s.y[i - 1]), px(s.x[i]), py(s.y[i]), s.color, 2);
    }
    if (s.x.size() == 1 && std::isfinite(s.x[0]) && std::isfinite(s.y[0])) {
      fill_rect(image, px(s.x[0]) - 2, py(s.y[0]) - 2, px(s.x[0]) + 2, py(s.y[0]) + 2, s.color);
    }
  }
  // Legend in the top-right corner of the plot area.
  int legend_width = 0;
  for (const PlotSeries& s : series) legend_width = std::max(legend_width, text_width(s.label));
  if (legend_width > 0) {
    const int row = kGlyphHeight + 6;
    const int x0 = right - legend_width - 36, y0 = top + 6;
    const int x1 = right - 6, y1 = y0 + static_cast<int>(series.size()) * row + 6;
    fill_rect(image, x0, y0, x1, y1, kWhite);
    draw_line(image, x0, y0, x1, y0, kGrid, 1);
    draw_line(image, x0, y1, x1, y1, kGrid, 1);
    draw_line(image, x0, y0, x0, y1, kGrid, 1);
    draw_line(image, x1, y0, x1, y1, kGrid, 1);
    for (size_t i = 0; i < series.size(); ++i) {
      const int y = y0 + 6 + static_cast<int>(i) * row;
      fill_rect(image, x0 + 6, y + 2, x0 + 22, y + 4, series[i].color);
      draw_text(image, x0 + 28, y, series[i].label, kText);
    }
  }
  return image;
}

void write_png(const std::string& path, const RgbImage& image) {
  SE_CHECK(
      image.width > 0 && image.height > 0 && image.pixels.size() == static_cast<size_t>(image.width) * image.height * 3,
      "write_png: '", path, "': the image is not ", image.width, "x", image.height, " RGB");
  Image rgb(image.width, image.height, 3);
  rgb.pixels = image.pixels;
  write_png(path, rgb);  // data/image_io.h: encodes, then writes through a temporary file
}

void save_line_plot(const std::string& path, const std::vector<PlotSeries>& series, const PlotOptions& options) {
  write_png(path, render_line_plot(series, options));
}

void save_training_curves(const std::string& dir, const TrainingCurves& curves) {
  auto to_series = [](const std::string& label, const std::vector<std::pair<double, double>>& points, Rgb color) {
    PlotSeries s{label, {}, {}, color};
    for (const auto& [x, y] : points) s.x.push_back(x), s.y.push_back(y);
    return s;
  };
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  SE_CHECK(!ec, "save_training_curves: cannot create '", dir, "': ", ec.message());
  std::vector<PlotSeries> loss{to_series("train loss", curves.train_loss, {31, 119, 180})};
  if (!curves.val_loss.empty()) loss.push_back(to_series("val loss", curves.val_loss, {255, 127, 14}));
  save_line_plot((std::filesystem::path(dir) / "loss.png").string(), loss,
                 {.title = "Loss", .x_label = "iteration", .y_label = "loss"});
  if (!curves.miou.empty()) {
    save_line_plot((std::filesystem::path(dir) / "miou.png").string(),
                   {to_series("val mIoU", curves.miou, {44, 160, 44})},
                   {.title = "mIoU", .x_label = "iteration", .y_label = "mIoU"});
  }
}

}  // namespace se
