// qdev: stream words as bits, for the stitched co-simulation's channels (qdev_stitch.h).
// ap_uint<W> / ap_int<W>: bit i of the value is bit i of the word. hls::vector<E, N>: element i
// at bits [i*w(E), (i+1)*w(E)), element 0 in the least significant bits, as the AXI stream of a
// FINN HLS layer with `aggregate compact=bit` carries it.
#ifndef QDEV_STITCH_BITS_H
#define QDEV_STITCH_BITS_H
#include <algorithm>
#include <ap_int.h>
#include "hls_vector.h"
#include "qdev_stitch.h"

namespace qs {
template <int W>
struct Bits<ap_uint<W>> {
  static constexpr unsigned width = W;
  static void put(const ap_uint<W> &v, uint8_t *b, unsigned pos) {
    for (int lo = 0; lo < W; lo += 64) {
      const int hi = std::min(W, lo + 64) - 1;
      put_bits(b, pos + lo, v.range(hi, lo).to_uint64(), hi - lo + 1);
    }
  }
  static ap_uint<W> get(const uint8_t *b, unsigned pos) {
    ap_uint<W> v = 0;
    for (int lo = 0; lo < W; lo += 64) {
      const int hi = std::min(W, lo + 64) - 1;
      v.range(hi, lo) = get_bits(b, pos + lo, hi - lo + 1);
    }
    return v;
  }
};
template <int W>
struct Bits<ap_int<W>> {
  static constexpr unsigned width = W;
  static void put(const ap_int<W> &v, uint8_t *b, unsigned pos) { Bits<ap_uint<W>>::put(ap_uint<W>(v), b, pos); }
  static ap_int<W> get(const uint8_t *b, unsigned pos) {
    ap_int<W> v;
    v.range(W - 1, 0) = Bits<ap_uint<W>>::get(b, pos);
    return v;
  }
};
template <typename E, std::size_t N>
struct Bits<hls::vector<E, N>> {
  static constexpr unsigned width = N * Bits<E>::width;
  static void put(const hls::vector<E, N> &v, uint8_t *b, unsigned pos) {
    for (std::size_t i = 0; i < N; ++i) Bits<E>::put(v[i], b, pos + i * Bits<E>::width);
  }
  static hls::vector<E, N> get(const uint8_t *b, unsigned pos) {
    hls::vector<E, N> v;
    for (std::size_t i = 0; i < N; ++i) v[i] = Bits<E>::get(b, pos + i * Bits<E>::width);
    return v;
  }
};

template <typename T>
inline void to_slot(const T &v, uint8_t *b, uint32_t slot) {
  if (Bits<T>::width > slot * 8u) die("a stream word is wider than its channel");
  std::memset(b, 0, slot);
  Bits<T>::put(v, b, 0);
}
template <typename T>
inline T from_slot(const uint8_t *b) { return Bits<T>::get(b, 0); }
}  // namespace qs
#endif
