"""The stitched co-simulation (``qdev compile --verify stitched``): every node of the accelerator
at once, in its hardware language, connected by FIFOs of exactly the depths the build chose.

* **Graph**: the graph FINN's FIFO step builds from this build's depths (:func:`.fifo_step.
  finn_fifo_model`: width converters and a StreamingFIFO on every stream, FINN's own
  transformations). Every node but the FIFOs becomes a process; each FIFO becomes a bounded
  channel of its depth in words (a chain of FIFOs, their sum; a stream without one, 1 word).
* **Processes**: an HLS node runs FINN's generated C++ (its code generation for cppsim, the
  ``main`` rewritten to loop over the frames and to leave its input and output to the channels)
  compiled with ``-DQDEV_STITCH``, which binds its ``in*_V`` / ``out*_V`` streams to channels
  (``hls_shim/hls_stream.h``); a free-running node (duplicate, concat) is called again and again,
  as in hardware, and sleeps while a call moves nothing. An RTL node runs the same Verilator
  model ``--verify verilator`` builds, its testbench in channel mode
  (``rtl_harness/axis_tb.cpp``). A source writes the golden frames' words, a sink reads the output.
* **Channels** (``stitch_rt/qdev_stitch.h``): one shared-memory file; a write to a full channel or
  a read from an empty one blocks, as an AXI stream stalls.
* **Deadlock**: when every live process is blocked and no word has moved for ``deadlock_s``, the
  simulation stops and reports each blocked node and the channel it waits on (which side, and
  how full). Nothing hangs: a run is also bounded by ``timeout_s``.
* **Check**: the sink's words are unpacked as FINN packs them and compared with the golden codes,
  element count first.

What it is not: a timed simulation. HLS C++ has no clock, and each RTL model counts only its own
cycles, so no cycles-per-frame figure comes out of it (the rate is the timed token model's,
:func:`.dataflow_sim.timed`). Which words exist and in which order does not depend on timing:
the HLS nodes are sequential processes with blocking reads and writes (a Kahn network, with each
bounded channel's free slots as a channel running back), so their outputs, and whether the
whole network deadlocks, are the same under any schedule. RTL nodes poll TVALID/TREADY each
cycle; their words are the same under any stall pattern (checked per node by ``--verify
verilator``), their read-ahead may differ with timing, within their FIFOs.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qdev.core.errors import ConfigError

__all__ = ["StitchConfig", "Channel", "Process", "plan_processes", "run_stitched", "RUNTIME"]

RUNTIME = Path(__file__).with_name("stitch_rt")
MAGIC = 0x31545351
HDR, RING, NODE = 16, 48, 16  # words, as qdev_stitch.h
MAX_SLOT = 1024
STATES = {0: "starting", 1: "running", 2: "blocked", 3: "done"}
SIDES = {0: "internal work", 1: "reading", 2: "writing"}


@dataclass
class StitchConfig:
    """How to run the co-simulation.

    Attributes:
        frames: golden frames streamed back to back (None: all of them).
        deadlock_s: how long every live process must stay blocked with no word moving before
            the run counts as deadlocked (the detection's bound, in wall time).
        timeout_s: the whole run's bound (a slow, not a stuck, simulation ends here too).
        poll_s: how often the coordinator reads the processes' states.
        opt: g++ optimisation of the HLS nodes' processes.
        jobs: parallel compiles.
        cache: compiled HLS processes and the io helper (default ``$QDEV_CACHE/stitch``).
        keep: a folder to keep the run in (channel file, logs, words); None: a temporary one.
    """

    frames: int | None = None
    deadlock_s: float = 1.0
    timeout_s: float = 3600.0
    poll_s: float = 0.05
    opt: str = "-O2"
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache: Path | None = None
    keep: Path | None = None

    def cache_dir(self) -> Path:
        from qdev.training.data.cache import default_cache_dir

        return Path(self.cache) if self.cache is not None else default_cache_dir() / "stitch"


@dataclass
class Channel:
    """One bounded FIFO between two processes."""

    name: str  # the producer's output tensor (the stream's name before its FIFO)
    producer: int
    consumer: int
    capacity: int  # words
    width_bits: int  # padded
    fifos: tuple[str, ...]  # FINN's StreamingFIFO nodes it stands for

    @property
    def slot(self) -> int:
        return (self.width_bits + 7) // 8


@dataclass
class Process:
    """One node of the graph (or the source / sink) and the channels bound to its streams."""

    name: str
    op_type: str  # "source" / "sink" for the io processes
    binds: dict[str, int] = field(default_factory=dict)  # stream name in its code -> channel
    argv: list[str] = field(default_factory=list)
    cwd: Path | None = None


def _real_producer(model, tensor: str) -> tuple[object | None, str, list]:  # noqa: ANN001
    """Walk back from ``tensor`` through StreamingFIFO nodes: (producer node or None for the
    graph input, the tensor it writes, the FIFO nodes passed)."""
    fifos = []
    while True:
        p = model.find_producer(tensor)
        if p is None or not p.op_type.startswith("StreamingFIFO"):
            return p, tensor, fifos
        fifos.append(p)
        tensor = p.input[0]


def _fifo_depth(fifos: list) -> int:
    """The depth of a chain of FIFO nodes (1: a direct connection)."""
    from qonnx.custom_op.registry import getCustomOp

    return sum(int(getCustomOp(f).get_nodeattr("depth")) for f in fifos) if fifos else 1


def _out_name(node, port: int) -> str:  # noqa: ANN001
    """The name of a node's output port in its generated code."""
    from qonnx.custom_op.registry import getCustomOp

    hls_free = node.op_type.endswith("_hls") and _freerunning(getCustomOp(node))
    return f"strm{port}" if hls_free else f"out{port}_V"


def _input_channel(model, n, i: int, t: str, index: dict, src: int) -> tuple[Channel, str]:  # noqa: ANN001
    """The channel into input ``i`` of node ``n`` (tensor ``t``) and the producer's port name;
    the producer's word width must equal the reader's (no width converter is inserted here)."""
    from qonnx.custom_op.registry import getCustomOp

    p, pt, fifos = _real_producer(model, t)
    width = int(getCustomOp(n).get_instream_width_padded(i))
    if p is None:
        prod, port_name = src, "out0_V"
    else:
        prod = index[p.name]
        port = list(p.output).index(pt)
        pw = int(getCustomOp(p).get_outstream_width_padded(port))
        if pw != width:
            raise ConfigError(
                f"stream {pt}: {p.name} writes {pw}-bit words, {n.name} reads {width}-bit "
                "words and no width converter stands between them"
            )
        port_name = _out_name(p, port)
    ch = Channel(pt, prod, index[n.name], _fifo_depth(fifos), width, tuple(f.name for f in fifos))
    return ch, port_name


def plan_processes(model) -> tuple[list[Process], list[Channel], dict]:  # noqa: ANN001
    """The processes and channels of ``model`` (a graph with FIFOs,
    :func:`.fifo_step.finn_fifo_model`).
    Returns them and the io facts: the first and last node (for packing) and words per frame."""
    from qonnx.custom_op.registry import getCustomOp

    nodes = [n for n in model.graph.node if not n.op_type.startswith("StreamingFIFO")]
    index = {n.name: i for i, n in enumerate(nodes)}
    procs = [Process(n.name, n.op_type) for n in nodes]
    src, sink = len(nodes), len(nodes) + 1
    procs += [Process("source", "source"), Process("sink", "sink")]
    chans: list[Channel] = []
    first = None
    for n in nodes:
        for i, t in enumerate(n.input):
            if model.get_initializer(t) is not None:
                continue  # weights and thresholds live in the layer
            ch, port_name = _input_channel(model, n, i, t, index, src)
            if ch.producer == src:
                first = n
            procs[ch.producer].binds[port_name] = len(chans)
            procs[index[n.name]].binds[f"in{i}_V"] = len(chans)
            chans.append(ch)
    p, pt, fifos = _real_producer(model, model.graph.output[0].name)
    if p is None:
        raise ConfigError("the graph's output is its input: nothing to simulate")
    port = list(p.output).index(pt)
    procs[index[p.name]].binds[_out_name(p, port)] = len(chans)
    procs[sink].binds["in0_V"] = len(chans)
    width = int(getCustomOp(p).get_outstream_width_padded(port))
    names = tuple(f.name for f in fifos)
    chans.append(Channel(pt, index[p.name], sink, _fifo_depth(fifos), width, names))
    for c in chans:
        if c.slot > MAX_SLOT:
            raise ConfigError(
                f"stream {c.name}: {c.width_bits}-bit words exceed the "
                f"co-simulation's {MAX_SLOT * 8}"
            )
    if first is None:
        raise ConfigError("no node reads the graph's input")
    return procs, chans, {"first": first, "last": p}


def _freerunning(inst) -> bool:  # noqa: ANN001
    try:
        return inst.get_nodeattr("hls_style") == "freerunning"
    except Exception:  # noqa: BLE001 - a layer without the attribute is not free-running
        return False


# ------------------------------------------------------------------------------- HLS code ----

_MAIN = """
static void qdev_frame() {
$STREAMDECLARATIONS$
$READNPYDATA$
$DOCOMPUTE$
}

int main() {
  qs::attach();
  for (uint32_t f = 0; f < qs::frames(); ++f) {
    qdev_frame();
    qs::me()[5] = f + 1;
  }
  qs::done();
  return 0;
}
"""

_MAIN_FREE = """
static void qdev_run() {
$STREAMDECLARATIONS$
$READNPYDATA$
for (;;) {
  const uint32_t seq = qs::bell();
$DOCOMPUTE$
  if ($TIMEOUT_CONDITION$) { qs::idle(seq); }
  else {
$TIMEOUT_READ_STREAM$
  }
}
}

int main() {
  qs::attach();
  qdev_run();  // free-running, as in hardware: stopped by the coordinator
  return 0;
}
"""

_HEAD = """#define HLS_CONSTEXPR_ENABLE
#define AP_INT_MAX_W $AP_INT_MAX_W$
#define HLS_NO_XIL_FPO_LIB
#include "cnpy.h"
#include "npy2apintstream.hpp"
#include "npy2vectorstream.hpp"
#include <vector>
#include "bnn-library.h"
#include "qdev_stitch.h"

$GLOBALS$

$DEFINES$
"""


def hls_source(model, node, folder: Path, bound_inputs: set[int]) -> None:  # noqa: ANN001
    """Write ``node``'s stitched C++ into ``folder`` with FINN's own code generation for cppsim
    (parameters, includes, defines, stream declarations, the compute call), the reads of its
    bound inputs from npy files and the writes of its outputs to npy files left out."""
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(node)
    folder.mkdir(parents=True, exist_ok=True)
    old = inst.get_nodeattr("code_gen_dir_cppsim")
    inst.set_nodeattr("code_gen_dir_cppsim", str(folder))
    try:
        inst.code_gen_dict.clear()
        inst.code_gen_dict["$AP_INT_MAX_W$"] = [str(inst.get_ap_int_max_w())]
        inst.generate_params(model, str(folder))
        inst.global_includes()
        inst.defines("cppsim")
        inst.read_npy_data()
        inst.strm_decl()
        inst.docompute()
        free = _freerunning(inst)
        if free:
            inst.timeout_condition()
            inst.timeout_read_stream()
        reads = [
            ln
            for ln in inst.code_gen_dict.get("$READNPYDATA$", [])
            if not any(f"in{i}_V" in ln for i in bound_inputs)
        ]
        inst.code_gen_dict["$READNPYDATA$"] = reads
        text = _HEAD + (_MAIN_FREE if free else _MAIN)
        for key, lines in inst.code_gen_dict.items():
            text = text.replace(key, "\n".join(lines))
        inst.code_gen_dict.clear()
    finally:
        inst.set_nodeattr("code_gen_dir_cppsim", old)
    (folder / "stitched.cpp").write_text(text)


def _io_helper(cfg: StitchConfig) -> Path:
    src = RUNTIME / "stitch_io.cpp"
    h = hashlib.sha256(src.read_bytes() + (RUNTIME / "qdev_stitch.h").read_bytes()).hexdigest()[:16]
    exe = cfg.cache_dir() / f"io-{h}"
    if not exe.is_file():
        exe.parent.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_name(exe.name + f".{os.getpid()}")
        r = subprocess.run(
            ["g++", "-std=c++17", "-O2", "-w", f"-I{RUNTIME}", str(src), "-o", str(tmp)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise ConfigError(
                f"the co-simulation's io helper does not compile: {r.stderr.strip()[-300:]}"
            )
        os.replace(tmp, exe)
    return exe


# ----------------------------------------------------------------------------- channels ----


def _layout(chans: list[Channel], n_procs: int, frames: int) -> tuple[np.ndarray, int]:
    """The channel file's header words and its size in bytes."""
    words = np.zeros(HDR + RING * len(chans) + NODE * n_procs, np.uint32)
    words[:5] = (MAGIC, len(chans), n_procs, 0, frames)
    off = ((words.nbytes + 63) // 64) * 64
    for k, c in enumerate(chans):
        r = HDR + RING * k
        words[r + 32 : r + 38] = (
            c.capacity,
            c.slot,
            c.producer,
            c.consumer,
            off & 0xFFFFFFFF,
            off >> 32,
        )
        off += ((c.capacity * c.slot + 63) // 64) * 64
    return words, off


class _Board:
    """The coordinator's view of the channel file."""

    def __init__(
        self, path: Path, words: np.ndarray, size: int, n_chans: int, n_procs: int
    ) -> None:
        with open(path, "wb") as fh:
            fh.truncate(size)
            fh.write(words.tobytes())
        self._fh = open(path, "r+b")  # noqa: SIM115 - closed in close()
        self._mm = mmap.mmap(self._fh.fileno(), size)
        self.w = np.frombuffer(self._mm, np.uint32, count=len(words))
        self.n_chans, self.n_procs = n_chans, n_procs

    def ring(self, k: int) -> np.ndarray:
        return self.w[HDR + RING * k : HDR + RING * (k + 1)]

    def node(self, i: int) -> np.ndarray:
        base = HDR + RING * self.n_chans
        return self.w[base + NODE * i : base + NODE * (i + 1)]

    def states(self) -> np.ndarray:
        base = HDR + RING * self.n_chans
        return self.w[base : base + NODE * self.n_procs].reshape(self.n_procs, NODE)[:, 2]

    def moved(self) -> int:
        r = self.w[HDR : HDR + RING * self.n_chans].reshape(self.n_chans, RING)
        return int(r[:, 0].astype(np.int64).sum() + r[:, 16].astype(np.int64).sum())

    def abort(self) -> None:
        self.w[3] = 1

    def close(self) -> None:
        del self.w
        self._mm.close()
        self._fh.close()


# ---------------------------------------------------------------------------------- run ----


def _words_per_frame(inst, out: bool) -> int:  # noqa: ANN001
    shape = inst.get_folded_output_shape(0) if out else inst.get_folded_input_shape(0)
    return int(np.prod(shape[:-1]))


def _launch(procs: list[Process], path: Path, logs: Path) -> list[subprocess.Popen]:
    out = []
    for i, p in enumerate(procs):
        env = dict(
            os.environ,
            QDEV_STITCH=str(path),
            QDEV_STITCH_NODE=str(i),
            QDEV_STITCH_BIND=",".join(f"{k}={v}" for k, v in p.binds.items()),
            OMP_NUM_THREADS="1",
        )
        log = open(logs / f"{i:03d}-{p.name}.log", "wb")  # noqa: SIM115 - owned by the process
        out.append(
            subprocess.Popen(p.argv, cwd=p.cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        )
        log.close()
    return out


def _describe_block(board: _Board, procs: list[Process], chans: list[Channel], i: int) -> dict:
    nw = board.node(i)
    rec = {"node": procs[i].name, "op_type": procs[i].op_type, "state": STATES.get(int(nw[2]), "?")}
    side, k = int(nw[4]), int(nw[3])
    if side in (1, 2) and k < len(chans):
        c, r = chans[k], board.ring(k)
        held = int(r[0]) - int(r[16])
        rec.update(
            waits=SIDES[side],
            channel=c.name,
            held=held,
            capacity=c.capacity,
            peer=procs[c.producer if side == 1 else c.consumer].name,
        )
        rec["why"] = (
            f"{procs[i].name} waits to read {c.name} (empty; written by {rec['peer']})"
            if side == 1
            else f"{procs[i].name} waits to write {c.name} (full, {held}/{c.capacity} words; read "
            "by "
            f"{rec['peer']})"
        )
    else:
        rec["why"] = f"{procs[i].name} waits ({SIDES.get(side, '?')})"
    return rec


def _supervise(
    board: _Board,
    procs: list[Process],
    chans: list[Channel],
    popen: list[subprocess.Popen],
    cfg: StitchConfig,
    sink: int,
    progress: Callable[[int, int], None] | None,
    sink_words: int,
) -> dict:
    t0 = time.perf_counter()
    last_moved, still_since = -1, None
    while True:
        time.sleep(cfg.poll_s)
        codes = [p.poll() for p in popen]
        if progress:
            progress(int(board.ring(len(chans) - 1)[16]), sink_words)
        bad = [i for i, c in enumerate(codes) if c not in (None, 0)]
        if bad:
            return {
                "status": "failed",
                "failed": [{"node": procs[i].name, "exit": codes[i]} for i in bad],
            }
        if codes[sink] == 0:
            return {"status": "completed"}
        live = [i for i, c in enumerate(codes) if c is None]
        moved = board.moved()
        blocked = bool(np.all(board.states()[live] == 2))
        if blocked and moved == last_moved:
            still_since = still_since or time.perf_counter()
            if time.perf_counter() - still_since >= cfg.deadlock_s:
                return {
                    "status": "deadlock",
                    "blocked": [_describe_block(board, procs, chans, i) for i in live],
                    "detected_after_s": round(time.perf_counter() - still_since, 2),
                }
        else:
            still_since = None
        last_moved = moved
        if time.perf_counter() - t0 > cfg.timeout_s:
            return {
                "status": "timeout",
                "states": [_describe_block(board, procs, chans, i) for i in live],
            }


def _stop(board: _Board, popen: list[subprocess.Popen]) -> None:
    board.abort()  # sleepers wake within 20 ms, see it, and exit
    deadline = time.monotonic() + 2.0
    for p in popen:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _write_input(pixels: np.ndarray, first, ch: Channel, path: Path) -> None:  # noqa: ANN001
    """The golden pixels packed into the first node's input words, as the source process reads
    them."""
    from qdev.training.compile.verilate import pack_words

    simd = int(first.get_folded_input_shape(0)[-1])
    words_in = pack_words(
        pixels.reshape(-1, simd).astype(np.int64),
        first.get_input_datatype(0).bitwidth(),
        ch.width_bits,
    )
    _limbs_to_bytes(words_in, ch.slot).tofile(path)


def _assign_programs(
    procs: list[Process], model, hls_exe: dict, rtl_exe: dict, work: Path, frames: int
) -> None:  # noqa: ANN001
    """Each node process's command line and folder: its HLS program, or its Verilator model
    (run in a folder of its own with the memory files it reads)."""
    from qonnx.custom_op.registry import getCustomOp

    by_name = {n.name: n for n in model.graph.node}
    for p in procs[:-2]:
        if p.name in hls_exe:
            p.argv, p.cwd = [str(hls_exe[p.name][0])], hls_exe[p.name][1]
            continue
        if p.name not in rtl_exe:
            raise ConfigError(f"{p.name} ({p.op_type}): no simulator was built for it")
        exe, data = rtl_exe[p.name]
        d = work / "rtl" / p.name
        d.mkdir(parents=True, exist_ok=True)
        for name, f in data.items():
            shutil.copyfile(f, d / name)
        inst = getCustomOp(by_name[p.name])
        n_in = _words_per_frame(inst, out=False) * frames
        n_out = _words_per_frame(inst, out=True) * frames
        p.argv, p.cwd = [str(exe), str(n_in), str(n_out)], d


def _run_board(
    procs: list[Process],
    chans: list[Channel],
    work: Path,
    cfg: StitchConfig,
    progress: Callable[[int, int], None] | None,
    frames: int,
    total_out: int,
) -> tuple[dict, float]:
    """Launch every process on a shared-memory board of channels and supervise them to the end;
    (the result with each channel's peak and words, the run's seconds)."""
    words, size = _layout(chans, len(procs), frames)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else work
    path = Path(tempfile.mkstemp(prefix="qdev-stitch-", dir=shm)[1])
    board = _Board(path, words, size, len(chans), len(procs))
    popen: list[subprocess.Popen] = []
    try:
        t_run = time.perf_counter()
        popen = _launch(procs, path, work / "logs")
        sink = len(procs) - 1
        res = _supervise(board, procs, chans, popen, cfg, sink, progress, total_out)
        run_s = time.perf_counter() - t_run
        _stop(board, popen)
        res["channels"] = [
            {
                "stream": c.name,
                "producer": procs[c.producer].name,
                "consumer": procs[c.consumer].name,
                "capacity": c.capacity,
                "width_bits": c.width_bits,
                "fifos": list(c.fifos),
                "peak": int(board.ring(k)[38]),
                "words": int(board.ring(k)[0]),
            }
            for k, c in enumerate(chans)
        ]
        res["words_moved"] = board.moved() // 2
    finally:
        for p in popen:
            if p.poll() is None:
                p.kill()
                p.wait()
        board.close()
        path.unlink(missing_ok=True)
    return res, run_s


def _check_output(res: dict, out_bin: Path, ch: Channel, last, codes: np.ndarray, n: int) -> None:  # noqa: ANN001
    """The sink's words against the golden codes: ``output_words``, ``elements``,
    ``elements_differing`` and ``bit_exact`` into ``res`` (only a completed run with every word
    is compared)."""
    from qdev.training.compile.verilate import unpack_words

    frames = len(codes)
    got = np.fromfile(out_bin, np.uint8) if out_bin.is_file() else np.zeros(0, np.uint8)
    n_words = got.size // ch.slot
    res["output_words"] = {"received": int(n_words), "expected": n}
    res["bit_exact"] = False
    if res["status"] != "completed" or n_words != n:
        return
    odt = last.get_output_datatype(0)
    limbs = _bytes_to_limbs(got[: n_words * ch.slot].reshape(n_words, ch.slot))
    simd = int(last.get_folded_output_shape(0)[-1])
    out = unpack_words(limbs, simd, odt.bitwidth(), odt.signed()).reshape(frames, -1)
    want = codes.reshape(frames, -1)
    res["elements"] = {"received": int(out.size), "expected": int(want.size)}
    same_shape = out.shape == want.shape
    res["elements_differing"] = int(np.count_nonzero(out != want)) if same_shape else None
    res["bit_exact"] = same_shape and res["elements_differing"] == 0


def run_stitched(
    model,
    pixels: np.ndarray,
    codes: np.ndarray,
    hls_exe: dict[str, tuple[Path, Path]],  # noqa: ANN001
    rtl_exe: dict[str, tuple[Path, dict[str, Path]]],
    cfg: StitchConfig,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the co-simulation of ``model`` (with FIFOs) on ``pixels`` ([N, H, W] uint8), its output
    against ``codes`` ([N, H, W, C], the golden codes). ``hls_exe``: node -> (process, folder it
    runs in); ``rtl_exe``: node -> (Verilator model, memory files it reads). Returns the report."""
    from qonnx.custom_op.registry import getCustomOp

    t0 = time.perf_counter()
    procs, chans, io = plan_processes(model)
    frames = int(cfg.frames or len(pixels))
    pixels, codes = pixels[:frames], codes[:frames]
    src, sink = len(procs) - 2, len(procs) - 1
    work = Path(cfg.keep) if cfg.keep else Path(tempfile.mkdtemp(prefix="qdev-stitch-"))
    shutil.rmtree(work / "logs", ignore_errors=True)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    first, last = getCustomOp(io["first"]), getCustomOp(io["last"])
    _write_input(pixels, first, chans[procs[src].binds["out0_V"]], work / "in.bin")
    total_out = _words_per_frame(last, out=True) * frames
    io_exe = _io_helper(cfg)
    procs[src].argv, procs[src].cwd = [str(io_exe), "source", str(work / "in.bin")], work
    sink_argv = [str(io_exe), "sink", str(work / "out.bin"), str(total_out)]
    procs[sink].argv, procs[sink].cwd = sink_argv, work
    _assign_programs(procs, model, hls_exe, rtl_exe, work, frames)
    res, run_s = _run_board(procs, chans, work, cfg, progress, frames, total_out)
    res.update(
        frames=frames,
        processes=len(procs),
        hls_processes=len(hls_exe),
        rtl_processes=len(rtl_exe),
        channels_count=len(chans),
        run_s=round(run_s, 2),
    )
    if res["status"] == "failed":
        for f in res["failed"]:
            log = next((work / "logs").glob(f"*-{f['node']}.log"), None)
            f["log"] = log.read_text(errors="replace")[-400:] if log else ""
    _check_output(res, work / "out.bin", chans[-1], last, codes, total_out)
    res["summary"] = _summary(res)
    res["seconds"] = round(time.perf_counter() - t0, 2)
    if not cfg.keep:
        shutil.rmtree(work, ignore_errors=True)
    return res


def _summary(res: dict) -> str:
    """One line: what happened, and on a deadlock its cause as the graph shows it (a fork held by
    a full branch, a join starving on the other)."""
    got = res["output_words"]
    if res["status"] == "completed":
        diff = res.get("elements_differing")
        return (
            f"completed: {res['frames']} frames back to back through {res['processes']} processes "
            "and "
            f"{res['channels_count']} FIFOs, {got['received']}/{got['expected']} output words, "
            + (
                "bit-exact"
                if res.get("bit_exact")
                else f"{diff} elements differ from the golden codes"
            )
        )
    if res["status"] == "deadlock":
        blocked = res["blocked"]
        chans = {c["stream"]: c for c in res.get("channels", [])}
        full = [b for b in blocked if b.get("waits") == "writing"]
        empty = [b for b in blocked if b.get("waits") == "reading"]
        outs: dict[str, int] = {}
        ins: dict[str, int] = {}
        for c in chans.values():
            outs[c["producer"]] = outs.get(c["producer"], 0) + 1
            ins[c["consumer"]] = ins.get(c["consumer"], 0) + 1
        forks = [b["why"] for b in full if outs.get(b["node"], 0) > 1]
        joins = [b["why"] for b in empty if ins.get(b["node"], 0) > 1]
        cause = "; ".join((forks + joins)[:4]) or (
            blocked[0]["why"] if blocked else "no process left"
        )
        return (
            f"DEADLOCK after {got['received']} of {got['expected']} output words: {len(full)} "
            "processes wait on a "
            f"full FIFO, {len(empty)} on an empty one; {cause}"
        )
    if res["status"] == "failed":
        return "a process failed: " + ", ".join(
            f"{f['node']} (exit {f['exit']})" for f in res["failed"]
        )
    return f"timed out after {got['received']} of {got['expected']} output words"


def _limbs_to_bytes(limbs: np.ndarray, slot: int) -> np.ndarray:
    b = np.ascontiguousarray(limbs.astype("<u4")).view(np.uint8).reshape(limbs.shape[0], -1)
    out = np.zeros((limbs.shape[0], slot), np.uint8)
    n = min(slot, b.shape[1])
    out[:, :n] = b[:, :n]
    return out


def _bytes_to_limbs(b: np.ndarray) -> np.ndarray:
    n = math.ceil(b.shape[1] / 4) * 4
    pad = np.zeros((b.shape[0], n), np.uint8)
    pad[:, : b.shape[1]] = b
    return pad.view("<u4").reshape(b.shape[0], -1).astype(np.uint32)


# ------------------------------------------------------------------------------- whole ----


def stitched_graph(model, plan: list[dict], part: str, depths: dict[str, int] | None = None):  # noqa: ANN001, ANN201
    """The graph FINN's FIFO step builds from ``model`` (a folded graph) at the plan's depths, or
    with ``depths`` (stream -> words) in place of some of them (what the tests and the bench
    try: FINN's minimum, half the skips). A copy: ``model`` is not changed."""
    from copy import deepcopy

    from qonnx.core.modelwrapper import ModelWrapper

    from qdev.training.compile.fifo_step import apply_fifo_depths, finn_fifo_model

    plan = [
        dict(f, depth=int(depths.get(f["stream"], f["depth"]))) if depths else dict(f) for f in plan
    ]
    m = apply_fifo_depths(ModelWrapper(deepcopy(model.model)), plan)
    fm, _ = finn_fifo_model(m, plan, part)
    return fm


def _build_hls(fm, work: Path, deps, cfg: StitchConfig) -> tuple[dict, dict]:  # noqa: ANN001
    """Every HLS node's C++ generated with its channel binding and compiled (cached);
    (node -> (program, folder), node -> compile record)."""
    from concurrent.futures import ThreadPoolExecutor

    from qdev.training.compile.cppsim import CppSimConfig, _compile_one

    procs, _, _ = plan_processes(fm)
    binds = {p.name: p.binds for p in procs}
    hls_nodes = [n for n in fm.graph.node if n.op_type.endswith("_hls")]
    for n in hls_nodes:
        bound = {i for i in range(len(n.input)) if f"in{i}_V" in binds[n.name]}
        hls_source(fm, n, work / "hls" / n.name, bound)
    gxx = subprocess.run(["g++", "--version"], capture_output=True, text=True)
    if gxx.returncode != 0:
        raise ConfigError("the co-simulation needs g++ (apt-get install g++)")
    rt = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(RUNTIME.glob("*.h")))).hexdigest()
    ccfg = CppSimConfig(opt=cfg.opt, jobs=cfg.jobs, cache=cfg.cache_dir() / "hls")
    salt = "|".join([gxx.stdout.splitlines()[0], ccfg.opt, deps.fingerprint(), rt])
    extra = ("-DQDEV_STITCH", f"-I{RUNTIME}")
    with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
        futs = {
            n.name: pool.submit(_compile_one, work / "hls" / n.name, deps, ccfg, salt, extra)
            for n in hls_nodes
        }
        recs = {k: f.result() for k, f in futs.items()}
    bad = {k: r["error"] for k, r in recs.items() if not r["compiled"]}
    if bad:
        k = next(iter(bad))
        raise ConfigError(f"{k}: its stitched C++ does not compile: {' '.join(bad[k][-3:])}")
    hls = {
        k: (ccfg.cache_dir() / r["key"] / "node_model", work / "hls" / k) for k, r in recs.items()
    }
    return hls, recs


def _build_rtl(fm, vl, vcfg, clk_ns: float, part: str) -> tuple[dict, dict]:  # noqa: ANN001
    """Every RTL node's HDL generated and verilated with the channel testbench (the ``--verify
    verilator`` cache); (node -> (model, memory files), node -> (build, record))."""
    from qonnx.custom_op.registry import getCustomOp

    from qdev.training.compile.verilate import build_nodes, generate_rtl

    rtl_nodes = [
        n
        for n in fm.graph.node
        if n.op_type.endswith("_rtl") and not n.op_type.startswith("StreamingFIFO")
    ]
    names = {n.name for n in rtl_nodes}
    generate_rtl(fm, part, clk_ns, only=names)
    built = build_nodes(fm, vl, vcfg, only=names)
    bad = {k: r["error"] for k, (_, r) in built.items() if not r["built"]}
    if bad:
        k = next(iter(bad))
        raise ConfigError(f"{k}: its Verilator model does not build: {bad[k]}")
    missing = [n.name for n in rtl_nodes if n.name not in built]
    if missing:
        inst = getCustomOp(next(n for n in rtl_nodes if n.name == missing[0]))
        raise ConfigError(
            f"{missing[0]}: the co-simulation cannot drive it ({inst.onnx_node.op_type})"
        )
    rtl = {k: (vcfg.cache_dir() / b.key / "tb", b.data) for k, (b, _) in built.items()}
    return rtl, built


def build_processes(
    fm,
    work: Path,
    deps,
    vl,
    cfg: StitchConfig,
    vcfg,  # noqa: ANN001
    clk_ns: float,
    part: str,
) -> tuple[dict, dict, dict]:
    """Generate and build every node's process of ``fm``: HLS nodes compiled with the channel
    binding (cached), RTL nodes verilated with the channel testbench (the ``--verify verilator``
    cache). Returns (hls node -> (exe, folder), rtl node -> (exe, memory files), build facts)."""
    t0 = time.perf_counter()
    hls, hls_recs = _build_hls(fm, work, deps, cfg)
    t_hls = time.perf_counter() - t0
    rtl, built = _build_rtl(fm, vl, vcfg, clk_ns, part)
    facts = {
        "hls_built": len(hls),
        "hls_cached": sum(r["cached"] for r in hls_recs.values()),
        "hls_build_s": round(t_hls, 1),
        "rtl_built": len(rtl),
        "rtl_cached": sum(r["cached"] for _, r in built.values()),
        "rtl_build_s": round(time.perf_counter() - t0 - t_hls, 1),
    }
    return hls, rtl, facts
