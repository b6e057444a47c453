"""HLS C++ simulation (cppsim) of every HLS layer of a compiled dataflow graph, without Vitis HLS,
checked bit for bit against FINN's python execution.

* **Code**: FINN's own code generation (``PrepareCppSim``) writes each HLS node's C++.
* **Compile**: instead of FINN's ``CompileCppSim`` (which links Vitis' simulation libraries), each
  node is compiled here with g++ against the open-source headers found under ``--hls-deps`` /
  ``$QDEV_HLS_DEPS`` (default ``../shared/vendor``: finn-hlslib, its three newer files first, and
  Xilinx's arbitrary-precision types) and qdev's small stand-ins for what Vitis adds
  (``hls_shim/``: ``hls::stream``, ``hls::vector``, ``hls_math.h``, ``numeric_limits`` for
  ``ap_int``; each header says what it models and what it does not). Nodes compile in parallel
  and are cached by a hash of their generated sources (with the build folder's path taken out),
  the flags and the headers, so a rerun costs seconds.
* **Check**: every HLS node runs in cppsim on the inputs python execution gave it, per golden
  frame, and its output is compared element by element with python execution's; then the whole
  graph runs with every HLS node in cppsim (RTL nodes in python: FINN has no cppsim for them) and
  its output is compared with the golden codes. "Python execution" is of this very graph (its
  folding and bit widths): each HLS node by its layer's python implementation (inputs of a
  depthwise sliding window put back in the kernel-major order that implementation reads, see
  :func:`_python_order`), since FINN's executor offers only cppsim/rtlsim after specialisation;
  that execution's output is itself checked against FINN's executor on the graph before
  specialisation, and the check fails if they differ.

``verify_cppsim`` returns the report (per node and per node type); nothing is claimed for a node
that was not simulated: RTL nodes are listed with the reason.
"""

from __future__ import annotations

import hashlib
import os
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
    "HlsDeps",
    "find_hls_deps",
    "CppSimConfig",
    "verify_cppsim",
    "compile_nodes",
    "python_reference",
    "SHIM",
]

SHIM = Path(__file__).with_name("hls_shim")
_REPO_VENDOR = Path(__file__).resolve().parents[2].parent / "shared" / "vendor"


@dataclass(frozen=True)
class HlsDeps:
    """The include folders, in search order (shim first, the newer finn-hlslib files before the
    rest)."""

    root: Path
    includes: tuple[Path, ...]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for d in self.includes:
            for p in sorted(d.rglob("*")):
                if p.is_file() and p.suffix in (".h", ".hpp"):
                    h.update(str(p.relative_to(d)).encode())
                    h.update(p.read_bytes())
        return h.hexdigest()


def find_hls_deps(path: str | os.PathLike | None = None) -> HlsDeps:
    """``path`` / ``$QDEV_HLS_DEPS`` / ``../shared/vendor``, checked for the files cppsim needs.

    Raises:
        ConfigError: naming the folder or file that is missing.
    """
    root = Path(path or os.environ.get("QDEV_HLS_DEPS") or _REPO_VENDOR)
    need = {
        "finn-hlslib-newer": ("pool.hpp", "dup.hpp", "flatten.hpp"),
        "finn-hlslib": ("bnn-library.h", "streamtools.h", "concat.hpp"),
        "HLS_arbitrary_Precision_Types/include": ("ap_int.h", "ap_fixed.h"),
    }
    for sub, files in need.items():
        for f in files:
            if not (root / sub / f).is_file():
                raise ConfigError(
                    f"--hls-deps {root}: {sub}/{f} is missing (cppsim needs finn-hlslib, its newer "
                    "pool/dup/flatten files and HLS_arbitrary_Precision_Types; see "
                    "../shared/vendor/SOURCE.md)"
                )
    from finn.templates import get_templates_folder  # noqa: PLC0415 - FINN is booted by then

    npy2stream = Path(get_templates_folder()) / "npy2stream"
    return HlsDeps(
        root,
        (
            SHIM,
            root / "finn-hlslib-newer",
            root / "finn-hlslib",
            root / "HLS_arbitrary_Precision_Types" / "include",
            npy2stream,
        ),
    )


