"""The monitoring report: an HTML page with a verdict table and, per column, a PNG of the reference
against the current distribution (matplotlib), viewable among a run's artifacts in the MLflow UI."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from mlflow_steward.monitoring.verdict import NUMERIC, Verdict, column_kind


def _plot(name: str, reference: pd.Series, current: pd.Series, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # A fixed layout (no tight_layout) and step outlines (one artist per series, not one bar
    # patch per bin): a report with many columns draws in a fraction of the time.
    fig = plt.figure(figsize=(5, 3))
    ax = fig.add_axes((0.12, 0.15, 0.84, 0.72))
    ref, cur = reference.dropna(), current.dropna()
    if column_kind(reference) == NUMERIC and column_kind(current) == NUMERIC and len(cur):
        ref_values = ref.to_numpy(dtype=float)
        cur_values = cur.to_numpy(dtype=float)
        finite = np.concatenate([ref_values, cur_values])
        finite = finite[np.isfinite(finite)]
        edges = np.histogram_bin_edges(finite, bins=30)
        for values, label in ((ref_values, "reference"), (cur_values, "current")):
            counts, _ = np.histogram(values[np.isfinite(values)], bins=edges, density=True)
            ax.stairs(counts, edges, fill=True, alpha=0.5, label=label)
    else:
        frame = pd.DataFrame(
            {
                "reference": ref.astype(str).value_counts(normalize=True),
                "current": cur.astype(str).value_counts(normalize=True),
            }
        ).fillna(0.0)
        frame.plot.bar(ax=ax, alpha=0.7)
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(
    folder: Path, title: str, verdict: Verdict, reference: pd.DataFrame, current: pd.DataFrame
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    images: list[str] = []
    for f in verdict.columns:
        p = "" if f.p_value is None else f"{f.p_value:.3g}"
        stat = "" if f.statistic is None else f"{f.statistic:.4g}"
        rows.append(
            f"<tr class={'drift' if f.drifted else 'ok'}><td>{html.escape(f.column)}</td>"
            f"<td>{f.kind}</td><td>{html.escape(f.method)}</td><td>{stat}</td><td>{p}</td>"
            f"<td>{f.threshold:g}</td><td>{'DRIFT' if f.drifted else 'ok'}</td>"
            f"<td>{f.n_reference}</td><td>{f.n_current}</td><td>{html.escape(f.note)}</td></tr>"
        )
        if f.column in reference and f.column in current:
            image = f"{len(images):03d}.png"
            _plot(f.column, reference[f.column], current[f.column], folder / image)
            images.append(f'<figure><img src="{image}" alt="{html.escape(f.column)}"></figure>')
    quality = "".join(f"<li>{html.escape(q)}</li>" for q in verdict.quality) or "<li>none</li>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px}}tr.drift{{background:#fdd}}
figure{{display:inline-block;margin:4px}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Verdict: <b>{html.escape(verdict.status)}</b>; drifted: {html.escape(", ".join(verdict.drifted) or "none")}
(share {verdict.share:.2f}); settings: {html.escape(str(verdict.settings))}</p>
<h2>Columns</h2><table><tr><th>column</th><th>kind</th><th>method</th><th>statistic</th>
<th>p-value</th><th>threshold</th><th>verdict</th><th>n reference</th><th>n current</th><th>note</th></tr>
{"".join(rows)}</table><h2>Data quality</h2><ul>{quality}</ul>
<h2>Reference against current</h2>{"".join(images)}</body></html>"""
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
