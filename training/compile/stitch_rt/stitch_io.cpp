// qdev: the frame source and sink of the stitched co-simulation (see qdev_stitch.h).
//   stitch_io source WORDS.bin   writes the file's words (slot bytes each) into the channel bound
//                                to out0_V, one word whenever the channel has room
//   stitch_io sink WORDS.bin N   reads N words from the channel bound to in0_V into the file
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "qdev_stitch.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s source WORDS.bin | sink WORDS.bin N\n", argv[0]);
    return 2;
  }
  qs::attach();
  const bool source = std::strcmp(argv[1], "source") == 0;
  const int r = qs::bound(source ? "out0_V" : "in0_V");
  if (r < 0) qs::die("the io stream is not bound");
  qs::Ring ring(static_cast<uint32_t>(r));
  std::vector<uint8_t> w(ring.slot);
  if (source) {
    std::FILE *f = std::fopen(argv[2], "rb");
    if (!f) qs::die("cannot open the source words");
    while (std::fread(w.data(), 1, ring.slot, f) == ring.slot) ring.write(w.data());
    std::fclose(f);
  } else {
    if (argc != 4) qs::die("sink needs N");
    const unsigned long long n = std::strtoull(argv[3], nullptr, 10);
    std::FILE *f = std::fopen(argv[2], "wb");
    if (!f) qs::die("cannot open the sink file");
    for (unsigned long long i = 0; i < n; ++i) {
      ring.read(w.data());
      if (std::fwrite(w.data(), 1, ring.slot, f) != ring.slot) qs::die("sink write failed");
    }
    std::fclose(f);
  }
  qs::done();
  return 0;
}
