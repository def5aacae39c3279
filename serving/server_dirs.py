"""The folders a tritonserver started from this project has, and their removal once it is gone, however it ended.

Each server has two: its drain gate's (``yolov8-drain-*`` beside its log, or in TMPDIR; named in its environment
as ``DRAIN_DIR_VARIABLE``), and the one Triton's Python backend makes as it loads (``/tmp/python_env_XXXXXX``,
for execution environments), which Triton removes only at a clean exit: a killed server (a stage died and the
supervisor restarts it, a replica killed, a test) leaves it. Nothing names that folder, so a server starts under a
lock on /tmp that every server of this project takes (``python_env_lock``): the one folder that appears while it
holds it is its own, and its name goes in the gate's folder (``PYTHON_ENV_FILE``), where whoever cleans up after
the server finds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from python_backends.triton_helpers.drain import DRAIN_DIR_VARIABLE

PYTHON_ENV_PARENT = Path("/tmp")  # the Python backend's mkdtemp template is "/tmp/python_env_XXXXXX", whatever TMPDIR
PYTHON_ENV_PREFIX = "python_env_"
PYTHON_ENV_FILE = "python_env"  # in the gate's folder: the path of the server's Python-backend folder
GATE_PREFIX = "yolov8-drain-"  # a gate's folder, made by tempfile.mkdtemp


def python_env_dirs() -> set[Path]:
    """Every Python-backend folder in /tmp, whoever's."""
    return set(PYTHON_ENV_PARENT.glob(f"{PYTHON_ENV_PREFIX}*"))


def all_gate_dirs() -> set[Path]:
    """Every gate folder in the temporary folder (those of servers without a log file), whoever's."""
    return set(Path(tempfile.gettempdir()).glob(f"{GATE_PREFIX}*"))


def named_python_env(gate_dir: Path) -> Path | None:
    """The Python-backend folder that ``gate_dir`` names (``record_python_env``), if any."""
    try:
        python_env = Path((gate_dir / PYTHON_ENV_FILE).read_text())
    except OSError:
        return None
    ours = python_env.parent == PYTHON_ENV_PARENT and python_env.name.startswith(PYTHON_ENV_PREFIX)
    return python_env if ours else None


@contextlib.contextmanager
def python_env_lock() -> Iterator[None]:
    """Exclusive, among this project's servers, while one starts and until its Python backend made its folder."""
    fd = os.open(PYTHON_ENV_PARENT, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def new_python_env(
    before: set[Path], process: subprocess.Popen, is_ready: Callable[[], bool], deadline: float
) -> Path | None:
    """The folder that appears after ``before`` while ``process`` starts (under ``python_env_lock``).

    The backend makes it as it loads, before any model (within 0.1 s here). None when the server exits, or gets
    ready, without one (a repository without Python models), or the deadline passes; also when two appear (a
    server started from elsewhere, without the lock): neither is known to be ours. The folders are listed after
    each look at the process, so a server killed just after it made its folder (a second Ctrl-C) still has it.
    """
    while True:
        finished = process.poll() is not None or is_ready() or time.monotonic() >= deadline
        new = python_env_dirs() - before
        if new:
            return new.pop() if len(new) == 1 else None
        if finished:
            return None
        time.sleep(0.02)


def record_python_env(gate_dir: Path, python_env: Path) -> None:
    (gate_dir / PYTHON_ENV_FILE).write_text(str(python_env))


def remove_server_dirs(gate_dir: Path) -> None:
    """Remove a server's gate folder and the Python-backend folder it names; call once the server is gone."""
    python_env = named_python_env(gate_dir)
    if python_env is not None:
        shutil.rmtree(python_env, ignore_errors=True)
    shutil.rmtree(gate_dir, ignore_errors=True)


def gate_dirs(pids: list[int]) -> set[Path]:
    """The gate folders named in the environments of ``pids`` (their tritonservers')."""
    marker = f"{DRAIN_DIR_VARIABLE}=".encode()
    found = set()
    for pid in pids:
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        found |= {Path(entry[len(marker) :].decode()) for entry in environment if entry.startswith(marker)}
    return found
