#include "data/synthetic.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "core/error.h"
#include "data/image_ops.h"
#include "data/json_config.h"
#include "data/rng.h"

namespace se {

namespace {

constexpr float kPi = 3.14159265358979f;
constexpr int kNumClasses = 6;

enum class Texture { flat, stripes, checker, dots, noise };
enum class Pattern { flat, gradient, noise, grid, patches };

struct Range {
  float lo, hi;
};

// How a domain looks. Hues in degrees; saturation and value in [0, 1].
struct DomainStyle {
  const char* name;
  const char* description;
  std::array<float, kNumClasses> class_hue;  // object hue per class when the hue follows the class
  float colour_correlation;                  // probability that an object's hue follows its class
  float hue_jitter;                          // +- degrees around the class hue
  Range sat, val;                            // object colour
  std::vector<Texture> textures;             // each object draws one
  float texture_contrast;                    // second texture colour = base * (1 - texture_contrast)
  Pattern background;
  Range bg_sat, bg_val;
  float contrast, brightness, gamma;  // global tone: 0.5 + contrast * (x - 0.5) + brightness, then ^gamma
  float noise_sigma, blur_sigma;      // pixel noise (of 255) and blur (pixels at 64 x 64)
};

const std::vector<DomainStyle>& styles() {
  using T = Texture;
  using P = Pattern;
  // One row per domain, in DomainStyle's field order.
  // clang-format off
  static const std::vector<DomainStyle> table = {
      {"studio", "flat saturated objects whose hue mostly follows the class, light gradient background, little noise",
       {0, 0, 120, 225, 55, 290}, 0.85f, 15.f, {0.65f, 0.95f}, {0.7f, 1.0f}, {T::flat}, 0.f,
       P::gradient, {0.0f, 0.12f}, {0.75f, 0.95f}, 1.0f, 0.f, 1.0f, 3.f, 0.f},
      {"textured", "striped and checkered objects with the class hues permuted, noisy mid-tone background",
       {0, 225, 55, 0, 290, 120}, 0.85f, 15.f, {0.5f, 0.9f}, {0.6f, 0.95f}, {T::stripes, T::checker}, 0.45f,
       P::noise, {0.1f, 0.35f}, {0.4f, 0.7f}, 1.0f, 0.f, 1.0f, 6.f, 0.f},
      {"night", "dark, low-contrast and noisy, desaturated random hues, grid background, slight blur",
       {0, 0, 0, 0, 0, 0}, 0.f, 180.f, {0.3f, 0.6f}, {0.35f, 0.7f}, {T::flat, T::noise}, 0.3f,
       P::grid, {0.0f, 0.3f}, {0.08f, 0.2f}, 0.8f, -0.04f, 1.5f, 10.f, 0.7f},
      {"fog", "pale washed-out colours, low contrast, strong blur, flat bright background",
       {0, 0, 0, 0, 0, 0}, 0.f, 180.f, {0.25f, 0.5f}, {0.5f, 0.85f}, {T::flat}, 0.f,
       P::flat, {0.0f, 0.1f}, {0.85f, 0.95f}, 0.5f, 0.12f, 0.8f, 4.f, 1.4f},
      {"neon", "fully saturated random hues with dot and stripe textures on a black background",
       {0, 0, 0, 0, 0, 0}, 0.f, 180.f, {0.9f, 1.0f}, {0.85f, 1.0f}, {T::dots, T::stripes}, 0.6f,
       P::flat, {0.0f, 0.2f}, {0.0f, 0.08f}, 1.1f, 0.f, 1.0f, 3.f, 0.f},
      {"clutter", "camouflage: background patches with the same colour statistics as the objects",
       {0, 0, 0, 0, 0, 0}, 0.f, 180.f, {0.3f, 0.8f}, {0.4f, 0.9f}, {T::flat, T::noise}, 0.3f,
       P::patches, {0.3f, 0.8f}, {0.4f, 0.9f}, 1.0f, 0.f, 1.0f, 5.f, 0.5f},
  };
  // clang-format on
  return table;
}

using Colour = std::array<float, 3>;  // RGB in [0, 1]

Colour hsv(float hue_degrees, float s, float v) {
  float h = std::fmod(std::fmod(hue_degrees, 360.f) + 360.f, 360.f) / 60.f;
  int sector = static_cast<int>(h) % 6;
  float f = h - std::floor(h);
  float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  const Colour table[6] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  return table[sector];
}

Colour mix(const Colour& a, const Colour& b, float t) {
  return {a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])};
}

