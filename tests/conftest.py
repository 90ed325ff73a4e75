"""Shared test settings: no telemetry, no network, the London face photos from the shared folder beside the repo."""

import os
from pathlib import Path

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# CI and developers have ../shared/faces/london beside the checkout (never copied into the repo).
_SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "faces" / "london"
if _SHARED_FACES.is_dir():
    os.environ.setdefault("MICROEXPR_FACES", str(_SHARED_FACES))
