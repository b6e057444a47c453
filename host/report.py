"""Report of a streaming session (MLPerf habits: percentiles, enough samples, idle baseline
stated): ``summarise`` -> dict, ``write_report`` -> PNG plots + one self-contained HTML page +
``report.json``. The page shows what was segmented (a gallery of overlays: first, median and
largest mask, best and worst Dice), the Dice histogram where there is truth, real tables for the
source, device, board, bundle and model, and energy split honestly (:func:`energy_split`).
Sessions given with ``--compare`` sit side by side.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np

from qdev.host.stats import percentiles
from qdev.host.session import read_session, write_json_atomic

__all__ = ["summarise", "write_report", "MIN_FRAMES"]

MIN_FRAMES = 1000  # below this, tail percentiles (p99) rest on fewer than 10 samples


#: backends that run the network on a computer's CPU (numpy; onnxruntime): their per-frame
#: time, and so their energy figure, is that CPU's, not the board's accelerator's
CPU_BACKENDS = ("software", "onnx")


def summarise(folder: Path) -> dict:
    manifest, rows = read_session(folder)
    ok = [r for r in rows if r["status"] == "ok"]
    counts = {
        s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "lost", "timeout", "error")
    }
    dropped = int((manifest.get("counts") or {}).get("dropped", 0))
    t_first = min((r["t_sent"] for r in rows if r["t_sent"] is not None), default=None)
    t_last = max((r["t_received"] for r in ok), default=None)
    span = (t_last - t_first) if (t_first is not None and t_last is not None) else 0.0
    kinds = sorted({r["energy_kind"] for r in ok if r["energy_kind"]})
    energy = [r["energy_mj"] for r in ok if r["energy_mj"] is not None]
    power = [r["power_w"] for r in ok if r["power_w"] is not None]
    dice = [r["dice_vs_truth"] for r in ok if r["dice_vs_truth"] is not None]
    warnings = list(manifest.get("read_warnings") or [])
    if len(ok) < MIN_FRAMES:
        warnings.append(
            f"only {len(ok)} frames: tail percentiles need >= {MIN_FRAMES} to be meaningful"
        )
    if "estimated" in kinds:
        warnings.append(
            "energy is ESTIMATED (no power sensor on this device): see device/power.py for the "
            "model"
        )
    dev = _as_dict(manifest.get("device"))
    bundle = _as_dict(_as_dict(dev.get("store")).get("active_bundle"))
    ok_fps = (len(ok) / span) if span > 0 else 0.0
    return {
        "session": str(folder),
        "source": manifest.get("source"),
        "device": {k: dev.get(k) for k in ("board", "backend", "bundle_id", "model")},
        "tables": _tables(manifest, bundle),
        "energy": energy_split(dev, bundle, energy, kinds, ok_fps, manifest.get("power") or {}),
        "gallery": _named(_gallery(folder), rows),
        "log": manifest.get("read_from"),
        "frames": counts,
        "dropped": dropped,
        "seconds": span,
        "fps": (len(ok) / span) if span > 0 else 0.0,
        # device: sessions have no round trip (the device pushes): only the values a row has
        "rtt_ms": percentiles([r["rtt_ms"] for r in ok if r["rtt_ms"] is not None]),
        "device_ms": percentiles([r["device_ms"] for r in ok if r["device_ms"] is not None]),
        "power_w": {
            "mean": float(np.mean(power)) if power else None,
            "kind": "/".join(kinds) or None,
            "idle_w": (manifest.get("power") or {}).get("idle_w"),
        },
        "energy_mj_per_frame": {**percentiles(energy), "kind": "/".join(kinds) or None},
        "dice_vs_truth": percentiles(dice) if dice else None,
        "warnings": warnings,
    }


def _named(gallery: list[dict], rows: list[dict]) -> list[dict]:
    """The gallery's entries with the file each frame came from, where the log has it."""
    names = {int(r["frame_id"]): r.get("source") for r in rows if r.get("frame_id") is not None}
    return [{**g, "source": names.get(int(g["frame_id"]))} for g in gallery]


