"""deploy/kubernetes/components/opentelemetry: Triton's traces as OpenTelemetry spans, from a ConfigMap.

The component is added to each overlay and rendered with `kubectl kustomize`. Then a real tritonserver
starts with the rendered container's ``--trace-config`` flags, their ``$(NAME)`` variables expanded as
Kubernetes expands them (the endpoint: an OTLP/HTTP receiver in this test; the rate: 2), and the spans it
sends for a known number of requests are checked: one trace per sampled request, each the gRPC request,
the ensemble, its three stages and each stage's compute.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from own_server import ensemble_outcome, options, started
from test_kubernetes import CRD_KINDS, KUBERNETES, OVERLAYS, SCHEMA_VERSION, find, kubectl, triton_container

from python_backends.paths import DEFAULT_REPOSITORY, SAMPLES
from serving.processes import free_port

COMPONENT = KUBERNETES / "components" / "opentelemetry"
STAGES = ("yolov8_preprocess", "yolov8_infer", "yolov8_postprocess")
REQUESTS = 6
RATE = 2  # the test's trace-rate: one request in two


def render_with_component(overlay: str, folder: Path) -> list[dict]:
    """The objects of ``overlays/<overlay>`` with the component added, as a user's kustomization adds it."""
    up = Path(os.path.relpath(KUBERNETES, folder))
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {up / 'overlays' / overlay}\ncomponents:\n  - {up / 'components' / 'opentelemetry'}\n"
    )
    reply = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert reply.returncode == 0, reply.stderr
    assert reply.stderr == "", f"kustomize warns: {reply.stderr}"
    return [doc for doc in yaml.safe_load_all(reply.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def traced(request, tmp_path_factory) -> list[dict]:
    return render_with_component(request.param, tmp_path_factory.mktemp(f"otel_{request.param}"))


def expanded(arg: str, env: dict[str, str]) -> str:
    """``arg`` with each ``$(NAME)`` replaced by env[NAME], as the kubelet expands a container's args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


class OtlpReceiver:
    """An OTLP/HTTP endpoint on loopback that keeps every span it is sent (Triton sends JSON)."""

    def __init__(self):
        self.spans: list[dict] = []
        self.resources: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for resource_spans in body["resourceSpans"]:
                    attributes = resource_spans["resource"]["attributes"]
                    receiver.resources.append({a["key"]: a["value"]["stringValue"] for a in attributes})
                    for scope in resource_spans["scopeSpans"]:
                        receiver.spans += scope["spans"]
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def traces(self) -> dict[str, list[dict]]:
        grouped = defaultdict(list)
        for span in self.spans:
            grouped[span["traceId"]].append(span)
        return dict(grouped)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_component_passes_the_schemas_and_reads_the_config_map(traced):
    for obj in traced:
        try:
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] in CRD_KINDS
    settings = find(traced, "ConfigMap", "yolov8-triton-tracing")["data"]
    assert settings["otlp-endpoint"].startswith("http") and int(settings["trace-rate"]) > 0
    container = triton_container(traced)
    from_map = {
        e["name"]: e["valueFrom"]["configMapKeyRef"]["key"]
        for e in container["env"]
        if "configMapKeyRef" in e.get("valueFrom", {})
    }
    assert from_map == {"OTLP_ENDPOINT": "otlp-endpoint", "TRACE_RATE": "trace-rate"}
    trace_args = [a for a in container["args"] if a.startswith("--trace-config=")]
    assert "--trace-config=mode=opentelemetry" in trace_args
    assert "--trace-config=opentelemetry,url=$(OTLP_ENDPOINT)" in trace_args
    assert "--trace-config=rate=$(TRACE_RATE)" in trace_args
    defined = {e["name"] for e in container["env"]}
    assert {name for a in trace_args for name in re.findall(r"\$\((\w+)\)", a)} <= defined


def test_triton_started_with_the_rendered_flags_sends_each_sampled_request_as_spans(tmp_path):
    (tmp_path / "render").mkdir()
    container = triton_container(render_with_component("cpu", tmp_path / "render"))
    receiver = OtlpReceiver()
    env = {"OTLP_ENDPOINT": receiver.url, "TRACE_RATE": str(RATE), "POD_NAME": "yolov8-triton-0"}
    flags = [expanded(a, env) for a in container["args"] if a.startswith("--trace-config=")]
    image = sorted(SAMPLES.glob("*.jpg"))[0].read_bytes()
    try:
        with started(options(DEFAULT_REPOSITORY, extra_args=flags), tmp_path / "tritonserver.log") as server:
            url = f"127.0.0.1:{server.options.grpc_port}"
            assert all(ensemble_outcome(url, image) > 0 for _ in range(REQUESTS))
            expected_spans = REQUESTS // RATE * (2 + 2 * len(STAGES))
            deadline = time.monotonic() + 30  # Triton batches spans and sends them every few seconds
            while len(receiver.spans) < expected_spans and time.monotonic() < deadline:
                time.sleep(0.2)
        traces = receiver.traces()
    finally:
        receiver.close()
    assert len(traces) == REQUESTS // RATE
    assert {"service.name": "yolov8-triton", "k8s.pod.name": "yolov8-triton-0"}.items() <= receiver.resources[0].items()
    for spans in traces.values():
        by_id = {s["spanId"]: s for s in spans}
        (root,) = [s for s in spans if "parentSpanId" not in s]
        assert root["name"] == "InferRequest"
        assert {"GRPC_WAITREAD_END", "GRPC_SEND_START"} <= {e["name"] for e in root["events"]}
        (ensemble,) = [s for s in spans if s["name"] == "yolov8"]
        assert ensemble["parentSpanId"] == root["spanId"]
        stages = [s for s in spans if s.get("parentSpanId") == ensemble["spanId"]]
        assert sorted(s["name"] for s in stages) == sorted(STAGES)
        for stage in stages:
            (compute,) = [s for s in spans if s.get("parentSpanId") == stage["spanId"]]
            events = [e["name"] for e in compute["events"]]
            assert events == ["COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "COMPUTE_END"]
            assert int(ensemble["startTimeUnixNano"]) <= int(stage["startTimeUnixNano"])
            assert int(stage["endTimeUnixNano"]) <= int(by_id[stage["parentSpanId"]]["endTimeUnixNano"])
        assert len(spans) == 2 + 2 * len(STAGES)
