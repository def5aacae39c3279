"""The run fails when something the tests started outlives them: a server process, a Triton shared-memory region, or
a server's folder in /tmp.

conftest registers ``LeftoverCheck`` in the process that ends the session (pytest-xdist's controller, once every
worker has finished, or the only process). A process is the session's when it carries ``SESSION_VARIABLE`` in its
environment (servers and tools inherit the tests' environment), when its command line names the session's
temporary folder (nginx writes over its environment; its master's title keeps ``-p <folder>``), or when its parent
is the session's (nginx's workers). A region in /dev/shm (a Python backend's, or a client's for its images) is
the session's when it appeared during the session and no process outside the session maps it (a server of another
run on this machine). A server's folders (serving.server_dirs) are left when they appeared during the session and
their server is gone: a drain gate's folder that no live process names in its environment, a Python backend's that
no live gate names (not checked while a tritonserver of another run is alive: its folder has no name to tell it by).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from serving.processes import CLIENT_SHM, SHM_PREFIX, is_alive, shm_files, shm_regions
from serving.server_dirs import all_gate_dirs, gate_dirs, named_python_env, python_env_dirs

NAMES = ("tritonserver", "triton_python_backend_stub", "haproxy", "nginx", "prometheus")
SESSION_VARIABLE = "YOLOV8_TEST_SESSION"
PREFIXES = (SHM_PREFIX, CLIENT_SHM)  # the stubs' regions, and the clients' regions for their images


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return b""


def _name(pid: int, argv: list[bytes]) -> str:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return Path(argv[0].decode(errors="replace")).name if argv else ""


def session_pids(session: str, folder: Path) -> dict[int, tuple[str, str]]:
    """The session's live processes (see the module) → (executable's name, command line)."""
    marker, named = f"{SESSION_VARIABLE}={session}".encode(), f"{folder}/"
    parents, commands, ours = {}, {}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not is_alive(int(entry)):
            continue
        pid = int(entry)
        argv = _read(f"/proc/{pid}/cmdline").split(b"\0")
        commands[pid] = _name(pid, argv), " ".join(b" ".join(argv).decode(errors="replace").split())
        stat = _read(f"/proc/{pid}/stat").rsplit(b")", 1)
        parents[pid] = int(stat[1].split()[1]) if len(stat) == 2 else 0
        if marker in _read(f"/proc/{pid}/environ").split(b"\0") or named in commands[pid][1]:
            ours.add(pid)
    ours |= {pid for pid, parent in parents.items() if parent in ours}
    return {pid: commands[pid] for pid in ours}


def leftovers(session: str, folder: Path, shm_before: set[Path]) -> list[str]:
    """What the session left: its server processes (``NAMES``), and shared-memory regions it made that no other
    process maps."""
    return leftovers_of(session_pids(session, folder), shm_before)


def leftovers_of(ours: dict[int, tuple[str, str]], shm_before: set[Path]) -> list[str]:
    """``leftovers`` for the session's live processes ``ours`` (``session_pids``)."""
    found = [f"pid {pid}: {command}" for pid, (name, command) in sorted(ours.items()) if name in NAMES]
    others = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) not in ours and int(e) != os.getpid()]
    new = all_shm_files() - shm_before
    mapped_elsewhere = set().union(*(shm_regions(others, prefix) for prefix in PREFIXES)) if new else set()
    return found + [str(path) for path in sorted(new - mapped_elsewhere)]


def server_folders() -> set[Path]:
    """Every gate folder and Python-backend folder there is (serving.server_dirs)."""
    return all_gate_dirs() | python_env_dirs()


def left_folders(before: set[Path], python_env: bool = True) -> list[str]:
    """The server folders that appeared since ``before`` and whose server is gone (see the module); with
    ``python_env`` False, gate folders only."""
    new = server_folders() - before
    if not python_env:
        new -= python_env_dirs()
    if not new:
        return []
    live_gates = gate_dirs([int(e) for e in os.listdir("/proc") if e.isdigit()])
    live = live_gates | {named_python_env(gate) for gate in live_gates}
    return [str(path) for path in sorted(new - live)]


def others_tritonserver(ours: dict[int, tuple[str, str]]) -> bool:
    """A tritonserver that is not one of the session's live processes ``ours`` (``session_pids``) is alive."""
    return any(_name(int(e), []) == "tritonserver" for e in os.listdir("/proc") if e.isdigit() and int(e) not in ours)


def all_shm_files() -> set[Path]:
    """The Python backend's regions and the clients' (``PREFIXES``) in /dev/shm."""
    return set().union(*(shm_files(prefix) for prefix in PREFIXES))


class LeftoverCheck:
    """Marks the session's environment at configure time; fails the run at its end if anything is left."""

    def __init__(self, config: pytest.Config, settle_s: float = 10.0):
        self.session = uuid.uuid4().hex
        os.environ[SESSION_VARIABLE] = self.session  # before pytest-xdist starts its workers: they inherit it
        self.folder = config._tmp_path_factory.getbasetemp()  # pytest-xdist puts its workers' folders in it too
        self.shm_before = all_shm_files()
        self.folders_before = server_folders()
        self.settle_s = settle_s  # a bound for processes that are exiting as the session ends, not a timing check
        self.found: list[str] = []

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        deadline = time.monotonic() + self.settle_s
        while (found := self.left()) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.found = found
        if found:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def left(self) -> list[str]:
        ours = session_pids(self.session, self.folder)
        return leftovers_of(ours, self.shm_before) + left_folders(self.folders_before, not others_tritonserver(ours))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.found:
            terminalreporter.write_sep("=", "left behind by the tests", red=True)
            for line in self.found:
                terminalreporter.write_line(line)
