"""``qdev info`` as text: the device's versions, board, backend, bundles and power, one fact a line.

Formats the dict the device answers to INFO (with ``power_now`` added by the command); prints
nothing itself, so the lines can be tested and shown anywhere.
"""

from __future__ import annotations

__all__ = ["info_lines"]


def _verified_lines(v: dict) -> list[str]:
    """What the active bundle's compile verified, and per layer type each language's result."""
    extra = "; ".join(f"{k}: {r}" for k, r in (v.get("not_run") or {}).items())
    lines = [
        f"verified {', '.join(v.get('modes') or []) or 'nothing recorded'}"
        + (f"  (not run: {extra})" if extra else "")
    ]
    for op, row in (v.get("layers") or {}).items():
        own = [
            f"{lang} {row[lang]}"
            for lang in ("cppsim", "verilator")
            if row.get(lang) not in (None, "-")
        ]
        lines.append(f"         {op} x{row.get('nodes')}: {'; '.join(own) or '-'}")
    return lines


def _bundle_lines(which: str, b: dict | None) -> list[str]:
    """The active or previous bundle; for the active one its mask rule and verification."""
    if not b:
        return [f"{which:<8} -"]
    estimate = " (estimate-only)" if b.get("estimate_only") else ""
    lines = [f"{which:<8} {b['id']} {b.get('model')} for {b.get('board')}{estimate}"]
    if which == "active" and b.get("mask_rule"):
        lines.append(f"masks    {b['mask_rule']}")
    if which == "active" and b.get("verified"):
        lines += _verified_lines(b["verified"])
    return lines


def _runtime_lines(info: dict) -> list[str]:
    lines = [
        f"device   qdev-device {info['device_version']} (protocol {info['protocol']}), "
        f"python {info['python']}, numpy {info['numpy']}, pynq {info.get('pynq')}",
        f"board    {info.get('board') or '(any)'}   "
        f"backend {info.get('backend') or '- (no bundle active)'}",
    ]
    if info.get("executor"):
        ex = info.get("exact") or {}
        steps = ", ".join(f"{k} x{v}" for k, v in (ex.get("steps") or {}).items())
        proven = f"; every step proven exact ({steps})" if ex.get("proven") else ""
        lines.append(f"executor {info['executor']}{proven}")
    if info.get("warning"):
        lines.append(f"WARNING  {info['warning']}")
    return lines


def info_lines(info: dict) -> list[str]:
    """The lines ``qdev info`` prints for the device's INFO answer ``info``."""
    st = info.get("store") or {}
    lines = _runtime_lines(info)
    for which in ("active", "previous"):
        lines += _bundle_lines(which, st.get(f"{which}_bundle"))
    if info.get("degraded"):
        lines += [f"DEGRADED {why}" for why in info.get("degraded_reasons") or []]
        lines.append(
            f"         installed: {', '.join(st.get('installed') or []) or 'none'}; "
            "qdev flash BUNDLE or qdev activate ID to recover"
        )
    p = info.get("power_now")
    if p:
        lines.append(
            f"power    {p['kind']}: idle {p['idle_w']:.2f} W, active {p['active_w']:.2f} W "
            f"({p['source']})"
        )
    return lines
