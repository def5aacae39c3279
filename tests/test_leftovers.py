"""The session's leftover check (tests/leftovers.py) on real processes, a real /dev/shm file and real folders in /tmp:
what the session started is found, another run's processes and regions are not, nor a live server's folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from leftovers import SESSION_VARIABLE, all_shm_files, left_folders, leftovers, server_folders

from python_backends.triton_helpers.drain import DRAIN_DIR_VARIABLE
from serving.processes import CLIENT_SHM, SHM_PREFIX
from serving.server_dirs import (
    GATE_PREFIX,
    PYTHON_ENV_PARENT,
    PYTHON_ENV_PREFIX,
    new_python_env,
    python_env_dirs,
    python_env_lock,
    record_python_env,
    remove_server_dirs,
)

REGION_TAG = "_test_leftovers"  # ends the names of this module's regions


def started(executable: Path, *args: str, session: str) -> subprocess.Popen:
    env = os.environ | {SESSION_VARIABLE: session}
    return subprocess.Popen([str(executable), *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_what_the_session_started_is_left_until_it_is_gone(tmp_path):
    session, folder = uuid.uuid4().hex, tmp_path / "session"
    folder.mkdir()
    sleep = shutil.which("sleep")
    for name in ("prometheus", "haproxy"):
        shutil.copy(sleep, tmp_path / name)
    shutil.copy(sleep, folder / "nginx")
    before = all_shm_files()
    region = Path(f"{SHM_PREFIX}{uuid.uuid4().hex}{REGION_TAG}")
    client_region = Path(f"{CLIENT_SHM}{uuid.uuid4().hex}{REGION_TAG}")  # a client's region for its images
    foreign = Path(f"{SHM_PREFIX}{uuid.uuid4().hex}{REGION_TAG}")
    mapping = f"import mmap, sys; f = open({str(foreign)!r}, 'r+b'); m = mmap.mmap(f.fileno(), 0); print(1)"
    mapping += "; sys.stdout.flush(); sys.stdin.read()"
    processes = []
    try:
        region.write_bytes(b"\0" * 4096)
        client_region.write_bytes(b"\0" * 4096)
        foreign.write_bytes(b"\0" * 4096)
        processes = [
            started(tmp_path / "prometheus", "600", session=session),  # the session's environment
            started(folder / "nginx", "600", session="another run"),  # its command line names the folder
            started(tmp_path / "haproxy", "600", session="another run"),
            started(Path(sys.executable), "-c", mapping, session="another run"),  # maps the foreign region
        ]
        assert processes[3].stdout.readline() == b"1\n"
        assert sorted(mine(leftovers(session, folder, before), processes)) == sorted(
            [
                f"pid {processes[0].pid}: {tmp_path / 'prometheus'} 600",
                f"pid {processes[1].pid}: {folder / 'nginx'} 600",
                str(region),
                str(client_region),
            ]
        )
    finally:
        for process in processes:
            process.kill()
            process.wait()
        region.unlink(missing_ok=True)
        client_region.unlink(missing_ok=True)
        foreign.unlink(missing_ok=True)
    assert mine(leftovers(session, folder, before), processes) == []


def mine(found: list[str], processes: list[subprocess.Popen]) -> list[str]:
    """What ``found`` says of this test's processes and regions: another test's server may start or stop meanwhile."""
    pids = tuple(f"pid {process.pid}: " for process in processes)
    return [line for line in found if line.startswith(pids) or Path(line).name.endswith(REGION_TAG)]


def test_a_server_folder_is_left_once_no_live_server_names_it():
    """Gate folders and Python-backend folders (serving.server_dirs): one that a live process names (a gate in its
    environment, a Python-backend folder in a live gate) is in use; the others are left behind."""
    before = server_folders()
    live_gate, dead_gate = (Path(tempfile.mkdtemp(prefix=GATE_PREFIX)) for _ in range(2))
    live_env, dead_env = (PYTHON_ENV_PARENT / f"{PYTHON_ENV_PREFIX}{uuid.uuid4().hex}" for _ in range(2))
    everything = {str(path) for path in (live_gate, dead_gate, live_env, dead_env)}

    def left() -> list[str]:  # of this test's folders: another test's server may be starting meanwhile
        return [path for path in left_folders(before) if path in everything]

    process = None
    try:
        for path in (live_env, dead_env):
            path.mkdir()
        record_python_env(live_gate, live_env)
        record_python_env(dead_gate, dead_env)
        env = os.environ | {DRAIN_DIR_VARIABLE: str(live_gate)}
        process = subprocess.Popen([shutil.which("sleep"), "600"], env=env)
        assert left() == sorted([str(dead_gate), str(dead_env)])
        process.kill()
        process.wait()
        assert left() == sorted(everything)
        for gate in (live_gate, dead_gate):
            remove_server_dirs(gate)
        assert left() == []
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        for path in (live_gate, dead_gate, live_env, dead_env):
            shutil.rmtree(path, ignore_errors=True)


def test_a_server_killed_just_after_it_made_its_python_backend_folder_still_has_it():
    """The folder a starting server's Python backend made is found even when the server is gone by the next look (a
    second Ctrl-C while it loads): the folders are listed after each look at the process."""
    made = PYTHON_ENV_PARENT / f"{PYTHON_ENV_PREFIX}{uuid.uuid4().hex}"
    with python_env_lock():  # as a server starts: no other server of this project makes one meanwhile
        before = python_env_dirs()
        process = subprocess.Popen([shutil.which("mkdir"), str(made)])
        try:
            process.wait()  # made its folder, and gone
            found = new_python_env(before, process, lambda: False, time.monotonic() + 5)
        finally:
            shutil.rmtree(made, ignore_errors=True)
    assert found == made
