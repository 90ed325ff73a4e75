"""Every registered model's task keeps the seam's contract: shapes, named differentiable loss terms, scores, and
the honesty contract (nothing but the declared model inputs of a test sample reaches prediction).

Parametrised over the registry, so a new model's task is checked by adding its file, not by editing this one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

# Models registered by the test suite itself (tests/training/toy.py, test_clip_models.py) are checked too.
import tests.training.test_clip_models  # noqa: F401
import tests.training.toy  # noqa: F401
from microexpr.models import available_models, build_model, build_task, example_config, register_model
from microexpr.training.loop import predict_inputs, predict_proba, train_fold
from microexpr.training.runtime import resolve_runtime
from microexpr.training.task import FoldContext, InputSpec, PredictInputs, Streams, Task, check_task_class

SIZE = 32
N, N_CLASSES = 12, 3
FAST = {"epochs": 2, "batch_size": 4, "precision": "fp32", "optimizer": {"name": "AdamW", "lr": 1e-3, "weight_decay": 0.0},
        "report_samples": 2}
MODELS = available_models()


def bundle(name: str, n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    """A valid random bundle of model ``name``: its task's example arrays plus the meta arrays."""
    rng = np.random.default_rng(seed)
    task = build_task(name)
    arrays = task.example_arrays(n, N_CLASSES, rng, size=SIZE)
    subjects = np.array([f"toy/sub{i % 4}" for i in range(n)])
    return {
        **arrays,
        "sample_id": np.array([f"toy/s{i:03d}" for i in range(n)]),
        "dataset": np.array(["toy"] * n),
        "subject": np.array([s.split("/")[1] for s in subjects]),
        "fold_subject": subjects,
        "y": (np.arange(n) % N_CLASSES).astype(np.int64),
        "classes": np.array([f"class{c}" for c in range(N_CLASSES)]),
    }


def fitted(name: str, inputs: dict[str, np.ndarray], seed: int = 0):
    """One fold (the last 4 samples tested) with the task's default settings, fp32, 2 epochs."""
    return train_fold(name, example_config(name, SIZE), inputs, np.arange(N - 4), np.arange(N - 4, N), FAST, seed)


@pytest.mark.parametrize("name", MODELS)
def test_example_bundle_has_every_declared_array_one_row_per_sample(name: str) -> None:
    task = build_task(name)
    arrays = bundle(name)
    assert set(task.declared_arrays()) <= set(arrays)
    assert all(arrays[a].shape[0] == N for a in task.declared_arrays())
    assert set(task.input_arrays()).isdisjoint({*task.targets, *task.training_only, "y"})
    assert set(task.model_inputs) and all(isinstance(s, InputSpec) for s in task.model_inputs.values())


@pytest.mark.parametrize("name", MODELS)
def test_train_batch_loss_terms_are_finite_differentiable_scalars_and_scores_are_probabilities(name: str) -> None:
    task = build_task(name)
    arrays = bundle(name)
    model = build_model(name, num_classes=N_CLASSES, **example_config(name, SIZE))
    runtime = resolve_runtime("cpu", "fp32", False, model)
    from microexpr.training.loop import _train_data

    data = _train_data(task, arrays)
    train = np.arange(N - 4)
    fold = FoldContext(data, train, task.prepare_fold(data, train))
    streams = Streams(np.random.default_rng(0), torch.Generator().manual_seed(0))
    batch_pos = np.arange(4)
    batch = task.train_batch(fold, batch_pos, streams, runtime)
    assert set(task.model_inputs) <= set(batch)
    assert all(t.shape[0] == batch_pos.size for t in batch.values())
    batch["y"] = torch.from_numpy(data.y[train[batch_pos]])
    model.train()
    outputs = task.forward(model, batch, training=True)
    losses = task.loss(outputs, batch, fold)
    assert losses.total.ndim == 0 and torch.isfinite(losses.total)
    assert losses.terms, "a task names at least one loss term"
    for term, value in losses.terms.items():
        assert value.ndim == 0 and torch.isfinite(value), term
        assert value.requires_grad, f"loss term {term!r} does not depend on the model's parameters"
    losses.total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    probs = task.scores(outputs).detach()
    assert probs.shape == (batch_pos.size, N_CLASSES)
    torch.testing.assert_close(probs.sum(1), torch.ones(batch_pos.size))


