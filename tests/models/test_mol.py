"""MOL (paper 003): parameter and FLOP counts against the reference code, the vectorised CCC and correlation against
loop references, the data handling (sub-clips, crop, flip, video-level scores), the loss terms and every ablation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from microexpr.models import build_model, build_task
from microexpr.models.mol import (
    MOL,
    InputNorm,
    MOLTask,
    crop_clip,
    flip_clip,
    landmark_loss,
    landmark_nme,
    subclip_frames,
)
from microexpr.models.mol_layers import CCC, FlowNetC, correlation
from microexpr.training.augment import IBUG68_MIRROR
from microexpr.training.loop import _train_data, predict_inputs, predict_proba, train_fold
from microexpr.training.runtime import resolve_runtime
from microexpr.training.task import FoldContext, Streams
from tests.models.mol_loops import (
    ccc_loop,
    correlation_loop,
    reference_style,
    reference_style_forward,
    reference_style_landmark_loss,
)

# ../shared/reference/reference_models.md §4.2 (measured on CYF-cuber/MOL)
USED_PARAMS = 44_103_583
MER_PATH_PARAMS = 1_056_905
SUBMODULES = {"conv_stack": 19_048, "mer_head": 738_853, "landmark_head": 3_318_440, "flownet": 39_730_282}
FCC_USED, CCC_PARAMS = 17_794 - 898, 131_584  # FCC minus its dead ffn (898 = BN 256 + 258 + 384)
FLOWNET_GFLOPS = 29.69  # 7 pairs, correlation not counted
TOTAL_GFLOPS = 32.28 + 0.40
CODE = {"ccc_axis": "positions", "ccc_double_difference": True, "ccc_project": False, "fcc_fuse": False}
TINY = {"image_size": 32, "flownet_width": 8}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_reference_code() -> None:
    model = build_model("mol", 5, **CODE)
    assert n_params(model) == pytest.approx(USED_PARAMS, rel=0.01)
    for name, expected in SUBMODULES.items():
        assert n_params(getattr(model, name)) == pytest.approx(expected, rel=0.01), name
    assert n_params(model.f5c_first[0].fcc) == FCC_USED and n_params(model.f5c_first[0].ccc) == CCC_PARAMS
    mer_path = sum(n_params(getattr(model, m)) for m in ("conv_stack", "f5c_first", "f5c_second", "mer_head"))
    assert mer_path == pytest.approx(MER_PATH_PARAMS, rel=0.01)
    paper = build_model("mol", 5)  # + the paper's 1x1 convs after CCC and after FCC's concat, twice each
    assert n_params(paper) - n_params(model) == 4 * (128 * 128 + 128)


def test_flops_match_the_reference_code() -> None:
    """The reference-style FlowNet (each frame encoded per pair) gives the reference's 29.69 G for 7 pairs once the
    correlation (2·HW·HW·C per pair here) is left out; the whole model is cheaper than the reference's 32.68 G
    (frames encoded once, W1·x computed once per channel, an all-pairs correlation) but not by more than 15 %."""
    flownet = FlowNetC().eval()
    frame, features = torch.rand(1, 1, 128, 128), torch.rand(1, 256, 16, 16)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        flownet(frame, frame, features)
    correlation_flops = 2 * 256 * 256 * 256
    assert 7 * (counter.get_total_flops() - correlation_flops) / 1e9 == pytest.approx(FLOWNET_GFLOPS, rel=0.01)
    model = build_model("mol", 5, **CODE).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 1, 8, 128, 128))
    assert 0.85 * TOTAL_GFLOPS < counter.get_total_flops() / 1e9 < TOTAL_GFLOPS


@pytest.mark.parametrize("axis,double", [("positions", True), ("positions", False), ("channels", False), ("channels", True)])
def test_vectorised_ccc_equals_the_loop_reference_forward_and_backward(axis: str, double: bool) -> None:
    torch.manual_seed(0)
    module = CCC(positions=16, channels=12, k=4, axis=axis, double_difference=double)
    x = torch.randn(3, 12, 4, 4, requires_grad=True)
    ours = module(x)
    loops = ccc_loop(module, x)
    torch.testing.assert_close(ours, loops, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * weights).sum(), [x, module.w_edge.weight])
    loop_grads = torch.autograd.grad((loops * weights).sum(), [x, module.w_edge.weight])
    for a, b in zip(grads, loop_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [16, 5])
def test_vectorised_correlation_equals_the_loop_reference_forward_and_backward(size: int) -> None:
    torch.manual_seed(0)
    first = torch.randn(2, 6, size, size, requires_grad=True)
    second = torch.randn(2, 6, size, size, requires_grad=True)
    ours, loops = correlation(first, second), correlation_loop(first, second)
    assert ours.shape == (2, 441, size, size)
    torch.testing.assert_close(ours, loops, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * weights).sum(), [first, second])
    loop_grads = torch.autograd.grad((loops * weights).sum(), [first, second])
    for a, b in zip(grads, loop_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_correlation_index_cached_under_inference_mode_serves_training() -> None:
    with torch.inference_mode():
        correlation(torch.randn(1, 2, 7, 7), torch.randn(1, 2, 7, 7))
    first = torch.randn(1, 2, 7, 7, requires_grad=True)
    correlation(first, torch.randn(1, 2, 7, 7)).sum().backward()
    assert first.grad is not None


def test_batched_forward_equals_the_reference_style_pair_loop_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = build_model("mol", 3, **CODE, **TINY).eval()
    video = torch.rand(2, 1, 8, 32, 32)
    with torch.no_grad():
        ours, theirs = model(video), reference_style_forward(reference_style(model), video)
    for key in ("logits", "flow", "landmarks"):
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-4, rtol=1e-4)


def test_landmark_loss_equals_the_code_loop() -> None:
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.uniform(20, 100, size=(3, 7, 68, 2)).astype(np.float32))
    predicted = target + torch.from_numpy(rng.normal(0, 2, size=target.shape).astype(np.float32))
    torch.testing.assert_close(landmark_loss(predicted, target), reference_style_landmark_loss(predicted, target))
    assert float(landmark_nme(target, target).max()) == 0.0


def test_sub_clips_take_every_interval_th_frame() -> None:
    assert subclip_frames(17, 8, 0).tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert subclip_frames(17, 8, 1).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    with pytest.raises(ValueError):
        subclip_frames(17, 8, 2)


def _marked_clip(size: int = 48, frames: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Frames with a distinct value at each landmark's pixel (landmarks on whole pixels)."""
    rng = np.random.default_rng(1)
    inner = size - 20
    flat = [rng.choice(inner * inner, size=68, replace=False) for _ in range(frames)]  # distinct pixels
    points = np.stack([np.stack([f % inner + 10, f // inner + 10], axis=1) for f in flat]).astype(np.float32)
    clip = np.zeros((frames, size, size), dtype=np.int32)
    for t in range(frames):
        for k, (x, y) in enumerate(points[t].astype(int)):
            clip[t, y, x] = k + 1
    return clip, points


def _value_at(clip: np.ndarray, points: np.ndarray) -> np.ndarray:
    xy = np.rint(points).astype(int)
    return np.stack([clip[t, xy[t, :, 1], xy[t, :, 0]] for t in range(clip.shape[0])])


def test_crop_moves_landmark_targets_exactly_with_the_pixels() -> None:
    clip, points = _marked_clip()
    flows = np.random.default_rng(2).normal(size=(2, 48, 48, 2)).astype(np.float32)
    cut, cut_flows, moved = crop_clip(clip, flows, points, x=5, y=3, size=32)
    inside = (moved >= 0).all(-1) & (moved < 32).all(-1)
    values = _value_at(np.pad(cut, ((0, 0), (0, 48), (0, 48))), np.clip(moved, 0, None))
    expected = np.broadcast_to(np.arange(1, 69), values.shape)
    assert inside.any() and np.array_equal(values[inside], expected[inside])
    assert np.array_equal(cut_flows, flows[:, 3:35, 5:37])
    assert not np.shares_memory(moved, points) and np.array_equal(points, _marked_clip()[1])  # never in place


def test_flip_is_an_involution_that_mirrors_pixels_flow_and_landmark_indices() -> None:
    clip, points = _marked_clip()
    flows = np.random.default_rng(3).normal(size=(2, 48, 48, 2)).astype(np.float32)
    flipped, f_flows, f_points = flip_clip(clip, flows, points)
    again = flip_clip(flipped, f_flows, f_points)
    assert np.array_equal(again[0], clip) and np.array_equal(again[1], flows) and np.allclose(again[2], points)
    assert np.array_equal(f_flows[..., 0], -flows[:, :, ::-1, 0]) and np.array_equal(f_flows[..., 1], flows[:, :, ::-1, 1])
    # the pixel of landmark k lands under flipped landmark IBUG68_MIRROR[k]
    values = _value_at(flipped, f_points)
    assert np.array_equal(values, np.broadcast_to(np.array(IBUG68_MIRROR) + 1, values.shape))


def _bundle(n_frames: list[int], size: int = 48) -> dict[str, np.ndarray]:
    n = len(n_frames)
    arrays = MOLTask.example_arrays(n, 2, np.random.default_rng(0), size=size - 16)
    arrays["n_frames"] = np.array(n_frames, dtype=np.int32)
    return {**arrays, "sample_id": np.array([f"t/s{i}" for i in range(n)]), "y": np.arange(n) % 2,
            "classes": np.array(["a", "b"]), "fold_subject": np.array([f"t/sub{i}" for i in range(n)])}


def test_video_level_scores_average_every_sub_clip_even_within_one_batch() -> None:
    """Video 0 has 2 sub-clips, video 1 has 1, video 2 has 2; batches of 3 items put one video's sub-clips together."""
    torch.manual_seed(0)
    task = build_task("mol")
    model = build_model("mol", 2, **TINY).eval()
    data = _train_data(task, _bundle([16, 9, 17]))
    view = predict_inputs(task, data)
    runtime = resolve_runtime("cpu", "fp32", False, model)
    rows = np.arange(3)
    probs = predict_proba(model, task, view, rows, runtime, 3, 2)
    with torch.inference_mode():
        def score(row: int, j: int) -> np.ndarray:
            video = task._test_videos(view, [(row, j)], runtime)
            return torch.softmax(model(video)["logits"], 1).numpy()[0]
        expected = np.stack([(score(0, 0) + score(0, 1)) / 2, score(1, 0), (score(2, 0) + score(2, 1)) / 2])
    np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_training_batch_draws_sub_clips_crops_and_moves_the_targets_with_them() -> None:
    task = MOLTask.from_params({"hflip": 0.0}, name="mol")
    data = _train_data(task, _bundle([16, 17]))
    fold = FoldContext(data, np.arange(2))
    streams = Streams(np.random.default_rng(0), torch.Generator().manual_seed(0))
    batch = task.train_batch(fold, np.arange(2), streams, resolve_runtime("cpu", "fp32", False, torch.nn.Linear(1, 1)))
    assert batch["video"].shape == (2, 1, 8, 32, 32) and batch["flows"].shape == (2, 7, 2, 32, 32)
    assert batch["landmarks"].shape == (2, 7, 68, 2)
    # replay the draws: every target is the stored one of the drawn sub-clip, cut / shifted by the drawn origin
    replay = Streams(np.random.default_rng(0), torch.Generator().manual_seed(0))
    for i in range(2):
        j = int(replay.data.integers(int(data.arrays["n_frames"][i]) // 8))
        x, y = (int(v) for v in torch.randint(0, 17, (2,), generator=replay.augment))
        torch.rand((), generator=replay.augment)
        frames = subclip_frames(int(data.arrays["n_frames"][i]), 8, j)
        np.testing.assert_allclose(batch["landmarks"][i].numpy(), data.arrays["landmarks"][i, frames[1:]] - [x, y])
        expected = data.arrays["frames"][i, frames, y : y + 32, x : x + 32] / 255.0
        np.testing.assert_allclose(batch["video"][i, 0].numpy(), expected, atol=1e-6)


def test_loss_terms_are_named_and_logged_per_epoch_with_epe_and_nme_per_sample() -> None:
    inputs = _bundle([8, 9, 16, 8, 12, 10])
    cfg = {"epochs": 2, "batch_size": 2, "precision": "fp32", "report_samples": 1,
           "optimizer": {"name": "Adam", "lr": 1e-4, "weight_decay": 0.0}}
    outcome = train_fold("mol", TINY, inputs, np.arange(4), np.arange(4, 6), cfg, seed=0)
    for term in ("ce", "flow", "landmarks"):
        assert np.isfinite(outcome.history[f"train_loss_{term}"]).all() and len(outcome.history) == 2
    assert set(outcome.auxiliary) == {"epe", "nme"}
    assert all(v.shape == (2,) and np.isfinite(v).all() and (v > 0).all() for v in outcome.auxiliary.values())
    only = train_fold("mol", {**TINY, "flow_head": False, "landmark_head": False}, inputs, np.arange(4),
                      np.arange(4, 6), {**cfg, "epochs": 1}, seed=0)
    assert "train_loss_flow" not in only.history and only.auxiliary == {}


ABLATIONS = {
    "without_flow": {"flow_head": False},
    "without_landmarks": {"landmark_head": False},
    "mer_only": {"flow_head": False, "landmark_head": False},
    "without_f5c": {"fcc": "none", "ccc": False},
    "without_fcc": {"fcc": "none"},
    "without_ccc": {"ccc": False},
    "f5c_x2": {"f5c_blocks": 2},
    "f5c_x3": {"f5c_blocks": 3},
    "fcc_transformer": {"fcc": "transformer"},
    "fcc_v": {"fcc": "vertical"},
    "fcc_h": {"fcc": "horizontal"},
    **{f"fusion_{f}": {"fusion": f} for f in ("concat", "add", "subtract", "first", "last", "all_frames")},
    "code_ccc": CODE,
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_every_ablation_builds_at_tiny_size_and_trains_one_step(name: str) -> None:
    torch.manual_seed(0)
    model = build_model("mol", 3, **TINY, **ABLATIONS[name])
    task = build_task("mol")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    video = torch.rand(2, 1, 8, 32, 32)
    batch = {"video": video, "y": torch.tensor([0, 2]), "flows": torch.randn(2, 7, 2, 32, 32),
             "landmarks": torch.rand(2, 7, 68, 2) * 32}
    before = [p.detach().clone() for p in model.parameters()]
    losses = task.loss(model(video), batch, None)
    losses.total.backward()
    optimizer.step()
    assert torch.isfinite(losses.total)
    assert ("flow" in losses.terms) == ABLATIONS[name].get("flow_head", True)
    assert ("landmarks" in losses.terms) == ABLATIONS[name].get("landmark_head", True)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_input_norm_keeps_the_mean_and_the_largest_value_of_every_training_batch() -> None:
    """Regression: the running max was re-based on the updated mean, so a later batch with a lower mean lowered the
    remembered peak (0.92 instead of 1.0 here). Eval mode freezes the statistics."""
    norm = InputNorm().train()
    batches = [torch.full((2, 1, 8, 4, 4), 0.2), torch.full((2, 1, 8, 4, 4), 0.3), torch.full((4, 1, 8, 4, 4), 0.1)]
    batches[1][0, 0, 0, 0, 0] = 1.0  # the peak arrives in a middle batch
    for batch in batches:
        norm(batch)
    everything = torch.cat([b.flatten() for b in batches]).double()
    assert float(norm.mean) == pytest.approx(float(everything.mean()), abs=1e-12)
    assert float(norm.max + norm.mean) == pytest.approx(1.0, abs=1e-12)
    norm.eval()
    out = norm(torch.ones(1, 1, 8, 4, 4))
    assert float(norm.max + norm.mean) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-6)  # the peak maps to 1


def test_mer_dropout_sets_both_dropouts_and_rejects_bad_values() -> None:
    assert build_model("mol", 3, **TINY).mer_head.dropout.p == 0.5  # the code's
    assert build_model("mol", 3, **TINY, mer_dropout=0.2).mer_head.dropout.p == 0.2
    with pytest.raises(ValueError, match="dropout"):
        MOL(3, **TINY, mer_dropout=1.0)


def test_pretrained_checkpoint_loads_all_but_a_classifier_of_another_shape(tmp_path) -> None:
    torch.manual_seed(0)
    source = build_model("mol", 7, **TINY)
    path = tmp_path / "pretrained.pt"
    torch.save(source.state_dict(), path)
    target = build_model("mol", 3, **TINY, pretrained=str(path))
    assert torch.equal(target.conv_stack[0].weight, source.conv_stack[0].weight)
    assert target.mer_head.fc2.weight.shape == (3, 256)


def test_settings_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown"):
        MOLTask.from_params({"lambda": 1.0})
    with pytest.raises(ValueError, match="probability"):
        MOLTask.from_params({"hflip": 2.0})
    with pytest.raises(ValueError, match="fusion"):
        MOL(3, fusion="mean")
