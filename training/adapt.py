"""``qdev adapt BASE --data SITE --out RUN``: fine-tune a trained QuantU-Net on a new site's
labelled images, and offer the result only where it beats the base on that site's validation
patients by the same guarded margin the shipped default is held to.

Steps, each recorded in the run folder (``adapt`` stage of the manifest, ``adapt/*.json``):

1. The site is split **by patient** into adapt / validation / test (``--fractions``, seeded;
   written as the run's split, train = adapt). ``--images N`` keeps N of the adapt images (a
   seeded draw: the benchmark's 25 / 50 / all), validation and test untouched.
2. The base's whole state (weights, quantizer scales, **bit widths**) starts the run and its bit
   widths stay frozen, so the accelerator's cost is the base's. A short schedule (``--epochs``,
   cosine from ``--lr``), the base's loss options, ``--augment`` (``scanner`` by default), and
   optional **replay** of the base's own training images against forgetting (``--replay W``: W
   base images drawn per site image each epoch). The best epoch is chosen on the site's
   validation patients.
3. The mask rule is searched again on the site's validation patients (``qdev postprocess``,
   scored by the same criterion as the decision).
4. **The decision**: per-image Dice on the site's validation images under the criterion
   (``balanced`` by default: lesion images and normal scans half each, as in the rule search),
   adapted (its new rule) minus base (its own rule); a paired bootstrap over **patients** must find
   the gain above
   0 in at least ``1 - 0.05 / k`` of resamples (k candidates, Bonferroni as in
   :mod:`training.select`). ``adapt/decision.json`` says offered or not, with the figures.
5. Base and adapted side by side on the site's test patients and on BUSI's test split
   (``adapt/comparison.json``, ``adapt/report.html``): read for the record, never for a choice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from qdev.core.errors import QdevError
from qdev.training.config import AdaptConfig
from qdev.training.data import find_duplicates, make_split, open_dataset, write_split
from qdev.training.runs import RunFolder, atomic_write_text

__all__ = ["AdaptConfig", "adapt", "patient_bootstrap", "DECISION_FILE"]

DECISION_FILE = "adapt/decision.json"


def patient_bootstrap(gain: np.ndarray, units: np.ndarray, resamples: int, seed: int = 0) -> float:
    """P(mean gain > 0) over bootstrap resamples of whole units (patients), images weighted equally;
    ``units`` 0..k-1 per image."""
    from qdev.training.site_eval import unit_resamples

    return sum(gain[pick].mean() > 0 for pick in unit_resamples(units, resamples, seed)) / resamples


def _base_run(base: Path) -> tuple[RunFolder, dict, Path]:
    run = RunFolder.existing(base)
    st = run.stage("train")
    if st["config"]["model"]["kind"] != "quant":
        raise QdevError(
            f"{base}: adapt takes a QuantU-Net run (its integer codes are what the device runs)"
        )
    return run, st, run.verified("train", "train/best.pt")


def _site_split(cfg: AdaptConfig, out: Path, size: int):  # noqa: ANN202
    arrays = open_dataset(cfg.data, (size, size), options=cfg.options)
    if arrays.patients is None:
        raise QdevError(
            f"{cfg.data}: adapt splits a site by patient; give --patient-pattern or a datalist "
            "with a patient column"
        )
    split = make_split(arrays, find_duplicates(arrays), "grouped", cfg.seed, cfg.fractions)
    if cfg.images is not None and cfg.images < len(split.ids["train"]):
        rng = np.random.default_rng(cfg.seed)
        keep = sorted(rng.choice(len(split.ids["train"]), cfg.images, replace=False).tolist())
        split.ids["train"] = [split.ids["train"][i] for i in keep]
    for name in ("train", "val", "test"):
        if not split.ids[name]:
            raise QdevError(
                f"{cfg.data}: {len(set(arrays.patients))} patients leave the {name} split empty; "
                "adapt needs at least three patients"
            )
    path = out / "adapt" / "site_split.json"
    write_split(split, path)
    return arrays, split, path


def _finetune_config(cfg: AdaptConfig, bcfg, brun: RunFolder, best: Path, split_path: Path):  # noqa: ANN001, ANN202
    """The base run's training config, changed into the site's fine-tune: the site's data and
    split, adapt's schedule, the base's best weights, and (``replay``) the base's own training
    images mixed in."""
    mix = []
    if cfg.replay > 0:
        mix.append(
            {
                "data": cfg.replay_data if cfg.replay_data is not None else bcfg.data,
                "data_options": bcfg.data_options,
                "split": str(brun.verified("train", "train/split.json")),
                "weight": cfg.replay,
            }
        )
    return replace(
        bcfg,
        out=str(Path(cfg.out)),
        data=cfg.data,
        data_options=cfg.options.to_dict(),
        split=str(split_path),
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        augment=cfg.augment,
        ema=cfg.ema,
        finetune_from=str(best),
        init_from=None,
        freeze_bits=0.0,
        seed=cfg.seed,
        threads=cfg.threads,
        device="auto",
        mix=mix,
        select="balanced" if cfg.criterion == "balanced" else "lesion",
    )


def adapt(cfg: AdaptConfig, progress=None) -> dict:  # noqa: ANN001
    """Run the five steps; returns the decision document (also ``adapt/decision.json``)."""
    from qdev.training.postprocess import RuleSearch, choose_rule
    from qdev.training.trainer import TrainConfig, train

    cfg.check()
    brun, bst, best = _base_run(Path(cfg.base))
    out = Path(cfg.out)
    if (out / "train").exists():
        raise QdevError(f"{out} already holds a run; choose another --out")
    bcfg = TrainConfig.from_dict(bst["config"])
    arrays, split, split_path = _site_split(cfg, out, bcfg.size)
    tcfg = _finetune_config(cfg, bcfg, brun, best, split_path)
    train(tcfg, progress=progress)
    choose_rule(out, search=RuleSearch(criterion=cfg.criterion))
    decision = _decide(cfg, Path(cfg.base), out, arrays, split)
    run = RunFolder(out)
    t0 = run.begin(
        "adapt",
        {**asdict(cfg), "base": str(cfg.base), "out": str(out), "options": cfg.options.to_dict()},
        {"base_best.pt": bst["outputs"]["train/best.pt"], "site_data_hash": arrays.data_hash},
    )
    path = out / DECISION_FILE
    atomic_write_text(path, json.dumps(decision, indent=1) + "\n")
    replay_data = cfg.replay_data if cfg.replay_data else bcfg.data
    comparison = compare(Path(cfg.base), out, arrays, split, replay_data, brun, cfg.resamples)
    cpath = out / "adapt" / "comparison.json"
    atomic_write_text(cpath, json.dumps(comparison, indent=1) + "\n")
    hpath = out / "adapt" / "report.html"
    atomic_write_text(hpath, _comparison_html(decision, comparison))
    run.finish("adapt", t0, [path, split_path, cpath, hpath], offered=decision["offered"])
    return decision


def compare(
    base: Path, adapted: Path, arrays, split, base_data, brun: RunFolder, resamples: int = 2000
) -> dict:  # noqa: ANN001
    """Base and adapted on the site's test patients and on the base's own test split (for the
    record)."""
    from qdev.training.data import open_run_data, read_split
    from qdev.training.site_eval import evaluate_subject, load_subject

    subjects = {"base": load_subject(base, []), "adapted": load_subject(adapted, [])}
    site_idx = split.indices(arrays, "test")
    bcfg = brun.stage("train")["config"]
    size = int(bcfg["size"])
    home = open_run_data(bcfg, base_data, (size, size))
    home_idx = read_split(brun.verified("train", "train/split.json")).indices(home, "test")
    out = {}
    for where, (arr, idx) in {
        "site test patients": (arrays, site_idx),
        "base's test split": (home, home_idx),
    }.items():
        out[where] = {}
        for name, subj in subjects.items():
            ev, _ = evaluate_subject(subj, arr, idx, where, "test", resamples)
            out[where][name] = {
                "figures": ev.figures,
                "ci95": ev.ci,
                "data_hash": ev.data_hash,
                "mask_rule": subj.rule.describe(),
            }
    return out


def _comparison_html(decision: dict, comparison: dict) -> str:
    from jinja2 import Environment

    page = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>qdev adapt</title>
<style>body{font-family:sans-serif;max-width:1000px;margin:1em auto}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px}td.n{text-align:right}</style></head><body>
<h1>Adapted vs base</h1>
<p>Research use, not for diagnosis. Decision on the site's validation patients
({{ d.n_patients }} patients, {{ d.n_images }} images): <b>{{ d.rule }}</b>
 (gain in {{ d.criterion }} Dice
{{ '%+.4f' % d.gain }}, P(gain &gt; 0) {{ '%.3f' % d.p_gain }}, needed {{ '%.3f' % d.level }}).</p>
{% for where, pair in c.items() %}<h2>{{ where }}</h2><table><tr><th></th><th>lesion Dice</th>
<th>all-image Dice</th>
<th>missed lesions</th><th>normal scans marked</th><th>mask rule</th></tr>
{% for name, r in pair.items() %}<tr><td>{{ name }}</td>
<td class="n">{{ fmt(r.figures.dice_lesion) }}
 ({{ iv(r.ci95.dice_lesion) }})</td><td class="n">{{ fmt(r.figures.dice_all) }}</td>
<td class="n">{{ r.figures.missed }} of {{ r.figures.n_lesion }}</td>
<td class="n">{{ r.figures.normal_marked }} of {{ r.figures.n_normal }}</td>
<td>{{ r.mask_rule }}</td></tr>{% endfor %}
</table>{% endfor %}<p>Test figures are for the record; no choice was made on them.</p></body>
</html>
"""

    def fmt(v):  # noqa: ANN001, ANN202
        return "-" if v is None else f"{v:.3f}"

    def iv(v):  # noqa: ANN001, ANN202
        return "-" if not v else f"{v[0]:.3f}-{v[1]:.3f}"

    return (
        Environment(autoescape=True)
        .from_string(page)
        .render(d=decision, c=comparison, fmt=fmt, iv=iv)
    )