def _tables(manifest: dict, bundle: dict) -> dict[str, dict]:
    """Key/value tables for the page (values as shown, None where the session did not record it)."""
    dev = _as_dict(manifest.get("device"))
    src = manifest.get("source")
    src = src if isinstance(src, dict) else {"source": src}
    pw = _as_dict(dev.get("power"))
    return {
        "source": {
            "source": src.get("source"),
            "live": src.get("live"),
            "rate (frames/s)": src.get("fps"),
            "frames": src.get("frames"),
            **({"DICOM photometric": src["photometric"]} if "photometric" in src else {}),
            **({"DICOM window (centre, width)": src["window"]} if src.get("window") else {}),
        },
        "device": {
            "backend": dev.get("backend"),
            "runtime": dev.get("device_version"),
            "protocol": dev.get("protocol"),
            "python / numpy": f"{dev.get('python')} / {dev.get('numpy')}",
            "machine": dev.get("machine"),
            "BLAS threads": dev.get("threads"),
            "degraded": dev.get("degraded"),
            "development key trusted": dev.get("dev_key"),
            "port": (manifest.get("settings") or {}).get("port"),
        },
        "board": {
            "board": bundle.get("board") or dev.get("board"),
            "part": bundle.get("part"),
            "clock (MHz)": dev.get("clock_mhz"),
            "power": pw.get("kind"),
            "power model": pw.get("source"),
            "bitstream": "none (estimate only: no Vivado)"
            if bundle.get("estimate_only")
            else "built",
        },
        "bundle": {
            "id": bundle.get("id") or dev.get("bundle_id"),
            "version": bundle.get("version"),
            "run": bundle.get("run_id"),
            "FINN-estimated rate (frames/s)": _num(bundle.get("estimated_fps"), 1),
            "FINN-estimated latency (ms)": _num(bundle.get("estimated_latency_ms"), 1),
        },
        "model": {
            "model": bundle.get("model") or dev.get("model"),
            "input": _io(dev.get("io")),
            "average bits": _num(bundle.get("avg_bits"), 2),
            "model bits": bundle.get("model_bits"),
            "mask rule": (dev.get("io") or {}).get("mask_rule"),
        },
    }


def _as_dict(v: object) -> dict:
    return v if isinstance(v, dict) else {}


def _num(v: float | None, nd: int) -> float | None:
    return None if v is None else round(float(v), nd)


def _io(io_: dict | None) -> str | None:
    if not io_:
        return None
    size = f"{io_.get('width')}x{io_.get('height')}x{io_.get('channels')}"
    return f"{size} {io_.get('idt')} -> {io_.get('odt')}"


def energy_split(
    dev: dict,
    bundle: dict,
    energy: list[float],
    kinds: list[str],
    ok_fps: float,
    power: dict | None = None,
) -> dict:
    """Energy per frame, each figure saying what it describes:

    * ``device``: what the device reported per frame (``measured`` from a power rail, or
      ``estimated``: its power model times its own compute time per frame), at the rate the
      device really ran. With the ``software`` backend that compute time is *this computer's*
      CPU time, so the figure describes no real system, and the page says so.
    * ``fpga_estimate``: the bundle's FINN-estimated frame rate with the board's estimated power
      (``active_w / estimated_fps``): what the accelerator would spend per frame, estimated.
    """
    pw = _as_dict(dev.get("power"))
    backend = dev.get("backend")
    out: dict = {"device": None, "fpga_estimate": None, "notes": []}
    if energy:
        out["device"] = {
            "mj_per_frame": float(np.mean(energy)),
            "kind": "/".join(kinds) or None,
            "frames_per_s": ok_fps,
            "backend": backend,
        }
        if backend in CPU_BACKENDS:
            out["notes"].append(
                f"the {backend} backend ran the network on this computer's CPU: the device's "
                "per-frame time, and so its energy figure, is CPU time times the board's "
                "estimated power; it describes no real system"
            )
    active, fps = _as_dict(power).get("active_w"), bundle.get("estimated_fps")
    if active is None:
        st, dy = pw.get("static_w"), pw.get("dynamic_w")
        active = (st + dy) if st is not None and dy is not None else None
    if active and fps:
        out["fpga_estimate"] = {
            "mj_per_frame": 1e3 * float(active) / float(fps),
            "kind": "estimated",
            "board_w": float(active),
            "frames_per_s": float(fps),
            "source": "FINN's estimated rate of the bundle x the board's estimated power",
        }
    return out


