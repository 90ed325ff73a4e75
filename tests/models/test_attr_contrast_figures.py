"""attr_contrast's report: z_m's nearest single-AU FACS descriptions (the fold's text branch, no test annotation
read) and the figures that read the shown clips' true class and AUs (joined after prediction)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from microexpr.data.au import facs_table  # noqa: E402
from microexpr.models import build_model, build_task  # noqa: E402
from microexpr.models.attr_contrast import AttrContrastTask, au_vocabulary, nearest_au_hits  # noqa: E402
from microexpr.training.loop import _train_data, predict_inputs  # noqa: E402
from microexpr.training.runtime import resolve_runtime  # noqa: E402
from tests.models.test_attr_contrast import _bundle  # noqa: E402


class _HashTokenizer:
    """Stands in for the catalog's encoder on the tiny BERT: token ids from the text's characters (< 128)."""

    def tokenize(self, texts: list[str], max_length: int) -> np.ndarray:
        ids = np.zeros((len(texts), max_length), dtype=np.int32)
        for i, text in enumerate(texts):
            codes = [1 + ord(c) % 127 for c in text][:max_length]
            ids[i, : len(codes)] = codes
        return ids


def test_nearest_au_descriptions_come_from_the_trained_text_branch_and_test_inputs_only() -> None:
    task = build_task("attr_contrast", {}, {"text_encoder": _HashTokenizer()})
    model = build_model("attr_contrast", num_classes=2).eval()
    data = _train_data(task, _bundle())
    runtime = resolve_runtime("cpu", "fp32", False, model)
    rows = np.arange(4, 8)
    with torch.inference_mode():
        extras = task.report_extras(model, predict_inputs(task, data), rows, runtime)
        aus, texts = au_vocabulary()
        z_a = model.encode_text(torch.from_numpy(_HashTokenizer().tokenize(texts, 32).astype(np.int64)))
        cosine = F.normalize(torch.from_numpy(extras["z_m"].astype(np.float32)), dim=1) @ F.normalize(z_a, dim=1).T
    assert extras["nearest_au"].shape == extras["nearest_cosine"].shape == (4, AttrContrastTask.nearest_k)
    assert set(extras["nearest_au"].ravel()) <= set(facs_table())
    assert (np.diff(extras["nearest_cosine"], axis=1) <= 0).all()
    assert extras["nearest_au"][0, 0] == aus[int(cosine[0].argmax())]
    assert texts[aus.index(12)] == "lip corner puller"  # the text a one-AU training sample would get
    no_tokenizer = build_task("attr_contrast").report_extras(model, predict_inputs(task, data), rows, runtime)
    assert "nearest_au" not in no_tokenizer  # no tokenizer handed in: no description, not a made-up one


def test_annotated_figures_colour_by_true_class_and_score_the_nearest_au() -> None:
    top1, topk = nearest_au_hits(np.array([[12, 6, 4], [1, 2, 4], [9, 10, 11]]), [[12], [4], []])
    assert top1.tolist() == [True, False, False] and topk.tolist() == [True, True, False]
    n = 6
    rng = np.random.default_rng(0)
    extras = {"sample_ids": np.array([f"s{i}" for i in range(n)]), "fold": np.array(["f0"] * n),
              "z_m": rng.normal(size=(n, 8)).astype(np.float16), "predicted": np.zeros(n, dtype=np.int64),
              "nearest_au": np.tile([12, 6, 4], (n, 1)), "nearest_cosine": np.tile([0.9, 0.5, 0.1], (n, 1))}
    annotations = pd.DataFrame({"sample_id": extras["sample_ids"], "fold": "f0", "y_true": np.arange(n) % 2,
                                "label_true": ["happy", "other"] * 3, "label": ["happy", "other"] * 3,
                                "aus": [["12"], ["4"]] * 3, "au_codes": [[12], [4]] * 3})
    figures = AttrContrastTask.make_annotated_report_figures(extras, str, annotations)
    assert set(figures) == {"embedding_tsne", "nearest_au"}
    legend = [t.get_text() for t in figures["embedding_tsne"].axes[0].get_legend().get_texts()]
    assert sorted(legend) == ["happy", "other"]  # the true class, not the predicted class 0
    assert "0.50 top-1, 1.00 top-3" in figures["nearest_au"].axes[0].get_title()
    blind = AttrContrastTask.make_report_figures(extras, str)
    assert [t.get_text() for t in blind["embedding_tsne"].axes[0].get_legend().get_texts()] == ["predicted class 0"]
    plt.close("all")
