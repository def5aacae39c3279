"""OpenVINO compiles into a shared cache folder one process at a time, under ``<cache>/.lock``.

Each yolov8_infer instance is a process of its own that compiles into the same cache, and OpenVINO 2026.4
fails in one of two processes that write the same blob at once (``openvino_runtime.cache_lock``). Here
real processes compile a tiny model (one Relu, float32 (1, 3, 8, 8)) while the test holds the lock, as
another instance's compile would: they wait on the lock (an flock waiter in /proc/locks), write nothing
meanwhile, and go on once it is free, one after the other.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
from held_stage import wait_until, waits_for_lock
from onnx import TensorProto, helper

from python_backends.paths import PROJECT_ROOT

COMPILE = """
import sys
from python_backends.infer.openvino_runtime import OpenVinoRuntime
runtime = OpenVinoRuntime(sys.argv[1], intra_op_threads=1, cache_dir=sys.argv[2])
print("loaded from cache" if runtime.compiled.get_property("LOADED_FROM_CACHE") else "compiled")
"""


def tiny_model(path: Path) -> Path:
    """An ONNX model: float32 (1, 3, 8, 8) ``images`` → Relu → ``output0``, the same shape."""
    shape = [1, 3, 8, 8]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["images"], ["output0"])],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def compile_in_a_process(model: Path, cache: Path) -> subprocess.Popen:
    """``OpenVinoRuntime(model, cache_dir=cache)`` in a process of its own; it prints what it did."""
    command = [sys.executable, "-c", COMPILE, str(model), str(cache)]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def lock_held(cache: Path) -> Iterator[Path]:
    """Hold ``cache/.lock`` exclusively, as a compiling instance does; yields its path."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / ".lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def wait_blocked(processes: list[subprocess.Popen], lock: Path) -> None:
    """Until every process waits on ``lock``; fails at once if one finished without waiting."""
    wait_until(
        lambda: all(waits_for_lock(p.pid, lock) or p.poll() is not None for p in processes), "the compiles at the lock"
    )
    finished = [p.communicate() for p in processes if p.poll() is not None]
    assert not finished, f"compiled without waiting for the lock: {finished}"


def outcome(process: subprocess.Popen) -> str:
    """What the process printed; fails if it did not exit 0."""
    out, err = process.communicate(timeout=120)  # a liveness bound
    assert process.returncode == 0, err
    return out.strip()


def blobs(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.blob"))


def test_a_compile_waits_for_the_lock_and_goes_on_once_it_is_free(tmp_path):
    model, cache = tiny_model(tmp_path / "tiny.onnx"), tmp_path / "cache"
    with lock_held(cache) as lock:
        compiling = compile_in_a_process(model, cache)
        wait_blocked([compiling], lock)
        assert blobs(cache) == []  # nothing written while it waits
    assert outcome(compiling) == "compiled"
    assert len(blobs(cache)) == 1


def test_two_compiles_into_one_fresh_cache_take_turns(tmp_path):
    """Both wait for the lock; once free, one compiles and writes the blob, the other then loads that blob."""
    model, cache = tiny_model(tmp_path / "tiny.onnx"), tmp_path / "cache"
    with lock_held(cache) as lock:
        compiling = [compile_in_a_process(model, cache) for _ in range(2)]
        wait_blocked(compiling, lock)
    assert sorted(outcome(p) for p in compiling) == ["compiled", "loaded from cache"]
    assert len(blobs(cache)) == 1