// Smooth lattice noise in [0, 1) (value noise with smoothstep), keyed by `key`.
float value_noise(float x, float y, uint64_t key) {
  auto lattice = [key](int64_t ix, int64_t iy) {
    uint64_t z =
        key ^ (static_cast<uint64_t>(ix) * 0x9E3779B97F4A7C15ull) ^ (static_cast<uint64_t>(iy) * 0xC2B2AE3D27D4EB4Full);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;  // splitmix64 finaliser
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return static_cast<float>((z ^ (z >> 31)) >> 40) * (1.0f / 16777216.0f);
  };
  float fx = std::floor(x), fy = std::floor(y);
  auto ix = static_cast<int64_t>(fx), iy = static_cast<int64_t>(fy);
  float tx = x - fx, ty = y - fy;
  tx = tx * tx * (3 - 2 * tx);
  ty = ty * ty * (3 - 2 * ty);
  float top = lattice(ix, iy) + tx * (lattice(ix + 1, iy) - lattice(ix, iy));
  float bottom = lattice(ix, iy + 1) + tx * (lattice(ix + 1, iy + 1) - lattice(ix, iy + 1));
  return top + ty * (bottom - top);
}

// ---- scene geometry (domain-independent)

struct Shape {
  int cls;       // 1 disc, 2 rectangle, 3 triangle, 4 ring, 5 bar
  float cx, cy;  // centre, pixels
  float angle;   // radians
  float cos_a, sin_a;
  float bound;               // no point of the shape is farther than this from the centre
  float a = 0, b = 0;        // class-specific half extents (radius / inner radius, half sides, ...)
  std::array<float, 6> tri;  // triangle vertices (u0, v0, u1, v1, u2, v2) in local coordinates
};

std::vector<Shape> make_scene(Rng& rng, const SyntheticOptions& o) {
  float size = static_cast<float>(o.image_size);
  int count = static_cast<int>(rng.uniform_int(o.min_objects, o.max_objects));
  std::vector<Shape> shapes(count);
  for (Shape& s : shapes) {
    s.cls = static_cast<int>(rng.uniform_int(1, kNumClasses - 1));
    s.cx = rng.uniform(0.05f, 0.95f) * size;
    s.cy = rng.uniform(0.05f, 0.95f) * size;
    s.angle = rng.uniform(0.f, 2 * kPi);
    s.cos_a = std::cos(s.angle), s.sin_a = std::sin(s.angle);
    float r = rng.uniform(0.08f, 0.2f) * size;
    switch (s.cls) {
      case 1: s.a = r; break;
      case 2: s.a = r * rng.uniform(0.75f, 1.0f), s.b = s.a * rng.uniform(0.55f, 1.0f); break;
      case 3:
        for (int k = 0; k < 3; ++k) {
          float t = s.angle + 2 * kPi * k / 3 + rng.uniform(-0.25f, 0.25f);
          float rr = 1.2f * r * rng.uniform(0.9f, 1.1f);
          s.tri[2 * k] = rr * std::cos(t), s.tri[2 * k + 1] = rr * std::sin(t);
        }
        break;
      case 4: s.a = r * 1.1f, s.b = s.a * rng.uniform(0.5f, 0.68f); break;
      default: s.a = r * rng.uniform(1.3f, 1.8f), s.b = std::max(1.6f, r * rng.uniform(0.2f, 0.3f)); break;
    }
    // Generous bound (1.5 r covers the disc, ring and triangle; the box shapes by their half diagonal).
    s.bound = std::max(1.5f * r, std::sqrt(s.a * s.a + s.b * s.b)) + 1.f;
  }
  return shapes;
}

