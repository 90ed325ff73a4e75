"""The Kedro project around the working directory, opened without a session: its root, its configuration for one
env and its DataCatalog (used by ``microexpr predict`` and ``microexpr sweep``, and by benchmark scripts that read
what a ``kedro run`` stored). No session means no hook runs and no MLflow run is opened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Project", "absolute_paths", "open_project"]


@dataclass(frozen=True)
class Project:
    """A project root and its configuration loader for one env (and runtime params, e.g. ``results_root``)."""

    root: Path
    config: Any

    def catalog(self) -> Any:
        """The project's DataCatalog, relative paths resolved against the project root (as a Kedro run does)."""
        from kedro.io import DataCatalog

        return DataCatalog.from_config(absolute_paths(self.config["catalog"], self.root))

    def tracking_uri(self) -> str | None:
        try:
            return self.config["mlflow"]["server"]["mlflow_tracking_uri"]
        except (KeyError, TypeError, ValueError):
            return None


def absolute_paths(entries: dict[str, Any], root: Path) -> dict[str, Any]:
    """Catalog entries with every relative ``filepath`` / ``path`` made absolute under ``root``."""
    def fix(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: fix(v, k) for k, v in value.items()}
        if key in ("filepath", "path") and isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            return str(root / value)
        return value

    return {name: fix(entry) for name, entry in entries.items()}


def open_project(env: str | None, runtime_params: dict[str, Any] | None = None,
                 start: Path | None = None) -> Project | None:
    """The project around ``start`` (default: the working directory) with its ``env`` configuration; None outside
    one."""
    from kedro.config import OmegaConfigLoader
    from kedro.utils import find_kedro_project

    from microexpr.settings import CONFIG_LOADER_ARGS

    root = find_kedro_project(start or Path.cwd())
    if root is None:
        return None
    loader = OmegaConfigLoader(str(Path(root) / "conf"), env=env, runtime_params=runtime_params or {},
                               **CONFIG_LOADER_ARGS)
    loader.config_patterns = {**loader.config_patterns, "mlflow": ["mlflow*", "mlflow*/**"]}
    return Project(Path(root), loader)
