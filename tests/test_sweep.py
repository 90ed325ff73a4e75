"""``microexpr sweep``: the table, figure and markdown built from each value's metrics (synthetic metrics, no run)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pytest

from microexpr.sweep import (
    leak_banner,
    parse_values,
    run_folder,
    sweep_figure,
    sweep_folder,
    sweep_markdown,
    sweep_table,
)


def _metrics(value: float, repeated: bool, leak: str | None = None) -> dict:
    """Metrics shaped like ``evaluate_predictions``' with numbers derived from ``value`` (honest below oracle)."""
    selections = {}
    for shift, selection in ((0.2, "oracle_epoch"), (0.0, "honest")):  # oracle first: the table must reorder
        base = 0.3 + 0.2 * value + shift
        selections[selection] = {
            "repeated_splits": repeated, "acc": base, "uf1": base - 0.1, "uar": base - 0.05,
            "fold_summary": {"n_folds": 3, "acc_mean": base + 0.01, "acc_std": 0.02, "uf1_mean": base - 0.09,
                             "uf1_std": 0.03, "uar_mean": base - 0.04, "uar_std": 0.04},
        }
    return {"selections": selections, "split_protocol": "holdout" if repeated else "loso", "label_set": "l5",
            "dataset": "synthetic", "n_folds": 3, "leak": leak}


@pytest.mark.parametrize("repeated", [False, True])
def test_table_is_honest_first_with_the_protocols_headline_numbers(repeated: bool) -> None:
    values = [0.0, 0.5, 1.0]
    table = sweep_table([(v, _metrics(v, repeated)) for v in values])
    assert table["selection"].tolist() == ["honest"] * 3 + ["oracle_epoch"] * 3
    assert table["value"].tolist() == values * 2
    honest = table[table["selection"] == "honest"]
    expected = [0.3 + 0.2 * v + (0.01 if repeated else 0.0) for v in values]
    np.testing.assert_allclose(honest["acc"].astype(float), expected)
    if repeated:  # mean ± std over the runs
        np.testing.assert_allclose(honest["uar_std"].astype(float), [0.04] * 3)
        assert set(table["aggregate"]) == {"mean over runs"}
    else:  # pooled: no std
        assert honest["uar_std"].isna().all() and set(table["aggregate"]) == {"pooled over folds"}


def test_figure_plots_each_metric_per_selection_and_says_the_default_was_not_chosen() -> None:
    values = [0.0, 0.25, 0.5]
    table = sweep_table([(v, _metrics(v, True)) for v in values])
    figure = sweep_figure(table, "task.alpha", 0.5, "title")
    axes = figure.axes
    assert [a.get_ylabel() for a in axes] == ["accuracy", "UF1", "UAR"]
    labels = [text.get_text() for text in axes[0].get_legend().get_texts()]
    assert labels[0] == "honest" and labels[1].startswith("oracle_epoch (leaky")
    honest_line = axes[1].get_lines()[0]  # the first data line of the UF1 panel is the honest selection's
    np.testing.assert_allclose(np.asarray(honest_line.get_xdata(), dtype=float), values)
    np.testing.assert_allclose(np.asarray(honest_line.get_ydata(), dtype=float), [0.3 + 0.2 * v - 0.09 for v in values])
    footnote = " ".join(t.get_text() for t in figure.texts)
    assert "NOT chosen" in footnote and "task.alpha = 0.5" in footnote


def test_markdown_lists_every_row_and_the_command() -> None:
    table = sweep_table([(v, _metrics(v, False)) for v in (0.0, 1.0)])
    text = sweep_markdown(table, "task.alpha", 0.5, "microexpr sweep attr_contrast task.alpha 0,1 --env quick")
    assert "`microexpr sweep attr_contrast task.alpha 0,1 --env quick`" in text and "NOT chosen" in text
    rows = [line for line in text.splitlines() if line.startswith("| honest") or line.startswith("| oracle")]
    assert rows[0] == "| honest | 0 | 0.300 | 0.200 | 0.250 |" and len(rows) == 4


def test_values_and_folders() -> None:
    assert parse_values("0, 0.25,1") == [0.0, 0.25, 1.0]
    with pytest.raises(click.BadParameter):
        parse_values("0.5,0.5")
    root = sweep_folder(Path("d"), "m", "task.alpha", "quick", "split.protocol=holdout,label_set=x")
    assert root == Path("d/sweeps/m/task.alpha/quick/split.protocol_holdout_label_set_x")
    assert sweep_folder(Path("d"), "m", "task.alpha", None, "") == Path("d/sweeps/m/task.alpha/default")
    assert run_folder(root, 0.25) != run_folder(root, 0.5)


def test_a_leaky_settings_sweep_says_so_in_its_table_markdown_and_figure() -> None:
    """Every output of a sweep run under a leaky setting (e.g. cva_fpf with annotated AUs) carries the leak."""
    honest = sweep_table([(v, _metrics(v, False)) for v in (0.0, 1.0)])
    assert leak_banner(honest) is None and "LEAKY" not in sweep_markdown(honest, "p", None, "c")
    leaky = sweep_table([(v, _metrics(v, False, leak="au_leak")) for v in (0.0, 1.0)])
    assert set(leaky["leak"]) == {"au_leak"}
    text = sweep_markdown(leaky, "p", None, "c")
    assert "LEAKY SETTING [au_leak]" in text.splitlines()[4]  # right under the command, before any number
    assert all("oracle_epoch (leaky" in line for line in text.splitlines() if line.startswith("| oracle"))
    figure = sweep_figure(leaky, "p", None, "title")
    assert "LEAKY SETTING [au_leak]" in figure._suptitle.get_text()
