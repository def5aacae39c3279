"""The stages' CPU activity lock: an image is alone only while no other stage holds the lock."""

from __future__ import annotations

import subprocess
import sys

from python_backends.paths import PROJECT_ROOT
from python_backends.triton_helpers.cpu_activity import CpuActivity

HOLD_IT = """
import sys, time
from pathlib import Path
from python_backends.triton_helpers.cpu_activity import CpuActivity
from python_backends.paths import PROJECT_ROOT
with CpuActivity(Path(sys.argv[1])).working():
    print("holding", flush=True)
    time.sleep(60)
"""


def test_alone_only_while_no_other_stage_works(tmp_path):
    preprocess, infer_0, infer_1 = (CpuActivity(tmp_path / "lock") for _ in range(3))
    with infer_0.working_alone() as alone:
        assert alone
        with infer_1.working_alone() as other_alone:  # the first one's run holds the shared lock
            assert not other_alone
    with preprocess.working(), infer_0.working_alone() as alone:
        assert not alone
    with infer_1.working_alone() as alone:
        assert alone


def test_a_killed_holder_leaves_nothing_stale(tmp_path):
    command = [sys.executable, "-c", HOLD_IT, str(tmp_path / "lock")]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=PROJECT_ROOT)
    try:
        assert holder.stdout.readline() == b"holding\n"
        with CpuActivity(tmp_path / "lock").working_alone() as alone:
            assert not alone
    finally:
        holder.kill()
        holder.wait()
    with CpuActivity(tmp_path / "lock").working_alone() as alone:
        assert alone


def test_an_unopenable_lock_never_makes_an_image_alone(tmp_path, capsys):
    (tmp_path / "elsewhere").touch()
    (tmp_path / "lock").symlink_to(tmp_path / "elsewhere")  # refused: O_NOFOLLOW
    activity = CpuActivity(tmp_path / "lock")
    assert "unavailable" in capsys.readouterr().out
    with activity.working(), activity.working_alone() as alone:
        assert not alone
