"""train_fold on a learnable toy problem with a tiny model: learning, determinism, edge cases, settings."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from microexpr.models.mmnet import ATTENTION_SIZE
from microexpr.training.loop import HISTORY_COLUMNS, FoldOutcome, TrainConfig, train_fold
from tests.training.toy import TINY_TASK, tiny_config, toy_inputs

MODEL = "tiny_motion_test"


def fit(*args: object, **kwargs: object) -> FoldOutcome:
    """train_fold with the toy's task settings (small padding and rotation, no colour jitter)."""
    return train_fold(*args, task_cfg=kwargs.pop("task_cfg", TINY_TASK), **kwargs)


def _fold(inputs: dict[str, np.ndarray], n_test: int = 8, seed: int = 0, **overrides: object) -> FoldOutcome:
    n = len(inputs["sample_id"])
    return fit(
        MODEL, {}, inputs, np.arange(n - n_test), np.arange(n - n_test, n), tiny_config(**overrides), seed
    )


def test_training_lowers_the_loss_and_learns_the_motion() -> None:
    inputs = toy_inputs(40, n_classes=3, seed=1)
    calls = []
    outcome = fit(
        MODEL, {}, inputs, np.arange(30), np.arange(30, 40), tiny_config(epochs=8), seed=0,
        progress=lambda *args: calls.append(args),
    )  # fmt: skip
    history = outcome.history
    assert list(history.columns) == [*HISTORY_COLUMNS, "train_loss_ce"]  # the task's one named loss term
    assert history["train_loss_ce"].tolist() == history["train_loss"].tolist()
    assert history["epoch"].tolist() == list(range(1, 9))
    assert history["train_loss"].iloc[-1] < 0.5 * history["train_loss"].iloc[0]
    assert history["test_acc"].iloc[-1] >= 0.8  # 10 held-out samples, chance is 1/3
    assert [c[:2] for c in calls] == [(e, 8) for e in range(1, 9)]
    assert calls[-1][2] == pytest.approx(history["train_loss"].iloc[-1])
    assert outcome.epoch_probs.shape == (8, 10, 3) and outcome.epoch_probs.dtype == np.float32
    np.testing.assert_allclose(outcome.epoch_probs.sum(axis=2), 1.0, atol=1e-5)
    assert outcome.evaluated_epochs.tolist() == list(range(1, 9))
    assert outcome.test_sample_ids.tolist() == inputs["sample_id"][30:].tolist()


def test_same_seed_same_probabilities_other_seed_different() -> None:
    inputs = toy_inputs(24, seed=2)
    first = _fold(inputs, seed=11, epochs=2)
    again = _fold(inputs, seed=11, epochs=2)
    other = _fold(inputs, seed=12, epochs=2)
    assert np.array_equal(first.epoch_probs, again.epoch_probs)
    assert first.history["train_loss"].tolist() == again.history["train_loss"].tolist()
    assert not np.allclose(first.epoch_probs, other.epoch_probs)


