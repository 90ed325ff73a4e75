"""Issue 10 row 6: ``<model>.seed`` changed in place retrains every fold (the seed and the selections are in the
fold key, TRAINING_VERSION 2), through the on-disk fold-result store a real rerun reads; the stored results state
the seed they were trained with."""

from __future__ import annotations

from pathlib import Path

from microexpr.datasets.fold_results import FoldResultStore
from microexpr.training.results import fold_seed
from tests.pipelines.test_training_pipeline import _run_shard, params
from tests.training.toy import toy_inputs


def _train_into(store: FoldResultStore, block: dict, inputs: dict) -> list:
    results = _run_shard(block, inputs, store.load())
    for result in results:
        store.save(result)
    return results


def test_seed_or_selections_changed_in_place_reuse_nothing(tmp_path: Path) -> None:
    inputs = toy_inputs(16, n_classes=2, seed=5)
    store = FoldResultStore(path=str(tmp_path / "shard_0"))
    first = _train_into(store, params(seed=0), inputs)
    assert all(_run_shard(params(seed=0), inputs, store.load())[i].reused for i in range(len(first)))

    reseeded = _train_into(store, params(seed=1), inputs)
    assert not any(r.reused for r in reseeded)
    stored = store.load()
    assert {stored[r.key].seed for r in reseeded} == {fold_seed(1, r.fold) for r in reseeded}
    assert {stored[r.key].seed for r in first} == {fold_seed(0, r.fold) for r in first}

    narrowed = _run_shard(params(seed=1, selections=["honest"]), inputs, stored)
    assert not any(r.reused for r in narrowed)
    assert set(narrowed[0].predictions["selection"]) == {"honest"}
