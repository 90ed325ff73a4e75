"""Predict one new clip with a full-data model: card check, the training recipes on the clip, the task's own
prediction path, class probabilities and figures.

Everything model-specific comes from the model's task, as in training: ``Task.input_sample_arrays`` turns the
clip's features into the model-input bundle arrays (from an index row without any annotation), only the declared model-input arrays
reach prediction (``PredictInputs``), ``predict_proba`` is the loop's own test pass, and the model's explanation
is its report figure (``Task.report_extras`` + ``make_report_figures``: MMNet's attention map, the demo's
predicted flow, ...). Every clip also gets the generic prediction figure: onset and apex faces, the onset -> apex
flow magnitude, the motion curves with the apex marked (spotted or given) and the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from microexpr.inference.card import FinalModel, check_card, instantiate
from microexpr.inference.clip import (
    Clip,
    ClipError,
    KeyFrames,
    choose_key_frames,
    clip_features,
    clip_row,
    key_faces,
    sample_record,
)
from microexpr.training.loop import predict_proba
from microexpr.training.runtime import resolve_runtime
from microexpr.training.task import PredictInputs

__all__ = ["Prediction", "predict_clip", "prediction_figure"]

PREDICT_FOLD = "predict"


@dataclass
class Prediction:
    """One clip's result: probabilities per class, the key frames (and how they were chosen), figures."""

    clip: str
    model: str
    classes: list[str]
    probabilities: np.ndarray
    key_frames: KeyFrames
    n_frames: int
    source: str
    figures: dict[str, Figure] = field(default_factory=dict)

    @property
    def predicted(self) -> str:
        return self.classes[int(np.argmax(self.probabilities))]

    def to_json(self, card: dict[str, Any]) -> dict[str, Any]:
        """The result with the card facts a reader needs to weigh it (model, data, honest LOSO metrics)."""
        key = self.key_frames
        return {
            "clip": self.clip, "source": self.source, "n_frames": self.n_frames, "model": self.model,
            "predicted": self.predicted,
            "probabilities": {c: float(p) for c, p in zip(self.classes, self.probabilities, strict=True)},
            "key_frames": {"onset": key.onset, "apex": key.apex, "offset": key.offset, "chosen": key.chosen,
                           "faces": key.face_source},
            "motion": {"frames": key.curve_numbers, **{f"{k}_px": v for k, v in key.curves.items()}},
            "trained_on": {"dataset": card.get("dataset"), "label_set": card.get("label_set"),
                           **(card.get("trained_on") or {})},
            "loso_metrics": card.get("loso_metrics"), "leak": card.get("leak"),
            "mlflow_run_id": card.get("mlflow_run_id"), "weights_sha256": (card.get("weights") or {}).get("sha256"),
        }


def predict_clip(
    final: FinalModel, clip: Clip, *, onset: int | None = None, apex: int | None = None, offset: int | None = None,
    device: str = "cpu", label_maps: dict[str, Any] | None = None, figures: bool = True,
) -> Prediction:
    """Class probabilities of ``clip`` under ``final`` (card checked first; key frames given or spotted)."""
    card = final.card
    check_card(card, label_maps)
    model, task = instantiate(final)
    preprocessing = card["preprocessing"]
    key = choose_key_frames(clip, preprocessing, str(card["dataset"]), onset, apex, offset)
    sample = sample_record(clip, key.onset, key.apex, key.offset, str(card["dataset"]))
    features = clip_features(sample, card["features"], preprocessing)
    arrays = task.input_sample_arrays(clip_row(sample, str(card["label_set"]), clip.fps), features)
    missing = sorted(set(task.input_arrays()) - set(arrays))
    if missing:
        raise ClipError(f"{task.name}: input_sample_arrays gave no {missing} for the clip")
    inputs = PredictInputs(np.array([clip.name]), {name: np.asarray(arrays[name])[None] for name in task.input_arrays()},
                           task.name)
    runtime = resolve_runtime(device, "fp32", False, model)
    model = model.to(runtime.device)
    rows = np.array([0])
    probabilities = predict_proba(model, task, inputs, rows, runtime, 1, len(card["classes"]))[0]
    result = Prediction(clip.name, str(card["model"]), list(card["classes"]), probabilities, key, len(clip),
                        clip.source)
    if figures:
        title = _titler(result, card)
        result.figures["prediction.png"] = prediction_figure(result, *key_faces(sample, preprocessing), title=title(
            "Prediction"))
        with torch.inference_mode():
            extras = dict(task.report_extras(model, inputs, rows, runtime))
        extras.update({"sample_ids": np.array([clip.name]), "fold": np.array([PREDICT_FOLD])})
        for stem, figure in task.make_report_figures(extras, title).items():
            result.figures[f"{stem}.png"] = figure
    return result


def _titler(result: Prediction, card: dict[str, Any]):
    def title(what: str) -> str:
        return f"{what} · {result.clip} · {result.model} ({card.get('dataset')}, {card.get('label_set')})"

    return title


def prediction_figure(result: Prediction, onset: np.ndarray, apex: np.ndarray, magnitude: np.ndarray,
                      title: str) -> Figure:
    """Onset face, apex face with the onset -> apex flow magnitude, the motion curve, the probabilities."""
    figure = Figure(figsize=(13, 3.4), layout="constrained")
    axes = figure.subplots(1, 4, width_ratios=[1, 1, 1.4, 1.4])
    key = result.key_frames
    axes[0].imshow(onset)
    axes[0].set_title(f"onset (frame {key.onset})", fontsize=9)
    axes[1].imshow(apex)
    overlay = axes[1].imshow(magnitude, cmap="magma", alpha=0.55, extent=(0, apex.shape[1], apex.shape[0], 0))
    figure.colorbar(overlay, ax=axes[1], fraction=0.046, label="flow |px|")
    axes[1].set_title(f"apex (frame {key.apex}, {'spotted' if key.spotted else 'given'})", fontsize=9)
    for axis in axes[:2]:
        axis.set_axis_off()
    for name, style in (("onset", ":"), ("offset", ":"), ("score", "-")):
        axes[2].plot(key.curve_numbers, key.curves[name], style, marker="." if name == "score" else None,
                     label={"score": "apex score"}.get(name, f"from {name}"))
    axes[2].axvline(key.apex, color="tab:red", linestyle="--", label=f"apex {key.apex}")
    axes[2].set_xlabel("frame")
    axes[2].set_ylabel("mean non-rigid flow (px)")
    axes[2].legend(fontsize=8)
    axes[2].set_title("motion (rigid head motion removed)", fontsize=9)
    order = np.arange(len(result.classes))
    colours = ["tab:red" if i == int(np.argmax(result.probabilities)) else "tab:gray" for i in order]
    axes[3].barh(order, result.probabilities, color=colours)
    axes[3].set_yticks(order, result.classes, fontsize=8)
    axes[3].invert_yaxis()
    axes[3].set_xlim(0, 1)
    axes[3].set_xlabel("probability")
    axes[3].set_title(f"predicted: {result.predicted}", fontsize=9)
    figure.suptitle(title, fontsize=10)
    return figure
