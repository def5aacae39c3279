"""``yolo-triton trace`` against a real server (YOLO11n, admin key, a trace file): the traces it reads, the figures
it writes, and tracing off again afterwards, interrupted or not (no timings asserted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from own_server import image_input, options, started

from client.stage_stats import PHASES, STAGES, counted_deltas, snapshot
from client.trace import ENSEMBLE, Tracing, settings, trace, trace_parts
from client.trace_stats import BETWEEN, FRONT_END, QUANTILES
from python_backends.defaults import GRPC_ADMIN_KEY_HEADER
from python_backends.paths import PROJECT_ROOT

KEY = "trace-admin-key"
ADMIN = {GRPC_ADMIN_KEY_HEADER: KEY}
YOLO_TRITON = Path(sys.executable).parent / "yolo-triton"  # the console script
# this checkout's modules for the console script, also where the venv's editable install names another checkout
CHECKOUT_FIRST = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}


@pytest.fixture(scope="module")
def traced_server(yolo11n_repository, tmp_path_factory):
    folder = tmp_path_factory.mktemp("traced")
    settings_ = options(yolo11n_repository, admin_key=KEY, trace_file=folder / "traces" / "trace.json")
    with started(settings_, folder / "tritonserver.log") as server:
        yield server


@pytest.fixture
def admin_client(traced_server):
    client = grpcclient.InferenceServerClient(traced_server.grpc_url)
    yield client
    client.close()


def untraced(client: grpcclient.InferenceServerClient) -> dict:
    """The ensemble's trace settings, checked to be the server's own (as it started: tracing off)."""
    found = settings(client, ADMIN)
    assert found == settings(client, ADMIN, model="") | {"trace_level": ["OFF"]}, found
    return found


def test_traces_of_every_request_with_its_stages_agree_with_the_statistics(traced_server, admin_client, sample_images):
    before = untraced(admin_client)
    counters = snapshot(admin_client, STAGES)
    images = [sample_images["camera.png"], sample_images["zidane.jpg"]]
    traces = trace(traced_server.grpc_url, images, requests=6, concurrency=2, admin_key=KEY)
    assert len(traces) == 6
    assert all(list(t.stages) == list(STAGES) for t in traces)
    assert settings(admin_client, ADMIN) == before
    assert not trace_parts(Path(before["trace_file"]))  # the parts read are removed

    delta = counted_deltas(admin_client, counters, 6)
    for stage in STAGES:
        assert delta[stage].success == 6
        traced = sum(t.spans_ms()[stage, "total"] for t in traces) / len(traces)
        counted = sum(delta[stage].mean_ms(phase) for phase in PHASES)
        assert traced == pytest.approx(counted, rel=0.10), stage


def test_json_has_the_contract_keys_and_the_png_is_drawn(traced_server, admin_client, sample_images, tmp_path):
    out, png = tmp_path / "trace.json", tmp_path / "waterfall.png"
    done = subprocess.run(
        [str(YOLO_TRITON), "trace", "--url", traced_server.grpc_url, "--images", str(sample_images["bus.jpg"]),
         "--requests", "4", "--admin-key", KEY, "--json", str(out), "--png", str(png)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, env=CHECKOUT_FIRST,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "slowest 1 % (1 of 4 requests" in done.stdout
    result = json.loads(out.read_text())
    assert set(result) == {"requests", "stages", "fixed_cost_ms"} and result["requests"] == 4
    assert set(result["fixed_cost_ms"]) == {"p50", "p99"}
    parts = {name: set(figures) for name, figures in result["stages"].items()}
    every = {*PHASES, "total"}
    assert parts == dict.fromkeys(STAGES, every) | {FRONT_END: {"queue", "compute_output", "total"}, BETWEEN: {"total"}}
    for name, figures in result["stages"].items():
        for part, quantiles in figures.items():
            assert set(quantiles) == set(QUANTILES), (name, part)
            assert 0 <= quantiles["p50"] <= quantiles["p90"] <= quantiles["p99"] <= quantiles["max"], (name, part)
    assert png.read_bytes().startswith(b"\x89PNG")
    untraced(admin_client)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_tracing_is_off_after_an_interrupted_run(traced_server, admin_client, sample_images, sig):
    before = untraced(admin_client)
    run = subprocess.Popen(
        [sys.executable, "-m", "client", "trace", "--url", traced_server.grpc_url, "--images",
         str(sample_images["camera.png"]), "--requests", "100000", "--admin-key", KEY],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not 0 < int(settings(admin_client, ADMIN)["trace_count"]) <= 100000 - 3:  # on, tracing requests
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        run.send_signal(sig)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130 and "interrupted: tracing is off" in stderr, stderr
    assert settings(admin_client, ADMIN) == before
    assert not trace_parts(Path(before["trace_file"]))


def test_a_wrong_admin_key_changes_nothing(traced_server, admin_client):
    before = untraced(admin_client)
    done = subprocess.run(
        [sys.executable, "-m", "client", "trace", "--url", traced_server.grpc_url, "--window", "1",
         "--admin-key", "wrong"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and f"expecting header '{GRPC_ADMIN_KEY_HEADER}'" in done.stderr, done.stderr
    assert settings(admin_client, ADMIN) == before


def test_live_traffic_is_sampled_for_the_window(traced_server, admin_client, sample_images):
    """Without images the command traces what others send, until it has ``--requests`` traces."""
    untraced(admin_client)
    run = subprocess.Popen(
        [sys.executable, "-m", "client", "trace", "--url", traced_server.grpc_url, "--requests", "3",
         "--window", "60", "--admin-key", KEY],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while settings(admin_client, ADMIN)["trace_level"] == ["OFF"]:
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        with grpcclient.InferenceServerClient(traced_server.grpc_url) as sender:
            for _ in range(4):
                sender.infer(ENSEMBLE, [image_input(sample_images["camera.png"].read_bytes())])
        stdout, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    assert "3 traced requests" in stdout
    untraced(admin_client)


def test_a_request_that_comes_as_the_run_ends_is_not_traced_behind_its_back(traced_server, admin_client, sample_images):
    """The run reads how many traces it took only once tracing is off: a request that comes as it reads them (here
    sent from inside the read) is not sampled, so the run waits for every trace written and leaves no part."""
    image = image_input(sample_images["camera.png"].read_bytes())

    class RequestAsTheCountIsRead(Tracing):
        def remaining(self) -> int:
            left = super().remaining()
            admin_client.infer(ENSEMBLE, [image])
            return left

    before = untraced(admin_client)
    with RequestAsTheCountIsRead(admin_client, ADMIN, 50) as tracing:
        tracing.on()
        for _ in range(3):
            admin_client.infer(ENSEMBLE, [image])
    traces = tracing.collect()
    assert tracing.taken == 3 and len(traces) == 3
    time.sleep(0.5)  # a trace of the late request would be written when it is released
    assert not trace_parts(Path(before["trace_file"]))
    untraced(admin_client)
