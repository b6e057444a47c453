// qdev's AXI-stream testbench for one verilated FINN RTL layer (top module wrapped as `qdev_dut`,
// class Vdut). It streams the packed input words of one or more frames into in0_V, collects every
// word out0_V emits, and stops when the expected count has come (or nothing moved for too long). Words after
// the last expected one are not waited for: a padding layer may already emit the next frame's
// top border, as it does in hardware.
//
// What it models: a clocked AXI4-Stream master and slave with back-pressure. The master keeps
// TVALID and TDATA stable until the handshake (AXI4-Stream rule); the slave drops TREADY at
// random. Both are withheld on a seeded share of cycles (`stall`), so the layer is checked
// under stalls a FIFO-coupled dataflow sees, not only at full rate. Reset is 16 cycles low.
// What it does not model: clock domain crossings (ap_clk2x is tied to ap_clk), AXI-lite
// configuration (tied idle: every layer runs with its generated initial configuration), timing.
//
// Usage: tb IN.bin IN_LIMBS OUT.bin OUT_LIMBS N_OUT MAX_IDLE STALL_PERMILLE SEED
//   IN.bin: the packed input words, each IN_LIMBS little-endian uint32 limbs, least significant first
//   OUT.bin: written with the output words in the same layout, OUT_LIMBS limbs each
//   stdout gets "cycles=C in=I out=O"
//
// With QDEV_STITCH set (the stitched co-simulation, training/compile/stitch.py), the same model
// is one process of the whole dataflow instead: in0_V reads the bounded channel bound to it and
// out0_V writes its channel (stitch_rt/qdev_stitch.h), with TVALID raised whenever the channel
// holds a word and TREADY whenever the next one has room. Usage then: tb N_IN N_OUT (words over
// all frames). A layer with nothing to move for `patience` cycles sleeps until a neighbour moves
// a word (or 20 ms pass, then clocks on: internal work is never lost, only delayed in wall time).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <iostream>
#include <vector>

#include "Vdut.h"
#include "qdev_stitch.h"
#include "verilated.h"

using Word = std::vector<uint32_t>;  // least significant 32 bits first

template <typename T>
static void put(T& port, const Word& w) {
    uint64_t v = w.empty() ? 0 : w[0];
    if (w.size() > 1) v |= static_cast<uint64_t>(w[1]) << 32;
    port = static_cast<T>(v);
}
template <std::size_t N>
static void put(VlWide<N>& port, const Word& w) {
    for (std::size_t i = 0; i < N; ++i) port[i] = i < w.size() ? w[i] : 0;
}
template <typename T>
static Word get(const T& port) {
    uint64_t v = static_cast<uint64_t>(port);
    return {static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)};
}
template <std::size_t N>
static Word get(const VlWide<N>& port) {
    Word w(N);
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
    return w;
}

// Reset held for 16 cycles, both stream handshakes idle, then one cycle out of reset.
static void reset(Vdut& top) {
    auto tick = [&]() {
        top.ap_clk = 0;
        top.eval();
        top.ap_clk = 1;
        top.eval();
    };
    top.ap_rst_n = 0;
    top.in0_V_TVALID = 0;
    top.out0_V_TREADY = 0;
    for (int i = 0; i < 16; ++i) tick();
    top.ap_rst_n = 1;
    tick();
}

static Word limbs_of(const uint8_t* b, uint32_t slot) {
    Word w((slot + 3) / 4, 0);
    std::memcpy(w.data(), b, slot);
    return w;
}

