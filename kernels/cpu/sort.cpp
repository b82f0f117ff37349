// CPU sort and cumsum (kernels/sort.h). Sort: per row an LSD radix sort over the order-preserving keys of
// kernels/sort_ops.h (11-bit digits; a pass is skipped when the whole row shares its digit), short rows by
// std::stable_sort on the same keys; rows in parallel, or long rows, fewer than the threads, each by all
// of them (8-bit digits there). Cumsum: sequential along each line, f32 summed in double.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/sort.h"
#include "kernels/sort_ops.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kRadixMinLength = 256;  // below this std::stable_sort is faster than the passes
constexpr int kDigitBits = 11;  // 2048 counts per pass stay in L1; 32-bit keys take 3 passes
constexpr int kBins = 1 << kDigitBits;

// Sorts one row: keys (length) are consumed; order (length) receives the positions. O is uint32_t for
// rows shorter than 2^32 (a third less to move per pass than int64_t), else int64_t. One read of the
// keys counts the digits of every pass; a pass is skipped when the whole row shares its digit; the first
// pass that moves anything writes the positions directly instead of reading an identity order.
template <typename K, typename O>
void sort_row(std::vector<K>& keys, std::vector<K>& keys_tmp, std::vector<O>& order, std::vector<O>& order_tmp,
              std::vector<O>& counts) {
  constexpr int kPasses = (8 * static_cast<int>(sizeof(K)) + kDigitBits - 1) / kDigitBits;
  const int64_t n = static_cast<int64_t>(keys.size());
  if (n < kRadixMinLength) {
    std::iota(order.begin(), order.end(), O{0});
    std::stable_sort(order.begin(), order.end(), [&](O a, O b) { return keys[a] < keys[b]; });
    return;
  }
  counts.assign(static_cast<size_t>(kPasses) * kBins, O{0});
  for (int64_t i = 0; i < n; ++i) {
    for (int pass = 0; pass < kPasses; ++pass) ++counts[pass * kBins + ((keys[i] >> (pass * kDigitBits)) & (kBins - 1))];
  }
  bool ordered = false;  // order holds the positions of keys
  for (int pass = 0; pass < kPasses; ++pass) {
    const int shift = pass * kDigitBits;
    O* count = counts.data() + pass * kBins;
    if (count[(keys[0] >> shift) & (kBins - 1)] == static_cast<O>(n)) continue;  // one digit for the whole row
    O start = 0;
    for (int digit = 0; digit < kBins; ++digit) start += std::exchange(count[digit], start);
    for (int64_t i = 0; i < n; ++i) {
      const O dst = count[(keys[i] >> shift) & (kBins - 1)]++;
      keys_tmp[dst] = keys[i];
      order_tmp[dst] = ordered ? order[i] : static_cast<O>(i);
    }
    keys.swap(keys_tmp);
    order.swap(order_tmp);
    ordered = true;
  }
  if (!ordered) std::iota(order.begin(), order.end(), O{0});
}

// One long row sorted by all the threads (OHEM sorts a whole batch's pixels as one row): each pass cuts
// the row into one part per thread, counts the parts' digits side by side, and scatters every part's
// keys in order from offsets that put digits first and parts second. Stable, so the result is the one
// sort_row gives, whatever the thread count.
template <typename K, typename O>
void sort_row_parallel(std::vector<K>& keys, std::vector<K>& keys_tmp, std::vector<O>& order, std::vector<O>& order_tmp,
                       int threads) {
  const int64_t n = static_cast<int64_t>(keys.size());
  std::vector<std::array<int64_t, 256>> offsets(static_cast<size_t>(threads));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) order[i] = static_cast<O>(i);
  for (int shift = 0; shift < static_cast<int>(8 * sizeof(K)); shift += 8) {
    bool one_digit = false;  // the whole row shares this pass's digit: its order stays as it is
#pragma omp parallel num_threads(threads)
    {
      const int part = omp_get_thread_num(), parts = omp_get_num_threads();  // parts <= threads
      std::array<int64_t, 256>& count = offsets[static_cast<size_t>(part)];
      count.fill(0);
      const int64_t begin = n * part / parts, end = n * (part + 1) / parts;
      for (int64_t i = begin; i < end; ++i) ++count[(keys[i] >> shift) & 0xff];
#pragma omp barrier
#pragma omp single
      {
        // Each (digit, part) starts after every smaller digit and, within its digit, the earlier parts.
        int64_t start = 0;
        for (int digit = 0; digit < 256; ++digit) {
          const int64_t digit_start = start;
          for (int p = 0; p < parts; ++p) {
            const int64_t c = offsets[static_cast<size_t>(p)][digit];
            offsets[static_cast<size_t>(p)][digit] = start;
            start += c;
          }
          one_digit = one_digit || start - digit_start == n;
        }
      }  // the single's barrier publishes the offsets and one_digit
      if (!one_digit) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t dst = count[(keys[i] >> shift) & 0xff]++;
          keys_tmp[dst] = keys[i];
          order_tmp[dst] = order[i];
        }
      }
    }
    if (!one_digit) {
      keys.swap(keys_tmp);
      order.swap(order_tmp);
    }
  }
}

