"""Fixtures of the prediction tests: one synthetic clip on disk, as a folder of frames and as an .mp4."""

from __future__ import annotations

import pytest

from tests.inference.clips import synthetic_clip, write_folder, write_video


@pytest.fixture(scope="session")
def clip_files(tmp_path_factory) -> dict[str, object]:
    """The clip's folder (``sub01_EP01``), its .mp4, its frame numbers and its true apex."""
    frames, numbers, apex = synthetic_clip()
    root = tmp_path_factory.mktemp("clip")
    return {"folder": write_folder(frames, numbers, root / "sub01_EP01"), "video": write_video(frames, root / "clip.mp4"),
            "numbers": numbers, "apex": apex}