def _gallery(folder: Path) -> list[dict]:
    try:
        return json.loads((Path(folder) / "gallery" / "gallery.json").read_text())["entries"]
    except (OSError, ValueError, KeyError):
        return []  # an older session, or one that stored no frames


def _finish(plt, fig, ax, xlabel: str, ylabel: str) -> bytes:  # noqa: ANN001
    """Label, grid and legend an axes; the figure as PNG bytes (and closed)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    data = _fig_png(fig)
    plt.close(fig)
    return data


def _fig_png(fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _latency_cdf(plt, sessions: list[tuple[str, list[dict]]]) -> bytes:  # noqa: ANN001
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in sessions:
        for key, ls in (("rtt_ms", "-"), ("device_ms", "--")):
            v = np.sort([r[key] for r in rows if r["status"] == "ok" and r[key] is not None])
            if v.size:
                ax.plot(v, np.arange(1, v.size + 1) / v.size, ls, label=f"{name} {key[:-3]}")
    ax.set_title("Latency CDF (round trip solid, device dashed)")
    return _finish(plt, fig, ax, "latency (ms)", "fraction of frames")


def _timeline(plt, sessions: list[tuple[str, list[dict]]], key: str, label: str) -> bytes:  # noqa: ANN001
    """``key`` of every answered frame over the session's time (lost frames marked on the latency
    plot; a power or energy plot names whether it is measured or estimated)."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    kinds = set()
    for name, rows in sessions:
        ok = [r for r in rows if r["status"] == "ok" and r[key] is not None]
        if not ok:
            continue
        kinds |= {r.get("energy_kind") or "?" for r in ok}
        t0 = ok[0]["t_sent"]
        ax.plot([r["t_sent"] - t0 for r in ok], [r[key] for r in ok], ".", ms=2, label=name)
        lost = [r for r in rows if r["status"] != "ok" and r["t_sent"] is not None]
        if lost and key == "rtt_ms":
            lost_t = [r["t_sent"] - t0 for r in lost]
            ax.plot(lost_t, [0] * len(lost), "rx", ms=4, label=f"{name} lost")
    if key != "rtt_ms" and kinds:
        ax.set_title(f"{label.split(' (')[0]}: {', '.join(sorted(kinds)).upper()}")
        label = f"{label}, {'/'.join(sorted(kinds))}"
    return _finish(plt, fig, ax, "time in session (s)", label)


def _dice_histogram(plt, sessions: list[tuple[str, list[dict]]]) -> bytes | None:  # noqa: ANN001
    """Dice against the ground truth per frame (None: no session has a ground truth)."""
    dice_sets = [
        (name, [r["dice_vs_truth"] for r in rows if r["status"] == "ok"]) for name, rows in sessions
    ]
    dice_sets = [(name, [d for d in ds if d is not None]) for name, ds in dice_sets]
    if not any(d for _, d in dice_sets):
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, d in dice_sets:
        if d:
            label = f"{name} (n={len(d)}, mean {np.mean(d):.3f})"
            ax.hist(d, bins=np.linspace(0, 1, 21), alpha=0.6, label=label)
    xlabel = "Dice of the device's mask against the ground truth"
    return _finish(plt, fig, ax, xlabel, "frames")


