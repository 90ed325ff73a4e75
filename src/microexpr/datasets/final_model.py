"""A full-data model on disk: ``weights.safetensors`` (tensors only, nothing executable) + ``card.json``.

``FinalModelDataset`` is the versioned catalog entry ``<model>.final_model`` (``data/06_models/<model>/``); the
folder functions are what the dataset, the tracking hook (which logs the same folder to MLflow) and
``microexpr predict --weights <folder>`` share. The card records the weights' sha256, and loading refuses weights
whose digest differs (a swapped or damaged file).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import DatasetError
from kedro.io.core import AbstractVersionedDataset, Version, get_filepath_str

from microexpr.datasets.feature_store import write_atomically
from microexpr.inference.card import CardMismatch, FinalModel

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.safetensors"

__all__ = ["CARD_FILE", "WEIGHTS_FILE", "FinalModelDataset", "read_final_model", "write_final_model"]


def write_final_model(folder: Path, final: FinalModel) -> dict[str, Any]:
    """Write the weights (when trained) and the card into ``folder``; the card written is returned, with its
    ``weights`` entry (file, sha256, bytes, tensors, parameters) filled in."""
    from safetensors.torch import save

    card = dict(final.card)
    folder.mkdir(parents=True, exist_ok=True)
    if final.state is not None:
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in final.state.items()}
        # one metadata key: safetensors orders several keys at random, and the bytes (their sha256) must not vary
        payload = save(tensors, metadata={"microexpr": f"{card.get('format')}:{card.get('model')}"})
        write_atomically(folder / WEIGHTS_FILE, lambda handle: handle.write(payload))
        card["weights"] = {
            "file": WEIGHTS_FILE,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "bytes": len(payload),
            "tensors": len(tensors),
            "elements": int(sum(t.numel() for t in tensors.values())),
        }
    text = json.dumps(card, indent=2, sort_keys=False, default=str).encode()
    write_atomically(folder / CARD_FILE, lambda handle: handle.write(text))
    return card


def read_final_model(path: Path | str) -> FinalModel:
    """The card and weights from a model folder (or its card.json / weights file); a CardMismatch if the weights'
    digest is not the card's. Weights are read with safetensors (no pickle, no code)."""
    from safetensors.torch import load

    path = Path(path)
    folder = path.parent if path.is_file() else path
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise FileNotFoundError(f"no {CARD_FILE} in {folder}: not a saved microexpr model folder")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as error:
        raise CardMismatch(f"{card_path} is not valid JSON: {error}") from None
    entry = card.get("weights")
    if not entry:
        return FinalModel(card=card, state=None)
    weights_path = folder / str(entry.get("file", WEIGHTS_FILE))
    if not weights_path.is_file():
        raise FileNotFoundError(f"{card_path} names weights {weights_path.name}, which are not in {folder}")
    payload = weights_path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != entry.get("sha256"):
        raise CardMismatch(f"{weights_path} has sha256 {digest[:12]}…, its card says {str(entry.get('sha256'))[:12]}…: "
                           "the weights are not the ones this card describes")
    return FinalModel(card=card, state=load(payload))


class FinalModelDataset(AbstractVersionedDataset[FinalModel, FinalModel]):
    """Versioned folder ``<filepath>/<version>/<name>/`` holding ``card.json`` and ``weights.safetensors``.

    A :class:`FinalModel` without weights (``final_model: false``) stores its card only, which says so; loading
    it gives a FinalModel whose ``state`` is None (prediction then refuses with that reason).
    """

    def __init__(self, *, filepath: str, version: Version | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__(filepath=PurePosixPath(filepath), version=version,
                         exists_function=lambda p: (Path(p) / CARD_FILE).is_file())
        self.metadata = metadata

    def load(self) -> FinalModel:
        path = Path(get_filepath_str(self._get_load_path(), "file"))
        try:
            return read_final_model(path)
        except FileNotFoundError as error:
            raise DatasetError(str(error)) from error

    def save(self, data: FinalModel) -> None:
        if not isinstance(data, FinalModel):
            raise DatasetError(f"FinalModelDataset saves a FinalModel, got {type(data).__name__}")
        write_final_model(Path(get_filepath_str(self._get_save_path(), "file")), data)

    def _exists(self) -> bool:
        try:
            return (Path(get_filepath_str(self._get_load_path(), "file")) / CARD_FILE).is_file()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}
