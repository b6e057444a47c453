// qdev: a minimal hls::stream for C++ simulation without Vitis HLS.
// Models: an unbounded FIFO of T with blocking read/write, read_nb/write_nb, empty/full/size and
// the << >> operators, as the generated cppsim code and finn-hlslib use them.
// Does not model: depth (never full), timing, concurrency between dataflow processes (cppsim
// runs them one after another, as Vitis' csim does). Reading an empty stream is a bug in the
// design or the testbench: it stops the simulation with a message (csim warns and reads garbage).
#ifndef QDEV_HLS_STREAM_H
#define QDEV_HLS_STREAM_H
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>
#include "qdev_ap_limits.h"

namespace hls {
template <typename T>
class stream {
  std::deque<T> q_;
  std::string name_;

public:
  stream() : name_("stream") {}
  explicit stream(const char *name) : name_(name) {}
  stream(const stream &) = delete;
  stream &operator=(const stream &) = delete;

  bool empty() const { return q_.empty(); }
  bool full() const { return false; }
  std::size_t size() const { return q_.size(); }

  T read() {
    if (q_.empty()) {
      std::fprintf(stderr, "hls::stream '%s': read while empty\n", name_.c_str());
      std::exit(3);
    }
    T v = q_.front();
    q_.pop_front();
    return v;
  }
  void read(T &v) { v = read(); }
  bool read_nb(T &v) {
    if (q_.empty()) return false;
    v = read();
    return true;
  }
  void write(const T &v) { q_.push_back(v); }
  bool write_nb(const T &v) { write(v); return true; }
  stream &operator>>(T &v) { read(v); return *this; }
  stream &operator<<(const T &v) { write(v); return *this; }
};
}  // namespace hls
#endif
