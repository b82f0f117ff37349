#include "data/image_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace se {

namespace {

void check_image(const Image& image, const char* op) {
  SE_CHECK(
      image.width > 0 && image.height > 0 && image.channels > 0 && image.pixels.size() == image.index(image.height, 0),
      op, ": image ", image_shape_str(image), " is empty or its pixel buffer has ", image.pixels.size(), " bytes");
}

// Source coordinate and weights of one output coordinate of a half-pixel bilinear resize.
struct Tap {
  int i0, i1;
  float w1;
};

std::vector<Tap> bilinear_taps(int src, int dst) {
  std::vector<Tap> taps(dst);
  float scale = static_cast<float>(src) / static_cast<float>(dst);
  for (int d = 0; d < dst; ++d) {
    float s = std::max(0.f, (static_cast<float>(d) + 0.5f) * scale - 0.5f);
    int i0 = std::min(static_cast<int>(s), src - 1);
    taps[d] = {i0, std::min(i0 + 1, src - 1), s - static_cast<float>(i0)};
  }
  return taps;
}

}  // namespace

Image resize_bilinear(const Image& image, int width, int height) {
  check_image(image, "resize_bilinear");
  SE_CHECK(width > 0 && height > 0, "resize_bilinear: target size ", width, " x ", height, " must be positive");
  if (width == image.width && height == image.height) return image;
  std::vector<Tap> tx = bilinear_taps(image.width, width), ty = bilinear_taps(image.height, height);
  Image out(width, height, image.channels);
  int c_n = image.channels;
  for (int y = 0; y < height; ++y) {
    const Tap& t = ty[y];
    const uint8_t* r0 = &image.pixels[image.index(t.i0, 0)];
    const uint8_t* r1 = &image.pixels[image.index(t.i1, 0)];
    uint8_t* o = &out.pixels[out.index(y, 0)];
    for (int x = 0; x < width; ++x) {
      const Tap& s = tx[x];
      for (int c = 0; c < c_n; ++c) {
        float top = r0[s.i0 * c_n + c] + s.w1 * (r0[s.i1 * c_n + c] - r0[s.i0 * c_n + c]);
        float bottom = r1[s.i0 * c_n + c] + s.w1 * (r1[s.i1 * c_n + c] - r1[s.i0 * c_n + c]);
        o[x * c_n + c] = clamp_u8(top + t.w1 * (bottom - top));
      }
    }
  }
  return out;
}

Image resize_nearest(const Image& image, int width, int height) {
  check_image(image, "resize_nearest");
  SE_CHECK(width > 0 && height > 0, "resize_nearest: target size ", width, " x ", height, " must be positive");
  if (width == image.width && height == image.height) return image;
  Image out(width, height, image.channels);
  double sx = static_cast<double>(image.width) / width, sy = static_cast<double>(image.height) / height;
  std::vector<int> xs(width);
  for (int x = 0; x < width; ++x) xs[x] = std::min(static_cast<int>(std::floor(x * sx)), image.width - 1);
  for (int y = 0; y < height; ++y) {
    int ys = std::min(static_cast<int>(std::floor(y * sy)), image.height - 1);
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < image.channels; ++c) out.at(y, x, c) = image.at(ys, xs[x], c);
  }
  return out;
}

Image flip_horizontal(const Image& image) {
  Image out(image.width, image.height, image.channels);
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      for (int c = 0; c < image.channels; ++c) out.at(y, x, c) = image.at(y, image.width - 1 - x, c);
  return out;
}

Image crop(const Image& image, int x, int y, int width, int height) {
  SE_CHECK(x >= 0 && y >= 0 && width > 0 && height > 0 && x + width <= image.width && y + height <= image.height,
           "crop: window (x ", x, ", y ", y, ", ", width, " x ", height, ") is not inside image ",
           image_shape_str(image));
  Image out(width, height, image.channels);
  size_t row = static_cast<size_t>(width) * image.channels;
  for (int r = 0; r < height; ++r) std::copy_n(&image.pixels[image.index(y + r, x)], row, &out.pixels[out.index(r, 0)]);
  return out;
}

Image pad_to(const Image& image, int width, int height, uint8_t fill) {
  if (image.width >= width && image.height >= height) return image;
  Image out(std::max(width, image.width), std::max(height, image.height), image.channels, fill);
  size_t row = static_cast<size_t>(image.width) * image.channels;
  for (int r = 0; r < image.height; ++r)
    std::copy_n(&image.pixels[image.index(r, 0)], row, &out.pixels[out.index(r, 0)]);
  return out;
}

