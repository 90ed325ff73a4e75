"""attr_contrast (paper 004): parameter and FLOP counts against reference_models.md §5.2, Table I's depths and the
conv1 stride switch, the cross-modal InfoNCE against a hand-computed case, the text branch's absence at prediction,
the per-class prototype text and the offline BERT from the shipped package."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from microexpr.models import build_model, build_task
from microexpr.models.attr_contrast import AttrContrastNet, cross_modal_contrastive_loss, video_resnet
from microexpr.training.loop import _train_data, predict_inputs, predict_proba
from microexpr.training.runtime import resolve_runtime
from microexpr.training.task import FoldContext, Streams

INFERENCE_PARAMS = 28_846_789  # reference_models.md §5.2: 3D-ResNet10 RGB + flow streams + 256->5 classifier
VISUAL_GFLOPS = 39.30          # §5.2: RGB 19.89 + flow 19.42 per 16x112x112 clip


def _count(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_inference_parameters_and_flops_match_the_reconstruction() -> None:
    model = build_model("attr_contrast", num_classes=5)
    assert abs(_count(model.inference_modules()) - INFERENCE_PARAMS) <= 0.01 * INFERENCE_PARAMS
    assert _count([model.rgb_stream]) == 14_427_456 and _count([model.flow_stream]) == 14_418_048
    with torch.device("meta"):
        meta = AttrContrastNet(5).eval()
    with FlopCounterMode(display=False) as counter:
        meta(torch.empty(1, 3, 16, 112, 112, device="meta"), torch.empty(1, 2, 16, 112, 112, device="meta"))
    assert abs(counter.get_total_flops() / 1e9 - VISUAL_GFLOPS) <= 0.01 * VISUAL_GFLOPS


def _stage_sizes(stream, clip: torch.Tensor) -> list[tuple[int, ...]]:
    hidden = stream.stem(clip)
    sizes = [tuple(hidden.shape[2:])]
    for layer in (stream.layer1, stream.layer2, stream.layer3, stream.layer4):
        hidden = layer(hidden)
        sizes.append(tuple(hidden.shape[2:]))
    return sizes


@pytest.mark.parametrize(("depth", "blocks"), [(10, [1, 1, 1, 1]), (18, [2, 2, 2, 2]), (34, [3, 4, 6, 3])])
def test_table_one_depths_build_with_their_block_counts(depth: int, blocks: list[int]) -> None:
    with torch.device("meta"):
        stream = video_resnet(depth, 3)
    assert [len(getattr(stream, f"layer{k}")) for k in range(1, 5)] == blocks
    assert stream.fc.out_features == 128


def test_conv1_stride_default_gives_table_one_output_sizes_and_the_switch_its_listed_stride() -> None:
    clip = torch.empty(1, 3, 16, 112, 112, device="meta")
    with torch.device("meta"):
        listed_sizes, listed_stride = video_resnet(10, 3), video_resnet(10, 3, conv1_temporal_stride=1)
    assert _stage_sizes(listed_sizes, clip) == [(8, 56, 56), (8, 56, 56), (4, 28, 28), (2, 14, 14), (1, 7, 7)]
    assert _stage_sizes(listed_stride, clip)[0] == (16, 56, 56)
    assert _count([listed_sizes]) == _count([listed_stride])
    with pytest.raises(ValueError, match="depth"):
        video_resnet(50, 3)


def test_contrastive_loss_equals_a_hand_computed_three_sample_case() -> None:
    z_m = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    z_a = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    # cos(z_m^i, z_a^k) by hand
    r = 1 / math.sqrt(2)
    cos = [[1.0, r, 0.0], [0.0, r, -1.0], [r, 1.0, -r]]
    expected = -sum(math.log(math.exp(cos[i][i]) / sum(math.exp(c) for c in cos[i])) for i in range(3)) / 3
    assert cross_modal_contrastive_loss(z_m, z_a).item() == pytest.approx(expected, rel=1e-6)
    # samples 0 and 2 share their text: with the mask, each drops the other as a negative
    same = torch.tensor([[True, False, True], [False, True, False], [True, False, True]])
    masked = -(math.log(math.exp(cos[0][0]) / (math.exp(cos[0][0]) + math.exp(cos[0][1])))
               + math.log(math.exp(cos[1][1]) / sum(math.exp(c) for c in cos[1]))
               + math.log(math.exp(cos[2][2]) / (math.exp(cos[2][2]) + math.exp(cos[2][1])))) / 3
    assert cross_modal_contrastive_loss(z_m, z_a, same).item() == pytest.approx(masked, rel=1e-6)


def _bundle(n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = build_task("attr_contrast").example_arrays(n, 2, rng, size=16)
    return {**arrays, "sample_id": np.array([f"s{i}" for i in range(n)]), "y": (np.arange(n) % 2).astype(np.int64),
            "classes": np.array(["a", "b"])}


def test_text_branch_runs_in_training_only() -> None:
    task = build_task("attr_contrast")
    model = build_model("attr_contrast", num_classes=2)
    calls: list[int] = []
    model.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    data = _train_data(task, _bundle())
    runtime = resolve_runtime("cpu", "fp32", False, model)
    probs = predict_proba(model, task, predict_inputs(task, data), np.arange(4, 8), runtime, 4, 2)
    assert probs.shape == (4, 2) and not calls
    fold = FoldContext(data, np.arange(4), task.prepare_fold(data, np.arange(4)))
    batch = task.train_batch(fold, np.arange(4), Streams(np.random.default_rng(0), torch.Generator()), runtime)
    outputs = task.forward(model, batch, training=True)
    assert calls == [1] and {"z_a", "text_logits"} <= set(outputs)
    assert "z_a" not in task.forward(model, batch, training=False)


def test_alpha_weights_the_loss_terms_as_equation_eight() -> None:
    batch_outputs = {"logits": torch.randn(4, 2), "text_logits": torch.randn(4, 2), "z_m": torch.randn(4, 6),
                     "z_a": torch.randn(4, 6)}
    batch = {"y": torch.tensor([0, 1, 0, 1]), "tokens": torch.arange(8).view(4, 2)}
    for alpha in (0.0, 0.3, 1.0):
        task = build_task("attr_contrast", {"alpha": alpha})
        losses = task.loss(batch_outputs, batch, None)
        t = losses.terms
        expected = (1 - alpha) * (t["ce_video"] + t["ce_text"]) + alpha * t["contrast"]
        torch.testing.assert_close(losses.total, expected)
    assert build_task("attr_contrast", {"alpha": 0.3}).run_tags() == {"alpha": "0.3", "text": "sample"}
    assert build_task("attr_contrast").leak() is None
    with pytest.raises(ValueError, match="alpha"):
        build_task("attr_contrast", {"alpha": 1.5})
    with pytest.raises(ValueError, match="unknown"):
        build_task("attr_contrast", {"temperature": 0.1})


def test_alpha_one_trains_the_embedding_but_never_the_classifier() -> None:
    """α = 1 (Eq. 8 with the contrastive term alone): a finite loss whose gradient reaches the video streams, while
    both classifiers get exactly zero gradient (Adam then leaves them at their initialisation)."""
    task = build_task("attr_contrast", {"alpha": 1.0})
    model = build_model("attr_contrast", num_classes=2)
    data = _train_data(task, _bundle())
    runtime = resolve_runtime("cpu", "fp32", False, model)
    fold = FoldContext(data, np.arange(8), task.prepare_fold(data, np.arange(8)))
    batch = task.train_batch(fold, np.arange(8), Streams(np.random.default_rng(0), torch.Generator()), runtime)
    batch["y"] = torch.from_numpy(data.y[:8])
    losses = task.loss(task.forward(model, batch, training=True), batch, fold)
    assert torch.isfinite(losses.total) and all(torch.isfinite(t) for t in losses.terms.values())
    losses.total.backward()
    for head in (model.classifier, model.text_classifier):
        assert all(p.grad is not None and not p.grad.any() for p in head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.rgb_stream.parameters())


def test_class_prototype_text_is_each_classes_commonest_training_text() -> None:
    task = build_task("attr_contrast", {"text": "class_prototype"})
    arrays = _bundle()
    arrays["tokens"][:] = 0
    arrays["tokens"][[0, 2], 0] = 7   # class a: text 7 twice, text 9 once (sample 4)
    arrays["tokens"][4, 0] = 9
    arrays["tokens"][[1, 3, 5], 0] = 5
    data = _train_data(task, arrays)
    train = np.arange(6)
    fold = FoldContext(data, train, task.prepare_fold(data, train))
    runtime = resolve_runtime("cpu", "fp32", False, torch.nn.Linear(1, 1))
    batch = task.train_batch(fold, np.arange(6), Streams(np.random.default_rng(0), torch.Generator()), runtime)
    assert batch["tokens"][:, 0].tolist() == [7, 5, 7, 5, 7, 5]


def test_attribute_text_comes_from_the_samples_aus() -> None:
    task = build_task("attr_contrast")
    assert task.attribute_text(pd.Series({"au_raw": "R12+6"})) == "cheek raiser, lip corner puller"
    with pytest.raises(ValueError, match="text encoder"):
        task.sample_arrays(pd.Series({"sample_id": "x", "au_raw": "4"}), {"attr_clips": {}})


def test_shipped_minilm_bert_loads_offline_and_is_copied_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from microexpr.datasets.text_encoder import TextEncoderDataset, shipped_encoder_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert shipped_encoder_path().is_dir() and os.environ["HF_HUB_OFFLINE"] == "1"
    encoder = TextEncoderDataset().load()
    assert encoder.model.config.hidden_size == 384 and len(encoder.fingerprint) == 16
    ids = encoder.tokenize(["cheek raiser, lip corner puller", ""], 12)
    assert ids.shape == (2, 12) and ids.dtype == np.int32 and ids[1, 2:].tolist() == [encoder.pad_id] * 10
    task = build_task("attr_contrast", {}, {"text_encoder": encoder})
    model = build_model("attr_contrast", num_classes=5, **task.model_options())
    assert model.text_encoder is not encoder.model
    torch.testing.assert_close(model.text_encoder.embeddings.word_embeddings.weight,
                               encoder.model.embeddings.word_embeddings.weight)
    assert model.text_projection.in_features == 384
    clip = {"rgb": np.zeros((4, 16, 16, 3), np.uint8), "flow": np.zeros((4, 16, 16, 2), np.float16)}
    arrays = task.sample_arrays(pd.Series({"sample_id": "x", "au_raw": "R12+6"}), {"attr_clips": clip})
    np.testing.assert_array_equal(arrays["tokens"], encoder.tokenize(["cheek raiser, lip corner puller"], 32)[0])
    assert task.bundle_settings()["text_encoder"] == encoder.fingerprint
