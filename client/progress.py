"""A one-line progress bar on stderr: count, rate and ETA."""

from __future__ import annotations

import sys
import time


class Progress:
    """Call ``advance()`` per finished item and ``close()`` at the end; silent when not enabled."""

    def __init__(self, total: int, enabled: bool = True, stream=sys.stderr):
        self.total, self.enabled, self.stream = total, enabled, stream
        self.done = 0
        self.started = time.perf_counter()

    def advance(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 and self.total >= self.done else 0.0
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total}  {rate:5.1f} img/s  ETA {eta:5.0f} s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()
