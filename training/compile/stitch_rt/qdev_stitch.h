// qdev: the channels of the stitched co-simulation (`qdev compile --verify stitched`).
//
// Every node of the dataflow graph runs as its own process (an HLS node's generated C++, an RTL
// node's Verilator model, the frame source and sink); the streams between them are bounded
// FIFOs in one shared-memory file, each holding exactly its FIFO's depth in words. A write to a
// full FIFO and a read from an empty one block (futex on the node's doorbell, rung by the peer
// at every word it moves), as an AXI stream stalls. The coordinator
// (training/compile/stitch.py) lays out the file, starts the processes, and reads their states
// to detect a deadlock: every live node blocked and no word moved.
//
// Layout (little-endian uint32 words; stitch.py writes the same):
//   header [16]: magic, n_rings, n_nodes, abort, frames
//   ring   [48]: [0] wr (written words, own cache line) [16] rd (read words, own cache line)
//                [32] capacity [33] slot bytes [34] producer node [35] consumer node
//                [36] data offset (bytes, low) [37] (high) [38] peak occupancy
//   node   [16]: [0] doorbell [1] sleeping [2] state [3] waited ring [4] waited side (1 read,
//                2 write) [5] frames done [6..7] words moved [8..9] cycles (RTL)
// then the rings' slots. Words are stored as slot-bytes little-endian bytes: bit i of the AXI
// TDATA is bit i of the slot (element 0 in the least significant bits).
#ifndef QDEV_STITCH_H
#define QDEV_STITCH_H
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace qs {

constexpr uint32_t MAGIC = 0x31545351u;  // "QST1"
constexpr uint32_t HDR_WORDS = 16, RING_WORDS = 48, NODE_WORDS = 16;
constexpr uint32_t MAX_SLOT = 1024;  // bytes per word (8192-bit streams): stitch.py refuses wider
enum State : uint32_t { INIT = 0, RUN = 1, BLOCKED = 2, DONE = 3 };
enum Side : uint32_t { NONE = 0, READ = 1, WRITE = 2 };

using AU = std::atomic<uint32_t>;
static_assert(sizeof(AU) == 4, "atomic<uint32_t> must be a plain 32-bit word");

struct Ctx {
  uint8_t *base = nullptr;
  uint32_t *hdr = nullptr;
  uint32_t node = 0;
  bool attached = false;
};
inline Ctx &ctx() {
  static Ctx c;
  return c;
}

[[noreturn]] inline void die(const char *what) {
  std::fprintf(stderr, "qdev-stitch: %s\n", what);
  std::_Exit(6);
}

inline AU *au(uint32_t *p) { return reinterpret_cast<AU *>(p); }
inline uint32_t *ring_w(uint32_t r) { return ctx().hdr + HDR_WORDS + r * RING_WORDS; }
inline uint32_t *node_w(uint32_t n) { return ctx().hdr + HDR_WORDS + ctx().hdr[1] * RING_WORDS + n * NODE_WORDS; }
inline uint32_t *me() { return node_w(ctx().node); }

inline void attach() {
  Ctx &c = ctx();
  if (c.attached) return;
  const char *path = std::getenv("QDEV_STITCH");
  const char *node = std::getenv("QDEV_STITCH_NODE");
  if (!path || !node) die("QDEV_STITCH and QDEV_STITCH_NODE must be set");
  int fd = open(path, O_RDWR);
  if (fd < 0) die("cannot open the channel file");
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < (off_t)(HDR_WORDS * 4)) die("channel file too small");
  void *p = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) die("mmap failed");
  c.base = static_cast<uint8_t *>(p);
  c.hdr = static_cast<uint32_t *>(p);
  if (c.hdr[0] != MAGIC) die("not a qdev channel file");
  c.node = static_cast<uint32_t>(std::strtoul(node, nullptr, 10));
  if (c.node >= c.hdr[2]) die("node index out of range");
  c.attached = true;
  au(me() + 2)->store(RUN);
}

inline uint32_t frames() { return ctx().hdr[4]; }

// The ring bound to this node's stream NAME (QDEV_STITCH_BIND="in0_V=3,out0_V=7"), or -1.
inline int bound(const char *name) {
  const char *b = std::getenv("QDEV_STITCH_BIND");
  if (!b || !name) return -1;
  std::string s(b), n(name);
  std::size_t pos = 0;
  while (pos <= s.size()) {
    std::size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(pos, end - pos);
    std::size_t eq = item.find('=');
    if (eq != std::string::npos && item.substr(0, eq) == n) {
      attach();
      long r = std::strtol(item.c_str() + eq + 1, nullptr, 10);
      if (r < 0 || (uint32_t)r >= ctx().hdr[1]) die("ring index out of range");
      return (int)r;
    }
    pos = end + 1;
  }
  return -1;
}

