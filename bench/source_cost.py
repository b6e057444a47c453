"""What one frame of a host-side source costs on one core: reading it, making the model's input
and its truth mask (what `qdev stream`/`qdev demo` do per frame before the link), so that an end
to end rate can be put beside what the source alone allows.

Usage: .venv/bin/python bench/source_cost.py [--probe busi|phantom|PATH] [--frames N]
"""

from __future__ import annotations

import argparse
import time

from qdev.core.preprocess import mask_to_model, to_model_input


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", default="busi")
    ap.add_argument("--frames", type=int, default=None)
    args = ap.parse_args()
    if args.probe == "busi":
        from qdev.host.cli.demo import _busi_test_source

        src = _busi_test_source(None, True)
    else:
        from qdev.core.probe.sources import open_probe

        src = open_probe(args.probe)
    n, t0 = 0, time.perf_counter()
    for fr in src.frames():
        to_model_input(fr.image, 128, 128)
        if fr.truth is not None:
            mask_to_model(fr.truth, 128, 128)
        n += 1
        if args.frames and n >= args.frames:
            break
    ms = (time.perf_counter() - t0) / n * 1e3
    print(
        f"{src.name}: {n} frames, read + model input + truth {ms:.2f} ms/frame on one core "
        f"(at most {1e3 / ms:.0f} frames/s from the source alone)"
    )


if __name__ == "__main__":
    main()
