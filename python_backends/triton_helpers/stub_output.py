"""The stub's ``print`` output reaches the server's log line by line, as it is printed."""

from __future__ import annotations

import sys


def log_line_by_line() -> None:
    """Flush this stub's stdout at every newline (called first in each ``initialize``).

    Triton's Python stub starts its interpreter without reading ``PYTHONUNBUFFERED``, and its stdout is the
    server's log file or pipe, so printed lines (a runtime fallback, a warm-up, a refused lock) would wait in a
    block buffer until the stub exits, and a killed stub's would never arrive.
    """
    sys.stdout.reconfigure(line_buffering=True)
