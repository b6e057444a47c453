"""Power/latency report of a streaming session (MLPerf habits: percentiles, enough samples,
idle baseline stated): ``summarise`` -> dict, ``write_report`` -> PNG plots + one
self-contained HTML page + ``report.json``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from qdev.host.stats import percentiles
from qdev.host.session import read_session, write_json_atomic

__all__ = ["summarise", "write_report", "MIN_FRAMES"]

MIN_FRAMES = 1000  # below this, tail percentiles (p99) rest on fewer than 10 samples


def summarise(folder: Path) -> dict:
    manifest, rows = read_session(folder)
    ok = [r for r in rows if r["status"] == "ok"]
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "lost", "timeout", "error")}
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
        warnings.append(f"only {len(ok)} frames: tail percentiles need >= {MIN_FRAMES} to be meaningful")
    if "estimated" in kinds:
        warnings.append("energy is ESTIMATED (no power sensor on this device): see device/power.py for the model")
    return {
        "session": str(folder),
        "source": manifest.get("source"),
        "device": {k: (manifest.get("device") or {}).get(k) for k in ("board", "backend", "bundle_id", "model")},
        "frames": counts, "dropped": dropped,
        "seconds": span, "fps": (len(ok) / span) if span > 0 else 0.0,
        "rtt_ms": percentiles([r["rtt_ms"] for r in ok]),
        "device_ms": percentiles([r["device_ms"] for r in ok]),
        "power_w": {"mean": float(np.mean(power)) if power else None, "kind": "/".join(kinds) or None,
                    "idle_w": (manifest.get("power") or {}).get("idle_w")},
        "energy_mj_per_frame": {**percentiles(energy), "kind": "/".join(kinds) or None},
        "dice_vs_truth": percentiles(dice) if dice else None,
        "warnings": warnings,
    }


def _fig_png(fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _plots(sessions: list[tuple[str, list[dict]]]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in sessions:
        for key, ls in (("rtt_ms", "-"), ("device_ms", "--")):
            v = np.sort([r[key] for r in rows if r["status"] == "ok" and r[key] is not None])
            if v.size:
                ax.plot(v, np.arange(1, v.size + 1) / v.size, ls, label=f"{name} {key[:-3]}")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of frames")
    ax.set_title("Latency CDF (round trip solid, device dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out["latency_cdf.png"] = _fig_png(fig)
    plt.close(fig)
    for key, fname, label in (("rtt_ms", "latency_timeline.png", "round-trip latency (ms)"),
                              ("power_w", "power_timeline.png", "board power (W)"),
                              ("energy_mj", "energy_per_frame.png", "energy per frame (mJ)")):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for name, rows in sessions:
            ok = [r for r in rows if r["status"] == "ok" and r[key] is not None]
            if not ok:
                continue
            t0 = ok[0]["t_sent"]
            ax.plot([r["t_sent"] - t0 for r in ok], [r[key] for r in ok], ".", ms=2, label=name)
            lost = [r for r in rows if r["status"] != "ok" and r["t_sent"] is not None]
            if lost and key == "rtt_ms":
                ax.plot([r["t_sent"] - t0 for r in lost], [0] * len(lost), "rx", ms=4, label=f"{name} lost")
        ax.set_xlabel("time in session (s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        out[fname] = _fig_png(fig)
        plt.close(fig)
    return out


def _row(label: str, s: dict, key: str) -> str:
    v = s.get(key) or {}
    if not v.get("n"):
        return f"<tr><td>{label}</td><td colspan=5>-</td></tr>"
    return (f"<tr><td>{label}</td>" + "".join(f"<td>{v[k]:.2f}</td>" for k in ("p50", "p90", "p99", "max", "mean"))
            + "</tr>")


def write_report(folder: Path, compare: Path | None = None, out: Path | None = None) -> dict:
    """Summaries (and the comparison's), plots and report.html into ``out`` (default: the session)."""
    folder = Path(folder)
    out = Path(out or folder / "report")
    out.mkdir(parents=True, exist_ok=True)
    summaries = [summarise(folder)]
    sessions = [(folder.name, read_session(folder)[1])]
    if compare is not None:
        summaries.append(summarise(Path(compare)))
        sessions.append((Path(compare).name, read_session(Path(compare))[1]))
    pngs = _plots(sessions)
    for name, data in pngs.items():
        (out / name).write_bytes(data)
    doc = {"sessions": summaries, "plots": sorted(pngs)}
    write_json_atomic(out / "report.json", doc)
    parts = ["<!doctype html><meta charset=utf-8><title>qdev session report</title>",
             "<style>body{font-family:sans-serif;max-width:960px;margin:auto}td,th{padding:2px 8px;text-align:right}"
             "td:first-child{text-align:left}.warn{color:#a40}</style>", "<h1>qdev session report</h1>"]
    for s in summaries:
        f = s["frames"]
        parts.append(f"<h2>{html.escape(s['session'])}</h2><p>source {html.escape(str(s['source']))}; "
                     f"device {html.escape(json.dumps(s['device']))}</p>")
        parts.append(f"<p>{f['ok']} frames ok, {f['lost'] + f['timeout']} lost, {f['error']} errors, "
                     f"{s['dropped']} dropped at the probe; {s['fps']:.2f} frames/s over {s['seconds']:.1f} s</p>")
        parts.append("<table><tr><th>ms</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>mean</th></tr>"
                     + _row("round trip", s, "rtt_ms") + _row("device", s, "device_ms") + "</table>")
        e, p = s["energy_mj_per_frame"], s["power_w"]
        if e.get("n"):
            parts.append(f"<p>energy per frame {e['mean']:.2f} mJ (p99 {e['p99']:.2f}), average power "
                         f"{p['mean']:.3f} W, idle baseline {p['idle_w']} W: <b>{html.escape(str(e['kind']))}</b></p>")
        if s.get("dice_vs_truth"):
            d = s["dice_vs_truth"]
            parts.append(f"<p>Dice of the device's masks against the ground truth: mean {d['mean']:.3f} "
                         f"over {d['n']} frames</p>")
        for w in s["warnings"]:
            parts.append(f"<p class=warn>warning: {html.escape(w)}</p>")
    for name, data in pngs.items():
        parts.append(f"<h3>{name[:-4].replace('_', ' ')}</h3><img src='data:image/png;base64,"
                     f"{base64.b64encode(data).decode()}'>")
    (out / "report.html").write_text("\n".join(parts))
    return doc
