"""Which stages are working on the CPU right now, shared by the stub processes of one tritonserver.

A stage holds a shared ``flock`` on one file while it works: preprocess while it decodes, each
infer instance while it runs the engine. The infer stage gives an image all cores only when it
can take the lock exclusively for a moment, that is when no other stage is working: the image is
alone in the pipeline. Otherwise each instance runs on its share of the cores, so the instances
and the preprocessing do not fight over the same threads.

The kernel drops a process's lock when the process exits, so a crashed stub leaves nothing stale,
and a request sent straight to one stage cannot skew the picture (as it can a request count).

"Alone" is decided as a run starts. An image that started alone keeps all cores when another
image arrives during its run (the newcomer runs on its instance's share beside it), and so does
one of two instances that start within microseconds of each other, since converting the
exclusive lock to a shared one is not atomic. Where the lock file cannot be opened, no image is
ever alone: each instance keeps to its share.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from python_backends.triton_helpers.drain import DrainGate


def activity_path(server_pid: int, gate_dir: Path | None) -> Path:
    """The lock file of tritonserver ``server_pid``: in its drain gate's folder (``DRAIN_DIR_VARIABLE``), which goes
    with the server, where it has one; else this user's file for that process id in the temporary folder (a
    tritonserver started without ``python -m serving``, as in the container)."""
    if gate_dir is not None:
        return gate_dir / "cpu-activity.lock"
    return Path(tempfile.gettempdir()) / f"yolov8-cpu-activity-{os.getuid()}-{server_pid}.lock"


class CpuActivity:
    """The stages' shared lock file at ``path``; one per stage instance (process)."""

    def __init__(self, path: Path):
        try:
            self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            print(f"CPU activity lock {path} unavailable ({exc}): every image runs on its instance's share")
            self.fd = None

    @classmethod
    def of_this_server(cls) -> CpuActivity:
        """The lock of the tritonserver that started this stub (stubs are its children)."""
        return cls(activity_path(os.getppid(), DrainGate.from_environment().directory))

    @contextmanager
    def working(self) -> Iterator[None]:
        """Hold the shared lock while the block runs."""
        if self.fd is None:
            yield
            return
        fcntl.flock(self.fd, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    @contextmanager
    def working_alone(self) -> Iterator[bool]:
        """Like ``working``; yields True when no other stage was working as the block began."""
        alone = self.fd is not None
        if alone:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                alone = False
        with self.working():  # from exclusive to shared, so that the others never wait for this run
            yield alone
