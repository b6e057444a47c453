"""The dataflow accelerator as a whole, at pixel granularity: which stream tokens each node
must have read before it can write each output, the FIFO depths that follow from that, and a
simulation of all nodes together through bounded FIFOs that finishes or names a deadlock.

numpy and stdlib only: it runs on a FINN graph's nodes (:func:`nodes_from_finn`) and on a
bundle's integer model (:func:`nodes_from_intmodel`), whose layers carry the same attributes.

**Token model.** A token is one pixel of a stream (all its channels). Every node is described
per input port by three facts, derived from its attributes:

* ``need[j]``: how many input pixels must have been read before output pixel ``j`` can be written;
* ``release[j]``: how many input pixels the node may have dropped once output ``j`` is written
  (those no later output uses);
* ``cap``: how many read-but-not-dropped input pixels the node holds at most (its line buffer).

Per node type (raster order, NHWC):

* ``FMPadding`` / ``FMPadding_Pixel``: an output pixel is padding (needs nothing new) or the next
  input pixel; ``cap`` 1.
* ``ConvolutionInputGenerator``: output ``(oy, ox)`` needs input up to its window's last pixel
  ``((oy*sh + (kh-1)*dh), (ox*sw + (kw-1)*dw))``; it drops what lies before the next window's
  first pixel; ``cap`` is the largest span any window needs, i.e. finn-rtllib's minimal line
  buffer, ``(kh-1)*dh*W + (kw-1)*dw + 1`` pixels for stride 1.
* ``MVAU``, ``Thresholding``, ``Pool`` (after its window generator), ``DuplicateStreams``,
  ``StreamingConcat``, ``StreamingFIFO``: one output pixel per input pixel; ``DuplicateStreams``
  writes a pixel to all of its outputs at once (finn-hlslib's ``DuplicateStreams`` blocks until
  both take the word), ``StreamingConcat`` reads a pixel of input 0 and then of input 1.

**What this is not.** It carries no pixel values (each node's arithmetic is proven bit-exact by
python execution, cppsim and Verilator, see :mod:`.sim_steps`) and no clock: every node is
infinitely fast and reads as far ahead as its buffer lets it, which is what drives the skip
FIFOs to their worst case. A FIFO's depth in words is its depth in pixels times the stream's words
per pixel; a FIFO shallower than one pixel counts as one (a word-level producer and consumer
can share a pixel), which makes depth-2 FIFOs slightly optimistic here, never pessimistic.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from qdev.core.errors import QdevError
from qdev.core.intmodel import base_op

__all__ = [
    "StreamNode",
    "Port",
    "DataflowGraph",
    "SimResult",
    "nodes_from_intmodel",
    "build_graph",
    "must_buffer",
    "simulate",
    "SKIP_MARGIN",
    "min_skip_depth",
    "choose_skip_depths",
    "words",
    "pixels_of",
]

#: Margin added to every computed skip depth (fraction), for what the pixel model leaves out:
#: word-level streaming inside a pixel and the window generators' implementation-specific
#: read-ahead. Measured against the simulation's own minimum by bench/stitched.py.
SKIP_MARGIN = 0.10

ONE_TO_ONE = {
    "MVAU",
    "Thresholding",
    "Pool",
    "DuplicateStreams",
    "StreamingConcat",
    "StreamingFIFO",
    "StreamingDataWidthConverter",
    "LabelSelect",
}


@dataclass(frozen=True)
class StreamNode:
    """One node of the dataflow graph, as the token model needs it."""

    name: str
    op: str  # FINN op type without the _hls/_rtl suffix
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict


@dataclass
class Port:
    """One input port of a node: its need/release functions over one frame, and its buffer."""

    stream: str
    n_in: int  # pixels per frame on this input
    need: list[int] | None  # None: one to one
    release: list[int] | None
    cap: int


@dataclass
class DataflowGraph:
    nodes: list[StreamNode]
    ports: dict[str, list[Port]]  # node name -> its input ports
    n_out: dict[str, int]  # node name -> output pixels per frame
    pixels: dict[str, int]  # stream -> pixels per frame
    producer: dict[str, str]  # stream -> node name
    consumer: dict[str, str]  # stream -> node name
    source: str  # the graph's input stream
    sink: str  # the graph's output stream

    def skips(self) -> list[tuple[str, str, str]]:
        """``(duplicate, skip stream, concat)`` for every fork whose branch meets a concat
        directly: the streams that must hold what the deep path has not yet caught up with."""
        out = []
        for n in self.nodes:
            if n.op != "DuplicateStreams":
                continue
            for s in n.outputs:
                c = self.consumer.get(s)
                if c is not None and self.node(c).op == "StreamingConcat":
                    out.append((n.name, s, c))
        return out

    def node(self, name: str) -> StreamNode:
        return self._by_name[name]

    def __post_init__(self) -> None:
        self._by_name = {n.name: n for n in self.nodes}


def nodes_from_intmodel(model) -> list[StreamNode]:  # noqa: ANN001 - qdev.core.intmodel.IntModel
    """The token-model nodes of a bundle's integer model (its layers keep FINN's attributes)."""
    return [
        StreamNode(ly.name, base_op(ly.op), tuple(ly.inputs), tuple(ly.outputs), dict(ly.attrs))
        for ly in model.layers
    ]


def _pad_ports(
    h: int, w: int, pad: tuple[int, int, int, int], stride: int
) -> tuple[int, int, list[int]]:
    """Output dims and the cumulative count of real input pixels up to each output pixel of a
    padder: ``pad`` = (top, left, bottom, right) around the image, ``stride - 1`` zeros between
    its pixels."""
    t, lft, b, r = pad
    ih, iw = (h - 1) * stride + 1, (w - 1) * stride + 1
    oh, ow = ih + t + b, iw + lft + r
    real = np.zeros((oh, ow), dtype=bool)
    real[t : t + ih : stride, lft : lft + iw : stride] = True
    return oh, ow, np.cumsum(real.ravel()).tolist()


def _swg_port(a: dict) -> tuple[int, int, list[int], list[int], int]:
    ih, iw = a["IFMDim"]
    oh, ow = a["OFMDim"]
    kh, kw = a["ConvKernelDim"]
    sh, sw = a.get("Stride", [1, 1])
    dh, dw = a.get("Dilation", [1, 1])
    oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
    last = (oy * sh + (kh - 1) * dh) * iw + ox * sw + (kw - 1) * dw + 1
    first = (oy * sh) * iw + ox * sw
    need = last.ravel().astype(np.int64)
    release = np.append(first.ravel()[1:], ih * iw).astype(np.int64)
    prev = np.concatenate([[0], release[:-1]])
    cap = int((need - prev).max())
    return oh, ow, need.tolist(), release.tolist(), cap


def build_graph(nodes: list[StreamNode], in_hw: tuple[int, int]) -> DataflowGraph:
    """Derive every port's need/release/buffer from the nodes' attributes, checking that each
    stream's producer and consumer agree on its pixel count."""
    producer = {s: n.name for n in nodes for s in n.outputs}
    consumer = {s: n.name for n in nodes for s in n.inputs}
    sources = [s for n in nodes for s in n.inputs if s not in producer]
    sinks = [s for n in nodes for s in n.outputs if s not in consumer]
    if len(sources) != 1 or len(sinks) != 1:
        raise QdevError(
            f"dataflow graph: expected one input and one output stream, got {sources} / {sinks}"
        )
    dims = {sources[0]: tuple(in_hw)}
    ports: dict[str, list[Port]] = {}
    n_out: dict[str, int] = {}
    for n in nodes:  # graph order is topological (FINN keeps it sorted)
        if any(s not in dims for s in n.inputs):
            raise QdevError(f"dataflow graph: {n.name} comes before its producer")
        h, w = dims[n.inputs[0]]
        a = n.attrs
        if n.op in ("FMPadding", "FMPadding_Pixel"):
            ih, iw = a["ImgDim"]
            pad = tuple(a.get("Padding", [0, 0, 0, 0]))
            stride = int(a.get("Stride", [1, 1])[0])
            oh, ow, cum = _pad_ports(ih, iw, pad, stride)
            ps = [Port(n.inputs[0], h * w, cum, cum, 1)]
        elif n.op == "ConvolutionInputGenerator":
            oh, ow, need, rel, cap = _swg_port(a)
            ps = [Port(n.inputs[0], h * w, need, rel, cap)]
        elif n.op in ONE_TO_ONE:
            oh, ow = h, w
            ps = [Port(s, h * w, None, None, 1) for s in n.inputs]
        else:
            raise QdevError(f"dataflow graph: no token model for {n.op} ({n.name})")
        for p in ps:
            ph, pw = dims[p.stream]
            if ph * pw != p.n_in or (
                n.op == "ConvolutionInputGenerator" and (ph, pw) != tuple(a["IFMDim"])
            ):
                raise QdevError(
                    f"dataflow graph: {n.name} expects {p.n_in} pixels on {p.stream}, "
                    f"its producer gives {ph}x{pw}"
                )
        ports[n.name] = ps
        n_out[n.name] = oh * ow
        for s in n.outputs:
            dims[s] = (oh, ow)
    pixels = {s: d[0] * d[1] for s, d in dims.items()}
    return DataflowGraph(nodes, ports, n_out, pixels, producer, consumer, sources[0], sinks[0])