// Rows at least this long, fewer than the threads, are each sorted by all of them.
constexpr int64_t kParallelRowLength = 1 << 16;

// Rows in parallel, each by sort_row with positions of type O.
template <typename T, typename O>
void sort_rows(const SortDesc& d, const T* x, T* values, int64_t* indices) {
  using K = sort_ops::key_t<T>;
  const int64_t length = d.length;
#pragma omp parallel if (d.rows > 1 && d.rows * length >= 4096)
  {
    std::vector<K> keys(static_cast<size_t>(length)), keys_tmp(static_cast<size_t>(length));
    std::vector<O> order(static_cast<size_t>(length)), order_tmp(static_cast<size_t>(length)), counts;
#pragma omp for schedule(dynamic, 1)
    for (int64_t r = 0; r < d.rows; ++r) {
      const T* row = x + r * length;
      for (int64_t i = 0; i < length; ++i) keys[i] = sort_ops::sort_key(row[i], d.descending);
      sort_row(keys, keys_tmp, order, order_tmp, counts);
      for (int64_t i = 0; i < length; ++i) {
        indices[r * length + i] = static_cast<int64_t>(order[i]);
        values[r * length + i] = row[order[i]];
      }
    }
  }
}

// Rows at least kParallelRowLength long, fewer than the threads: each by all of them, positions of type O.
template <typename T, typename O>
void sort_long_rows(const SortDesc& d, const T* x, T* values, int64_t* indices, int threads) {
  using K = sort_ops::key_t<T>;
  const int64_t length = d.length;
  std::vector<K> keys(static_cast<size_t>(length)), keys_tmp(static_cast<size_t>(length));
  std::vector<O> order(static_cast<size_t>(length)), order_tmp(static_cast<size_t>(length));
  for (int64_t r = 0; r < d.rows; ++r) {
    const T* row = x + r * length;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < length; ++i) keys[i] = sort_ops::sort_key(row[i], d.descending);
    sort_row_parallel(keys, keys_tmp, order, order_tmp, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < length; ++i) {
      indices[r * length + i] = static_cast<int64_t>(order[i]);
      values[r * length + i] = row[order[i]];
    }
  }
}

template <typename T>
void sort_typed(const SortDesc& d, const T* x, T* values, int64_t* indices) {
  const int64_t length = d.length;
  const bool short_positions = length <= int64_t{UINT32_MAX};  // positions fit uint32_t
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads > 1 && d.rows < threads && length >= kParallelRowLength) {
    if (short_positions) {
      sort_long_rows<T, uint32_t>(d, x, values, indices, threads);
    } else {
      sort_long_rows<T, int64_t>(d, x, values, indices, threads);
    }
  } else if (short_positions) {
    sort_rows<T, uint32_t>(d, x, values, indices);
  } else {
    sort_rows<T, int64_t>(d, x, values, indices);
  }
}

template <typename T>
void cumsum_typed(const CumsumDesc& d, const T* x, T* y) {
  using A = std::conditional_t<std::is_floating_point_v<T>, double, T>;
  const int64_t lines = d.outer * d.inner;
#pragma omp parallel for schedule(static) if (lines > 1 && lines * d.length >= 16384)
  for (int64_t line = 0; line < lines; ++line) {
    const int64_t base = line / d.inner * d.length * d.inner + line % d.inner;
    A sum = A(0);
    for (int64_t k = 0; k < d.length; ++k) {
      const int64_t i = base + (d.reverse ? d.length - 1 - k : k) * d.inner;
      sum += static_cast<A>(x[i]);
      y[i] = static_cast<T>(sum);
    }
  }
}

template <typename F>
void dispatch_sort_types(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f64: return f(TypeTag<double>{});
    case DType::i32: return f(TypeTag<int32_t>{});
    case DType::i64: return f(TypeTag<int64_t>{});
    default: SE_THROW(op, ": dtype ", dtype_name(dtype), " is not supported (expected f32, f64, i32 or i64)");
  }
}

}  // namespace

void sort(const SortDesc& desc, const void* x, void* values, int64_t* indices, void* /*workspace*/,
          Stream /*stream*/) {
  validate_sort(desc);
  if (desc.rows * desc.length == 0) return;
  SE_CHECK(x != nullptr && values != nullptr && indices != nullptr, "sort: x, values or indices is null");
  dispatch_sort_types(desc.dtype, "sort", [&](auto tag) {
    using T = typename decltype(tag)::type;
    sort_typed<T>(desc, static_cast<const T*>(x), static_cast<T*>(values), indices);
  });
}

void cumsum(const CumsumDesc& desc, const void* x, void* y, Stream /*stream*/) {
  validate_cumsum(desc);
  if (desc.outer * desc.length * desc.inner == 0) return;
  SE_CHECK(x != nullptr && y != nullptr, "cumsum: x or y is null");
  dispatch_sort_types(desc.dtype, "cumsum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cumsum_typed<T>(desc, static_cast<const T*>(x), static_cast<T*>(y));
  });
}

}  // namespace se::kernels::cpu