float edge(float ax, float ay, float bx, float by, float px, float py) {
  return (bx - ax) * (py - ay) - (by - ay) * (px - ax);
}

// Whether pixel centre (px, py) is inside `s`; (u, v) are its coordinates in the shape's frame.
bool inside(const Shape& s, float px, float py, float* u, float* v) {
  float dx = px - s.cx, dy = py - s.cy;
  if (dx * dx + dy * dy > s.bound * s.bound) return false;
  *u = s.cos_a * dx + s.sin_a * dy;
  *v = -s.sin_a * dx + s.cos_a * dy;
  switch (s.cls) {
    case 1: return dx * dx + dy * dy <= s.a * s.a;
    case 2: return std::abs(*u) <= s.a && std::abs(*v) <= s.b;
    case 3: {
      // Vertices are in the unrotated frame; test with (dx, dy).
      float e0 = edge(s.tri[0], s.tri[1], s.tri[2], s.tri[3], dx, dy);
      float e1 = edge(s.tri[2], s.tri[3], s.tri[4], s.tri[5], dx, dy);
      float e2 = edge(s.tri[4], s.tri[5], s.tri[0], s.tri[1], dx, dy);
      return (e0 >= 0 && e1 >= 0 && e2 >= 0) || (e0 <= 0 && e1 <= 0 && e2 <= 0);
    }
    case 4: {
      float d2 = dx * dx + dy * dy;
      return d2 <= s.a * s.a && d2 >= s.b * s.b;
    }
    default: return std::abs(*u) <= s.a && std::abs(*v) <= s.b;
  }
}

// ---- appearance (per domain)

struct ObjectLook {
  Colour base, second;
  Texture texture;
  float period, phase;
  uint64_t noise_key;
};

struct BackgroundLook {
  Colour c0, c1;
  std::array<Colour, 4> patches;
  float angle, period;
  uint64_t noise_key;
};

float texture_value(const ObjectLook& look, float u, float v) {
  float p = look.period;
  switch (look.texture) {
    case Texture::flat: return 0.f;
    case Texture::stripes: return std::fmod(u / p + look.phase + 1000.f, 1.f) < 0.5f ? 1.f : 0.f;
    case Texture::checker:
      return ((static_cast<int64_t>(std::floor(u / p + look.phase)) + static_cast<int64_t>(std::floor(v / p))) & 1)
                 ? 1.f
                 : 0.f;
    case Texture::dots: {
      float gu = u / p + look.phase - std::round(u / p + look.phase), gv = v / p - std::round(v / p);
      return gu * gu + gv * gv < 0.09f ? 1.f : 0.f;
    }
    case Texture::noise: return value_noise(u / p, v / p, look.noise_key);
  }
  return 0.f;
}

Colour background_colour(const DomainStyle& style, const BackgroundLook& bg, float x, float y, float scale) {
  switch (style.background) {
    case Pattern::flat: return bg.c0;
    case Pattern::gradient: {
      float t = 0.5f + (std::cos(bg.angle) * (x - 32 * scale) + std::sin(bg.angle) * (y - 32 * scale)) / (64 * scale);
      return mix(bg.c0, bg.c1, std::clamp(t, 0.f, 1.f));
    }
    case Pattern::noise: {
      float n = 0.65f * value_noise(x / bg.period, y / bg.period, bg.noise_key) +
                0.35f * value_noise(x / (0.35f * bg.period), y / (0.35f * bg.period), bg.noise_key + 1);
      return mix(bg.c0, bg.c1, n);
    }
    case Pattern::grid: {
      bool line =
          std::fmod(x + 0.5f * bg.period, bg.period) < scale || std::fmod(y + 0.3f * bg.period, bg.period) < scale;
      return line ? bg.c1 : bg.c0;
    }
    case Pattern::patches: {
      float n = value_noise(x / bg.period, y / bg.period, bg.noise_key);
      return bg.patches[std::min(3, static_cast<int>(n * 4.f))];
    }
  }
  return bg.c0;
}

int split_id(const std::string& split) {
  if (split == "train") return 0;
  if (split == "val") return 1;
  if (split == "test") return 2;
  SE_THROW("dataset 'synthetic': split '", split, "' is not one of train, val, test");
}

}  // namespace

