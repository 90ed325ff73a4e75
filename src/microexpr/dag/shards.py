"""The fixed number of fold shards every training pipeline is built with (a setting, not data).

Kedro builds the DAG before it reads any data, so the shard count cannot come from parameters or from the number
of subjects: it is read once, here, from the environment variable ``MICROEXPR_SHARDS`` (default 4). Folds are
assigned to shards by the split stage (balanced by training-set size); a shard with no folds trains nothing.
Changing the value changes the DAG (``mmnet.shard_0`` .. ``mmnet.shard_<n-1>``) and the folds' shard column.
"""

from __future__ import annotations

import os

DEFAULT_SHARDS = 4


def n_shards() -> int:
    """Shard count from ``MICROEXPR_SHARDS`` (a positive integer), else 4."""
    raw = os.environ.get("MICROEXPR_SHARDS", "").strip()
    if not raw:
        return DEFAULT_SHARDS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"MICROEXPR_SHARDS must be a positive integer, got {raw!r}")
    return int(raw)
