"""The bundled Python backend stub needs NumPy 1.x: under NumPy 2 every image input arrives corrupted.

Seen on a GPU host (benchmarks/gpu/2026-11-26/) and reproducible on CPU with NumPy 2.5.2 in a
Python 3.12 venv: the stub dies in ``deserialize_bytes_tensor`` on the first request.
"""

from __future__ import annotations

import re

import pytest

import serving.server
from python_backends.paths import PROJECT_ROOT
from serving.server import ServerStartError, TritonServer
from serving.triton import ServerOptions, stub_numpy_problem


def test_numpy_2_is_named_as_the_problem_and_1_x_passes():
    assert stub_numpy_problem("1.26.4") is None
    for version in ("2.0.0", "2.5.2"):
        problem = stub_numpy_problem(version)
        assert f"NumPy {version} in " in problem and "install numpy<2" in problem


def test_requirements_pin_a_numpy_the_stub_can_use():
    pinned = re.search(r"^numpy==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert pinned == "1.26.4" and stub_numpy_problem(pinned) is None


def test_the_server_refuses_to_start_under_numpy_2(monkeypatch, tmp_path):
    monkeypatch.setattr(serving.server.np, "__version__", "2.5.2")
    server = TritonServer(ServerOptions(), tmp_path / "tritonserver.log")
    with pytest.raises(ServerStartError, match=r"NumPy 2\.5\.2 .* install numpy<2"):
        server.start()
    assert server.process is None and not (tmp_path / "tritonserver.log").exists()  # nothing was launched
