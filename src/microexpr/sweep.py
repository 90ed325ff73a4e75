"""``microexpr sweep <model> <param> <v1,v2,...>``: one ``kedro run`` per value of one model parameter, then a table
and a figure of accuracy / UF1 / UAR against the value, both selections (docs/models.md, "Attribute contrast": the
α sweep of paper 004's Fig. 4).

Each value runs as its own ``kedro run --pipelines=<model> --params <model>.<param>=<v>,results_root=<folder>``, so
the runs never overwrite each other or the env's own results (conf/base/catalog.yml, results_root); the feature
store and the keyed fold results under data_root are shared, so a value equal to the default reuses the default
run's folds. Every run is an MLflow run of its own, tagged with the task's run tags (α for attr_contrast).

A sweep scores every value on the test subjects, so it describes the model; it must never choose the default (that
would be test-set selection). The figure and the table say so.
"""

from __future__ import annotations

import math
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import pandas as pd
from matplotlib.figure import Figure

from microexpr.project import Project, open_project

METRICS = {"acc": "accuracy", "uf1": "UF1", "uar": "UAR"}
SELECTION_ORDER = ("honest", "validated_epoch", "oracle_epoch")
NOT_SELECTED = ("the default {param} = {default} was fixed before the sweep and is NOT chosen from it: every point is "
                "scored on the test subjects, so picking the best value here would be test-set selection")


# ------------------------------------------------------------------------------------------- pure functions
def sweep_table(results: Sequence[tuple[float, Mapping[str, Any]]]) -> pd.DataFrame:
    """One row per (value, selection) from each run's metrics (``evaluate_predictions``): the protocol's headline
    numbers — pooled over folds, or mean ± std over the runs of repeated hold-out splits — and the fold count."""
    rows = []
    for value, metrics in results:
        for selection, m in metrics["selections"].items():
            repeated = bool(m.get("repeated_splits"))
            folds = m.get("fold_summary") or {}
            row = {"value": float(value), "selection": selection, "protocol": metrics.get("split_protocol", ""),
                   "label_set": metrics.get("label_set", ""), "dataset": metrics.get("dataset", ""),
                   "n_folds": int(metrics.get("n_folds") or folds.get("n_folds") or 0),
                   "aggregate": "mean over runs" if repeated else "pooled over folds",
                   "leak": str(metrics.get("leak") or "")}
            for key in METRICS:
                row[key] = folds.get(f"{key}_mean") if repeated else m.get(key)
                row[f"{key}_std"] = folds.get(f"{key}_std") if repeated else None
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    order = {s: i for i, s in enumerate(SELECTION_ORDER)}
    table["_order"] = table["selection"].map(lambda s: order.get(s, len(order)))
    return table.sort_values(["_order", "value"]).drop(columns="_order").reset_index(drop=True)


ORACLE_NOTE = " (leaky: best epoch on the test subject)"


def leak_banner(table: pd.DataFrame) -> str | None:
    """The warning every sweep output carries when its runs used a leaky setting (``Task.leak``, e.g. au_leak)."""
    leaks = sorted({str(v) for v in table.get("leak", pd.Series(dtype=str)) if str(v)})
    if not leaks:
        return None
    return (f"LEAKY SETTING [{', '.join(leaks)}]: test-sample annotations are fed to the model; these are not honest "
            "results")


def _selections(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["selection"]))  # the table is already honest first


