"""Logging helpers referenced from conf/logging.yml."""

from __future__ import annotations

import logging


class CollapseRepeats(logging.Filter):
    """Drop a record identical to the previous one from the same logger (e.g. one "Saving data to X" per
    streamed chunk of a generator node); the first occurrence and any different message still pass."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._last: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._last.get(record.name) == message:
            return False
        self._last[record.name] = message
        return True
