"""The compile summary on a terminal: per-layer estimates, FIFOs, verification (``qdev compile``).

Reads the dict that :func:`qdev.training.compile.builder.compile_run` returns (its ``--json``
form); prints with rich.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

__all__ = ["print_compile_summary"]

_RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")
_SHOWN_LAYERS = 12


def _layer_table(s: dict) -> Table:
    """The slowest layers (bottleneck in red) and the totals against the part."""
    t = Table(title=f"{s['board']} ({s['part']}) @ {s['clock_mhz']:.0f} MHz: per-layer estimates")
    for c in ("layer", "cycles", *_RESOURCES):
        t.add_column(c, justify="left" if c == "layer" else "right")
    bott = (s.get("bottleneck") or {}).get("layer")
    for ly in sorted(s["layers"], key=lambda r: -r["cycles"])[:_SHOWN_LAYERS]:
        name = f"[bold red]{ly['layer']}[/]" if ly["layer"] == bott else ly["layer"]
        t.add_row(
            name,
            f"{ly['cycles']:,}",
            f"{ly['LUT']:,.0f}",
            f"{ly['BRAM_18K']:.0f}",
            f"{ly['URAM']:.0f}",
            f"{ly['DSP']:.0f}",
        )
    if len(s["layers"]) > _SHOWN_LAYERS:
        t.add_row(f"... {len(s['layers']) - _SHOWN_LAYERS} more layers", "", "", "", "", "")
    r = s["resources"]
    totals = (
        f"[bold]{r[k]['used']:,.0f} / {r[k]['available']:,} ({(r[k]['utilisation'] or 0):.0%})"
        for k in _RESOURCES
    )
    t.add_row("[bold]total", "", *totals)
    return t


def _fifo_lines(s: dict) -> list[str]:
    """The FIFOs chosen (skip depths, resources with them) and their token simulation."""
    ff = s.get("fifos")
    if not ff:
        return []
    rw = s["resources_with_fifos"]
    skips = ", ".join(
        f"{x['depth_pixels']:,} px ({x['depth']:,} x {x['width_bits']} b, {x['ram_style']})"
        for x in ff["skips"]
    )
    used = ", ".join(
        f"{k} {rw[k]['used']:,.0f} ({(rw[k]['utilisation'] or 0):.0%})"
        for k in ("LUT", "BRAM_18K", "URAM")
    )
    over = "" if ff["fits"] else " [red](over the fit limit)[/]"
    return [
        f"FIFOs: {ff['count']} (+{ff['dwcs']} width converters), skip depths {skips}; "
        f"with them {used}{over}",
        f"stitched dataflow, token simulation at these depths: {ff['simulation']['summary']}",
    ]


def _verification(con: Console, v: dict) -> None:
    """Bit-exactness after each step, the per-layer simulations and the stitched one."""
    ok = all(x["equal"] for x in v["steps"].values())
    con.print(
        f"verification ({', '.join(v['modes_run'])} execution, golden batch): "
        + ("[green]bit-exact after every step[/]" if ok else "[red]MISMATCH[/]")
        + f"; not run: {', '.join(f'{k} ({m})' for k, m in v['not_run'].items())}"
    )
    if v.get("layers"):
        t = Table(
            title="the hardware's own code, simulated per layer type (golden batch, against python "
            "execution)"
        )
        for c in ("layer type", "nodes", "cppsim (HLS C++)", "verilator (RTL)"):
            t.add_column(c, justify="right" if c == "nodes" else "left")
        for op, row in v["layers"].items():
            t.add_row(op, str(row["nodes"]), row["cppsim"], row["verilator"])
        con.print(t)
    st = v["steps"].get("qdev_stitched")
    if st:
        colour = "green" if st["equal"] else "red"
        con.print(
            "stitched co-simulation (every layer at once in its hardware language, through the "
            f"chosen FIFOs): [{colour}]{st['summary']}[/]"
        )


def print_compile_summary(s: dict, con: Console | None = None) -> None:
    """Print a compile summary (``compile_run``'s result) to ``con`` (default: stdout)."""
    con = con or Console()
    con.print(_layer_table(s))
    bott = (s.get("bottleneck") or {}).get("layer")
    con.print(
        f"estimated {s['estimated_fps']:.1f} frames/s, latency {s['estimated_latency_ms']:.2f} ms; "
        f"bottleneck {bott}; compile {s['compile_seconds']:.0f} s"
    )
    for line in _fifo_lines(s):
        con.print(line)
    f = s.get("folding") or {}
    if f.get("binding_limit") and not f.get("met"):
        con.print(f"rate limit: {f['binding_limit']}")
    if f.get("message"):
        con.print(f"[yellow]{f['message']}[/]")
    _verification(con, s["verification"])
    if s.get("stopped"):
        con.print(f"[yellow]{s['stopped']}[/]")
