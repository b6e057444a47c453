"""Per-layer-type tallies of a simulation report (cppsim's and Verilator's share one shape)."""

from __future__ import annotations

__all__ = ["tally_by_type"]


def tally_by_type(
    nodes: dict[str, dict], seconds: tuple[str, ...], notes: tuple[str, ...]
) -> dict[str, dict]:
    """op type -> nodes, simulated, bit_exact, elements_differing, the summed ``seconds`` fields
    and the last non-empty value of each ``notes`` field, over per-node records."""
    out: dict[str, dict] = {}
    for rec in nodes.values():
        t = out.setdefault(
            rec["op_type"],
            {
                "nodes": 0,
                "simulated": 0,
                "bit_exact": 0,
                "elements_differing": 0,
                **dict.fromkeys(seconds, 0.0),
                **dict.fromkeys(notes),
            },
        )
        t["nodes"] += 1
        if rec.get("simulated"):
            t["simulated"] += 1
            t["bit_exact"] += int(rec["bit_exact"])
            t["elements_differing"] += rec["elements_differing"]
        for k in seconds:
            t[k] = round(t[k] + (rec.get(k) or 0.0), 3)
        for k in notes:
            if rec.get(k):
                t[k] = rec[k]
    return out
