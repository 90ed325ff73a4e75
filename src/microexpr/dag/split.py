"""Split stage: sample index -> versioned ``folds`` table under the chosen protocol, folds assigned to shards."""

from __future__ import annotations

import functools
from typing import Any

import pandas as pd
from kedro.pipeline import Node, Pipeline

from microexpr.dag.shards import n_shards
from microexpr.data.protocols import make_folds


def make_folds_node(sample_index: pd.DataFrame, split: dict[str, Any], shards: int) -> pd.DataFrame:
    """Node: folds of the index under ``split.protocol`` with ``split.options``, spread over ``shards`` shards."""
    options = {**dict(split.get("options") or {}), "n_shards": shards}
    return make_folds(sample_index, split["protocol"], options)


def create_split_pipeline() -> Pipeline:
    shards = n_shards()
    node_fn = functools.update_wrapper(functools.partial(make_folds_node, shards=shards), make_folds_node)
    return Pipeline(
        [Node(node_fn, ["sample_index", "params:split"], "folds", name="make_folds", tags=["split"])]
    )
