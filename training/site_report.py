"""The HTML page of a dataset evaluation (``qdev evaluate ... --out DIR``): figures with their
intervals, the worst cases drawn, and every image in a table. Rendered by Jinja2 with
autoescaping: file and patient names come from the user's dataset and are never trusted as HTML."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qdev.training.site_eval import ImageRow, SiteEvaluation

__all__ = ["worst_cases", "render_report"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qdev evaluation: {{ ev.site }}</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}
td.n{text-align:right}.bad{background:#fde2e2}.note{color:#555;font-size:13px}</style></head><body>
<h1>{{ ev.subject.name }} on {{ ev.site }} ({{ ev.split }})</h1>
<p class="note">Research use, not for diagnosis. Evaluated
{{ 'as deployed (the signed bundle\\'s integer model and mask rule)' if ev.subject.kind == 'bundle'
 else 'as trained (the run\\'s best checkpoint and mask rule)' }};
mask rule: {{ ev.subject.mask_rule }}. Data hash {{ ev.data_hash[:16] }}.
Intervals: 95% percentile bootstrap over {{ ev.unit }}s.</p>
<table><tr><th>figure</th><th>value</th><th>95% interval</th></tr>
<tr><td>lesion Dice</td><td class="n">{{ fmt(f.dice_lesion) }}</td><td>{{ ci('dice_lesion') }}</td>
</tr>
<tr><td>all-image Dice</td><td class="n">{{ fmt(f.dice_all) }}</td><td>{{ ci('dice_all') }}</td>
</tr>
<tr><td>missed lesions (Dice &lt; 0.1)</td><td class="n">{{ f.missed }} of {{ f.n_lesion }}</td>
<td>{{ ci('missed_fraction', pct=True) }}</td></tr>
<tr><td>normal scans marked</td><td class="n">{{ f.normal_marked }} of {{ f.n_normal }}</td>
<td>{{ ci('normal_marked_fraction', pct=True) }}</td></tr>
<tr><td>images{% if f.n_patients %} / patients{% endif %}</td>
<td class="n">{{ f.n_images }}{% if f.n_patients %} / {{ f.n_patients }}{% endif %}</td><td></td>
</tr>
</table>
<h2>Worst cases</h2>
<p class="note">Truth solid green, model dashed red,
at the model's {{ ev.subject.get('size', '') }} pixels.</p>
<img src="{{ worst }}" alt="worst cases" style="max-width:100%">
<h2>Every image</h2>
<table><tr><th>file</th><th>patient</th><th>class</th><th>Dice</th><th>truth px</th>
<th>model px</th><th></th></tr>
{% for r in rows %}<tr{% if r.missed or r.marked %} class="bad"{% endif %}><td>{{ r.file }}</td>
<td>{{ r.patient }}</td>
<td>{{ r.cls }}</td><td class="n">{{ '%.3f' % r.dice }}</td><td class="n">{{ r.truth_px }}</td>
<td class="n">{{ r.pred_px }}</td>
<td>{{ 'missed' if r.missed else 'marked' if r.marked else '' }}</td></tr>
{% endfor %}</table></body></html>
"""


def worst_cases(rows: list[ImageRow], n: int) -> list[int]:
    """Up to ``n`` row indices: missed lesions and marked normal scans first, then the lowest
    Dice."""
    missed = sorted((k for k, r in enumerate(rows) if r.missed), key=lambda k: rows[k].dice)
    marked = sorted((k for k, r in enumerate(rows) if r.marked), key=lambda k: -rows[k].pred_px)
    both = [k for pair in zip(missed, marked) for k in pair]
    both += missed[len(both) // 2 :] + marked[len(both) // 2 :]  # the longer list's rest
    rest = sorted(
        (k for k, r in enumerate(rows) if not (r.missed or r.marked) and r.truth_px),
        key=lambda k: rows[k].dice,
    )
    return (both + rest)[:n]


def render_report(ev: SiteEvaluation, picks: list[int], worst_png: str) -> str:
    """The page's HTML."""
    from jinja2 import Environment

    env = Environment(autoescape=True)

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def ci(name: str, pct: bool = False) -> str:
        iv = ev.ci.get(name)
        if not iv:
            return "-"
        return f"{100 * iv[0]:.0f}-{100 * iv[1]:.0f}%" if pct else f"{iv[0]:.3f}-{iv[1]:.3f}"

    rows = [ev.rows[k] for k in picks] + [r for k, r in enumerate(ev.rows) if k not in set(picks)]
    return env.from_string(_PAGE).render(
        ev=ev, f=ev.figures, fmt=fmt, ci=ci, worst=worst_png, rows=rows
    )