# ---------------------------------------------------------------- the analytic bound


def _need_count(p: Port, r: np.ndarray, n_out: int) -> np.ndarray:
    """Input pixels port ``p`` must have read for its node to have written ``r`` outputs
    (elementwise; frames back to back)."""
    if p.need is None:
        return r.copy()
    need = np.asarray(p.need, dtype=np.int64)
    j = np.maximum(r - 1, 0)
    f, k = np.divmod(j, n_out)
    return np.where(r > 0, f * p.n_in + need[k], 0)


def must_buffer(g: DataflowGraph, skip: str, frames: int = 2) -> int:
    """Pixels the skip stream ``skip`` must hold so that its concat can write every output of
    ``frames`` frames: the deep path's requirement on the fork, propagated back from each concat
    output through every node's need function, minus what the concat has read of the skip."""
    cname = g.consumer[skip]
    dup = g.node(g.producer[skip])
    conc = g.node(cname)
    n_c = g.n_out[cname]
    jj = np.arange(1, n_c * frames + 1, dtype=np.int64)  # outputs written, 1..N
    req: dict[str, np.ndarray] = {}
    # the concat writes output j-1 once it has read pixel j-1 of every input
    for s in conc.inputs:
        req[s] = jj.copy()
    idx = {n.name: i for i, n in enumerate(g.nodes)}
    for n in reversed(g.nodes[: idx[cname]]):  # back from the concat, in reverse graph order
        outs = [
            req[s] for s in n.outputs if s in req and s != skip
        ]  # the skip itself is what is sized
        if not outs:
            continue
        r = np.maximum.reduce(outs)
        for p in g.ports[n.name]:
            c = _need_count(p, r, g.n_out[n.name])
            req[p.stream] = np.maximum(req[p.stream], c) if p.stream in req else c
    deep = [req[s] for s in dup.outputs if s != skip and s in req]
    if not deep:
        return 1
    emitted = np.maximum.reduce(deep)  # the fork writes both branches together
    # by the time the concat waits for input 1's pixel j-1 it has read j pixels of the skip
    return int(max(1, (emitted - jj).max()))


