"""Load-only: the newest stored prediction table and metrics of every model that has them (``compare``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

logger = logging.getLogger(__name__)


class StoredModelResults(AbstractDataset[None, dict[str, dict[str, Any]]]):
    """Reads ``<predictions>/<model>/predictions.parquet/<version>/predictions.parquet`` and the metrics JSON of the
    same version (``<metrics>/<model>/metrics.json/<version>/metrics.json``; the newest one if that version has
    none) of every model folder under ``predictions``. Returns ``{model: {predictions, metrics, version}}``;
    a model without a stored table is simply absent (the comparison names it). Kedro version folders sort by time.
    """

    def __init__(self, *, predictions: str, metrics: str, metadata: dict[str, Any] | None = None) -> None:
        self._predictions = Path(predictions)
        self._metrics = Path(metrics)
        self.metadata = metadata

    @staticmethod
    def _versions(folder: Path, name: str) -> list[str]:
        if not folder.is_dir():
            return []
        return sorted(v.name for v in folder.iterdir() if (v / name).is_file())

    def load(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not self._predictions.is_dir():
            return out
        for model_dir in sorted(p for p in self._predictions.iterdir() if p.is_dir()):
            model = model_dir.name
            versions = self._versions(model_dir / "predictions.parquet", "predictions.parquet")
            metric_versions = self._versions(self._metrics / model / "metrics.json", "metrics.json")
            if not versions or not metric_versions:
                continue
            version = versions[-1]
            metrics_version = version if version in metric_versions else metric_versions[-1]
            if metrics_version != version:
                logger.warning("%s: no metrics saved with predictions version %s; using metrics version %s",
                               model, version, metrics_version)
            out[model] = {
                "predictions": pd.read_parquet(model_dir / "predictions.parquet" / version / "predictions.parquet"),
                "metrics": json.loads((self._metrics / model / "metrics.json" / metrics_version / "metrics.json")
                                      .read_text()),
                "version": version,
            }
        return out

    def save(self, data: None) -> None:
        raise DatasetError("StoredModelResults is read-only: the model pipelines write these files")

    def _describe(self) -> dict[str, Any]:
        return {"predictions": str(self._predictions), "metrics": str(self._metrics)}