@dataclass
class CppSimConfig:
    """How to build the node simulators.

    Attributes:
        opt: g++ optimisation flag. FINN uses ``-O3 -fno-builtin -fno-inline``; the last two only
            slow the simulators down (outputs identical, see ../shared/vendor/SOURCE.md), and a
            lower level compiles faster, which the CI's tiny model wants.
        jobs: parallel compiles (default: the cores).
        cache: compiled simulators, by hash (default ``$QDEV_CACHE/cppsim`` or
            ``~/.cache/qdev/cppsim``).
    """

    opt: str = "-O2"
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache: Path | None = None

    def cache_dir(self) -> Path:
        if self.cache is not None:
            return Path(self.cache)
        from qdev.training.data.cache import default_cache_dir

        return default_cache_dir() / "cppsim"


def _flags(cfg: CppSimConfig) -> list[str]:
    return ["-std=c++17", cfg.opt, "-w"]


def _sources(code_dir: Path) -> dict[str, bytes]:
    """The node's generated files, with its own folder's path taken out (the simulator then reads
    and writes its npy files relative to its working folder, which makes it cacheable)."""
    out = {}
    prefix = (str(code_dir) + "/").encode()
    for p in sorted(code_dir.iterdir()):
        if p.is_file() and p.suffix in (".cpp", ".h", ".hpp", ".dat"):
            out[p.name] = p.read_bytes().replace(prefix, b"")
    return out