# ---------------------------------------------------------------- the simulation


@dataclass
class SimResult:
    completed: bool
    frames: int
    outputs: int  # output pixels that reached the sink
    expected: int
    peak: dict[str, int]  # stream -> peak occupancy (pixels)
    blocked: list[dict] = field(default_factory=list)  # on deadlock: node, waits_on, stream
    events: int = 0

    def summary(self) -> str:
        if self.completed:
            return f"completed {self.frames} frame(s): {self.outputs}/{self.expected} output pixels"
        names = ", ".join(f"{b['node']} ({b['waits_on']} {b['stream']})" for b in self.blocked[:6])
        more = f" and {len(self.blocked) - 6} more" if len(self.blocked) > 6 else ""
        return (
            f"DEADLOCK after {self.outputs}/{self.expected} output pixels: every node is blocked; "
            f"{names}{more}"
        )


def _emittable(p: Port, taken: int, n_out: int, frames: int) -> int:
    """Outputs a port's reads allow (frames back to back)."""
    if p.need is None:
        return taken
    f = taken // p.n_in
    if f >= frames:
        return frames * n_out
    return f * n_out + bisect_right(p.need, taken - f * p.n_in)


def _released(p: Port, emitted: int, n_out: int) -> int:
    if emitted == 0:
        return 0
    if p.release is None:
        return emitted
    f, k = divmod(emitted - 1, n_out)
    return f * p.n_in + p.release[k]