@pytest.mark.parametrize("name", MODELS)
def test_prediction_reads_only_the_declared_model_inputs(name: str) -> None:
    """The prediction path records what it reads: only the task's model-input arrays, never y/targets/training-only."""
    task = build_task(name)
    arrays = bundle(name)
    model = build_model(name, num_classes=N_CLASSES, **example_config(name, SIZE)).eval()
    runtime = resolve_runtime("cpu", "fp32", False, model)
    from microexpr.training.loop import _train_data

    data = _train_data(task, arrays)
    view = predict_inputs(task, data)
    assert set(view) == set(task.input_arrays())
    for forbidden in ["y", *task.targets, *task.training_only]:
        with pytest.raises(KeyError, match="honesty contract"):
            view[forbidden]

    read: list[str] = []

    class Recording(PredictInputs):
        def __getitem__(self, key: str) -> np.ndarray:
            read.append(key)
            return super().__getitem__(key)

    recording = Recording(data.sample_id, {k: data.arrays[k] for k in task.input_arrays()}, task.name)
    rows = np.arange(N - 4, N)
    probs = predict_proba(model, task, recording, rows, runtime, 3, N_CLASSES)
    extras = task.report_extras(model, recording, rows[:2], runtime)
    assert read and set(read) <= set(task.input_arrays())
    assert probs.shape == (rows.size, N_CLASSES) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert all(np.asarray(v).shape[0] == 2 for v in extras.values())


@pytest.mark.parametrize("name", MODELS)
def test_test_samples_annotations_cannot_change_their_predictions(name: str) -> None:
    """Scramble the labels, targets and training-only arrays of the test samples: every predicted probability of
    every epoch stays the same (they reach neither training, which never sees the test side, nor prediction)."""
    task = build_task(name)
    clean = bundle(name)
    scrambled = {k: v.copy() for k, v in clean.items()}
    test = np.arange(N - 4, N)
    rng = np.random.default_rng(99)
    scrambled["y"][test] = (scrambled["y"][test] + 1) % N_CLASSES
    for key in [*task.targets, *task.training_only]:
        values = scrambled[key]
        noise = rng.integers(-50, 50, size=values[test].shape) if values.dtype.kind in "iu" else rng.normal(
            0, 100, size=values[test].shape)
        scrambled[key][test] = noise.astype(values.dtype)
    first, second = fitted(name, clean), fitted(name, scrambled)
    np.testing.assert_array_equal(first.epoch_probs, second.epoch_probs)
    for key in first.extras:
        np.testing.assert_array_equal(first.extras[key], second.extras[key])


def test_registration_refuses_a_task_whose_prediction_inputs_are_also_training_only() -> None:
    class Leaky(Task):
        model_inputs = {"onset": InputSpec(arrays=("onset", "au"))}
        training_only = ("au",)

    with pytest.raises(TypeError, match="training_only"):
        check_task_class(Leaky, "leaky", ["onset"])
    with pytest.raises(TypeError, match="forward"):
        check_task_class(type("Other", (Task,), {"model_inputs": {"x": InputSpec(arrays=("x",))}}), "other", ["y"])
    with pytest.raises(TypeError, match="reserved"):
        check_task_class(type("Meta", (Task,), {"model_inputs": {"x": InputSpec(arrays=("y",))}}), "meta", ["x"])

    with pytest.raises(TypeError, match="Task subclass"):
        register_model("not_a_task", task=object)(torch.nn.Identity)
