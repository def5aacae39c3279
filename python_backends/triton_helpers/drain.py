"""Drain the pipeline before Triton stops: a gate the first stage closes, and an in-flight count.

Triton 2.51 stops every model's scheduler when it gets SIGTERM, so an ensemble request that
is between two stages then fails ("Server is stopping") instead of completing. The server
runner therefore drains first: it closes the gate (the first stage then refuses new requests
with UNAVAILABLE), waits until every request that entered the pipeline has left it, and only
then sends SIGTERM.

The state is two append-only files in a directory shared by the stage processes
(``YOLOV8_DRAIN_DIR``); one byte is one request, and an O_APPEND write of a few bytes is atomic.
"""

from __future__ import annotations

import os
from pathlib import Path

DRAIN_DIR_VARIABLE = "YOLOV8_DRAIN_DIR"


class DrainGate:
    """Shutdown gate and in-flight counter in ``directory`` (None: a gate that never closes, counts nothing)."""

    def __init__(self, directory: str | Path | None):
        self.directory = None if directory is None else Path(directory)

    @classmethod
    def from_environment(cls) -> DrainGate:
        return cls(os.environ.get(DRAIN_DIR_VARIABLE) or None)

    def is_closed(self) -> bool:
        return self.directory is not None and (self.directory / "closed").exists()

    def close(self) -> None:
        (self.directory / "closed").touch()

    def enter(self, count: int) -> None:
        """``count`` requests entered the pipeline."""
        self._append("entered", count)

    def leave(self, count: int) -> None:
        """``count`` requests left the pipeline (answered, with a result or an error)."""
        self._append("left", count)

    def in_flight(self) -> int:
        return self._size("entered") - self._size("left")

    def _append(self, name: str, count: int) -> None:
        if self.directory is None or count <= 0:
            return
        fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b"." * count)
        finally:
            os.close(fd)

    def _size(self, name: str) -> int:
        try:
            return (self.directory / name).stat().st_size
        except FileNotFoundError:
            return 0
