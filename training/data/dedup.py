"""Exact and near-duplicate detection in BUSI, grouped by union-find.

Method (thumbnail correlation, calibrated on BUSI; see bench/RESULTS.md):

* Exact duplicates: identical decoded grayscale pixels (sha256 of the pixel array).
* Near duplicates: every image gets two 32x32 box-filtered thumbnails from its original
  resolution -- the full frame and its centre 70% crop (catches re-cropped copies). Each thumbnail
  is centred and scaled to unit norm; the similarity of two images is the largest Pearson
  correlation among full/full, crop/full and full/crop. Pairs at or above ``threshold`` (0.92)
  are linked, and linked images form groups (union-find, so chains A~B~C end in one group).

On the ../shared BUSI copy, every cross-class duplicate listed in its SOURCE.md scores >= 0.958
(the exact copy benign (433) / malignant (145) scores 1.0); 0.92 finds 146 groups covering 334
images (bench/dedup_busi.py; README and bench/RESULTS.md), close to the 139 groups / 319 images of
the reference heuristic and to the 235 duplicated
images of Pawlowska et al. (2023). Lower thresholds start chaining unrelated scans (0.90: one
group of 43 images).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from qdev.training.data.busi import CLASSES
from qdev.training.data.cache import BusiArrays

__all__ = ["DedupConfig", "DuplicateReport", "UnionFind", "find_duplicates", "similarity_matrix"]


@dataclass(frozen=True)
class DedupConfig:
    """Settings of the duplicate detector.

    Attributes:
        threshold: minimum thumbnail correlation that links two images as near-duplicates.
        use_crops: also compare centre crops with full frames (re-cropped copies).
    """

    threshold: float = 0.92
    use_crops: bool = True


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            out[self.find(i)].append(i)
        return sorted(out.values(), key=lambda g: g[0])


@dataclass
class DuplicateReport:
    """Result of :func:`find_duplicates`.

    Attributes:
        groups: every image's group as index lists (singletons included), ordered by first index.
        exact_pairs: index pairs with identical pixels.
        config: detector settings used.
    """

    groups: list[list[int]]
    exact_pairs: list[tuple[int, int]]
    config: DedupConfig
    group_of: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = sum(len(g) for g in self.groups)
        self.group_of = [0] * n
        for gi, g in enumerate(self.groups):
            for i in g:
                self.group_of[i] = gi

    @property
    def duplicate_groups(self) -> list[list[int]]:
        return [g for g in self.groups if len(g) > 1]

    def summary(self, arrays: BusiArrays) -> dict:
        dup = self.duplicate_groups
        spanning = [g for g in dup if len({int(arrays.labels[i]) for i in g}) > 1]
        return {
            "method": "thumbnail correlation (32x32, full + centre crop) + exact pixel hash",
            "threshold": self.config.threshold,
            "groups": len(dup),
            "images_in_groups": sum(len(g) for g in dup),
            "largest_group": max((len(g) for g in dup), default=0),
            "exact_duplicate_pairs": len(self.exact_pairs),
            "groups_spanning_classes": len(spanning),
            "spanning": [[arrays.ids[i] for i in g] for g in spanning],
            "by_class": {
                c: sum(1 for g in dup for i in g if arrays.labels[i] == k)
                for k, c in enumerate(CLASSES)
            },
        }


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1).astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)


def similarity_matrix(thumbs: np.ndarray, use_crops: bool = True) -> np.ndarray:
    """Pairwise image similarity in [-1, 1] from ``thumbs`` [N, 2, T, T] (full, centre crop)."""
    full = _unit(thumbs[:, 0])
    sim = full @ full.T
    if use_crops:
        cf = _unit(thumbs[:, 1]) @ full.T
        sim = np.maximum(sim, np.maximum(cf, cf.T))
    return sim


def find_duplicates(arrays: BusiArrays, config: DedupConfig | None = None) -> DuplicateReport:
    """Group exact and near-duplicate images of a loaded dataset."""
    config = config or DedupConfig()
    n = len(arrays)
    uf = UnionFind(n)
    exact: list[tuple[int, int]] = []
    first_by_sha: dict[str, int] = {}
    for i, sha in enumerate(arrays.pixel_sha):
        if sha in first_by_sha:
            exact.append((first_by_sha[sha], i))
            uf.union(first_by_sha[sha], i)
        else:
            first_by_sha[sha] = i
    if n > 1:
        sim = similarity_matrix(arrays.thumbs, config.use_crops)
        ii, jj = np.nonzero(np.triu(sim >= config.threshold, k=1))
        for i, j in zip(ii.tolist(), jj.tolist()):
            uf.union(i, j)
    return DuplicateReport(uf.groups(), exact, config)
