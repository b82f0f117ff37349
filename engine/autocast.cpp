#include "engine/autocast.h"

#include <tuple>
#include <unordered_map>

#include "core/error.h"
#include "engine/autograd.h"

namespace se {
namespace {

struct CachedCast {
  std::shared_ptr<TensorImpl> source;  // keeps the key alive so the address is not reused
  const Storage* storage = nullptr;    // the source's storage and version when cast
  uint64_t version = 0;
  Tensor cast;
};

struct CacheKey {
  const TensorImpl* impl;
  DType dtype;
  bool grad;  // a cast made under no_grad has no history and must not serve a graph that needs one
  bool operator==(const CacheKey& o) const { return impl == o.impl && dtype == o.dtype && grad == o.grad; }
};

struct CacheKeyHash {
  size_t operator()(const CacheKey& k) const {
    return std::hash<const void*>()(k.impl) ^ (static_cast<size_t>(k.dtype) << 1) ^ static_cast<size_t>(k.grad);
  }
};

struct AutocastState {
  bool enabled = false;
  DType dtype = DType::bf16;
  int depth = 0;  // live guards; the cache is dropped when the outermost one ends
  std::unordered_map<CacheKey, CachedCast, CacheKeyHash> cache;
};

thread_local AutocastState state;

bool is_low_precision(DType dtype) { return dtype == DType::f16 || dtype == DType::bf16; }

// Rank of a floating dtype for promotion; f16 with bf16 goes to f32 (neither holds the other).
DType wider(DType a, DType b) {
  if (a == b) return a;
  if (a == DType::f64 || b == DType::f64) return DType::f64;
  return DType::f32;
}

Tensor cast_cached(const Tensor& t, DType dtype) {
  const bool cacheable = t.is_leaf() && t.requires_grad();
  if (!cacheable) return t.to(dtype);
  const CacheKey key{t.impl(), dtype, grad_mode_enabled()};
  const Storage* storage = t.impl()->storage.get();
  const uint64_t version = storage->version();
  auto it = state.cache.find(key);
  if (it != state.cache.end() && it->second.storage == storage && it->second.version == version) return it->second.cast;
  Tensor cast = t.to(dtype);
  state.cache[key] = CachedCast{t.impl_ptr(), storage, version, cast};
  return cast;
}

}  // namespace

AutocastGuard::AutocastGuard(DType dtype, bool enabled)
    : previous_enabled_(state.enabled), previous_dtype_(state.dtype) {
  SE_CHECK(is_low_precision(dtype), "autocast: dtype ", dtype, " is not supported (expected f16 or bf16)");
  state.enabled = enabled;
  state.dtype = dtype;
  ++state.depth;
}

AutocastGuard::~AutocastGuard() {
  state.enabled = previous_enabled_;
  state.dtype = previous_dtype_;
  if (--state.depth == 0) state.cache.clear();
}

bool autocast_enabled() { return state.enabled; }
DType autocast_dtype() { return state.dtype; }

namespace autocast {

Tensor to_low_precision(const Tensor& t) {
  if (!state.enabled || !t.defined() || !is_floating(t.dtype()) || t.dtype() == DType::f64 ||
      t.dtype() == state.dtype) {
    return t;
  }
  return cast_cached(t, state.dtype);
}

Tensor to_f32(const Tensor& t) {
  if (!state.enabled || !t.defined() || !is_low_precision(t.dtype())) return t;
  return t.to(DType::f32);
}

bool mixes_floating_dtypes(const Tensor& a, const Tensor& b) {
  return state.enabled && a.defined() && b.defined() && a.dtype() != b.dtype() && is_floating(a.dtype()) &&
         is_floating(b.dtype());
}

bool promote(std::vector<Tensor>& tensors) {
  if (!state.enabled) return false;
  bool any = false;
  DType target = DType::f32;
  for (const Tensor& t : tensors) {
    if (!t.defined() || !is_floating(t.dtype())) continue;
    target = any ? wider(target, t.dtype()) : t.dtype();
    any = true;
  }
  if (!any) return false;
  bool changed = false;
  for (Tensor& t : tensors) {
    if (t.defined() && is_floating(t.dtype()) && t.dtype() != target) {
      t = t.to(target);
      changed = true;
    }
  }
  return changed;
}

size_t cached_casts() { return state.cache.size(); }

}  // namespace autocast
}  // namespace se
