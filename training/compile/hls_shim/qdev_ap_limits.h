// qdev: std::numeric_limits for the open-source ap_int / ap_uint (Xilinx's
// HLS_arbitrary_Precision_Types does not specialise it; Vitis HLS's own headers do).
// finn-hlslib's pool.hpp starts a max-pool at numeric_limits<T>::min(): without this, the
// primary template's min() is T() for a class type, i.e. 0, wrong for signed inputs, and the
// pool outputs come out wrong (the trap described in ../shared/vendor/SOURCE.md).
#ifndef QDEV_AP_LIMITS_H
#define QDEV_AP_LIMITS_H
#include <limits>
#include <ap_int.h>  // the shim: the open-source header + what follows here

namespace std {
template <int W>
class numeric_limits<ap_uint<W>> {
public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = false;
  static constexpr bool is_integer = true;
  static constexpr int digits = W;
  static ap_uint<W> min() { return ap_uint<W>(0); }
  static ap_uint<W> lowest() { return min(); }
  static ap_uint<W> max() { ap_uint<W> v = 0; return ~v; }
};
template <int W>
class numeric_limits<ap_int<W>> {
public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = true;
  static constexpr int digits = W - 1;
  static ap_int<W> min() { ap_int<W> v = 0; v[W - 1] = 1; return v; }  // -2^(W-1)
  static ap_int<W> lowest() { return min(); }
  static ap_int<W> max() { ap_int<W> v = min(); return ~v; }          //  2^(W-1) - 1
};
}  // namespace std
#endif
