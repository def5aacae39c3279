"""Helpers for tests that need a tritonserver of their own (killed, overloaded, restarted, configured)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from serving.probe import probe_inference
from serving.processes import child_pids
from serving.server import free_port
from serving.triton import PROJECT_ROOT, ServerOptions


def free_ports() -> dict[str, int]:
    return {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}


def options(repository: Path, **changes) -> ServerOptions:
    return ServerOptions(**({"repository": repository, "exit_timeout_s": 10} | free_ports() | changes))


def edited_repository(source: Path, target: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """Copy a prepared repository and replace text in the stages' config.pbtxt: {stage: [(old, new)]}."""
    shutil.copytree(source, target)
    for stage, replacements in edits.items():
        config = target / stage / "config.pbtxt"
        text = config.read_text()
        for old, new in replacements:
            assert old in text, (stage, old)
            text = text.replace(old, new)
        config.write_text(text)
    return target


def image_input(payload: bytes, batch: int = 1) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("IMAGE", [batch, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[payload]] * batch, dtype=object))
    return tensor


class SupervisedServer:
    """``python -m serving`` as a subprocess (the supervisor), on free loopback ports."""

    def __init__(self, repository: Path, log_dir: Path, *args: str):
        self.ports = free_ports()
        self.http_url = f"http://127.0.0.1:{self.ports['http_port']}"
        self.grpc_url = f"127.0.0.1:{self.ports['grpc_port']}"
        self.supervisor_log = log_dir / "supervisor.log"
        flags = [f"--{name.replace('_', '-')}={port}" for name, port in self.ports.items()]
        command = [sys.executable, "-m", "serving", "--repository", str(repository), *flags]
        command += ["--log-file", str(log_dir / "tritonserver.log"), "--exit-timeout", "10", *args]
        with open(self.supervisor_log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)

    def wait_serving(self, timeout_s: float = 120.0) -> int:
        """Wait until a probe inference succeeds; returns tritonserver's pid."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.supervisor_log.read_text()
            if probe_inference(self.http_url, timeout_s=10).ok:
                return self.server_pid()
            time.sleep(0.2)
        raise AssertionError(f"not serving after {timeout_s} s: {self.supervisor_log.read_text()}")

    def server_pid(self) -> int:
        (pid,) = child_pids(self.process.pid)
        return pid

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM the supervisor; its exit status (SIGKILL after ``timeout_s``: a hang fails the test)."""
        self.process.terminate()
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("the supervisor did not stop in time") from None