const std::vector<SyntheticDomainInfo>& SyntheticDataset::domains() {
  static const std::vector<SyntheticDomainInfo> list = [] {
    std::vector<SyntheticDomainInfo> out;
    for (const DomainStyle& s : styles()) out.push_back({s.name, s.description});
    return out;
  }();
  return list;
}

const std::vector<std::string>& SyntheticDataset::class_names() {
  static const std::vector<std::string> names = {"background", "disc", "rectangle", "triangle", "ring", "bar"};
  return names;
}

SyntheticDataset::SyntheticDataset(SyntheticOptions options) : options_(std::move(options)) {
  const char* what = "dataset 'synthetic'";
  split_id_ = split_id(options_.split);
  SE_CHECK(!options_.domains.empty(), what, ": no domain given");
  for (const std::string& name : options_.domains) {
    auto it = std::find_if(styles().begin(), styles().end(), [&](const DomainStyle& s) { return name == s.name; });
    if (it == styles().end()) {
      std::string valid;
      for (const DomainStyle& s : styles()) valid += (valid.empty() ? "" : ", ") + std::string(s.name);
      SE_THROW(what, ": unknown domain '", name, "'; domains: ", valid);
    }
    domain_ids_.push_back(static_cast<int>(it - styles().begin()));
  }
  SE_CHECK(options_.image_size >= 16 && options_.image_size <= 4096, what, ": image_size ", options_.image_size,
           ", expected 16 to 4096");
  SE_CHECK(options_.min_objects >= 0 && options_.max_objects >= options_.min_objects && options_.max_objects <= 64,
           what, ": objects per scene [", options_.min_objects, ", ", options_.max_objects,
           "], expected 0 <= min_objects <= max_objects <= 64");
  SE_CHECK(options_.colour_correlation <= 1.f, what, ": colour_correlation ", options_.colour_correlation,
           ", expected a probability in [0, 1] (or unset)");
  if (options_.size == 0) options_.size = split_id_ == 0 ? 1000 : 200;
  SE_CHECK(options_.size > 0, what, ": size ", options_.size, ", expected a positive number of samples");
  info_.name = "synthetic";
  info_.class_names = class_names();
  info_.palette = {{0, 0, 0}, {230, 25, 75}, {60, 180, 75}, {0, 130, 200}, {255, 225, 25}, {145, 30, 180}};
  info_.ignore_index = 255;
}

std::shared_ptr<SyntheticDataset> SyntheticDataset::from_json(const nlohmann::json& config) {
  const std::string what = "dataset 'synthetic'";
  check_config_keys(
      config,
      {"type", "domain", "split", "size", "image_size", "seed", "min_objects", "max_objects", "colour_correlation"},
      what);
  SyntheticOptions o;
  if (auto it = config.find("domain"); it != config.end()) {
    if (it->is_string())
      o.domains = {it->get<std::string>()};
    else
      o.domains = config_as<std::vector<std::string>>(*it, "domain", what);
  }
  o.split = config_value<std::string>(config, "split", o.split, what);
  o.size = config_value<int64_t>(config, "size", o.size, what);
  o.image_size = config_value<int>(config, "image_size", o.image_size, what);
  o.seed = config_value<uint64_t>(config, "seed", o.seed, what);
  o.min_objects = config_value<int>(config, "min_objects", o.min_objects, what);
  o.max_objects = config_value<int>(config, "max_objects", o.max_objects, what);
  o.colour_correlation = config_value<float>(config, "colour_correlation", o.colour_correlation, what);
  return std::make_shared<SyntheticDataset>(std::move(o));
}

