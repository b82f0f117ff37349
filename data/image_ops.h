// Geometric and photometric operations on host images (8-bit, (H, W, C)), with the conventions of
// OpenCV as mmsegmentation uses it, so recipes carry over: half-pixel bilinear resize, nearest
// resize by floor(dst * src / dst), reflect-101 borders for blur, u8 HSV with hue in [0, 180).
#pragma once

#include <cstdint>

#include "data/image.h"

namespace se {

Image resize_bilinear(const Image& image, int width, int height);  // images
Image resize_nearest(const Image& image, int width, int height);   // masks: values are kept
Image flip_horizontal(const Image& image);
// The (width x height) window at (x, y); it must lie inside the image.
Image crop(const Image& image, int x, int y, int width, int height);
// Grows the image to (width x height) at the bottom and right with `fill` (no-op when already as large).
Image pad_to(const Image& image, int width, int height, uint8_t fill);
// Gaussian blur, separable, kernel radius ceil(3 sigma), reflect-101 borders; sigma <= 0 is a copy.
Image gaussian_blur(const Image& image, float sigma);
// Rotation by `degrees` (counter-clockwise, as cv2/mmcv) about the image centre, same size; pixels
// that come from outside get `fill`. Bilinear, or nearest for masks.
Image rotate(const Image& image, float degrees, bool nearest, uint8_t fill);

// RGB <-> HSV of 3-channel u8 images, in place, OpenCV's 8-bit convention: H in [0, 180), S, V in [0, 255].
void rgb_to_hsv(Image& image);
void hsv_to_rgb(Image& image);

inline uint8_t clamp_u8(float v) {
  return static_cast<uint8_t>(v <= 0.f ? 0.f : v >= 255.f ? 255.f : v + 0.5f);
}

}  // namespace se