_TIMELINES = (
    ("rtt_ms", "latency_timeline.png", "round-trip latency (ms)"),
    ("power_w", "power_timeline.png", "board power (W)"),
    ("energy_mj", "energy_per_frame.png", "energy per frame (mJ)"),
)


def _plots(sessions: list[tuple[str, list[dict]]]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {"latency_cdf.png": _latency_cdf(plt, sessions)}
    for key, fname, label in _TIMELINES:
        out[fname] = _timeline(plt, sessions, key, label)
    hist = _dice_histogram(plt, sessions)
    if hist is not None:
        out["dice_histogram.png"] = hist
    return out


def write_report(folder: Path, compare: Path | None = None, out: Path | None = None) -> dict:
    """Summaries (and the comparison's), plots and report.html into ``out`` (default: the
    session)."""
    folder = Path(folder)
    out = Path(out or folder / "report")
    out.mkdir(parents=True, exist_ok=True)
    folders = [folder] + ([Path(compare)] if compare is not None else [])
    summaries = [summarise(f) for f in folders]
    sessions = [(f.name, read_session(f)[1]) for f in folders]
    pngs = _plots(sessions)
    for name, data in pngs.items():
        (out / name).write_bytes(data)
    doc = {"sessions": summaries, "plots": sorted(pngs)}
    write_json_atomic(out / "report.json", doc)
    page = render_html(folders, summaries, pngs)
    (out / "report.html").write_text(page)
    return doc


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 "
    "1em;color:#222}"
    ".cols{display:flex;gap:2em;flex-wrap:wrap}.cols section{flex:1;min-width:420px}"
    "table{border-collapse:collapse;margin:.4em 0 1em}td,th{padding:2px 10px;border-bottom:1px "
    "solid #eee;"
    "text-align:right}td:first-child,th:first-child{text-align:left;color:#555}.kv "
    "td:last-child{text-align:left}"
    ".warn{color:#a40}.est{color:#a60;font-weight:600}.gallery{display:flex;flex-wrap:wrap;gap:10px}"
    "figure{margin:0}figure img{max-width:100%;border:1px solid #ccc}.gallery img{width:220px}"
    "figcaption{font-size:12px;color:#555}.plots{display:flex;flex-wrap:wrap;gap:12px}.plots "
    "img{max-width:640px}"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _view(folder: Path, s: dict) -> dict:
    """What the template shows of one session: the summary, its gallery as inline PNGs with
    captions, latency rows, tables as (title, rows) pairs. Values stay raw: the template escapes."""
    figs = []
    for g in s.get("gallery") or []:
        p = folder / "gallery" / g["file"]
        if p.is_file():
            cap = (
                f"{g['kind']}: frame {g['frame_id']}"
                + (f" ({g['source']})" if g.get("source") else "")
                + (f", mask {g['mask_area']} model px")
                + (f", Dice {g['dice']:.3f}" if g.get("dice") is not None else "")
            )
            figs.append({"png": _b64(p.read_bytes()), "caption": cap})
    energy = {"device": None, "fpga_estimate": None, "notes": [], **(s.get("energy") or {})}
    return {
        **s,
        "figures": figs,
        "energy": energy,
        "latency": [("round trip", s.get("rtt_ms")), ("device", s.get("device_ms"))],
        "tables": [
            (t.capitalize(), list(rows.items())) for t, rows in (s.get("tables") or {}).items()
        ],
    }


def render_html(folders: list[Path], summaries: list[dict], pngs: dict[str, bytes]) -> str:
    """report.html, rendered with Jinja2 (autoescape on: strings from the device, the source and
    the session folder are text, never markup)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("qdev.host", "."),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    tpl = env.get_template("report.html.j2")
    plots = [
        {"png": _b64(data), "caption": name[:-4].replace("_", " ")} for name, data in pngs.items()
    ]
    return tpl.render(
        css=_CSS, sessions=[_view(f, s) for f, s in zip(folders, summaries)], plots=plots
    )