@dataclass
class _Tokens:
    """The token simulation's counters: per stream pixels produced and consumed and the peak
    occupancy; per node the outputs emitted and each port's inputs taken."""

    cap: dict[str, int]
    produced: dict[str, int]
    consumed: dict[str, int]
    peak: dict[str, int]
    emitted: dict[str, int]
    taken: dict[str, list[int]]
    total_out: dict[str, int]


def _fire(g: DataflowGraph, st: _Tokens, name: str, frames: int) -> tuple[bool, bool, int]:
    """Let node ``name`` read and emit as far as its inputs, buffers and outputs allow;
    (it read, it emitted, the events it took)."""
    produced, consumed, cap = st.produced, st.consumed, st.cap
    node = g.node(name)
    ports = g.ports[name]
    tk = st.taken[name]
    nout = g.n_out[name]
    sink = g.sink
    moved_in = moved_out = False
    events = 0
    while True:
        progress = False
        em = st.emitted[name]
        for i, p in enumerate(ports):
            avail = produced[p.stream] - consumed[p.stream]
            room = p.cap - (tk[i] - _released(p, em, nout))
            limit = p.n_in * frames - tk[i]
            t = min(avail, room, limit)
            if t > 0:
                tk[i] += t
                consumed[p.stream] += t
                progress = moved_in = True
        e = min(_emittable(p, tk[i], nout, frames) for i, p in enumerate(ports))
        e = min(e, st.total_out[name])
        for s in node.outputs:
            if s != sink:
                e = min(e, em + cap[s] - (produced[s] - consumed[s]))
        if e > em:
            st.emitted[name] = e
            for s in node.outputs:
                produced[s] += e - em
                if s == sink:
                    consumed[s] = produced[s]
                else:
                    st.peak[s] = max(st.peak[s], produced[s] - consumed[s])
            progress = moved_out = True
        events += 1
        if not progress:
            return moved_in, moved_out, events


def _blame_rank(g: DataflowGraph, b: dict) -> int:
    """The cause first: a fork held by its full skip FIFO, then the concat starving on its deep
    input, then the rest."""
    op = g.node(b["node"]).op
    if op == "DuplicateStreams" and b["waits_on"] == "output full":
        return 0
    return 1 if op == "StreamingConcat" else 2


def _blocked(g: DataflowGraph, st: _Tokens) -> list[dict]:
    """Every unfinished node and the stream it waits on (a full output or an empty input)."""
    blocked = []
    for n in g.nodes:
        if st.emitted[n.name] >= st.total_out[n.name]:
            continue
        occ = {s: st.produced[s] - st.consumed[s] for s in n.outputs if s != g.sink}
        full = [s for s, o in occ.items() if o >= st.cap[s]]
        if full:
            blocked.append({"node": n.name, "waits_on": "output full", "stream": full[0]})
            continue
        starving = [
            p.stream for p in g.ports[n.name] if st.produced[p.stream] == st.consumed[p.stream]
        ]
        stream = starving[0] if starving else "?"
        blocked.append({"node": n.name, "waits_on": "input empty", "stream": stream})
    return sorted(blocked, key=lambda b: _blame_rank(g, b))


def simulate(
    g: DataflowGraph, depths: dict[str, int], frames: int = 2, max_events: int = 50_000_000
) -> SimResult:
    """Run every node together, each stream a FIFO of ``depths[stream]`` pixels (at least 1;
    the graph's input is an endless source, its output a sink that never stalls). Nodes fire
    greedily, reading as far ahead as their buffers allow. Ends when the sink has every output
    pixel of ``frames`` frames, or when no node can move: a deadlock, reported with each
    unfinished node and the stream it waits on (an empty input or a full output)."""
    st = _Tokens(
        cap={s: max(1, int(depths.get(s, 1))) for s in g.pixels},
        produced=dict.fromkeys(g.pixels, 0),
        consumed=dict.fromkeys(g.pixels, 0),
        peak=dict.fromkeys(g.pixels, 0),
        emitted={n.name: 0 for n in g.nodes},
        taken={n.name: [0] * len(g.ports[n.name]) for n in g.nodes},
        total_out={n.name: g.n_out[n.name] * frames for n in g.nodes},
    )
    st.produced[g.source] = g.pixels[g.source] * frames
    queue = deque(n.name for n in g.nodes)
    queued = set(queue)
    events = 0
    while queue and events < max_events:
        name = queue.popleft()
        queued.discard(name)
        moved_in, moved_out, n_events = _fire(g, st, name, frames)
        events += n_events
        wake = []
        if moved_in:
            wake += [g.producer[p.stream] for p in g.ports[name] if p.stream in g.producer]
        if moved_out:
            wake += [g.consumer[s] for s in g.node(name).outputs if s in g.consumer]
        for w in wake:
            if w not in queued:
                queued.add(w)
                queue.append(w)
    expected = g.pixels[g.sink] * frames
    done = st.produced[g.sink] == expected
    blocked = [] if done else _blocked(g, st)
    if not done and events >= max_events:
        blocked.insert(0, {"node": "-", "waits_on": "event budget", "stream": str(max_events)})
    out = st.produced[g.sink]
    return SimResult(done, frames, out, expected, dict(st.peak), blocked, events)