def sweep_figure(table: pd.DataFrame, param: str, default: float | None, title: str) -> Figure:
    """Accuracy, UF1 and UAR against the swept value, one line per selection (honest first, solid; a leaky
    selection dashed), std bars for repeated splits, the default marked, the not-selected statement and, for runs of
    a leaky setting, the leak in the title."""
    figure = Figure(figsize=(12, 4.2))
    axes = figure.subplots(1, len(METRICS), sharex=True)
    for axis, (key, name) in zip(axes, METRICS.items(), strict=True):
        for selection in _selections(table):
            part = table[table["selection"] == selection].sort_values("value")
            std = part[f"{key}_std"].astype(float)
            axis.errorbar(part["value"], part[key].astype(float), yerr=None if std.isna().all() else std.fillna(0),
                          marker="o", capsize=3, linestyle="-" if selection != "oracle_epoch" else "--",
                          label=selection + (ORACLE_NOTE if selection == "oracle_epoch" else ""))
        if default is not None:
            axis.axvline(default, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel(param)
        axis.set_ylabel(name)
        axis.set_title(name)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    banner = leak_banner(table)
    figure.suptitle(title if banner is None else f"{title}\n{banner}", fontsize=10,
                    color="black" if banner is None else "darkred")
    if default is not None:
        figure.text(0.5, -0.02, "Dotted line: " + NOT_SELECTED.format(param=param, default=f"{default:g}") + ".",
                    ha="center", va="top", fontsize=8, wrap=True)
    figure.tight_layout()
    return figure


def _number(value: Any, std: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{float(value):.3f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {float(std):.3f}"
    return text


def sweep_markdown(table: pd.DataFrame, param: str, default: float | None, command: str) -> str:
    """The sweep as a markdown table (honest selection first), with the command and the not-selected statement."""
    lines = [f"# Sweep of {param}", "", f"Command: `{command}`", ""]
    banner = leak_banner(table)
    if banner is not None:
        lines += [f"**{banner}.**", ""]
    if default is not None:
        statement = NOT_SELECTED.format(param=param, default=f"{default:g}")
        lines += [f"**{statement[0].upper()}{statement[1:]}.**", ""]
    if not table.empty:
        first = table.iloc[0]
        lines += [f"Dataset {first['dataset']}, label set {first['label_set']}, protocol {first['protocol']} "
                  f"({first['n_folds']} folds/runs; numbers {first['aggregate']}).", ""]
    lines += [f"| selection | {param} | accuracy | UF1 | UAR |", "|---|---|---|---|---|"]
    for row in table.itertuples(index=False):
        selection = row.selection + (ORACLE_NOTE if row.selection == "oracle_epoch" else "")
        lines.append(f"| {selection} | {row.value:g} | {_number(row.acc, row.acc_std)} | "
                     f"{_number(row.uf1, row.uf1_std)} | {_number(row.uar, row.uar_std)} |")
    return "\n".join(lines) + "\n"


def parse_values(text: str) -> list[float]:
    """``"0,0.25,0.5"`` -> [0.0, 0.25, 0.5] (duplicates refused)."""
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or len(set(values)) != len(values):
        raise click.BadParameter(f"give distinct numbers separated by commas, got {text!r}")
    return values


def sweep_folder(data_root: Path, model: str, param: str, env: str | None, extra: str) -> Path:
    """``<data_root>/sweeps/<model>/<param>/<env>[/<the extra --params, as a folder name>]``: sweeps under another
    env or other settings (e.g. another protocol) keep their own runs."""
    folder = data_root / "sweeps" / model / param / (env or "default")
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", extra).strip("_")[:120]
    return folder / slug if slug else folder


def run_folder(root: Path, value: float) -> Path:
    """The results_root of one value's run: ``<root>/<value>``."""
    return root / f"{value:g}"


# ------------------------------------------------------------------------------------------------ the command
def _project(env: str | None, runtime_params: dict[str, Any] | None = None) -> Project:
    project = open_project(env, runtime_params)
    if project is None:
        raise click.ClickException("run `microexpr sweep` inside the microexpr project")
    return project


def _default_value(params: Mapping[str, Any], model: str, param: str) -> float | None:
    node: Any = params.get(model) or {}
    for part in param.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    try:
        return None if node is None else float(node)
    except (TypeError, ValueError):
        return None


def _newest_metrics(env: str | None, model: str, results_root: Path) -> dict[str, Any]:
    """The newest ``<model>.metrics`` of one run, loaded through the project's catalog."""
    return _project(env, {"results_root": str(results_root)}).catalog().load(f"{model}.metrics")


@click.command(name="sweep", context_settings={"show_default": True})
@click.argument("model")
@click.argument("param")
@click.argument("values")
@click.option("--env", "-e", default=None, help="Kedro configuration environment (e.g. quick).")
@click.option("--params", "extra", default="", help="More --params for every run (key=value,...).")
@click.option("--aggregate-only", is_flag=True, help="Do not run: rebuild the table and figure from stored runs.")
def sweep_cli(model: str, param: str, values: str, env: str | None, extra: str, aggregate_only: bool) -> None:
    """Run MODEL once per value of PARAM (inside the model's block, e.g. task.alpha) and plot the metrics.

    Example: microexpr sweep attr_contrast task.alpha 0,0.25,0.5,0.75,1 --env quick
    """
    numbers = parse_values(values)
    opened = _project(env)
    project, loader = opened.root, opened.config
    data_root = Path(str(loader["globals"]["data_root"]))
    data_root = data_root if data_root.is_absolute() else project / data_root
    root = sweep_folder(data_root, model, param, env, extra)
    default = _default_value(loader["parameters"], model, param)
    command = f"microexpr sweep {model} {param} {values}" + (f" --env {env}" if env else "") + (
        f" --params {shlex.quote(extra)}" if extra else "")
    for value in ([] if aggregate_only else numbers):
        folder = run_folder(root, value)
        run_params = ",".join(p for p in (f"{model}.{param}={value:g}", f"results_root={folder}", extra) if p)
        argv = [sys.executable, "-m", "kedro", "run", f"--pipelines={model}", f"--params={run_params}",
                *([f"--env={env}"] if env else [])]
        click.echo(f"[sweep] {param}={value:g}: {shlex.join(argv[2:])}")
        if subprocess.run(argv, cwd=project, check=False).returncode != 0:
            raise click.ClickException(f"the run for {param}={value:g} failed (its log is above)")
    results = [(v, _newest_metrics(env, model, run_folder(root, v))) for v in numbers]
    table = sweep_table(results)
    first = results[0][1]
    title = (f"{model} · {first['dataset']} · {first['label_set']} · {first.get('split_protocol', '')}: "
             f"metrics against {param}")
    out = root / "summary"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "sweep.csv", index=False)
    sweep_figure(table, param, default, title).savefig(out / "sweep.png", dpi=110, bbox_inches="tight")
    (out / "sweep.md").write_text(sweep_markdown(table, param, default, command), encoding="utf-8")
    click.echo(f"[sweep] table, figure and markdown in {out}")
