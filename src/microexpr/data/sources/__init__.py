"""One module per raw dataset; this registry maps every ``dataset`` parameter value to its parser.

A parser module exposes ``parse(snapshot: Snapshot, options: dict) -> tuple[list[Candidate], list[Exclusion]]``
and never reads files. :class:`SourceSpec` tells the I/O layer (``microexpr.datasets.RawDatasetSource``) which
annotation files to read for it, and which member datasets a composite needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from microexpr.data.records import Candidate, Exclusion, Snapshot

ParseFn = Callable[[Snapshot, dict[str, Any]], tuple[list[Candidate], list[Exclusion]]]


@dataclass(frozen=True)
class SourceSpec:
    """How to read one ``dataset`` value.

    ``module`` is the parser module under ``microexpr.data.sources``; ``options`` are fixed per source (e.g. the
    SMIC variant) and are merged under the user's reader options. ``annotation_globs`` are matched (fnmatch, case
    insensitive) against file paths relative to the root, up to ``annotation_depth`` folders deep. ``parts`` lists
    the member sources of a composite, each read from its own raw root.
    """

    name: str
    module: str
    annotation_globs: tuple[str, ...] = ()
    annotation_depth: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    parts: tuple[str, ...] = ()

    def parser(self) -> ParseFn:
        return importlib.import_module(f"microexpr.data.sources.{self.module}").parse


_SHEETS = ("*.xlsx", "*.xls", "*.csv")

SOURCES: dict[str, SourceSpec] = {
    spec.name: spec
    for spec in (
        SourceSpec("synthetic", "casme2", _SHEETS, options={"dataset": "synthetic"}),
        SourceSpec("casme2", "casme2", _SHEETS),
        SourceSpec("samm", "samm", _SHEETS),
        SourceSpec("smic_hs", "smic", _SHEETS, options={"variant": "HS"}),
        SourceSpec("smic_vis", "smic", _SHEETS, options={"variant": "VIS"}),
        SourceSpec("smic_nir", "smic", _SHEETS, options={"variant": "NIR"}),
        SourceSpec("mmew", "mmew", _SHEETS),
        SourceSpec("casme3_a", "casme3", _SHEETS),
        SourceSpec("megc2019", "megc2019", ("*.csv",), parts=("casme2", "samm", "smic_hs")),
    )
}


def get_source(name: str) -> SourceSpec:
    """Return the spec of a ``dataset`` value, or raise naming the accepted values."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(SOURCES)}") from None
