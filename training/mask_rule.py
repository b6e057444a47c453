"""A run's mask rule (core/maskrule.py), as its ``postprocess`` stage chose it; torch-free, so
that ``qdev compile``/``qdev bundle`` read it without the trainer."""

from __future__ import annotations

import json

from qdev.core.errors import QdevError
from qdev.core.maskrule import DEFAULT_RULE, MaskRule
from qdev.training.runs import RunFolder

__all__ = ["RULE_FILE", "run_mask_rule"]

RULE_FILE = "postprocess/rule.json"


def run_mask_rule(run: RunFolder) -> tuple[MaskRule, dict]:
    """(rule, where it came from). The default rule (code > 0) where the run has no postprocess
    stage; the chosen one, hash-checked, where it has; an error where the stage is unfinished or
    was chosen for another checkpoint than the run's current best.pt."""
    stages = run.load()["stages"]
    if "postprocess" not in stages:
        return DEFAULT_RULE, {"source": "default (no postprocess stage)"}
    st = run.stage("postprocess")
    best = run.stage("train")["outputs"].get("train/best.pt")
    inputs = st.get(
        "inputs", {}
    )  # run-relative keys; "best.pt" in runs made before training/stages.py
    if inputs.get("train/best.pt", inputs.get("best.pt")) != best:
        raise QdevError(
            f"{run.path}: the mask rule was chosen for another best.pt; rerun qdev postprocess"
        )
    doc = json.loads(run.verified("postprocess", RULE_FILE).read_text())
    return MaskRule.from_manifest(doc["rule"]), {
        "source": RULE_FILE,
        "chosen_by": doc.get("chosen_by"),
        "split": doc.get("split"),
    }
