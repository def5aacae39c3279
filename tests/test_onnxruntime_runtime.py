"""The ONNX Runtime runtime: streams give the latency session's results, in order, for any batch size."""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import pytest

from python_backends.infer.onnxruntime_runtime import OnnxRuntimeSession, usable_cores


@pytest.fixture(scope="module")
def images(sample_images) -> np.ndarray:
    """float32 (3, 3, 640, 640): three different real photos, preprocessed."""
    from python_backends.preprocess.preprocessor import Preprocessor

    pre = Preprocessor()
    names = ("bus.jpg", "zidane.jpg", "camera.png")
    return np.stack([pre.from_bytes(sample_images[n].read_bytes())[0] for n in names])


@pytest.fixture(scope="module")
def one_by_one(model_repository, images) -> np.ndarray:
    """Each image alone on a runtime without streams."""
    runtime = OnnxRuntimeSession(str(model_repository / "yolov8_infer" / "1" / "model.onnx"), streams=1)
    return np.concatenate([runtime.run(image[None]) for image in images])


@pytest.mark.parametrize(("threads", "streams", "each"), [(2, 2, 1), (8, 2, 4), (3, 2, 1), (1, 4, 1)])
def test_each_stream_gets_its_share_of_the_threads(model_repository, threads, streams, each):
    path = str(model_repository / "yolov8_infer" / "1" / "model.onnx")
    runtime = OnnxRuntimeSession(path, intra_op_threads=threads, streams=streams)
    assert runtime.stream_threads == runtime.stream_session.get_session_options().intra_op_num_threads == each


def test_zero_threads_share_every_usable_core(model_repository):
    runtime = OnnxRuntimeSession(str(model_repository / "yolov8_infer" / "1" / "model.onnx"), streams=2)
    assert runtime.stream_threads == max(1, usable_cores() // 2)


@contextmanager
def pinned_to(cores: int):
    """Run this thread on its first ``cores`` usable CPUs (its affinity mask), as a container limit would."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < cores:
        pytest.skip(f"needs {cores} usable cores, this machine has {len(usable)}")
    os.sched_setaffinity(0, usable[:cores])
    try:
        yield
    finally:
        os.sched_setaffinity(0, usable)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
@pytest.mark.parametrize(("cores", "streams", "each"), [(1, 2, 1), (2, 2, 1), (4, 2, 2), (4, 3, 1), (8, 2, 4)])
def test_zero_threads_split_the_affinity_mask(model_repository, cores, streams, each):
    """0 threads: the cores this process may use, split between the streams (2 cores, 2 streams: 1 thread each)."""
    with pinned_to(cores):
        assert usable_cores() == cores
        runtime = OnnxRuntimeSession(str(model_repository / "yolov8_infer" / "1" / "model.onnx"), streams=streams)
    assert runtime.stream_threads == runtime.stream_session.get_session_options().intra_op_num_threads == each


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_streams_match_single_runs_in_order(model_repository, images, one_by_one, batch):
    """Two streams: a batch of 2 runs side by side, a batch of 3 also runs its third image on all threads."""
    runtime = OnnxRuntimeSession(str(model_repository / "yolov8_infer" / "1" / "model.onnx"), streams=2)
    head = runtime.run(images[:batch])
    assert head.shape == (batch, 6, 8400) and head.dtype == np.float32
    np.testing.assert_allclose(head, one_by_one[:batch], rtol=1e-4, atol=1e-3)
    scores = head[:, 4:].max(axis=(1, 2))
    assert len(set(np.round(scores, 3))) == batch  # different photos: a shuffled order would not match above


@pytest.mark.parametrize("streams", [1, 2])
def test_run_in_stream_matches_single_runs_in_order(model_repository, images, one_by_one, streams):
    """One instance's share of the cores gives the same heads."""
    runtime = OnnxRuntimeSession(str(model_repository / "yolov8_infer" / "1" / "model.onnx"), streams=streams)
    head = runtime.run_in_stream(images)
    assert head.shape == (3, 6, 8400) and head.dtype == np.float32
    np.testing.assert_allclose(head, one_by_one, rtol=1e-4, atol=1e-3)