def _decide(cfg: AdaptConfig, base: Path, out: Path, arrays, split) -> dict:  # noqa: ANN001
    from qdev.training.postprocess import criterion_weights, per_image_dice, rule_figures
    from qdev.training.select import corrected_level
    from qdev.training.site_eval import load_subject

    idx = split.indices(arrays, "val")
    truth, labels = arrays.masks[idx] > 0, arrays.labels[idx]
    units = np.unique([arrays.patients[i] for i in idx], return_inverse=True)[1]
    figs, dice = {}, {}
    for name, path in (("base", base), ("adapted", out)):
        subj = load_subject(path, [])
        masks = subj.rule.apply(subj.codes(arrays.images[idx]))
        dice[name] = per_image_dice(masks, truth)
        figs[name] = {
            **rule_figures(masks, truth, labels, dice[name]),
            "mask_rule": subj.rule.describe(),
        }
    w = criterion_weights(truth, cfg.criterion)
    gain = (dice["adapted"] - dice["base"]) * w  # its mean is the criterion's gain
    for name in ("base", "adapted"):
        figs[name]["score"] = float((dice[name] * w).mean())
    level = corrected_level(cfg.level, cfg.candidates)
    p = patient_bootstrap(gain, units, cfg.resamples)
    offered = bool(gain.mean() > 0 and p >= level)
    return {
        "offered": offered,
        "split": "site validation patients",
        "n_images": int(len(idx)),
        "n_patients": int(units.max() + 1),
        "criterion": cfg.criterion,
        "gain": float(gain.mean()),
        "p_gain": float(p),
        "level": level,
        "candidates": cfg.candidates,
        "site_data_hash": arrays.data_hash,
        "base": {"path": str(base), **figs["base"]},
        "adapted": {"path": str(out), **figs["adapted"]},
        "rule": (
            "offered: the adapted network beats the base on the site's validation patients"
            if offered
            else "not offered: the gain does not clear the margin; keep the base"
        ),
    }
