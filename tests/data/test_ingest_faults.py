"""Ingest faults (issue 10 rows 1, 4, 7, 11): too-short clips, content keys, mixed frame geometry, bad sheets."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DatasetError

from microexpr.dag.ingest import content_hashes, frame_fingerprints
from microexpr.data.index import build_sample_index
from microexpr.datasets.raw_source import RawDatasetSource
from tests.data import fixtures as fx

PROJECT = Path(__file__).resolve().parents[2]
LABELS = yaml.safe_load((PROJECT / "conf/base/labels.yml").read_text())
HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion"]


def _frame(value: int, size: int = 16, grey: bool = False) -> np.ndarray:
    image = np.full((size, size, 3), value, dtype=np.uint8)
    image[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255 - value
    return image[..., 0] if grey else image


def _casme2(root: Path, clips: dict[str, tuple[int, int, int]], preamble: int = 0) -> Path:
    """A minimal CASME II copy: sub01/<clip>/img<n>.jpg for n in onset..offset, one sheet row per clip."""
    for clip, (onset, _, offset) in clips.items():
        folder = root / "CASME2_RAW_selected" / "sub01" / clip
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(onset, offset + 1):
            cv2.imwrite(str(folder / f"img{n}.jpg"), _frame(40 + 10 * n))
    rows = [[f"exported on day {i}"] for i in range(preamble)] + [HEADER]
    rows += [[1, clip, on, ap, off, "12", "happiness"] for clip, (on, ap, off) in clips.items()]
    fx.write_xlsx(root / "CASME2-coding-20140508.xlsx", rows)
    return root


def _ingest(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    snapshot = RawDatasetSource(source="casme2", roots={"casme2": str(root)}).load()
    index, exclusions = build_sample_index(snapshot, LABELS, "emotion5", None, {})
    return index.assign(content_hash=content_hashes(index, frame_fingerprints(snapshot))), exclusions


def _reason(exclusions: pd.DataFrame, clip: str) -> tuple[str, str]:
    row = exclusions.loc[exclusions["clip"] == clip].iloc[0]
    return str(row["reason_code"]), str(row["reason"])


def test_a_one_frame_clip_is_excluded_as_too_short(tmp_path: Path) -> None:
    """Row 1 (ingest side): a 1-frame clip is flagged at ingest, never kept silently."""
    index, exclusions = _ingest(_casme2(tmp_path, {"EP01": (5, 5, 5), "EP02": (1, 3, 6)}))
    assert index["clip"].tolist() == ["EP02"]
    code, reason = _reason(exclusions, "EP01")
    assert code == "too_short" and "1 frame(s)" in reason


def test_content_keys_see_a_replaced_frame_and_not_a_moved_folder(tmp_path: Path) -> None:
    """Row 4: a frame replaced by another of the same size changes that clip's key only; moving the data folder
    changes none."""
    root = _casme2(tmp_path / "a", {"EP01": (1, 3, 6), "EP02": (1, 2, 4)})
    before = _ingest(root)[0].set_index("clip")["content_hash"]
    moved = tmp_path / "elsewhere" / "casme2"
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    after_move = _ingest(moved)[0].set_index("clip")
    assert after_move["content_hash"].equals(before)
    assert not after_move["root"].eq(str(root)).any()

    target = moved / "CASME2_RAW_selected/sub01/EP01/img3.jpg"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the entropy-coded scan: same size, still a whole JPEG
    target.write_bytes(bytes(data))
    replaced = _ingest(moved)[0].set_index("clip")["content_hash"]
    assert replaced["EP01"] != before["EP01"]
    assert replaced["EP02"] == before["EP02"]


@pytest.mark.parametrize("odd", ["double_size", "greyscale"])
def test_a_clip_mixing_frame_sizes_or_channels_is_excluded(tmp_path: Path, odd: str) -> None:
    """Row 7: frames of a clip must share size and channels, else an exclusion naming the odd frame."""
    root = _casme2(tmp_path, {"EP01": (1, 3, 6), "EP02": (1, 2, 4)})
    target = root / "CASME2_RAW_selected/sub01/EP01/img4.jpg"
    cv2.imwrite(str(target), _frame(90, size=32) if odd == "double_size" else _frame(90, grey=True))
    index, exclusions = _ingest(root)
    assert index["clip"].tolist() == ["EP02"]
    code, reason = _reason(exclusions, "EP01")
    assert code == "mixed_frame_geometry" and "img4.jpg" in reason
    assert ("32x32" in reason) if odd == "double_size" else ("greyscale" in reason)


def test_a_csv_saved_as_xlsx_is_named_for_what_it_is(tmp_path: Path) -> None:
    """Row 11: not a cryptic engine message."""
    root = _casme2(tmp_path, {"EP01": (1, 3, 6)})
    sheet = root / "CASME2-coding-20140508.xlsx"
    sheet.write_text(",".join(HEADER) + "\n1,EP01,1,3,6,12,happiness\n")
    with pytest.raises(DatasetError, match=r"not an Excel file \(looks like CSV\)") as info:
        RawDatasetSource(source="casme2", roots={"casme2": str(root)}).load()
    assert str(sheet) in str(info.value)


def test_the_header_is_found_below_a_70_row_preamble(tmp_path: Path) -> None:
    """Row 11: the docs say any preamble length; the reader now searches every row."""
    index, _ = _ingest(_casme2(tmp_path, {"EP01": (1, 3, 6)}, preamble=70))
    assert index["clip"].tolist() == ["EP01"] and int(index["apex"].iloc[0]) == 3