Sample SyntheticDataset::get(int64_t index) const {
  SE_CHECK(index >= 0 && index < size(), "dataset 'synthetic': index ", index, " out of range [0, ", size(), ")");
  int domain_id = domain_ids_[index % domain_ids_.size()];
  const DomainStyle& style = styles()[domain_id];
  const SyntheticOptions& o = options_;
  int n = o.image_size;
  float scale = n / 64.f;

  Rng scene_rng(o.seed, static_cast<uint64_t>(index), static_cast<uint64_t>(split_id_) << 8);
  std::vector<Shape> shapes = make_scene(scene_rng, o);
  Rng rng(o.seed, static_cast<uint64_t>(index), (static_cast<uint64_t>(split_id_) << 8) + 1 + domain_id);

  float correlation = o.colour_correlation >= 0.f ? o.colour_correlation : style.colour_correlation;
  std::vector<ObjectLook> looks(shapes.size());
  for (size_t k = 0; k < shapes.size(); ++k) {
    ObjectLook& look = looks[k];
    float hue = rng.bernoulli(correlation)
                    ? style.class_hue[shapes[k].cls] + rng.uniform(-style.hue_jitter, style.hue_jitter)
                    : rng.uniform(0.f, 360.f);
    look.base = hsv(hue, rng.uniform(style.sat.lo, style.sat.hi), rng.uniform(style.val.lo, style.val.hi));
    look.second = mix(look.base, Colour{0, 0, 0}, style.texture_contrast);
    look.texture = style.textures[rng.uniform_int(0, static_cast<int64_t>(style.textures.size()) - 1)];
    look.period = rng.uniform(3.f, 6.f) * scale;
    look.phase = rng.uniform();
    look.noise_key = rng.next_u64();
  }
  BackgroundLook bg;
  float bg_hue = rng.uniform(0.f, 360.f);
  bg.c0 = hsv(bg_hue, rng.uniform(style.bg_sat.lo, style.bg_sat.hi), rng.uniform(style.bg_val.lo, style.bg_val.hi));
  bg.c1 = hsv(bg_hue + rng.uniform(-60.f, 60.f), rng.uniform(style.bg_sat.lo, style.bg_sat.hi),
              rng.uniform(style.bg_val.lo, style.bg_val.hi));
  if (style.background == Pattern::grid) bg.c1 = mix(bg.c0, Colour{1, 1, 1}, 0.25f);
  for (Colour& c : bg.patches)
    c = hsv(rng.uniform(0.f, 360.f), rng.uniform(style.sat.lo, style.sat.hi), rng.uniform(style.val.lo, style.val.hi));
  bg.angle = rng.uniform(0.f, 2 * kPi);
  bg.period = (style.background == Pattern::grid ? rng.uniform(6.f, 12.f) : rng.uniform(8.f, 16.f)) * scale;
  bg.noise_key = rng.next_u64();
  float contrast = style.contrast * rng.uniform(0.9f, 1.1f);
  float brightness = style.brightness + rng.uniform(-0.03f, 0.03f);

  Sample sample;
  sample.image = Image(n, n, 3);
  sample.mask = Image(n, n, 1);
  for (int y = 0; y < n; ++y) {
    for (int x = 0; x < n; ++x) {
      float px = x + 0.5f, py = y + 0.5f;
      int top = -1;
      float top_u = 0, top_v = 0;
      for (size_t k = 0; k < shapes.size(); ++k) {
        float u, v;
        if (inside(shapes[k], px, py, &u, &v)) top = static_cast<int>(k), top_u = u, top_v = v;
      }
      Colour c = top < 0 ? background_colour(style, bg, px, py, scale)
                         : mix(looks[top].base, looks[top].second, texture_value(looks[top], top_u, top_v));
      sample.mask.at(y, x) = static_cast<uint8_t>(top < 0 ? 0 : shapes[top].cls);
      for (int ch = 0; ch < 3; ++ch) {
        float t = std::clamp(0.5f + contrast * (c[ch] - 0.5f) + brightness, 0.f, 1.f);
        if (style.gamma != 1.f) t = std::pow(t, style.gamma);
        t = t * 255.f + style.noise_sigma * rng.normal();
        sample.image.at(y, x, ch) = clamp_u8(t);
      }
    }
  }
  if (style.blur_sigma > 0.f) sample.image = gaussian_blur(sample.image, style.blur_sigma * scale);
  sample.id = "synthetic/" + std::string(style.name) + "/" + o.split + "/" + std::to_string(index);
  return sample;
}

}  // namespace se
