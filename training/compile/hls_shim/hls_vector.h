// qdev: a minimal hls::vector<T, N> for C++ simulation without Vitis HLS.
// Models: a fixed array of N elements with element access, broadcast construction from one
// value, copy, and ==/!=, which is what FINN's generated code and finn-hlslib use.
// Does not model: the element-wise arithmetic operators and reductions of Vitis' hls::vector.
#ifndef QDEV_HLS_VECTOR_H
#define QDEV_HLS_VECTOR_H
#include <cstddef>
#include "qdev_ap_limits.h"

namespace hls {
template <typename T, std::size_t N>
class vector {
  T d_[N];

public:
  vector() = default;
  vector(const T &v) { for (std::size_t i = 0; i < N; i++) d_[i] = v; }  // NOLINT: broadcast
  T &operator[](std::size_t i) { return d_[i]; }
  const T &operator[](std::size_t i) const { return d_[i]; }
  bool operator==(const vector &o) const {
    for (std::size_t i = 0; i < N; i++) if (!(d_[i] == o.d_[i])) return false;
    return true;
  }
  bool operator!=(const vector &o) const { return !(*this == o); }
};
}  // namespace hls
#endif
