"""Train/val/test splits of BUSI, written to a JSON file that training and evaluation read.

* ``grouped`` (default, leak-free): duplicate groups from :mod:`training.data.dedup` are the
  unit of assignment. Groups are stratified by class (a group's class is its majority label;
  ties go to the lower label index) and, within each class, shuffled with the seed and then placed
  largest-first into whichever split is furthest below its target image count. Every group
  therefore lies in exactly one split and the class proportions stay close to 70/15/15.
* ``paper``: the paper's plain stratified random split over images (leaks duplicates across
  splits; kept to measure how much that inflates scores).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qdev.core.errors import DataError
from qdev.training.data.busi import CLASSES
from qdev.training.data.cache import BusiArrays
from qdev.training.data.dedup import DuplicateReport
from qdev.training.runs import atomic_write_text

__all__ = ["SPLITS", "SPLIT_FORMAT", "Split", "make_split", "read_split", "write_split"]

SPLITS = ("train", "val", "test")
SPLIT_FORMAT = 1


@dataclass
class Split:
    """A dataset split.

    Attributes:
        kind: ``grouped`` or ``paper``.
        seed: random seed used.
        fractions: target (train, val, test) fractions.
        ids: image ids per split name.
        groups: duplicate groups (size > 1) as id lists, for audit.
        data_hash: hash of the dataset the split was made from.
        dedup: the detector summary.
        unit: what a split never cuts: ``duplicate-group`` (near-duplicates) or ``patient``
            (the dataset names patients: a patient's images, and any duplicates, stay together).
    """

    kind: str
    seed: int
    fractions: tuple[float, float, float]
    ids: dict[str, list[str]]
    groups: list[list[str]] = field(default_factory=list)
    data_hash: str = ""
    dedup: dict = field(default_factory=dict)
    unit: str = "duplicate-group"

    def indices(self, arrays: BusiArrays, name: str) -> np.ndarray:
        """Indices into ``arrays`` of the images of split ``name``.

        Raises:
            DataError: the split names an image the dataset does not have.
        """
        index = arrays.index()
        missing = [i for i in self.ids[name] if i not in index]
        if missing:
            raise DataError(
                f"split names {len(missing)} image(s) not in the dataset, e.g. {missing[0]!r}: "
                "it was made from another copy of BUSI; make a new one with `qdev data split`"
            )
        return np.array([index[i] for i in self.ids[name]], dtype=np.int64)

    def sizes(self, arrays: BusiArrays | None = None) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name in SPLITS:
            per_class = Counter(i.split("/", 1)[0] for i in self.ids[name])
            out[name] = {
                c: per_class.get(c, 0) for c in CLASSES if c != "lesion" or per_class.get(c)
            }
            out[name]["total"] = len(self.ids[name])
        return out

    def crossing_groups(self) -> list[list[str]]:
        """Duplicate groups whose images lie in more than one split (empty for ``grouped``)."""
        where = {i: name for name in SPLITS for i in self.ids[name]}
        return [g for g in self.groups if len({where.get(i) for i in g}) > 1]


def _targets(n: int, fractions: tuple[float, float, float]) -> np.ndarray:
    return np.array(fractions, dtype=np.float64) * n


def make_split(
    arrays: BusiArrays,
    duplicates: DuplicateReport,
    kind: str = "grouped",
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
) -> Split:
    """Make a ``grouped`` (leak-free) or ``paper`` (random stratified) split."""
    if kind not in ("grouped", "paper"):
        raise DataError(f"unknown split kind {kind!r}: use grouped or paper")
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DataError(f"split fractions {fractions} must be >= 0 and sum to 1")
    rng = np.random.default_rng(seed)
    labels = arrays.labels
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    if kind == "paper":
        for k in range(len(CLASSES)):
            idx = np.flatnonzero(labels == k)
            rng.shuffle(idx)
            n = len(idx)
            a = int(round(fractions[0] * n))
            b = a + int(round(fractions[1] * n))
            for name, part in zip(SPLITS, (idx[:a], idx[a:b], idx[b:])):
                out[name].extend(part.tolist())
    elif arrays.patients is not None:  # by patient: a site has few, so balance what is scarce
        _fill_by_lesions(arrays, split_units(arrays, duplicates), fractions, rng, out)
    else:
        strata: dict[int, list[list[int]]] = {k: [] for k in range(len(CLASSES))}
        for g in split_units(arrays, duplicates):
            counts = Counter(int(labels[i]) for i in g)
            top = max(counts.values())
            stratum = min(k for k, v in counts.items() if v == top)
            strata[stratum].append(g)
        for k, groups in strata.items():
            order = rng.permutation(len(groups))
            shuffled = [groups[i] for i in order]
            shuffled.sort(key=len, reverse=True)  # stable: equal sizes keep the random order
            target = _targets(sum(len(g) for g in groups), fractions)
            filled = np.zeros(3)
            for g in shuffled:
                deficit = (target - filled) / np.maximum(target, 1e-9)
                s = int(np.argmax(deficit))
                out[SPLITS[s]].extend(g)
                filled[s] += len(g)
    ids = {name: [arrays.ids[i] for i in sorted(out[name])] for name in SPLITS}
    groups = [[arrays.ids[i] for i in g] for g in duplicates.duplicate_groups]
    unit = "patient" if arrays.patients is not None and kind == "grouped" else "duplicate-group"
    return Split(
        kind, seed, fractions, ids, groups, arrays.data_hash, duplicates.summary(arrays), unit
    )


def _fill_by_lesions(
    arrays: BusiArrays,
    units: list[list[int]],
    fractions: tuple[float, float, float],
    rng: np.random.Generator,
    out: dict[str, list[int]],
) -> None:
    """Patients, most lesion images first (ties in a seeded random order), each to the split
    furthest below its share of lesion images, then of normal scans: a 19-patient site split
    by majority class can leave a test split with a handful of lesions."""
    lesion = arrays.masks.reshape(len(arrays), -1).any(1)
    counts = [(int(lesion[g].sum()), int((~lesion[g]).sum())) for g in units]
    order = rng.permutation(len(units)).tolist()
    order.sort(
        key=lambda u: (-counts[u][0], -counts[u][1])
    )  # stable: equal counts keep the random order
    tot = np.array([sum(c[0] for c in counts), sum(c[1] for c in counts)], np.float64)
    target = np.outer(fractions, tot)  # [split, (lesion, normal)]
    filled = np.zeros_like(target)
    for u in order:
        deficit = (target - filled) / np.maximum(target, 1e-9)
        s = int(np.argmax(deficit[:, 0] + 0.5 * deficit[:, 1]))
        out[SPLITS[s]].extend(units[u])
        filled[s] += counts[u]


def split_units(arrays: BusiArrays, duplicates: DuplicateReport) -> list[list[int]]:
    """The groups a grouped split keeps whole: duplicate groups, merged by patient where known."""
    if arrays.patients is None:
        return duplicates.groups
    from qdev.training.data.dedup import UnionFind

    uf = UnionFind(len(arrays))
    for g in duplicates.groups:
        for i in g[1:]:
            uf.union(g[0], i)
    first: dict[str, int] = {}
    for i, p in enumerate(arrays.patients):
        uf.union(first.setdefault(p, i), i)
    return uf.groups()


def write_split(split: Split, path: Path) -> Path:
    """Write a split as JSON, atomically."""
    path = Path(path)
    doc = {"format": SPLIT_FORMAT, **asdict(split)}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path


def read_split(path: Path) -> Split:
    """Read a split JSON file.

    Raises:
        DataError: missing, unreadable, wrong format, or an image in two splits.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: split file not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable split file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != SPLIT_FORMAT:
        raise DataError(f"{path}: not a qdev split file (format {SPLIT_FORMAT} expected)")
    try:
        split = Split(
            kind=doc["kind"],
            seed=int(doc["seed"]),
            fractions=tuple(doc["fractions"]),
            ids={name: list(doc["ids"][name]) for name in SPLITS},
            groups=doc.get("groups", []),
            data_hash=doc.get("data_hash", ""),
            dedup=doc.get("dedup", {}),
            unit=doc.get("unit", "duplicate-group"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: malformed split file ({exc})") from exc
    seen: dict[str, str] = {}
    for name in SPLITS:
        for i in split.ids[name]:
            if i in seen:
                raise DataError(f"{path}: image {i!r} is in both {seen[i]} and {name}")
            seen[i] = name
    return split
