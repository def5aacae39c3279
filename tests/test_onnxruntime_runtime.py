"""The ONNX Runtime runtime: streams give the latency session's results, in order, for any batch size."""

from __future__ import annotations

import os

import numpy as np
import pytest

from python_backends.infer import onnxruntime_runtime
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


@pytest.mark.parametrize(("cores", "streams", "each"), [(1, 2, 1), (2, 2, 1), (4, 2, 2), (4, 3, 1), (8, 2, 4)])
def test_zero_threads_split_the_usable_cores(model_repository, monkeypatch, cores, streams, each):
    """0 threads: every usable core, split between the streams (the core count is given, so any machine runs these)."""
    monkeypatch.setattr(onnxruntime_runtime, "usable_cores", lambda: cores)
    runtime = OnnxRuntimeSession(str(model_repository / "yolov8_infer" / "1" / "model.onnx"), streams=streams)
    assert runtime.stream_threads == runtime.stream_session.get_session_options().intra_op_num_threads == each


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
@pytest.mark.parametrize("cores", [1, 2])
def test_usable_cores_are_the_affinity_mask(cores):
    """What a container's CPU limit narrows: the cores this process may run on, not the machine's."""
    usable = sorted(os.sched_getaffinity(0))
    assert len(usable) >= 2, "the project's smallest machine has 2 cores"
    os.sched_setaffinity(0, usable[:cores])
    try:
        assert usable_cores() == cores
    finally:
        os.sched_setaffinity(0, usable)


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
