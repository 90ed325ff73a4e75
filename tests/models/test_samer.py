"""SAMER: parity with the reference's parameter count and FLOPs, the shapes of reference_models.md §3.2, the
shuffle attention, WSCL against hand-computed cases (both self-pair readings), class weights, Region Replacing,
the honesty contract for AU sets, ablations, initial weights, and the learning-rate schedule.

Reference numbers (../shared/reference/reference_models.md §3.3) were measured on the official code, not on ours.
Only the parity tests run at 3x112x224; the rest use 3x16x32 halves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from microexpr.models import build_model, build_task
from microexpr.models import samer as samer_module
from microexpr.models.samer import (
    SAMER,
    GroupShuffleAttention,
    SamerTask,
    au_slots,
    class_weights,
    jaccard_similarity,
    load_resnet18_weights,
    random_erasing,
    region_partners,
    wscl_loss,
)
from microexpr.training.loop import (
    OptimizerConfig,
    SchedulerConfig,
    _train_data,
    build_optimizer,
    build_scheduler,
    predict_inputs,
)
from microexpr.training.runtime import resolve_runtime
from microexpr.training.task import FoldContext, Streams

REF_PARAMS = {5: 24_313_514, 3: 24_311_462}
REF_SUBMODULES = {"base": 683_936, "branch": 10_496_896, "area_weight": 2_103_296, "head_5": 266_245}
REF_SA_PARAMS = 7_776
REF_GFLOPS = 3.75


def trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def halves(batch: int, height: int = 8, width: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, height, width, generator=generator),
            torch.randn(batch, 3, height, width, generator=generator))


# ------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("n_classes", [5, 3])
def test_parameter_count_matches_the_reference(n_classes: int) -> None:
    count = trainable(build_model("samer", num_classes=n_classes))
    assert abs(count - REF_PARAMS[n_classes]) / REF_PARAMS[n_classes] < 0.01, count


def test_submodule_counts_match_the_reference_table() -> None:
    model = build_model("samer", num_classes=5)
    assert trainable(model.base) == pytest.approx(REF_SUBMODULES["base"], rel=0.01)
    for name in ("eyes", "mouth"):
        assert trainable(model.branch[name]) == pytest.approx(REF_SUBMODULES["branch"], rel=0.01)
        assert trainable(model.heads[name]) == pytest.approx(REF_SUBMODULES["head_5"], rel=0.01)
    assert trainable(model.area_weight) == pytest.approx(REF_SUBMODULES["area_weight"], rel=0.01)
    sa = sum(trainable(m) for m in model.modules() if isinstance(m, GroupShuffleAttention))
    assert sa == REF_SA_PARAMS


def test_flops_and_every_intermediate_shape_at_the_reference_input() -> None:
    model = build_model("samer", num_classes=5).eval()
    eyes, mouth = halves(1, 112, 224)
    with torch.no_grad():
        base = model.base(eyes)
        layer3 = model.branch["eyes"].layer3(base)
        maps = model.branch_maps(eyes, mouth)
        with FlopCounterMode(display=False) as counter:
            out = model(eyes=eyes, mouth=mouth)
    assert base.shape == (1, 128, 14, 28)
    assert layer3.shape == (1, 256, 7, 14)
    assert maps["eyes"].shape == maps["mouth"].shape == (1, 512, 4, 7)
    assert out["features"].shape == out["weights"].shape == (1, 1024)
    assert out["heads"]["eyes"].shape == out["heads"]["mouth"].shape == out["logits"].shape == (1, 5)
    assert counter.get_total_flops() / 1e9 == pytest.approx(REF_GFLOPS, rel=0.01)  # FLOPs = 2 x MACs, batch 1


# -------------------------------------------------------------------------------------------- attention
def test_shuffle_attention_gate_is_a_softmax_across_groups_with_per_group_parameters() -> None:
    sa = GroupShuffleAttention(16, groups=4)
    assert sa.cweight.shape == (1, 4, 2, 1, 1)  # per-group parameters (SA-Net shares them: (1, C/2G, 1, 1))
    x = torch.randn(2, 16, 3, 5)
    with torch.no_grad():
        sa.cweight.normal_()
        sa.cbias.normal_()
        out = sa(x)
    # undo the shuffle: output channel 2k+j came from pre-shuffle channel j*8+k
    unshuffled = out.reshape(2, 8, 2, 3, 5).transpose(1, 2).reshape(2, 4, 4, 3, 5)
    grouped = x.reshape(2, 4, 4, 3, 5)
    pooled = grouped[:, :, :2].mean(dim=(3, 4), keepdim=True) * sa.cweight + sa.cbias
    expected = grouped[:, :, :2] * torch.softmax(pooled, dim=1)
    torch.testing.assert_close(unshuffled[:, :, :2], expected)
    sigmoid = GroupShuffleAttention(16, groups=4, gate="sigmoid")
    sigmoid.load_state_dict(sa.state_dict())
    assert not torch.allclose(sigmoid(x), out)


# ------------------------------------------------------------------------------------------------- losses
def test_wscl_equals_the_hand_computed_three_sample_case_under_both_readings() -> None:
    # z1 = z3 = (1, 0), z2 = (0, 1), tau = 1; AU sets {1, 2}, {4}, {1}: w13 = 1/2, w12 = w23 = 0
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    au = torch.zeros(3, 100)
    au[0, [1, 2]] = 1
    au[1, 4] = 1
    au[2, 1] = 1
    similarity = jaccard_similarity(au)
    torch.testing.assert_close(similarity, torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0]]))
    log_1_plus_e = math.log(1 + math.e)
    # paper (j != i): anchor 1 = -log(e / (1 + e)); anchor 2 has no positive and is left out; anchor 3 as 1
    paper = wscl_loss(features, similarity, temperature=1.0, self_pair="exclude")
    assert float(paper) == pytest.approx(log_1_plus_e - 1.0, rel=1e-6)
    # code (j = i included): anchors 1, 3 = log(1 + e) - 1; anchor 2 = -(1 - log 2)
    code = wscl_loss(features, similarity, temperature=1.0, self_pair="include")
    assert float(code) == pytest.approx((2 * (log_1_plus_e - 1.0) + (math.log(2.0) - 1.0)) / 3, rel=1e-6)


def test_wscl_pulls_samples_with_shared_aus_together() -> None:
    au = torch.zeros(4, 100)
    au[[0, 1], 12] = 1
    au[[2, 3], 4] = 1
    similarity = jaccard_similarity(au)
    aligned = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]]), dim=1)
    crossed = aligned[[0, 2, 1, 3]]
    for reading in ("exclude", "include"):
        assert wscl_loss(aligned, similarity, 0.1, reading) < wscl_loss(crossed, similarity, 0.1, reading)


def test_class_weights_are_max_count_over_count_and_zero_for_absent_classes() -> None:
    weights = class_weights(np.array([0, 0, 0, 0, 1, 1, 3]), 4)
    np.testing.assert_allclose(weights, [1.0, 2.0, 0.0, 4.0])


def test_au_slots_drop_laterality_intensity_and_markers() -> None:
    slots = au_slots(["L12", "R6|or1", "ref(7B)", "4?", "10A/B"])
    assert sorted(np.flatnonzero(slots).tolist()) == [4, 6, 7, 10, 12]  # "or1" is a group index, not AU1


# ------------------------------------------------------------------------------------- region replacing
def _fold(task: SamerTask, n: int = 12, train_n: int = 8):
    arrays = task.example_arrays(n, 3, np.random.default_rng(0), size=16)
    bundle = {**arrays, "sample_id": np.array([f"s{i}" for i in range(n)]),
              "dataset": np.array(["toy"] * n), "subject": np.array([f"p{i % 4}" for i in range(n)]),
              "fold_subject": np.array([f"toy/p{i % 4}" for i in range(n)]),
              "y": (np.arange(n) % 3).astype(np.int64), "classes": np.array(["a", "b", "c"])}
    data = _train_data(task, bundle)
    train = np.arange(train_n)
    return data, FoldContext(data, train, task.prepare_fold(data, train))


def test_region_partners_come_from_the_same_class_within_the_training_fold() -> None:
    task = build_task("samer")
    data, fold = _fold(task)
    labels = data.y[fold.train]
    partners = region_partners(labels, fold.state.pools, 1.0, np.random.default_rng(3))
    assert (partners >= 0).all() and (partners < fold.train.size).all()  # positions into the training side only
    np.testing.assert_array_equal(labels[partners], labels)
    assert (region_partners(labels, fold.state.pools, 0.0, np.random.default_rng(3)) == -1).all()


def test_region_replacing_swaps_the_mouth_half_keeps_labels_and_unions_the_aus() -> None:
    task = SamerTask.from_params({"region_replacing": 1.0, "hflip": 0.0, "erasing": 0.0}, name="samer")
    data, fold = _fold(task)
    runtime = resolve_runtime("cpu", "fp32", False, nn.Linear(1, 1))
    batch_pos = np.arange(8)
    streams = Streams(np.random.default_rng(5), torch.Generator().manual_seed(0))
    batch = task.train_batch(fold, batch_pos, streams, runtime)
    partners = region_partners(data.y[fold.train[batch_pos]], fold.state.pools, 1.0, np.random.default_rng(5))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    raw = torch.from_numpy(data.arrays["composite"]).permute(0, 3, 1, 2).float() / 255.0
    rows, partner_rows = fold.train[batch_pos], fold.train[partners]
    torch.testing.assert_close(batch["eyes"], (raw[rows, :, :8] - mean) / std)
    torch.testing.assert_close(batch["mouth"], (raw[partner_rows, :, 8:] - mean) / std)
    union = np.maximum(data.arrays["au"][rows], data.arrays["au"][partner_rows]).astype(np.float32)
    np.testing.assert_array_equal(batch["au"].numpy(), union)
    assert set(partner_rows.tolist()) <= set(fold.train.tolist())


def test_random_erasing_fills_one_rectangle_with_noise_and_is_seeded() -> None:
    images = torch.full((4, 3, 20, 30), 0.5)
    first = random_erasing(images, 1.0, (0.02, 0.3), (0.3, 3.3), torch.Generator().manual_seed(1))
    again = random_erasing(images, 1.0, (0.02, 0.3), (0.3, 3.3), torch.Generator().manual_seed(1))
    torch.testing.assert_close(first, again)
    changed = (first != 0.5).any(dim=1).float().mean(dim=(1, 2))
    assert ((changed > 0.015) & (changed < 0.31)).all()
    untouched = random_erasing(images, 0.0, (0.02, 0.3), (0.3, 3.3), torch.Generator().manual_seed(1))
    torch.testing.assert_close(untouched, images)


# ------------------------------------------------------------------------------------------------ honesty
def test_au_sets_are_training_only_and_prediction_cannot_read_them() -> None:
    task = build_task("samer")
    assert "au" in task.training_only and "au" not in task.input_arrays()
    data, _ = _fold(task)
    view = predict_inputs(task, data)
    with pytest.raises(KeyError, match="honesty contract"):
        view["au"]
    runtime = resolve_runtime("cpu", "fp32", False, nn.Linear(1, 1))
    batch = task.predict_inputs(view, np.arange(4), runtime)
    assert set(batch) == {"eyes", "mouth"}


def test_loss_terms_and_au_alignment_switch() -> None:
    model = build_model("samer", num_classes=3).train()
    data, fold = _fold(build_task("samer"))
    eyes, mouth = halves(4, 8, 16)
    batch = {"eyes": eyes, "mouth": mouth, "y": torch.tensor([0, 1, 2, 0]),
             "au": torch.from_numpy(data.arrays["au"][:4].astype(np.float32))}
    outputs = model(eyes=eyes, mouth=mouth)
    with_au = build_task("samer").loss(outputs, batch, fold)
    assert set(with_au.terms) == {"ce_eyes", "ce_mouth", "wscl"}
    expected = 0.7 * (with_au.terms["ce_eyes"] + with_au.terms["ce_mouth"]) + 0.3 * with_au.terms["wscl"]
    torch.testing.assert_close(with_au.total, expected)
    without = SamerTask.from_params({"au_alignment": False}, name="samer").loss(outputs, batch, fold)
    assert set(without.terms) == {"ce_eyes", "ce_mouth"}
    torch.testing.assert_close(without.total, without.terms["ce_eyes"] + without.terms["ce_mouth"])


# ---------------------------------------------------------------------------------------------- ablations
def test_ablations_single_branch_concatenation_and_fusion_readings() -> None:
    eyes, mouth = halves(2, 8, 32)
    sb = build_model("samer", num_classes=4, branches="sb", awm=False).eval()
    assert set(sb(eyes=eyes, mouth=mouth)["heads"]) == {"whole"}
    assert trainable(sb) < 0.5 * trainable(build_model("samer", num_classes=4))
    with pytest.raises(ValueError, match="awm"):
        build_model("samer", num_classes=4, branches="sb")
    concat = build_model("samer", num_classes=4, awm=False).eval()
    assert concat.area_weight is None
    with torch.no_grad():
        out = concat(eyes=eyes, mouth=mouth)
    assert torch.equal(out["weights"], torch.ones_like(out["weights"]))
    torch.manual_seed(0)
    paper = build_model("samer", num_classes=4).eval()
    code = build_model("samer", num_classes=4, fusion="logits").eval()
    code.load_state_dict(paper.state_dict())
    with torch.no_grad():
        p_out, c_out = paper(eyes=eyes, mouth=mouth), code(eyes=eyes, mouth=mouth)
    heads = p_out["heads"]
    torch.testing.assert_close(torch.softmax(p_out["logits"], 1),
                               (torch.softmax(heads["eyes"], 1) + torch.softmax(heads["mouth"], 1)) / 2)
    torch.testing.assert_close(c_out["logits"], heads["eyes"] + heads["mouth"])
    no_norm = build_model("samer", num_classes=4, awm_layernorm=False)
    assert not any(isinstance(m, nn.LayerNorm) for m in no_norm.area_weight)


def test_awm_detach_stops_the_weight_gradient_into_the_branches() -> None:
    eyes, mouth = halves(2, 8, 32)
    for detach in (True, False):
        torch.manual_seed(0)
        model = build_model("samer", num_classes=3, awm_detach=detach, awm=True).train()
        out = model(eyes=eyes, mouth=mouth)
        # a loss that reads only the weights: it reaches the branches only through AWM's input
        out["weights"].sum().backward()
        grad = model.branch["eyes"].layer4[1].conv2.weight.grad
        assert (grad is None or not grad.abs().sum() > 0) is detach


# ------------------------------------------------------------------------------------------ initial weights
def test_pretrained_none_imagenet_missing_and_a_weights_file(tmp_path, monkeypatch) -> None:
    assert load_resnet18_weights("none") is None
    monkeypatch.setattr(samer_module, "_cached_imagenet_file", lambda: None)
    with pytest.raises(FileNotFoundError, match="pretrained: none"):
        load_resnet18_weights("imagenet")
    import timm

    reference = timm.create_model("resnet18", pretrained=False)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    task = SamerTask.from_params({"pretrained": str(tmp_path / "resnet18.pth")}, name="samer")
    model = build_model("samer", num_classes=5)
    task.param_groups(model)  # the seam's first call on a fresh model loads the weights
    torch.testing.assert_close(model.base.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(model.branch["mouth"].layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    torch.testing.assert_close(model.branch["eyes"].layer3[0].bn1.running_var, reference.layer3[0].bn1.running_var)
    assert task.run_tags()["init"] == str(tmp_path / "resnet18.pth")
    assert build_task("samer").run_tags()["init"] == "none"


def test_cosine_warm_restarts_restart_at_epochs_10_and_30() -> None:
    optimizer = build_optimizer([{"params": [nn.Parameter(torch.zeros(1))]}], OptimizerConfig(lr=3e-3))
    cfg = SchedulerConfig.from_params({"name": "cosine_restarts", "t_0": 10, "t_mult": 2})
    scheduler = build_scheduler(optimizer, cfg, epochs=100)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == rates[10] == rates[30] == pytest.approx(3e-3)
    assert rates[9] < 1e-4 and rates[29] < 1e-4 and rates[20] == pytest.approx(1.5e-3, rel=1e-6)
    with pytest.raises(ValueError, match="t_0"):
        SchedulerConfig.from_params({"name": "cosine_restarts", "t_0": 0})


def test_settings_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown"):
        SamerTask.from_params({"lamda": 0.3}, name="samer")
    with pytest.raises(ValueError, match="self_pair"):
        SamerTask.from_params({"self_pair": "both"}, name="samer")
    with pytest.raises(ValueError, match="fusion"):
        SAMER(3, fusion="max")
