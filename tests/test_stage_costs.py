"""perf-data, perf_analyzer and `client report` against the real test server (no speed assertions)."""

import base64
import json
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from benchmarks.perf_analyzer import PERF_ANALYZER, run_perf_analyzer
from benchmarks.perf_data import stage_path, write_perf_data
from client.api import YoloTritonClient
from client.report import PROBE_NOTE
from client.stage_stats import STAGES
from python_backends.paths import PROJECT_ROOT


def test_perf_data_round_trips(triton, model_repository, sample_images, tmp_path):
    images = [sample_images["zidane.jpg"], sample_images["camera.png"]]
    written = write_perf_data(images, tmp_path / "input.json", model_repository)
    assert [p.name for p in written] == ["input.json", *(f"input.{m}.json" for m in STAGES)]
    entries = json.loads((tmp_path / "input.json").read_text())["data"]
    element = base64.b64decode(entries[0]["IMAGE"]["content"]["b64"])
    (length,) = struct.unpack("<I", element[:4])
    assert length == len(element) - 4 and element[4:] == images[0].read_bytes()

    tensor = grpcclient.InferInput("IMAGE", [1, *entries[0]["IMAGE"]["shape"]], "BYTES")
    tensor.set_data_from_numpy(np.array([[element[4:]]], dtype=object))
    with grpcclient.InferenceServerClient(triton.grpc_url) as raw, YoloTritonClient(triton.grpc_url) as client:
        reply = raw.infer("yolov8", [tensor])
        expected = client.detect(images[0])
    count = int(reply.as_numpy("num_dets")[0, 0])
    assert count == len(expected.detections) > 0
    np.testing.assert_allclose(reply.as_numpy("det_boxes")[0, :count], [d.box for d in expected.detections])

    head = json.loads(stage_path(tmp_path / "input.json", "yolov8_postprocess").read_text())["data"][0]["output0"]
    assert head["shape"] == [6, 8400]
    assert len(base64.b64decode(head["content"]["b64"])) == 6 * 8400 * 4


def test_perf_analyzer_runs_and_names_every_stage(triton, model_repository, sample_images, tmp_path):
    assert PERF_ANALYZER.exists(), "make setup installs .venv/bin/perf_analyzer"
    inputs = tmp_path / "input.json"
    write_perf_data([sample_images["camera.png"]], inputs, model_repository)
    run = run_perf_analyzer("yolov8", triton.grpc_url, inputs, 1, tmp_path / "yolov8.csv", interval_ms=500)
    assert run.throughput > 0
    assert set(run.composing) == set(STAGES)
    for model in STAGES:
        stage_csv = (tmp_path / f"yolov8.{model}.csv").read_text().splitlines()
        assert stage_csv[0].startswith("Concurrency,inference_count") and len(stage_csv) == 2
        assert run.composing[model]["compute_infer"] > 0
    alone = run_perf_analyzer(
        "yolov8_infer", triton.grpc_url, stage_path(inputs, "yolov8_infer"), 1, tmp_path / "infer.csv", 500
    )
    assert alone.throughput > 0


def test_client_report_shows_every_stage(triton, sample_images):
    done = subprocess.run(
        [sys.executable, "-m", "client", "report", "--url", triton.grpc_url, "--images",
         str(sample_images["camera.png"]), "--concurrency", "2", "--repeat", "2"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.startswith("yolov8_")}
    for model in STAGES:
        requests, batches, *phases, total, _share = rows[model][1:]
        assert int(requests) == 2 and int(batches) >= 1, rows[model]
        assert float(phases[2]) > 0 and float(total) > 0, rows[model]  # compute_infer, total ms
    assert "client latency (concurrency 2): p50" in done.stdout
    in_stages = float(re.search(r"in the stages \(queue and compute, summed\) ([\d.]+) ms", done.stdout).group(1))
    assert in_stages == pytest.approx(sum(float(rows[m][-2]) for m in STAGES), abs=0.05)
    assert PROBE_NOTE not in done.stdout  # a driven run counts only its own requests