Image gaussian_blur(const Image& image, float sigma) {
  check_image(image, "gaussian_blur");
  if (sigma <= 0.f) return image;
  int radius = std::max(1, static_cast<int>(std::ceil(3.f * sigma)));
  std::vector<float> kernel(2 * radius + 1);
  float sum = 0.f;
  for (int k = -radius; k <= radius; ++k) sum += kernel[k + radius] = std::exp(-0.5f * k * k / (sigma * sigma));
  for (float& k : kernel) k /= sum;
  // Reflect-101: index -1 -> 1, n -> n - 2 (repeated for kernels wider than the image).
  auto reflect = [](int i, int n) {
    if (n == 1) return 0;
    int period = 2 * (n - 1);
    i = ((i % period) + period) % period;
    return i < n ? i : period - i;
  };
  int w = image.width, h = image.height, c_n = image.channels;
  std::vector<float> tmp(image.pixels.size());
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < c_n; ++c) {
        float acc = 0.f;
        for (int k = -radius; k <= radius; ++k) acc += kernel[k + radius] * image.at(y, reflect(x + k, w), c);
        tmp[image.index(y, x, c)] = acc;
      }
  Image out(w, h, c_n);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < c_n; ++c) {
        float acc = 0.f;
        for (int k = -radius; k <= radius; ++k) acc += kernel[k + radius] * tmp[image.index(reflect(y + k, h), x, c)];
        out.at(y, x, c) = clamp_u8(acc);
      }
  return out;
}

Image rotate(const Image& image, float degrees, bool nearest, uint8_t fill) {
  check_image(image, "rotate");
  int w = image.width, h = image.height, c_n = image.channels;
  double cx = (w - 1) * 0.5, cy = (h - 1) * 0.5;
  double a = degrees * 3.14159265358979323846 / 180.0, ca = std::cos(a), sa = std::sin(a);
  Image out(w, h, c_n, fill);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      // Inverse map: counter-clockwise on screen (y down) rotates the source by -a.
      double dx = x - cx, dy = y - cy;
      double sx = cx + ca * dx - sa * dy, sy = cy + sa * dx + ca * dy;
      if (nearest) {
        int ix = static_cast<int>(std::lround(sx)), iy = static_cast<int>(std::lround(sy));
        if (ix < 0 || iy < 0 || ix >= w || iy >= h) continue;
        for (int c = 0; c < c_n; ++c) out.at(y, x, c) = image.at(iy, ix, c);
        continue;
      }
      int x0 = static_cast<int>(std::floor(sx)), y0 = static_cast<int>(std::floor(sy));
      if (x0 < -1 || y0 < -1 || x0 >= w || y0 >= h) continue;
      float fx = static_cast<float>(sx - x0), fy = static_cast<float>(sy - y0);
      for (int c = 0; c < c_n; ++c) {
        auto px = [&](int yy, int xx) -> float {
          return (xx < 0 || yy < 0 || xx >= w || yy >= h) ? fill : image.at(yy, xx, c);
        };
        float top = px(y0, x0) + fx * (px(y0, x0 + 1) - px(y0, x0));
        float bottom = px(y0 + 1, x0) + fx * (px(y0 + 1, x0 + 1) - px(y0 + 1, x0));
        out.at(y, x, c) = clamp_u8(top + fy * (bottom - top));
      }
    }
  return out;
}

void rgb_to_hsv(Image& image) {
  SE_CHECK(image.channels == 3, "rgb_to_hsv: image ", image_shape_str(image), " must have 3 channels");
  for (size_t i = 0; i < image.pixels.size(); i += 3) {
    float r = image.pixels[i], g = image.pixels[i + 1], b = image.pixels[i + 2];
    float v = std::max({r, g, b}), mn = std::min({r, g, b}), d = v - mn;
    float s = v > 0.f ? 255.f * d / v : 0.f;
    float hue = 0.f;  // degrees
    if (d > 0.f) {
      if (v == r)
        hue = 60.f * (g - b) / d;
      else if (v == g)
        hue = 120.f + 60.f * (b - r) / d;
      else
        hue = 240.f + 60.f * (r - g) / d;
      if (hue < 0.f) hue += 360.f;
    }
    int h8 = static_cast<int>(std::lround(hue / 2.f));
    image.pixels[i] = static_cast<uint8_t>(h8 >= 180 ? h8 - 180 : h8);
    image.pixels[i + 1] = clamp_u8(s);
    image.pixels[i + 2] = static_cast<uint8_t>(v);
  }
}

void hsv_to_rgb(Image& image) {
  SE_CHECK(image.channels == 3, "hsv_to_rgb: image ", image_shape_str(image), " must have 3 channels");
  for (size_t i = 0; i < image.pixels.size(); i += 3) {
    float h = image.pixels[i] * 2.f / 60.f, s = image.pixels[i + 1] / 255.f, v = image.pixels[i + 2];
    int sector = static_cast<int>(std::floor(h)) % 6;
    float f = h - std::floor(h);
    float p = v * (1.f - s), q = v * (1.f - s * f), t = v * (1.f - s * (1.f - f));
    float rgb[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    for (int c = 0; c < 3; ++c) image.pixels[i + c] = clamp_u8(rgb[sector][c]);
  }
}

}  // namespace se