def _compile_one(
    code_dir: Path, deps: HlsDeps, cfg: CppSimConfig, salt: str, extra: tuple[str, ...] = ()
) -> dict:
    """Compile the node's generated C++ in ``code_dir`` (cached by its normalised sources, the
    flags, ``extra`` flags and ``salt``) and put a wrapper ``node_model`` that runs it there."""
    t0 = time.perf_counter()
    srcs = _sources(code_dir)
    h = hashlib.sha256(salt.encode() + "|".join(extra).encode())
    for name, data in srcs.items():
        h.update(name.encode() + b"\0" + data)
    key = h.hexdigest()[:24]
    exe = cfg.cache_dir() / key / "node_model"
    cached = exe.is_file()
    err = None
    if not cached:
        cfg.cache_dir().mkdir(
            parents=True, exist_ok=True
        )  # a folder of its own: nodes of one source build at once
        build = Path(tempfile.mkdtemp(prefix=key + ".", suffix=".build", dir=cfg.cache_dir()))
        for name, data in srcs.items():
            (build / name).write_bytes(data)
        npy2stream = deps.includes[-1]
        cmd = [
            "g++",
            *_flags(cfg),
            *extra,
            *[f"-I{d}" for d in deps.includes],
            f"-I{build}",
            *[str(build / n) for n in srcs if n.endswith(".cpp")],
            str(npy2stream / "cnpy.cpp"),
            "-lz",
            "-o",
            str(build / "node_model"),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            err = (r.stderr or r.stdout).strip().splitlines()[-12:]
        else:
            exe.parent.mkdir(parents=True, exist_ok=True)
            os.replace(build / "node_model", exe)
        shutil.rmtree(build, ignore_errors=True)
    if (
        err is None
    ):  # FINN runs executable_path as is: a wrapper runs the simulator in the node's folder
        wrapper = code_dir / "node_model"
        wrapper.write_text(f'#!/bin/sh\ncd "$(dirname "$0")" && exec \'{exe}\'\n')
        wrapper.chmod(0o755)
    return {
        "compiled": err is None,
        "cached": cached,
        "compile_s": round(time.perf_counter() - t0, 3),
        "key": key,
        "error": err,
    }


def compile_nodes(model, deps: HlsDeps, cfg: CppSimConfig, progress=None) -> dict[str, dict]:  # noqa: ANN001
    """Compile every HLS node's simulator (parallel, cached); sets FINN's ``executable_path``."""
    from qonnx.custom_op.registry import getCustomOp

    gxx = subprocess.run(["g++", "--version"], capture_output=True, text=True)
    if gxx.returncode != 0:
        raise ConfigError("cppsim needs g++ (apt-get install g++)")
    salt = "|".join([gxx.stdout.splitlines()[0], *_flags(cfg), deps.fingerprint()])
    nodes = [n for n in model.graph.node if n.op_type.endswith("_hls")]
    dirs = {n.name: Path(getCustomOp(n).get_nodeattr("code_gen_dir_cppsim")) for n in nodes}
    out: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
        futs = {name: pool.submit(_compile_one, d, deps, cfg, salt) for name, d in dirs.items()}
        for i, (name, f) in enumerate(futs.items()):
            out[name] = f.result()
            if progress:
                progress(i + 1, len(futs), name)
    for n in nodes:
        if out[n.name]["compiled"]:
            getCustomOp(n).set_nodeattr("executable_path", str(dirs[n.name] / "node_model"))
    return out


def _python_impl(inst):  # noqa: ANN001, ANN202
    """The python ``execute_node`` of an HLS node: its layer class's, the one before HLSBackend
    in the method order (``Pool_hls(Pool, HLSBackend)`` -> ``Pool.execute_node``)."""
    from finn.custom_op.fpgadataflow.hlsbackend import HLSBackend

    for cls in type(inst).__mro__[1:]:
        if "execute_node" in vars(cls) and not issubclass(cls, HLSBackend):
            return cls.execute_node
    raise ConfigError(f"{type(inst).__name__}: no python execution to compare with")


def _fresh_context(model, frame: np.ndarray) -> dict:  # noqa: ANN001
    """Initializers, the input frame, and every node output allocated, as qonnx's executor does."""
    name = model.graph.input[0].name
    ctx = {t.name: model.get_initializer(t.name) for t in model.graph.initializer}
    ctx[name] = frame.reshape(model.get_tensor_shape(name)).astype(np.float32)
    for n in model.graph.node:
        ctx.update({o: np.zeros(model.get_tensor_shape(o), np.float32) for o in n.output})
    return ctx


def _python_contexts(model, frames: np.ndarray) -> list[dict]:  # noqa: ANN001
    """FINN's python execution of this very graph (its folding and bit widths), every tensor kept:
    HLS nodes by their layer's python implementation, RTL nodes as FINN runs them in cppsim
    mode (python). After specialisation FINN's executor itself offers only cppsim/rtlsim."""
    from qonnx.custom_op.registry import getCustomOp

    out = []
    for f in frames:
        ctx = _fresh_context(model, f)
        for n in model.graph.node:
            inst = getCustomOp(n)
            if n.op_type.endswith("_hls"):
                local = {**ctx, **{i: _python_order(model, i, ctx[i]) for i in n.input if i in ctx}}
                _python_impl(inst)(inst, local, model.graph)
                ctx.update({o: local[o] for o in n.output})
            else:
                inst.set_nodeattr("exec_mode", "cppsim")
                inst.execute_node(ctx, model.graph)
        out.append(ctx)
    return out


def python_reference(
    model, frames: np.ndarray, reference_path: Path | None
) -> tuple[list[dict], bool | None]:  # noqa: ANN001
    """FINN's python execution of the specialised graph ``model`` on ``frames``, every tensor kept
    (one context per frame), and whether its output equals FINN's executor on ``reference_path``,
    the same layers before specialisation (None: not checked). Intermediate tensors may be laid
    out differently there (folding changes the sliding window's order); the output may not."""
    from finn.core.onnx_exec import execute_onnx
    from qonnx.core.modelwrapper import ModelWrapper

    ref = _python_contexts(model, frames)
    if reference_path is None:
        return ref, None
    out_name = model.graph.output[0].name
    before = ModelWrapper(str(reference_path))
    bname = before.graph.input[0].name
    ref_before = [
        execute_onnx(before, {bname: f.reshape(before.get_tensor_shape(bname)).astype(np.float32)})[
            before.graph.output[0].name
        ]
        for f in frames
    ]
    return ref, all(
        np.array_equal(a.reshape(-1), c[out_name].reshape(-1)) for a, c in zip(ref_before, ref)
    )


def _python_order(model, name: str, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """An HLS node's input as its layer's python implementation expects it. A *depthwise*
    sliding window streams each window channel-major, (C/SIMD, K, SIMD), as the hardware does:
    FINN's ConvolutionInputGenerator_rtl interleaves its output so in cppsim mode, and the HLS
    consumer (Pool_batch) reduces in that order. The python ``Pool.execute_node`` reads a window
    kernel-major, (K, C), as the generic sliding window emits it before specialisation. Every
    other tensor has one layout."""
    from qonnx.custom_op.registry import getCustomOp

    prod = model.find_producer(name)
    if prod is None or not prod.op_type.startswith("ConvolutionInputGenerator"):
        return x
    p = getCustomOp(prod)
    if not p.get_nodeattr("depthwise"):
        return x
    c, simd = int(p.get_nodeattr("IFMChannels")), int(p.get_nodeattr("SIMD"))
    k = int(np.prod(p.get_nodeattr("ConvKernelDim")))
    lead = x.shape[:-1]
    y = x.reshape(*lead, c // simd, k, simd)
    return np.moveaxis(y, -2, -3).reshape(x.shape)  # -> (K, C/SIMD, SIMD) = (K, C)


def _run_hls(model, n, inst, ctx: dict) -> dict:  # noqa: ANN001
    """One HLS node's simulator on ``ctx``'s tensors (as they stream in hardware)."""
    local = {k: (ctx[k] if k in ctx else model.get_initializer(k)) for k in n.input}
    local.update({k: np.zeros(model.get_tensor_shape(k), np.float32) for k in n.output})
    inst.execute_node(local, model.graph)
    return {k: local[k].reshape(model.get_tensor_shape(k)) for k in n.output}


def _cppsim_mode(model) -> None:  # noqa: ANN001
    """Every node to cppsim: HLS nodes run their simulators, FINN runs RTL nodes in python."""
    from qonnx.custom_op.registry import getCustomOp

    for n in model.graph.node:
        getCustomOp(n).set_nodeattr("exec_mode", "cppsim")


def _node_report(model, n, comp: dict, ref: list[dict], cfg: CppSimConfig) -> dict:  # noqa: ANN001
    """One node's entry: an RTL layer (no C++ model), an HLS layer that did not compile, or its
    simulated outputs on every golden frame's python inputs against python's outputs."""
    from qonnx.custom_op.registry import getCustomOp

    rec: dict = {"op_type": n.op_type}
    if not n.op_type.endswith("_hls"):
        rec.update(simulated=None, reason="RTL layer: no C++ model (FINN has no cppsim for it)")
        return rec
    rec.update({k: comp[n.name][k] for k in ("compiled", "cached", "compile_s", "error")})
    if not rec["compiled"]:
        rec["simulated"] = False
        return rec
    inst, diff, total, t_run, hits = getCustomOp(n), 0, 0, time.perf_counter(), 0
    for ctx in ref:
        got, hit = _run_cached(model, n, inst, ctx, comp[n.name]["key"], cfg)
        hits += hit
        for o in n.output:
            diff += int(np.count_nonzero(got[o] != ctx[o]))
            total += int(ctx[o].size)
    rec.update(
        {
            "simulated": True,
            "elements": total,
            "elements_differing": diff,
            "bit_exact": diff == 0,
            "run_s": round(time.perf_counter() - t_run, 3),
            "runs_cached": hits,
        }
    )
    return rec


def _end_to_end(
    model, nodes: dict, ref: list[dict], frames: np.ndarray, golden_codes: np.ndarray | None
) -> dict:  # noqa: ANN001
    """The whole graph, every HLS node simulated on what its simulated predecessors gave it (RTL
    nodes in python), its output against python's and the golden codes. When every node equals
    python on python's own inputs, the chain equals python by induction over the graph's order:
    then python's output is the chain's, and only a mismatch is chained (to show where it
    leads)."""
    t_e2e = time.perf_counter()
    out = model.graph.output[0].name
    compiled = all(r.get("compiled", True) for r in nodes.values())
    all_exact = compiled and all(r.get("bit_exact", True) for r in nodes.values())
    if all_exact:
        outs = [c[out] for c in ref]
        how = "implied: every HLS node equals python on python's inputs"
    else:
        outs = [_chain(model, f)[out] for f in frames] if compiled else []
        how = "simulated in a chain"
    e2e = {
        "frames": int(len(outs)),
        "how": how,
        "differing_from_python": int(sum(np.count_nonzero(o != c[out]) for o, c in zip(outs, ref))),
        "seconds": round(time.perf_counter() - t_e2e, 2),
    }
    if not outs:
        e2e["skipped"] = "a node did not compile"
    elif golden_codes is not None:
        got = np.stack([o.reshape(-1) for o in outs])
        want = golden_codes.reshape(len(frames), -1)
        e2e["differing_from_golden_codes"] = int(np.count_nonzero(got != want))
    return e2e


def verify_cppsim(
    model_path: Path,
    reference_path: Path | None,
    frames: np.ndarray,
    golden_codes: np.ndarray | None,
    deps: HlsDeps,
    cfg: CppSimConfig,
    progress=None,
    mutate=None,  # noqa: ANN001
    reference: tuple[list[dict], bool | None] | None = None,
) -> dict:
    """The cppsim report of the specialised dataflow graph at ``model_path`` on ``frames``
    ([N, H, W] uint8). The reference is FINN's python execution of ``reference_path``, the same
    layers before specialisation (after it, FINN executes only cppsim/rtlsim): every tensor keeps
    its name through specialisation, folding and bit-width minimisation, which is checked.
    ``reference``: that python execution already computed (:func:`python_reference`); the
    report's ``python_s`` is then None (the time was spent before, by whoever computed it)."""
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
    from qonnx.core.modelwrapper import ModelWrapper

    t0 = time.perf_counter()
    model = ModelWrapper(str(model_path))
    ref, python_agrees = (
        reference if reference is not None else python_reference(model, frames, reference_path)
    )
    t_ref = None if reference is not None else round(time.perf_counter() - t0, 2)
    model = model.transform(PrepareCppSim())
    if mutate is not None:  # tests: corrupt generated code to prove the check can fail
        mutate(model)
    comp = compile_nodes(model, deps, cfg, progress)
    _cppsim_mode(model)
    nodes = {n.name: _node_report(model, n, comp, ref, cfg) for n in model.graph.node}
    e2e = _end_to_end(model, nodes, ref, frames, golden_codes)
    e2e["python_equals_unspecialised_graph"] = python_agrees
    return {
        "nodes": nodes,
        "by_type": _by_type(nodes),
        "end_to_end": e2e,
        "python_s": t_ref,
        "flags": _flags(cfg),
        "hls_deps": str(deps.root),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _run_cached(model, n, inst, ctx: dict, key: str, cfg: CppSimConfig) -> tuple[dict, int]:  # noqa: ANN001
    """A node's simulated outputs on ``ctx``, from the cache when this simulator (``key``) already
    ran on these very inputs (a re-verification of an unchanged build costs no simulation)."""
    h = hashlib.sha256(key.encode())
    for i in n.input:
        a = ctx[i] if i in ctx else model.get_initializer(i)
        h.update(i.encode() + np.ascontiguousarray(a, np.float32).tobytes())
    path = cfg.cache_dir() / "runs" / (h.hexdigest()[:32] + ".npz")
    if path.is_file():
        try:
            with np.load(path) as z:
                return {o: z[f"o{j}"] for j, o in enumerate(n.output)}, 1
        except (OSError, ValueError, KeyError):
            pass  # a damaged entry: simulate again
    got = _run_hls(model, n, inst, ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{f"o{j}": got[o] for j, o in enumerate(n.output)})
    os.replace(tmp, path)
    return got, 0


def _chain(model, frame: np.ndarray) -> dict:  # noqa: ANN001
    from qonnx.custom_op.registry import getCustomOp

    ctx = _fresh_context(model, frame)
    for n in model.graph.node:
        inst = getCustomOp(n)
        if n.op_type.endswith("_hls"):
            ctx.update(_run_hls(model, n, inst, ctx))
        else:
            inst.execute_node(ctx, model.graph)
    return ctx


def _by_type(nodes: dict[str, dict]) -> dict[str, dict]:
    return tally_by_type(nodes, ("compile_s", "run_s"), ("reason",))
