"""One model under two protocols: the stored summaries, the side-by-side rows and the report's table.

Built from hand-made prediction tables through the real nodes (``evaluate_predictions``, ``protocol_result``,
``render_report``) and the real store, so no kedro run is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, recall_score

from microexpr.dag.training import evaluate_predictions, protocol_result, render_report, scorecard_node
from microexpr.datasets.protocol_results import ProtocolResultStore
from microexpr.evaluation.protocols import protocol_label, protocols_markdown
from tests.evaluation.prediction_tables import CLASSES, make_table

MODEL = "seam_demo"
META = {"classes": CLASSES, "label_set": "3class", "n_samples": 10, "n_subjects": 4}
HOLDOUT = {"protocol": "holdout", "options": {"ratio": [3, 2], "repeats": 3, "seed": 0, "resplit": False}}
SETTINGS = {"seed": 0, "model_params": {}, "training": {"epochs": 2}}

# the same four test clips in each of three runs (one fixed split), predicted differently each time
HOLDOUT_RUNS = [
    [("casme2", "sub01", 0, 0, 0), ("casme2", "sub01", 0, 0, 1), ("samm", "006", 0, 2, 2), ("samm", "006", 0, 1, 1)],
    [("casme2", "sub01", 0, 0, 0), ("casme2", "sub01", 0, 0, 0), ("samm", "006", 0, 2, 1), ("samm", "006", 0, 1, 1)],
    [("casme2", "sub01", 0, 0, 2), ("casme2", "sub01", 0, 0, 1), ("samm", "006", 0, 2, 2), ("samm", "006", 0, 1, 0)],
]


def _holdout_table() -> pd.DataFrame:
    parts = []
    for selection in ("honest", "oracle_epoch"):
        for run, rows in enumerate(HOLDOUT_RUNS):
            parts.append(make_table(rows, selection=selection).assign(fold=f"repeat_{run}"))
    return pd.concat(parts, ignore_index=True)


def _loso_table() -> pd.DataFrame:
    return pd.concat([make_table(), make_table(selection="oracle_epoch")], ignore_index=True)


def _evaluate(table: pd.DataFrame, split: dict, stored: dict | None = None, **settings) -> dict:
    values = {**SETTINGS, **settings}
    return evaluate_predictions(table, META, "honest", "casme2", split, None, stored or {}, values["seed"],
                                values["model_params"], values["training"], model=MODEL)


def test_holdout_and_loso_side_by_side_in_metrics_and_report(tmp_path: Path) -> None:
    store = ProtocolResultStore(path=str(tmp_path / "protocols"))
    assert store.load() == {}  # no run stored one yet: an empty store, not an error
    holdout = _evaluate(_holdout_table(), HOLDOUT)
    store.save(protocol_result(holdout))
    store.save(protocol_result(_evaluate(_holdout_table(), HOLDOUT, seed=7)))  # other settings: never shown
    loso = _evaluate(_loso_table(), {"protocol": "loso"}, store.load())

    rows = loso["protocols"]
    assert [(r["protocol_label"], r["this_run"]) for r in rows] == [("loso", True), ("holdout 3:2", False)]
    assert rows[0]["selections"]["honest"]["uf1"] == pytest.approx(loso["selections"]["honest"]["uf1"])
    # the holdout row: mean and sample std over the three runs, from the table by scikit-learn
    table = _holdout_table()
    honest = table[table["selection"] == "honest"]
    accs = [accuracy_score(p["y_true"], p["y_pred"]) for _, p in honest.groupby("fold")]
    uars = [recall_score(p["y_true"], p["y_pred"], labels=sorted(set(p["y_true"])), average="macro")
            for _, p in honest.groupby("fold")]
    stored_holdout = rows[1]["selections"]["honest"]
    assert stored_holdout["acc_mean"] == pytest.approx(np.mean(accs))
    assert stored_holdout["acc_std"] == pytest.approx(np.std(accs, ddof=1))
    assert stored_holdout["uar_mean"] == pytest.approx(np.mean(uars))
    assert rows[1]["n_folds"] == 3

    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5]})
    report = render_report(scorecard_node(loso), loso, history, [], seed=0, training={})
    section = report.split("## Protocols side by side", 1)[1].split("## Figures", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| loso") or line.startswith("| holdout")]
    assert len(lines) == 4  # two protocols x two selections, honest first
    assert lines[0].startswith("| loso (this run) | 3class | casme2 | 4 | honest |")
    assert "pooled over 4 folds (10 clips)" in lines[0]
    assert f"{np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}" in lines[2] and "| honest |" in lines[2]
    assert "mean ± std over 3 runs" in lines[2] and "| oracle_epoch |" in lines[3]


def test_a_rerun_replaces_its_own_row_and_a_lone_protocol_gets_no_section(tmp_path: Path) -> None:
    store = ProtocolResultStore(path=str(tmp_path))
    first = _evaluate(_loso_table(), {"protocol": "loso"})
    assert first["protocols"][0]["this_run"] and protocols_markdown(first["protocols"], ["honest"]) == []
    store.save(protocol_result(first))
    again = _evaluate(_loso_table(), {"protocol": "loso"}, store.load())
    assert len(again["protocols"]) == 1 and len(list(tmp_path.glob("*.json"))) == 1


def test_store_skips_unreadable_files_and_refuses_unsafe_keys(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "good.json").write_text('{"model": "m"}')
    store = ProtocolResultStore(path=str(tmp_path))
    assert store.load() == {"good": {"model": "m"}}
    with pytest.raises(Exception, match="plain file name"):
        store.save({"../escape": {}})


def test_protocol_labels() -> None:
    assert protocol_label({"protocol": "loso"}) == "loso"
    assert protocol_label(HOLDOUT) == "holdout 3:2"
    assert protocol_label({"protocol": "holdout", "options": {"ratio": "4:1", "resplit": True}}) == "holdout 4:1, resplit"
