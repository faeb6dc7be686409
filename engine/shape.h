#pragma once
// Shapes, numel, broadcasting and axis normalisation.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/error.h"

namespace bissl {

using Shape = std::vector<int64_t>;

inline int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

inline std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Row-major strides in elements.
inline std::vector<int64_t> contiguous_strides(const Shape& s) {
  std::vector<int64_t> st(s.size());
  int64_t acc = 1;
  for (int i = int(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

// numpy broadcasting of two shapes; `what` names the op in the error.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what) {
  size_t n = std::max(a.size(), b.size());
  Shape r(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    BISSL_CHECK(da == db || da == 1 || db == 1, what, ": shapes ", shape_str(a), " and ",
                shape_str(b), " do not broadcast (dim ", i, ": ", da, " vs ", db, ")");
    r[i] = da == 1 ? db : da;
  }
  return r;
}

// Strides of `s` viewed as broadcast to `out` (0 where broadcast).
inline std::vector<int64_t> broadcast_strides(const Shape& s, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  auto cs = contiguous_strides(s);
  size_t off = out.size() - s.size();
  for (size_t i = 0; i < s.size(); ++i) st[off + i] = s[i] == 1 ? 0 : cs[i];
  return st;
}

inline int64_t normalize_axis(int64_t axis, int64_t ndim, const char* what) {
  BISSL_CHECK(axis >= -ndim && axis < ndim, what, ": axis ", axis, " out of range for a tensor of rank ",
              ndim);
  return axis < 0 ? axis + ndim : axis;
}

}  // namespace bissl
