"""The fixed cost's floor (benchmarks/floor_stage.py): a copy of the repository whose stages answer like the real
ones and then do no work. On tests/models' YOLO11n (3 classes, 320x416, seeded random weights) and the sample
photos."""

from __future__ import annotations

import time

from own_server import options, started

from benchmarks.fixed_cost import FLOOR_REAL_CALLS, WARMUP, floor_repository
from client.api import YoloTritonClient


def boxes(result) -> list[tuple]:
    return [(d.class_id, round(d.score, 5), tuple(round(v, 2) for v in d.box)) for d in result.detections]


def test_the_floor_answers_as_the_real_stages_then_without_their_work(yolo11n_repository, sample_images, tmp_path):
    """Its first answers are the real pipeline's; after its real calls, every request gets the last real answer,
    whatever the image: no stage decodes, runs the engine or decodes the head any more. A waiting floor's stage
    takes its wait first (here postprocess's 300 ms: a request cannot take less)."""
    bus, zidane = sample_images["bus.jpg"].read_bytes(), sample_images["zidane.jpg"].read_bytes()
    assert WARMUP > FLOOR_REAL_CALLS  # the bench's warm-up requests end the real calls with its own image
    floor = floor_repository(yolo11n_repository, tmp_path / "floor", {"yolov8_postprocess": 300.0})
    assert (floor / "yolov8_infer" / "1" / "real_model.py").is_file()
    assert "model_warmup" not in (floor / "yolov8_infer" / "config.pbtxt").read_text()
    with started(options(yolo11n_repository), tmp_path / "real.log") as real, YoloTritonClient(real.grpc_url) as c:
        expected = {"bus": boxes(c.detect(bus)), "zidane": boxes(c.detect(zidane))}
    assert expected["bus"] and expected["bus"] != expected["zidane"]
    with started(options(floor), tmp_path / "floor.log") as server, YoloTritonClient(server.grpc_url) as client:
        answers = [boxes(client.detect(bus)) for _ in range(FLOOR_REAL_CALLS)]
        assert answers[0] == expected["bus"]
        started_at = time.perf_counter()
        assert boxes(client.detect(zidane)) == expected["bus"]
        assert time.perf_counter() - started_at >= 0.3
