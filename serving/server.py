"""Start and stop a tritonserver process (for the demo, benchmarks and tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from serving.triton import ServerOptions, build_backend_dir, server_command, server_environment


class ServerStartError(RuntimeError):
    """tritonserver exited or did not become ready in time."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TritonServer:
    """A tritonserver child process with its log in ``log_path``.

    Usage::

        with TritonServer(ServerOptions(...), log_path) as server:
            client = InferenceServerClient(server.grpc_url)
    """

    def __init__(self, options: ServerOptions, log_path: Path):
        self.options = options
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"{self.options.host}:{self.options.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.options.host}:{self.options.http_port}"

    def start(self, timeout_s: float = 120.0) -> TritonServer:
        """Start the server and wait until ``/v2/health/ready`` answers 200."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                server_command(self.options, build_backend_dir()),
                env=server_environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stubs included in stop()
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(f"tritonserver exited with {self.process.returncode}; see {self.log_path}")
            if self.is_ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise ServerStartError(f"tritonserver not ready after {timeout_s:.0f} s; see {self.log_path}")

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL the group if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
