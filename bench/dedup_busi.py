"""Sweep the near-duplicate threshold on BUSI and print groups / images in groups / largest group.

Usage: .venv/bin/python bench/dedup_busi.py [--data PATH]
"""

from __future__ import annotations

import argparse
import time

from qdev.training.data import (
    DedupConfig,
    find_duplicates,
    load_busi,
    make_split,
    resolve_busi_root,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    arrays = load_busi(resolve_busi_root(args.data))
    print(f"loaded {len(arrays)} images in {time.perf_counter() - t0:.2f} s")
    print(
        "| threshold | groups | images in groups | largest group | spanning classes | paper-split "
        "groups crossing |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for th in (0.88, 0.90, 0.92, 0.95, 0.98):
        t = time.perf_counter()
        d = find_duplicates(arrays, DedupConfig(threshold=th))
        s = d.summary(arrays)
        crossing = len(make_split(arrays, d, "paper", 0).crossing_groups())
        print(
            f"| {th:.2f} | {s['groups']} | {s['images_in_groups']} | {s['largest_group']} | "
            f"{s['groups_spanning_classes']} | {crossing} |  ({time.perf_counter() - t:.2f} s)"
        )


if __name__ == "__main__":
    main()
