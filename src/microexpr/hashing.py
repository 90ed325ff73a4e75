"""Content keys: the stable digests that name cached features, model inputs and fold results.

A module of its own (no project imports) so that any layer can use it without import cycles.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_key(*parts: Any) -> str:
    """Stable hex digest of JSON-serialisable parts (dict keys sorted), used as a cache key."""
    payload = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
