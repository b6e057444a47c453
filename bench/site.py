"""How models do beyond one hospital (issue 33): for the shipped default and each run given, the
figures on BUSI's test split, on the development site zero-shot (all its images: none of these
runs saw it, except adapted runs, which are scored on the site's own test patients only), and for
adapted runs the site's test patients (never seen by ``qdev adapt``), base beside adapted.

Every figure is under the model's own mask rule, at the model's 128 x 128 pixels: lesion Dice
(lesion images), all-image Dice, missed lesions (Dice < 0.1), normal scans marked. Test figures
are printed for the record; no choice here is made on them.

Usage: .venv/bin/python bench/site.py [--site ../shared/data/bus-uclm-dev] [--zero-shot RUN ...]
                                      [--adapted RUN ...] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO.parent))


def _fmt(f: dict) -> str:
    les = "-" if f["dice_lesion"] is None else f"{f['dice_lesion']:.3f}"
    return (
        f"{les} | {f['dice_all']:.3f} | {f['missed']}/{f['n_lesion']} "
        f"({100 * f['missed'] / max(f['n_lesion'], 1):.0f}%) | "
        f"{f['normal_marked']}/{f['n_normal']} "
        f"({100 * f['normal_marked'] / max(f['n_normal'], 1):.0f}%)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--site", default=str(REPO.parent / "shared" / "data" / "bus-uclm-dev"))
    ap.add_argument("--default", type=Path, default=REPO / "models" / "quantunet-w8")
    ap.add_argument("--zero-shot", nargs="*", type=Path, default=[])
    ap.add_argument("--adapted", nargs="*", type=Path, default=[])
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from qdev.training.data import DataOptions, open_busi, open_dataset, parse_colours, read_split
    from qdev.training.postprocess import rule_figures
    from qdev.training.site_eval import load_subject

    site = open_dataset(
        a.site,
        (128, 128),
        options=DataOptions(
            parse_colours("green=benign,red=malignant"), "^([A-Z]+)_", "bus-uclm-dev"
        ),
    )
    busi = open_busi(None, (128, 128))
    busi_test = read_split(a.default / "train" / "split.json").indices(busi, "test")

    def figures(run: Path, arr, idx) -> dict:  # noqa: ANN001
        s = load_subject(run, [])
        return rule_figures(
            s.rule.apply(s.codes(arr.images[idx])), arr.masks[idx] > 0, arr.labels[idx]
        )

    print(
        f"site {a.site}: {len(site)} images, {len(set(site.patients))} patients, data "
        f"hash {site.data_hash[:16]}"
    )
    print(f"BUSI test: {len(busi_test)} images, data hash {busi.data_hash[:16]}\n")
    print("| model | where | lesion Dice | all-image Dice | missed lesions | normal scans marked |")
    print("|---|---|---:|---:|---:|---:|")
    for run in [a.default, *a.zero_shot]:
        name = run.name + (" (default)" if run == a.default else "")
        print(f"| {name} | BUSI test | {_fmt(figures(run, busi, busi_test))} |")
        print(
            f"| {name} | site, all (zero-shot) | {_fmt(figures(run, site, np.arange(len(site))))} |"
        )
    for run in a.adapted:
        split = read_split(run / "train" / "split.json")
        idx = split.indices(site, "test")
        dec = json.loads((run / "adapt" / "decision.json").read_text())
        cfg = json.loads((run / "manifest.json").read_text())["stages"]["adapt"]["config"]
        n = len(split.ids["train"])
        label = f"{run.name} ({n} adapt images, {'offered' if dec['offered'] else 'not offered'})"
        print(
            f"| {a.default.name} (base) | site test patients of {run.name} "
            f"| {_fmt(figures(a.default, site, idx))} |"
        )
        print(f"| {label} | site test patients | {_fmt(figures(run, site, idx))} |")
        print(f"| {label} | BUSI test | {_fmt(figures(run, busi, busi_test))} |")
        gain = dec.get(
            "gain", dec.get("gain_dice_all")
        )  # runs decided before the criterion was recorded: all-image
        print(
            f"|  | decision on site validation ({dec.get('criterion', 'all')}) | gain {gain:+.4f} "
            "| "
            f"P {dec['p_gain']:.3f} | needed {dec['level']:.3f} | replay {cfg.get('replay')}, "
            "augment "
            f"{cfg.get('augment')}, {cfg.get('epochs')} epochs |"
        )


if __name__ == "__main__":
    main()
