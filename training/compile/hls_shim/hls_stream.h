// qdev: a minimal hls::stream for C++ simulation without Vitis HLS.
// Models: an unbounded FIFO of T with blocking read/write, read_nb/write_nb, empty/full/size and
// the << >> operators, as the generated cppsim code and finn-hlslib use them.
// Does not model: depth (never full), timing, concurrency between dataflow processes (cppsim
// runs them one after another, as Vitis' csim does). Reading an empty stream is a bug in the
// design or the testbench: it stops the simulation with a message (csim warns and reads garbage).
// Built with -DQDEV_STITCH (the stitched co-simulation, training/compile/stitch_rt/), a stream
// whose name the coordinator bound to a channel (a node's in/out streams) reads and writes that
// bounded FIFO between processes instead, blocking when it is empty / full; every other stream
// (a layer's internal ones) stays as above.
#ifndef QDEV_HLS_STREAM_H
#define QDEV_HLS_STREAM_H
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>
#include "qdev_ap_limits.h"
#ifdef QDEV_STITCH
#include "qdev_stitch.h"
#endif

namespace hls {
template <typename T>
class stream {
  std::deque<T> q_;
  std::string name_;
#ifdef QDEV_STITCH
  int ring_ = -1;
  qs::Ring *r_ = nullptr;
  void bind() {
    ring_ = qs::bound(name_.c_str());
    if (ring_ >= 0) r_ = new qs::Ring(static_cast<uint32_t>(ring_));
  }
  bool reader() const { return r_ && r_->cons == qs::ctx().node; }
#else
  void bind() {}
#endif

public:
  stream() : name_("stream") {}
  explicit stream(const char *name) : name_(name) { bind(); }
#ifdef QDEV_STITCH
  ~stream() { delete r_; }
#endif
  stream(const stream &) = delete;
  stream &operator=(const stream &) = delete;

#ifdef QDEV_STITCH
  bool empty() const {
    if (!r_) return q_.empty();
    if (!reader()) return true;
    bool e = r_->empty();
    if (e) r_->note_wait(qs::READ);
    return e;
  }
  bool full() const { return r_ && !reader() && r_->full(); }
  std::size_t size() const { return r_ ? r_->count() : q_.size(); }
#else
  bool empty() const { return q_.empty(); }
  bool full() const { return false; }
  std::size_t size() const { return q_.size(); }
#endif

  T read() {
#ifdef QDEV_STITCH
    if (r_) {
      if (!reader()) qs::die(("read from the output stream " + name_).c_str());
      uint8_t buf[qs::MAX_SLOT];
      r_->read(buf);
      return qs::from_slot<T>(buf);
    }
#endif
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
#ifdef QDEV_STITCH
    if (r_) {
      if (empty()) return false;
      v = read();
      return true;
    }
#endif
    if (q_.empty()) return false;
    v = read();
    return true;
  }
  void write(const T &v) {
#ifdef QDEV_STITCH
    if (r_) {
      if (reader()) qs::die(("write to the input stream " + name_).c_str());
      uint8_t buf[qs::MAX_SLOT];
      qs::to_slot(v, buf, r_->slot);
      r_->write(buf);
      return;
    }
#endif
    q_.push_back(v);
  }
  bool write_nb(const T &v) {
#ifdef QDEV_STITCH
    if (r_ && full()) {
      r_->note_wait(qs::WRITE);
      return false;
    }
#endif
    write(v);
    return true;
  }
  stream &operator>>(T &v) { read(v); return *this; }
  stream &operator<<(const T &v) { write(v); return *this; }
};
}  // namespace hls
#ifdef QDEV_STITCH
#include "qdev_stitch_bits.h"
#endif
#endif
