"""A small hand-made prediction table shared by the evaluation tests (arithmetic in test_metrics.py)."""

from __future__ import annotations

import pandas as pd

CLASSES = ["happiness", "surprise", "others"]

# sample: (dataset, subject, fold, y_true, y_pred)
ROWS = [
    ("casme2", "sub01", 0, 0, 0),  # s1
    ("casme2", "sub01", 0, 0, 0),  # s2
    ("casme2", "sub01", 0, 0, 1),  # s3
    ("casme2", "sub02", 1, 1, 1),  # s4
    ("casme2", "sub02", 1, 1, 2),  # s5
    ("casme2", "sub02", 1, 2, 2),  # s6
    ("samm", "006", 2, 2, 2),  # s7
    ("samm", "006", 2, 2, 0),  # s8
    ("samm", "006", 2, 0, 0),  # s9
    ("samm", "007", 3, 2, 1),  # s10
]


def make_table(
    rows: list[tuple[str, str, int, int, int]] = ROWS,
    classes: list[str] = CLASSES,
    selection: str = "honest",
    epoch: int = 73,
) -> pd.DataFrame:
    """Prediction table in the project's contract, with one-hot-ish softmax scores."""
    records = []
    for k, (dataset, subject, fold, y_true, y_pred) in enumerate(rows, start=1):
        record = {
            "sample_id": f"s{k}",
            "dataset": dataset,
            "subject": subject,
            "fold_subject": f"{dataset}/{subject}",
            "fold": f"fold_{fold:03d}",  # fold ids are strings, as the split stage writes them
            "y_true": y_true,
            "y_pred": y_pred,
            "label_true": classes[y_true],
            "label_pred": classes[y_pred],
            "selection": selection,
            "epoch": epoch,
        }
        for c, name in enumerate(classes):
            record[f"score_{name}"] = 0.8 if c == y_pred else 0.2 / (len(classes) - 1)
        records.append(record)
    return pd.DataFrame(records)