def min_skip_depth(
    g: DataflowGraph, skip: str, depths: dict[str, int], frames: int = 2, hi: int | None = None
) -> int:
    """The smallest depth (pixels) of ``skip`` at which the simulation still completes, the other
    streams held at ``depths``: bisection between 1 and ``hi`` (default: the whole frame)."""
    lo_bad, hi_ok = 0, hi or g.pixels[skip] * frames
    trial = dict(depths)
    trial[skip] = hi_ok
    if not simulate(g, trial, frames).completed:
        raise QdevError(f"{skip}: the simulation does not complete even at depth {hi_ok}")
    while hi_ok - lo_bad > 1:
        mid = (lo_bad + hi_ok) // 2
        trial[skip] = mid
        if simulate(g, trial, frames).completed:
            hi_ok = mid
        else:
            lo_bad = mid
    return hi_ok


def choose_skip_depths(
    g: DataflowGraph, frames: int = 2, margin: float = SKIP_MARGIN
) -> dict[str, dict]:
    """Every skip FIFO's depth in pixels: the analytic must-bound (:func:`must_buffer`) plus
    ``margin``. Returns {skip stream: {"must": pixels, "depth": pixels}}."""
    out = {}
    for _, s, _ in g.skips():
        must = must_buffer(g, s, frames)
        out[s] = {"must": must, "depth": int(math.ceil(must * (1 + margin))) + 1}
    return out


def words(pixels: int, words_per_pixel: int) -> int:
    """A depth in pixels as FIFO words."""
    return int(pixels) * int(words_per_pixel)


def pixels_of(depth_words: int, words_per_pixel: int) -> int:
    """A FIFO depth in words as whole pixels (at least one: see the module's note)."""
    return max(1, math.floor(depth_words / max(1, words_per_pixel)))


# ---------------------------------------------------------------- rate: a timed token model


@dataclass
class TimedResult:
    converged: bool
    iterations: int
    cycles_per_frame: float  # steady state: between the last output pixels of the last two frames
    first_frame_cycles: float  # from the first input pixel to the first frame's last output pixel
    bottleneck_cycles: float  # the slowest node's cycles per frame (FINN's estimate of the rate)


def _frames(a: list[int] | None, n_other: int, n: int, frames: int) -> np.ndarray | None:
    """A per-frame need/release array over ``frames`` frames back to back (counts)."""
    if a is None:
        return None
    base = np.asarray(a, dtype=np.int64)
    return np.concatenate([base + f * n_other for f in range(frames)])


def _reads(
    p: Port, rel: np.ndarray | None, arrive: np.ndarray, written: np.ndarray, nout: int, frames: int
) -> np.ndarray:
    """When a port reads each input pixel: after the producer wrote it (``arrive``), in order, and
    while the line buffer has room (the node must have written e outputs with release(e) >=
    i + 1 - cap; ``written``: when it wrote each output)."""
    lb = arrive.copy()
    want = np.arange(p.n_in * frames) + 1 - p.cap
    has = want > 0
    if has.any():
        relc = rel if rel is not None else np.arange(1, nout + 1)
        e = np.searchsorted(relc, want[has], side="left")  # outputs written = e + 1
        e = np.minimum(e, nout - 1)
        lb[has] = np.maximum(lb[has], written[e] + 1.0)
    return np.maximum.accumulate(lb)


