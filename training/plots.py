"""The paper's Figures 1-3 from a training log (PNG, matplotlib Agg).

* fig1_layer_bits.png -- every layer's weight (solid) and activation (dashed) width over epochs,
  with the continuous |offset| + 2 value faintly behind the integer one.
* fig2_acc_bits.png   -- validation pixel accuracy and lesion Dice (left) vs average width (right).
* fig3_bit_vs_seg.png -- bit-width loss (lambda * width) vs segmentation loss (BCE + Dice).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_training", "read_log"]


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _save(fig, path: Path) -> Path:  # noqa: ANN001
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fig_layer_bits(plt, recs: list[dict], ep: list[int]):  # noqa: ANN001, ANN202
    """Figure 1: every layer's weight (solid, raw width faint) and activation (dashed) bits."""
    fig, ax = plt.subplots(figsize=(10, 6))
    cmap = plt.get_cmap("viridis")
    names = list(recs[0]["bits"]["weight_bits"])
    for i, n in enumerate(names):
        c = cmap(i / max(len(names) - 1, 1))
        w = [r["bits"]["weight_bits"][n] for r in recs]
        ax.plot(ep, w, color=c, lw=1.4, label=f"{n} (w)")
        ax.plot(ep, [r["bits"]["raw_bits"][n] for r in recs], color=c, lw=0.6, alpha=0.35)
    acts = list(recs[0]["bits"]["act_bits"])
    for i, n in enumerate(acts):
        c = plt.get_cmap("plasma")(i / max(len(acts) - 1, 1))
        a = [r["bits"]["act_bits"][n] for r in recs]
        ax.plot(ep, a, color=c, lw=1.0, ls="--", label=f"{n} (a)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bit width")
    ax.set_title("Figure 1: per-layer bit widths (solid: weights, dashed: activations)")
    ax.legend(fontsize=5, ncol=3, loc="upper right")
    ax.grid(alpha=0.3)
    return fig


def _fig_acc_bits(plt, recs: list[dict], ep: list[int], quant: bool):  # noqa: ANN001, ANN202
    """Figure 2: validation accuracy and lesion Dice, and (quantised) the average widths."""
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(ep, [r["val"]["pixel_acc"] for r in recs], "C0-", label="val pixel accuracy")
    ax.plot(ep, [r["val"]["dice_lesion"] for r in recs], "C2-", label="val Dice (lesion images)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy / Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if quant:
        ax2 = ax.twinx()
        ax2.plot(ep, [r["bits"]["avg_bits"] for r in recs], "C3--", label="average bit width")
        sw = [r["bits"]["size_weighted_bits"] for r in recs]
        ax2.plot(ep, sw, "C1:", label="size-weighted width")
        ax2.set_ylabel("bits")
        ax2.legend(loc="lower right")
    ax.legend(loc="lower left")
    ax.set_title("Figure 2: validation accuracy and average bit width")
    return fig


def _fig_bit_vs_seg(plt, recs: list[dict], ep: list[int], quant: bool):  # noqa: ANN001, ANN202
    """Figure 3: the segmentation loss (train, val) against the weighted bit-width loss."""
    fig, ax = plt.subplots(figsize=(8, 5))
    seg = [r["train"]["bce"] + r["train"]["dice"] for r in recs]
    ax.plot(ep, seg, "C0-", label="segmentation loss (BCE + Dice), train")
    ax.plot(ep, [r["val_loss"]["seg"] for r in recs], "C0--", label="segmentation loss, val")
    if quant:
        lam = recs[0]["bit_loss"]["lambda"]
        bits = [lam * r["train"]["bits"] for r in recs]
        ax.plot(ep, bits, "C3-", label=f"bit-width loss (lambda={lam})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Figure 3: bit-width loss vs segmentation loss")
    return fig


def plot_training(log_path: Path, out_dir: Path) -> list[Path]:
    """Write the figures next to the log; returns their paths (float runs: only fig 2 and 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_log(log_path)
    if not recs:
        return []
    ep = [r["epoch"] for r in recs]
    out: list[Path] = []
    quant = "bits" in recs[0]
    if quant:
        out.append(_save(_fig_layer_bits(plt, recs, ep), out_dir / "fig1_layer_bits.png"))
    out.append(_save(_fig_acc_bits(plt, recs, ep, quant), out_dir / "fig2_acc_bits.png"))
    out.append(_save(_fig_bit_vs_seg(plt, recs, ep, quant), out_dir / "fig3_bit_vs_seg.png"))
    return out
