"""Run many `qdev train` recipes side by side on one machine (a GPU box, or the 2-core VM),
each in its own process, and gather their run folders into a few size-capped tar files.

    python bench/sweep.py --jobs 12 --deadline 540 --collect OUTDIR \\
        'NAME  --model quant --epochs 100 --seed 0 ...' 'NAME2 ...'

Each argument is a run name (runs/NAME) and then `qdev train` options; --out, --resume and,
unless given, --threads 1 are added. --python names the interpreter (default: this one), so
that the sweep runs where only `python -m qdev.host.cli` exists, and BUSI may be a pack
(`qdev data pack`, `QDEV_BUSI=pack.npz`). At the deadline the runs still going are stopped
(SIGTERM); their last.pt lets `qdev train ... --resume` finish them elsewhere. Every run's
console output is kept in runs/NAME.log; a table of what each run reached is printed at the end.
--collect writes runs.N.tar files of at most --part-mb MB each: train/best.pt, log, split,
manifest, and last.pt only of runs that did not finish.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    name: str
    args: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    ended: float = 0.0
    rc: int | None = None
    log: Path = field(default_factory=Path)


def parse_job(spec: str, runs: Path) -> Job:
    parts = shlex.split(spec)
    if len(parts) < 2 or parts[0].startswith("-"):
        raise SystemExit(f"sweep: {spec!r}: expected 'NAME --option ...'")
    args = parts[1:]
    if "--threads" not in args:
        args += ["--threads", "1"]
    return Job(
        parts[0], args + ["--out", str(runs / parts[0]), "--resume"], log=runs / f"{parts[0]}.log"
    )


def start(job: Job, python: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    job.log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(job.log, "ab")  # noqa: SIM115 - handed to the child, closed with it
    job.proc = subprocess.Popen(
        [python, "-m", "qdev.host.cli", "train", *job.args],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    job.started = time.time()


def reached(run: Path) -> dict:
    """Epochs logged, and the best validation score so far, from the run's log."""
    log = run / "train" / "log.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    recs = [json.loads(x) for x in lines if x.strip()]
    best = [r for r in recs if r.get("best")]
    last = best[-1] if best else None
    return {
        "epochs": len(recs),
        "best_epoch": last["epoch"] if last else None,
        "val_lesion": round(last["val"]["dice_lesion"], 4) if last else None,
        "s_per_epoch": round(sum(r["seconds"] for r in recs) / len(recs), 2) if recs else None,
    }


def collect(jobs: list[Job], runs: Path, out: Path, part_mb: float, with_last: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for j in jobs:
        run = runs / j.name
        keep = ["manifest.json", "train/best.pt", "train/log.jsonl", "train/split.json"]
        if j.rc != 0 and with_last:
            keep.append("train/last.pt")
        files += [run / k for k in keep if (run / k).is_file()]
        files.append(j.log)
    part, size, tar = 0, 0.0, None
    for f in files:
        mb = f.stat().st_size / 1e6
        if tar is None or size + mb > part_mb:
            if tar is not None:
                tar.close()
            tar, size, part = tarfile.open(out / f"runs.{part}.tar", "w"), 0.0, part + 1
        tar.add(f, arcname=str(f.relative_to(runs.parent)))
        size += mb
    if tar is not None:
        tar.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--deadline", type=float, default=0, help="seconds; 0: none")
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--collect", type=Path, default=None)
    ap.add_argument("--part-mb", type=float, default=15.0)
    ap.add_argument(
        "--no-last", action="store_true", help="collect no last.pt, not even of stopped runs"
    )
    a = ap.parse_args()
    jobs = [parse_job(s, a.runs) for s in a.specs]
    pending, running, t0 = list(jobs), [], time.time()
    stop = False
    while pending or running:
        if a.deadline and time.time() - t0 > a.deadline and not stop:
            stop = True
            for j in running:
                os.killpg(j.proc.pid, signal.SIGTERM)
            pending.clear()
        while pending and len(running) < a.jobs and not stop:
            j = pending.pop(0)
            start(j, a.python)
            running.append(j)
        for j in list(running):
            if j.proc.poll() is not None:
                j.rc, j.ended = j.proc.returncode, time.time()
                running.remove(j)
        time.sleep(1.0)
    print("| run | rc | wall s | epochs | best epoch | val lesion Dice | s/epoch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for j in jobs:
        r = reached(a.runs / j.name)
        wall = round(j.ended - j.started) if j.started else None
        print(
            f"| {j.name} | {j.rc} | {wall} | {r['epochs']} | {r['best_epoch']} | {r['val_lesion']} "
            f"| {r['s_per_epoch']} |"
        )
        if j.rc not in (0, None):
            print("   " + " ".join(j.log.read_text(errors="replace").splitlines()[-3:])[-400:])
    if a.collect:
        collect([j for j in jobs if j.started], a.runs, a.collect, a.part_mb, not a.no_last)


if __name__ == "__main__":
    main()