def _writes(
    ports: list[tuple], reads: list[np.ndarray], room: list[tuple], nout: int, ii: float
) -> np.ndarray:
    """When a node writes each output pixel: after the reads it needs, at most one per ``ii``
    cycles, and into FIFOs with room (``room``: per output FIFO its depth and when its reader
    read each pixel)."""
    k_idx = np.arange(nout, dtype=np.float64)
    lb = np.zeros(nout)
    for (_p, need, _rel), r in zip(ports, reads):
        last = (need if need is not None else np.arange(1, nout + 1)) - 1
        ok = last >= 0
        lb[ok] = np.maximum(lb[ok], r[last[ok]] + 1.0)
    for cap, read in room:
        j = np.arange(nout) - cap
        ok = j >= 0
        lb[ok] = np.maximum(lb[ok], read[j[ok]])
    return k_idx * ii + np.maximum.accumulate(lb - k_idx * ii)


def _timing_setup(g: DataflowGraph, cycles: dict[str, float], frames: int) -> tuple:
    """(cycles between a node's outputs, per node its ports with need/release over ``frames``
    frames, the (node, port) reading each stream)."""
    ii = {
        n.name: max(1.0, float(cycles.get(n.name, g.n_out[n.name])) / g.n_out[n.name])
        for n in g.nodes
    }
    ports = {
        n.name: [
            (
                p,
                _frames(p.need, p.n_in, g.n_out[n.name], frames),
                _frames(p.release, p.n_in, g.n_out[n.name], frames),
            )
            for p in g.ports[n.name]
        ]
        for n in g.nodes
    }
    reader = {p.stream: (n.name, k) for n in g.nodes for k, p in enumerate(g.ports[n.name])}
    return ii, ports, reader


def timed(
    g: DataflowGraph,
    depths: dict[str, int],
    cycles: dict[str, float],
    frames: int = 3,
    max_iter: int = 5000,
) -> TimedResult:
    """When each pixel is written and read, in clock cycles, under a stated timing model:

    * a node writes one output pixel every ``cycles[node] / output pixels`` cycles at most (FINN's
      expected cycles of the node spread evenly over its outputs), and only after it has read the
      input pixels that output needs (its ``need``);
    * it reads an input pixel one cycle after the producer wrote it, in order, and only while its
      line buffer has room (``cap`` past what it may drop, as in :func:`simulate`);
    * it writes a pixel only when the FIFO has room: the consumer has read the pixel ``depth``
      places earlier; the graph's input delivers one pixel per cycle, its output never stalls.

    The earliest times meeting every constraint are found by iterating the constraints to their
    fixed point (each pass is vectorised per node). Returns the steady cycles per frame beside the
    slowest node's: equal when the FIFOs let the pipeline run at its bottleneck's rate."""
    order = g.nodes
    ii, ports, reader = _timing_setup(g, cycles, frames)
    E = {n.name: np.zeros(g.n_out[n.name] * frames) for n in order}
    R = {
        (n.name, k): np.zeros(p.n_in * frames) for n in order for k, p in enumerate(g.ports[n.name])
    }
    src_avail = np.arange(g.pixels[g.source] * frames, dtype=np.float64)
    it, changed = 0, True
    while changed and it < max_iter:
        it += 1
        changed = False
        # forward sweeps carry data dependencies down the graph in one pass, backward sweeps carry
        # back-pressure (a full FIFO) up it: alternating them reaches the fixed point in few passes
        for n in order if it % 2 else order[::-1]:
            nm = n.name
            nout = g.n_out[nm] * frames
            for k, (p, _need, rel) in enumerate(ports[nm]):
                arrive = src_avail if p.stream not in g.producer else E[g.producer[p.stream]] + 1.0
                new = _reads(p, rel, arrive, E[nm], nout, frames)
                if not np.array_equal(new, R[(nm, k)]):
                    changed = True
                    R[(nm, k)] = new
            room = [
                (max(1, int(depths.get(s, 1))), R[reader[s]])
                for s in n.outputs
                if s != g.sink and s in reader
            ]
            new = _writes(
                ports[nm], [R[(nm, k)] for k in range(len(ports[nm]))], room, nout, ii[nm]
            )
            if not np.allclose(new, E[nm], rtol=0, atol=1e-9):
                changed = True
                E[nm] = new
    last = E[g.producer[g.sink]]
    per = g.pixels[g.sink]
    ends = [last[(f + 1) * per - 1] for f in range(frames)]
    steady = float(ends[-1] - ends[-2]) if frames > 1 else float(ends[0])
    slowest = max(ii[n.name] * g.n_out[n.name] for n in order)
    return TimedResult(not changed, it, steady, float(ends[0]), float(slowest))