inline void futex_wait(AU *a, uint32_t v, long ns) {
  timespec ts{0, ns};
  syscall(SYS_futex, reinterpret_cast<uint32_t *>(a), FUTEX_WAIT, v, &ts, nullptr, 0);
}
inline void futex_wake(AU *a) {
  syscall(SYS_futex, reinterpret_cast<uint32_t *>(a), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

inline void ring_bell(uint32_t node) {
  uint32_t *n = node_w(node);
  au(n + 0)->fetch_add(1);
  if (au(n + 1)->load()) futex_wake(au(n + 0));
}

inline uint32_t bell() { return au(me() + 0)->load(); }

// Sleep until a peer rings this node's doorbell (or 20 ms pass), saying what it waits on.
inline void wait(uint32_t seq, uint32_t ring, Side side) {
  uint32_t *m = me();
  m[3] = ring;
  m[4] = side;
  au(m + 2)->store(BLOCKED);
  au(m + 1)->store(1);
  if (au(m + 0)->load() == seq) futex_wait(au(m + 0), seq, 20 * 1000 * 1000);
  au(m + 1)->store(0);
  au(m + 2)->store(RUN);
  if (au(ctx().hdr + 3)->load()) std::_Exit(5);  // the coordinator stopped the simulation
}

struct Ring {
  uint32_t *w;
  uint8_t *data;
  uint32_t idx, cap, slot, prod, cons;
  explicit Ring(uint32_t r) : w(ring_w(r)), idx(r) {
    cap = w[32];
    slot = w[33];
    prod = w[34];
    cons = w[35];
    uint64_t off = (uint64_t)w[36] | ((uint64_t)w[37] << 32);
    data = ctx().base + off;
    if (slot > MAX_SLOT || cap == 0) die("bad ring");
  }
  AU &wr() { return *au(w + 0); }
  AU &rd() { return *au(w + 16); }
  uint32_t count() { return wr().load(std::memory_order_acquire) - rd().load(std::memory_order_acquire); }
  bool empty() { return count() == 0; }
  bool full() { return count() >= cap; }
  const uint8_t *head() { return data + (uint64_t)(rd().load(std::memory_order_relaxed) % cap) * slot; }
  void pop() {  // the consumer's side, after it took head()
    rd().store(rd().load(std::memory_order_relaxed) + 1, std::memory_order_release);
    moved();
    ring_bell(prod);
  }
  void push(const uint8_t *bytes) {  // the producer's side, with room checked
    uint32_t n = wr().load(std::memory_order_relaxed);
    std::memcpy(data + (uint64_t)(n % cap) * slot, bytes, slot);
    wr().store(n + 1, std::memory_order_release);
    uint32_t occ = n + 1 - rd().load(std::memory_order_acquire);
    if (occ > w[38]) w[38] = occ;
    moved();
    ring_bell(cons);
  }
  static void moved() {
    uint64_t *ops = reinterpret_cast<uint64_t *>(me() + 6);
    ++*ops;
  }
  // blocking, as an AXI stream stalls
  void read(uint8_t *out) {
    for (;;) {
      uint32_t seq = bell();
      if (!empty()) {
        std::memcpy(out, head(), slot);
        pop();
        return;
      }
      wait(seq, idx, READ);
    }
  }
  void write(const uint8_t *bytes) {
    for (;;) {
      uint32_t seq = bell();
      if (!full()) {
        push(bytes);
        return;
      }
      wait(seq, idx, WRITE);
    }
  }
  void note_wait(Side side) {  // a non-blocking access found nothing: what the node would wait on
    me()[3] = idx;
    me()[4] = side;
  }
};

inline void done() {
  if (ctx().attached) au(me() + 2)->store(DONE);
}

// An idle free-running HLS node (nothing moved this call): sleep until a peer moves a word.
inline void idle(uint32_t seq) { wait(seq, me()[3], (Side)me()[4]); }

// bits <-> bytes, least significant first
inline void put_bits(uint8_t *b, unsigned pos, uint64_t v, unsigned n) {
  for (unsigned i = 0; i < n; ++i, ++pos) {
    if ((v >> i) & 1u) b[pos >> 3] |= (uint8_t)(1u << (pos & 7));
  }
}
inline uint64_t get_bits(const uint8_t *b, unsigned pos, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i, ++pos) v |= (uint64_t)((b[pos >> 3] >> (pos & 7)) & 1u) << i;
  return v;
}

template <typename T>
struct Bits;  // the stream word types (qdev_stitch_bits.h, which defines these two)
template <typename T>
inline void to_slot(const T &v, uint8_t *b, uint32_t slot);
template <typename T>
inline T from_slot(const uint8_t *b);

}  // namespace qs
#endif