def test_threads_do_not_change_results_even_with_dropout() -> None:
    """kedro.md G10: folds in threads must give what they give alone (dropout draws from torch's global RNG)."""
    inputs = toy_inputs(24, seed=3)

    def run(seed: int) -> FoldOutcome:
        return fit(
            MODEL, {"dropout": 0.5}, inputs, np.arange(16), np.arange(16, 24), tiny_config(epochs=2), seed
        )

    alone = {seed: run(seed) for seed in (1, 2)}
    threaded: dict[int, FoldOutcome] = {}
    workers = [threading.Thread(target=lambda s=s: threaded.__setitem__(s, run(s))) for s in (1, 2, 1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for seed in (1, 2):
        assert np.array_equal(alone[seed].epoch_probs, threaded[seed].epoch_probs)
        assert alone[seed].history["train_loss"].tolist() == threaded[seed].history["train_loss"].tolist()


def test_empty_test_set_returns_empty_arrays() -> None:
    inputs = toy_inputs(12)
    outcome = fit(
        MODEL, {}, inputs, np.arange(12), np.array([], dtype=int), tiny_config(epochs=2), seed=0
    )
    assert outcome.epoch_probs.shape == (2, 0, 2)
    assert outcome.test_sample_ids.size == 0
    assert outcome.history["test_acc"].isna().all()
    assert outcome.extras["sample_ids"].size == 0 and set(outcome.extras) == {"sample_ids"}


def test_class_missing_from_training_and_last_epoch_only_evaluation() -> None:
    inputs = toy_inputs(18, n_classes=3)
    train = np.flatnonzero(inputs["y"] != 2)  # class "centre" only on the test side
    test = np.flatnonzero(inputs["y"] == 2)
    outcome = fit(
        MODEL, {}, inputs, train, test, tiny_config(epochs=3, evaluate_each_epoch=False), seed=0
    )
    assert outcome.epoch_probs.shape == (1, test.size, 3)
    assert outcome.evaluated_epochs.tolist() == [3]
    assert outcome.history["test_acc"].isna().tolist() == [True, True, False]
    assert not outcome.evaluated_each_epoch


def test_attention_maps_and_face_thumbnails_of_the_first_test_samples() -> None:
    inputs = toy_inputs(20)
    outcome = _fold(inputs, n_test=6, epochs=1, report_samples=3)
    attention = outcome.extras
    assert attention["sample_ids"].tolist() == inputs["sample_id"][14:17].tolist()
    assert (
        attention["maps"].shape == (3, ATTENTION_SIZE, ATTENTION_SIZE)
        and attention["maps"].dtype == np.float16
    )
    assert 0.0 <= float(attention["maps"].min()) and float(attention["maps"].max()) <= 1.0  # sigmoid gate
    assert (
        attention["faces"].shape == (3, ATTENTION_SIZE, ATTENTION_SIZE, 3)
        and attention["faces"].dtype == np.uint8
    )
    onset = inputs["onset_frames"][14, 0].astype(float)  # offset 0 is slot 0 in the toy data
    corner = attention["faces"][0, :8, :8].astype(float).mean()  # a 2x2 block of the 32² onset, upscaled
    assert abs(corner - onset[:2, :2].mean()) < 12


def test_learning_rate_schedule_decays_only_for_decay_epochs() -> None:
    inputs = toy_inputs(12)
    cfg = {"scheduler": {"name": "exponential", "gamma": 0.5, "decay_epochs": 2}, "epochs": 4}
    outcome = _fold(inputs, n_test=2, **cfg)
    lr = tiny_config()["optimizer"]["lr"]
    np.testing.assert_allclose(outcome.history["lr"], [lr, lr * 0.5, lr * 0.25, lr * 0.25])
    cosine = _fold(inputs, n_test=2, epochs=3, scheduler={"name": "cosine", "min_lr": 0.0})
    assert cosine.history["lr"].is_monotonic_decreasing and cosine.history["lr"].iloc[0] == lr


def test_mmnet_trains_through_the_same_loop() -> None:
    """The real model with return_attention: its first CA map (16² at 32² input) is resized to 112²."""
    inputs = toy_inputs(6)
    cfg = tiny_config(epochs=1, batch_size=4)
    outcome = fit("mmnet", {"image_size": 32}, inputs, np.arange(4), np.arange(4, 6), cfg, seed=0)
    assert outcome.epoch_probs.shape == (1, 2, 2)
    assert outcome.extras["maps"].shape == (2, ATTENTION_SIZE, ATTENTION_SIZE)


def test_bad_settings_and_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="'epoch'"):
        TrainConfig.from_params({"epoch": 3})
    with pytest.raises(ValueError, match="'momentum'"):
        TrainConfig.from_params({"optimizer": {"name": "AdamW", "momentum": 0.9}})
    assert TrainConfig.from_params({"optimizer": {"name": "sgd", "momentum": 0.9}}).optimizer.options == {
        "momentum": 0.9
    }
    with pytest.raises(ValueError, match="'decay'"):
        TrainConfig.from_params({"scheduler": {"decay": 50}})
    with pytest.raises(ValueError, match="'augment'"):  # MMNet's policy is its task's, not the shared loop's
        TrainConfig.from_params({"augment": {"hflip": 0.5}})
    with pytest.raises(ValueError, match="'flip'"):
        fit(MODEL, {}, toy_inputs(8), np.arange(6), np.arange(6, 8), tiny_config(), seed=0,
            task_cfg={"augment": {"flip": 0.5}})
    with pytest.raises(ValueError, match="'k_on'"):
        fit(MODEL, {}, toy_inputs(8), np.arange(6), np.arange(6, 8), tiny_config(), seed=0,
            task_cfg={"frames": {"k_on": 2}})
    inputs = toy_inputs(8)
    with pytest.raises(ValueError, match="toy/s003"):
        fit(MODEL, {}, inputs, np.arange(6), np.array([3, 6]), tiny_config(), seed=0)
    with pytest.raises(KeyError, match="apex"):
        broken = {k: v for k, v in inputs.items() if not k.startswith("apex")}
        fit(MODEL, {}, broken, np.arange(6), np.arange(6, 8), tiny_config(), seed=0)


def test_warm_up_rises_linearly_then_the_schedule_decays() -> None:
    inputs = toy_inputs(12)
    lr = tiny_config()["optimizer"]["lr"]
    outcome = _fold(inputs, n_test=2, epochs=5,
                    scheduler={"name": "exponential", "gamma": 0.5, "warmup_epochs": 2, "decay_epochs": 1})
    np.testing.assert_allclose(outcome.history["lr"], [lr / 3, 2 * lr / 3, lr, lr / 2, lr / 2])
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig.from_params({"scheduler": {"warmup_epochs": -1}})


def test_gradient_accumulation_steps_the_optimiser_every_k_batches() -> None:
    """batch 4 × 2 accumulated steps on 8 training samples: one optimiser step per epoch, like one batch of 8
    (same mean loss; BatchNorm sees 4 at a time, so the weights differ slightly)."""
    inputs = toy_inputs(10)
    plain = _fold(inputs, n_test=2, epochs=1, batch_size=8, return_model_state=True)
    accumulated = _fold(inputs, n_test=2, epochs=1, batch_size=4, accumulate_steps=2, return_model_state=True)
    stepped_twice = _fold(inputs, n_test=2, epochs=1, batch_size=4, return_model_state=True)
    fc = "fc.weight"
    moved = {name: float((o.model_state[fc] - plain.model_state[fc]).abs().max())
             for name, o in (("accumulated", accumulated), ("stepped_twice", stepped_twice))}
    assert moved["accumulated"] < moved["stepped_twice"]


def test_a_failing_torch_compile_falls_back_to_eager_training_with_a_warning(monkeypatch, caplog) -> None:
    """training.compile: true on a machine where compiling fails (no C++ compiler, ...) still trains the fold,
    identically to compile: false (the compiled module is never used for prediction)."""
    import torch

    class Broken(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise RuntimeError("inductor: no working C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: Broken())
    inputs = toy_inputs(12)
    with caplog.at_level("WARNING"):
        compiled = _fold(inputs, n_test=4, epochs=2, compile=True)
    eager = _fold(inputs, n_test=4, epochs=2)
    assert "torch.compile failed (RuntimeError: inductor: no working C++ compiler found)" in caplog.text
    assert np.array_equal(compiled.epoch_probs, eager.epoch_probs)
