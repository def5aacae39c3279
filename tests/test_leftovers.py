"""The session's leftover check (tests/leftovers.py) on real processes and a real /dev/shm file: what the session
started is found, another run's processes and regions are not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from leftovers import SESSION_VARIABLE, all_shm_files, leftovers

from serving.processes import CLIENT_SHM, SHM_PREFIX


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
    region = Path(f"{SHM_PREFIX}{uuid.uuid4().hex}")
    client_region = Path(f"{CLIENT_SHM}{uuid.uuid4().hex}")  # a client's region for its images
    foreign = Path(f"{SHM_PREFIX}{uuid.uuid4().hex}")
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
        assert sorted(leftovers(session, folder, before)) == sorted(
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
    assert leftovers(session, folder, before) == []
