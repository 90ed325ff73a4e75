"""The comparison's figures and report: a forest plot of paired differences, the markdown report and its
self-contained HTML twin (figures embedded as data URIs). Pure: tables in, Figure / text out."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from microexpr.evaluation.compare import LEADERBOARD_METRICS, SELECTION_ORDER
from microexpr.evaluation.scorecard import METRIC_LABELS

__all__ = ["forest_figure", "render_comparison_html", "render_comparison_markdown"]

FOREST_FILE = "forest.png"


def forest_figure(paired: pd.DataFrame, metric: str = "uf1", title: str = "") -> Figure:
    """Forest plot: one line per model pair and selection, the difference a − b with its paired 95 % interval."""
    rows = paired.loc[(paired["status"] == "ok") & (paired["metric"] == metric)]
    height = 1.2 + 0.38 * max(len(rows), 1)
    figure = Figure(figsize=(8, height), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    if rows.empty:
        ax.text(0.5, 0.5, "no pair of models to compare on identical samples", ha="center", va="center")
        ax.set_axis_off()
    else:
        y = np.arange(len(rows))[::-1]
        colors = {s: c for s, c in zip(SELECTION_ORDER, ("tab:blue", "tab:green", "tab:red"), strict=True)}
        for position, (_, row) in zip(y, rows.iterrows(), strict=True):
            color = colors.get(row["selection"], "tab:gray")
            ax.plot([row["low"], row["high"]], [position, position], color=color, lw=2)
            ax.plot(row["difference"], position, "o", color=color)
        labels = [f"{r.label_a} − {r.label_b} [{r.selection}] p_Holm={r.p_holm:.3g}" for r in rows.itertuples()]
        ax.set_yticks(y, labels, fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"difference in {METRIC_LABELS.get(metric, metric)} (a − b), paired subject-bootstrap 95 % CI")
    ax.set_title(title or f"Paired differences ({METRIC_LABELS.get(metric, metric)})", fontsize=10)
    return figure


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):.{digits}f}"


def _cell(row: pd.Series, metric: str) -> str:
    return f"{_fmt(row[metric])} [{_fmt(row[f'{metric}_low'])}, {_fmt(row[f'{metric}_high'])}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return lines


def _side_by_side(board: pd.DataFrame, metric: str) -> list[str]:
    selections = [s for s in SELECTION_ORDER if s in set(board["selection"])]
    header = ["model", "scope", *[f"{s}" for s in selections], "n samples / subjects (excluded)", "paper (protocol)"]
    rows = []
    for (label, scope), part in board.groupby(["label", "scope"], sort=False):
        by_selection = {r["selection"]: r for _, r in part.iterrows()}
        first = part.iloc[0]
        paper = [f"{_fmt(r[f'paper_{metric}'])} ({r['paper_protocol']}, vs our {s})" for s, r in by_selection.items()
                 if r[f"paper_{metric}"] is not None and not pd.isna(r[f"paper_{metric}"])]
        excluded = "" if pd.isna(first["n_excluded"]) else f" ({int(first['n_excluded'])})"
        rows.append([label, scope, *[_cell(by_selection[s], metric) if s in by_selection else "not computed"
                                     for s in selections],
                     f"{int(first['n_samples'])} / {int(first['n_subjects'])}{excluded}", "; ".join(paper) or "—"])
    return _table(header, rows)


def render_comparison_markdown(
    board: pd.DataFrame, gap: pd.DataFrame, paired: pd.DataFrame, info: Mapping[str, Any],
    megc: Mapping[str, Any] | None = None,
) -> str:
    """The comparison report: honest / validated / oracle side by side per metric (own cells), the honest − oracle
    gap, the paired tests (refusals named) and, for composites, the MEGC2019 scores."""
    leaks = sorted({str(x) for x in board["leak"].dropna() if str(x)}) if len(board) else []  # "" / NaN: no leak
    title = f"# Model comparison · {info.get('dataset', '?')} · {info.get('label_set', '?')}"
    if leaks:
        title += f" · includes leaky rows ({', '.join(leaks)})"
    lines = [title, ""]
    lines.append(f"Models compared: {', '.join(info.get('models', [])) or 'none'}.")
    if info.get("missing"):
        lines.append(f"Models without stored results (not compared; run `kedro run --pipelines=<model>` first): "
                     f"{', '.join(info['missing'])}.")
    lines += ["", "Every number is pooled over all test samples of one selection. `honest` = fixed schedule, last "
              "epoch; `validated_epoch` = epoch count chosen on held-out *training* subjects; `oracle_epoch` = best "
              "epoch chosen on the test subject (the papers' protocol, an upper bound). They are never pooled "
              "together. Brackets: 95 % interval from a bootstrap over subjects "
              f"({info.get('n_resamples', '?')} resamples). Rows marked LEAK feed test-sample annotations to the "
              "model and are compared only with each other.", ""]
    if board.empty:
        lines.append("No stored results to compare.")
        return "\n".join(lines) + "\n"
    leak_of = board["leak"].fillna("").astype(str)
    for metric in LEADERBOARD_METRICS:
        name = METRIC_LABELS.get(metric, metric)
        if (leak_of == "").any():
            lines += [f"## {name}", "", *_side_by_side(board[leak_of == ""], metric), ""]
        for leak in leaks:  # a leaky setting gets its own table: never a row beside honest results
            lines += [f"## {name} — leaky setting `{leak}` (test annotations fed to the model; not honest results)",
                      "", *_side_by_side(board[leak_of == leak], metric), ""]
    if not gap.empty:
        lines += ["## What test-subject epoch picking hides (honest − oracle_epoch)", ""]
        rows = [[r.label, r.scope, METRIC_LABELS.get(r.metric, r.metric), _fmt(r.honest), _fmt(r.validated_epoch),
                 _fmt(r.oracle_epoch), _fmt(r.honest_minus_oracle), _fmt(r.validated_minus_oracle)]
                for r in gap.itertuples()]
        lines += _table(["model", "scope", "metric", "honest", "validated_epoch", "oracle_epoch",
                         "honest − oracle", "validated − oracle"], rows) + [""]
    lines += ["## Paired comparisons (identical samples)", "",
              f"a − b with a paired subject-bootstrap 95 % interval; p = permutation test "
              f"({info.get('n_permutations', '?')} random swaps of the two models' predictions per "
              f"{info.get('permutation_unit', 'sample')}), Holm-corrected within each selection and metric.", ""]
    ok = paired.loc[paired["status"] == "ok"]
    if ok.empty:
        lines.append("No pair of models with results on identical samples.")
    else:
        rows = [[r.selection, r.label_a, r.label_b, METRIC_LABELS.get(r.metric, r.metric), _fmt(r.difference),
                 f"[{_fmt(r.low)}, {_fmt(r.high)}]", _fmt(r.p_value), _fmt(r.p_holm),
                 f"{int(r.n_common)} ({int(r.n_excluded_a)} / {int(r.n_excluded_b)})"] for r in ok.itertuples()]
        lines += _table(["selection", "a", "b", "metric", "a − b", "95 % CI", "p", "p (Holm)",
                         "n common (excluded by a / b)"], rows)
        lines += ["", f"![Paired differences]({FOREST_FILE})"]
    refused = paired.loc[paired["status"].str.startswith("refused")]
    for r in refused.itertuples():
        lines.append(f"- **Refused** {r.label_a} vs {r.label_b} ({r.selection}): {r.status.removeprefix('refused: ')}")
    for r in paired.loc[paired["status"].str.startswith("skipped")].itertuples():
        lines.append(f"- Not compared: {r.label_a} vs {r.label_b}: {r.status.removeprefix('skipped: ')}")
    lines.append("")
    if megc:
        lines += ["## MEGC2019 scores (TP/FP/FN summed over all folds)", ""]
        rows = []
        for key, scores in megc.items():
            parts = "; ".join(f"{db} {_fmt(s['uf1'])} / {_fmt(s['uar'])} (n={s['n_samples']})"
                              for db, s in scores["per_dataset"].items())
            rows.append([key, _fmt(scores["overall"]["uf1"]), _fmt(scores["overall"]["uar"]),
                         scores["overall"]["n_samples"], parts])
        lines += _table(["model · selection", "UF1", "UAR", "n", "per dataset UF1 / UAR"], rows)
        lines += ["", "The per-fold logs in the challenge's format are in `megc2019_logs/`.", ""]
    return "\n".join(lines) + "\n"


def render_comparison_html(markdown: str, figures: Mapping[str, Figure]) -> str:
    """The markdown report as one self-contained HTML page: every referenced figure embedded as a PNG data URI."""
    import io

    from markdown_it import MarkdownIt  # ships with kedro (through rich)

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{data}"')
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}")
    title = markdown.splitlines()[0].lstrip("# ") if markdown else "Model comparison"
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style>"
            f"</head><body>\n{body}</body></html>\n")
