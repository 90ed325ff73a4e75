"""SAMER's report figures read the shown test samples' true labels and AU sets (joined after prediction)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from microexpr.models.samer import SamerTask  # noqa: E402


def _extras(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"sample_ids": np.array([f"s{i}" for i in range(n)]), "fold": np.array(["f0"] * n),
            "features": rng.normal(size=(n, 16)).astype(np.float16), "eyes_share": rng.random(n).astype(np.float32),
            "predicted": np.zeros(n, dtype=np.int64), "au_cam": rng.random((n, 4, 4)).astype(np.float16),
            "grad_cam": rng.random((n, 4, 4)).astype(np.float16),
            "thumbnails": rng.integers(0, 255, (n, 64, 64), dtype=np.uint8)}


def test_awm_and_tsne_use_the_true_label_and_the_annotated_aus() -> None:
    n = 8
    annotations = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "fold": ["f0"] * n,
                                "y_true": [i % 2 for i in range(n)],
                                "label_true": ["happy" if i % 2 else "surprise" for i in range(n)],
                                "label": ["x"] * n, "aus": [["L12"] if i % 2 else ["1", "2"] for i in range(n)]})
    figures = SamerTask.make_annotated_report_figures(_extras(n), lambda what: what, annotations)
    assert set(figures) == {"au_cam", "awm_weights", "tsne", "tsne_au"}
    awm_axis = figures["awm_weights"].axes[0]
    assert [t.get_text() for t in awm_axis.get_xticklabels()] == ["happy", "surprise"]  # not the predicted class 0
    legend = figures["tsne"].axes[0].get_legend()
    assert sorted(t.get_text() for t in legend.get_texts()) == ["happy", "surprise"]
    assert [a.get_title() for a in figures["tsne_au"].axes] == ["AU1 (4)", "AU2 (4)", "AU12 (4)"]
    blind = SamerTask.make_report_figures(_extras(n), str)  # without annotations: the predicted class, no AU panel
    assert set(blind) == {"au_cam", "awm_weights", "tsne"}
    assert [t.get_text() for t in blind["tsne"].axes[0].get_legend().get_texts()] == ["class 0"]
    plt.close("all")