static int stitched(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage (QDEV_STITCH set): %s N_IN N_OUT\n", argv[0]);
        return 2;
    }
    const uint64_t n_in = std::strtoull(argv[1], nullptr, 10);
    const uint64_t n_out = std::strtoull(argv[2], nullptr, 10);
    qs::attach();
    const int ri = qs::bound("in0_V"), ro = qs::bound("out0_V");
    if (ri < 0 || ro < 0) qs::die("in0_V and out0_V must be bound");
    qs::Ring in(ri), out(ro);
    uint8_t obuf[qs::MAX_SLOT];

    VerilatedContext ctx;
    Vdut top{&ctx};
    reset(top);

    uint64_t taken = 0, given = 0, cycles = 0, idle = 0, patience = 32;
    bool timed_out = false;  // the last sleep ended by its timeout, not by a neighbour
    uint64_t* cyc = reinterpret_cast<uint64_t*>(qs::me() + 8);
    while (given < n_out) {
        const uint32_t seq = qs::bell();
        const bool valid = taken < n_in && !in.empty();
        top.in0_V_TVALID = valid;
        if (valid) put(top.in0_V_TDATA, limbs_of(in.head(), in.slot));
        top.out0_V_TREADY = !out.full();
        top.ap_clk = 0;
        top.eval();
        const bool in_fire = valid && top.in0_V_TREADY;
        const bool out_fire = top.out0_V_TVALID && top.out0_V_TREADY;
        if (out_fire) {
            Word w = get(top.out0_V_TDATA);
            std::memset(obuf, 0, out.slot);
            std::memcpy(obuf, w.data(), std::min<std::size_t>(out.slot, 4 * w.size()));
            out.push(obuf);
            ++given;
        }
        top.ap_clk = 1;
        top.eval();
        if (in_fire) {
            in.pop();
            ++taken;
        }
        *cyc = ++cycles;
        if (in_fire || out_fire) {
            if (timed_out && patience < 65536) patience *= 2;  // it had internal work: wait longer next time
            idle = 0;
            timed_out = false;
            continue;
        }
        if (++idle < patience) continue;
        const bool starved = taken < n_in && in.empty();
        const bool blocked = out.full();
        qs::wait(seq, blocked ? out.idx : in.idx, blocked ? qs::WRITE : (starved || taken >= n_in ? qs::READ : qs::NONE));
        timed_out = qs::bell() == seq;  // no neighbour moved a word since this cycle began
        idle = 0;
    }
    top.final();
    qs::done();
    std::printf("cycles=%llu in=%llu out=%llu\n", static_cast<unsigned long long>(cycles),
                static_cast<unsigned long long>(taken), static_cast<unsigned long long>(given));
    return taken == n_in ? 0 : 3;
}

int main(int argc, char** argv) {
    if (std::getenv("QDEV_STITCH")) return stitched(argc, argv);
    if (argc != 9) {
        std::fprintf(stderr, "usage: %s IN.bin IN_LIMBS OUT.bin OUT_LIMBS N_OUT MAX_IDLE STALL_PERMILLE SEED\n", argv[0]);
        return 2;
    }
    const std::size_t in_limbs = std::strtoull(argv[2], nullptr, 10);
    const std::size_t out_limbs = std::strtoull(argv[4], nullptr, 10);
    std::vector<Word> in;
    {
        std::ifstream f(argv[1], std::ios::binary);
        Word w(in_limbs);
        while (in_limbs && f.read(reinterpret_cast<char*>(w.data()), 4 * in_limbs)) in.push_back(w);
    }
    const std::size_t n_out = std::strtoull(argv[5], nullptr, 10);
    const uint64_t max_idle = std::strtoull(argv[6], nullptr, 10);
    const uint32_t stall = std::strtoul(argv[7], nullptr, 10);
    uint64_t rng = std::strtoull(argv[8], nullptr, 10) * 2862933555777941757ULL + 3037000493ULL;
    auto chance = [&]() {  // true on (1000 - stall) of 1000 cycles
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        return ((rng >> 33) % 1000) >= stall;
    };

    VerilatedContext ctx;
    Vdut top{&ctx};
    reset(top);

    std::vector<Word> out;
    std::size_t ip = 0;
    uint64_t cycles = 0, idle = 0;
    bool holding = false;  // TVALID raised and not yet taken: must stay up with the same data
    while (out.size() < n_out) {
        bool valid = ip < in.size() && (holding || chance());
        top.in0_V_TVALID = valid;
        if (valid) put(top.in0_V_TDATA, in[ip]);
        top.out0_V_TREADY = chance();
        top.ap_clk = 0;
        top.eval();
        const bool in_fire = valid && top.in0_V_TREADY;
        const bool out_fire = top.out0_V_TVALID && top.out0_V_TREADY;
        if (out_fire) out.push_back(get(top.out0_V_TDATA));
        top.ap_clk = 1;
        top.eval();
        holding = valid && !in_fire;
        if (in_fire) ++ip;
        ++cycles;
        idle = (in_fire || out_fire) ? 0 : idle + 1;
        if (idle > max_idle) break;
    }
    std::FILE* f = std::fopen(argv[3], "wb");
    if (!f) { std::perror(argv[3]); return 2; }
    for (auto w : out) {
        w.resize(out_limbs, 0);
        std::fwrite(w.data(), 4, out_limbs, f);
    }
    std::fclose(f);
    std::printf("cycles=%llu in=%zu out=%zu\n", static_cast<unsigned long long>(cycles), ip, out.size());
    top.final();
    return out.size() == n_out && ip == in.size() ? 0 : 3;
}
