"""Shared test settings: no telemetry, no network, the London face photos from the shared folder beside the repo."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# CI and developers have ../shared/faces/london beside the checkout (never copied into the repo).
_SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "faces" / "london"
if _SHARED_FACES.is_dir():
    os.environ.setdefault("MICROEXPR_FACES", str(_SHARED_FACES))

# Tests never read a user's `microexpr faces download` cache (an empty, non-existent folder instead).
os.environ.setdefault("MICROEXPR_FACES_CACHE", str(Path(__file__).resolve().parent / ".no-faces-cache"))
# Nor a precision-probe verdict cached by an earlier run on this machine (training.runtime): a fresh folder.
os.environ.setdefault("MICROEXPR_CACHE_DIR", tempfile.mkdtemp(prefix="microexpr-test-cache-"))
