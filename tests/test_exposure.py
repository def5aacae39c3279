"""Exposure: admin APIs behind a key, metrics off, gRPC over TLS and mutual TLS (certificates from openssl).

The servers serve tests/models' YOLO11n (conftest's yolo11n_repository; classes red, green, blue): the subject is
what the server exposes, not the model.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from own_server import image_input, options, started
from tritonclient.utils import InferenceServerException

from client.errors import NO_CLIENT_CERTIFICATE
from python_backends.defaults import ADMIN_KEY_HEADER, GRPC_ADMIN_KEY_HEADER
from python_backends.paths import PROJECT_ROOT
from serving.processes import listening_addresses
from serving.server import TritonServer

KEY = "test-admin-key"
UNAVAILABLE = "StatusCode.UNAVAILABLE"
RESTRICTED = "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A throw-away CA, and a server (127.0.0.1) and a client certificate that it signed."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is missing: run `make setup`")
    folder = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)  # fmt: skip
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        extra = ["-extfile", "server.ext"] if name == "server" else []
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "1", "-out", f"{name}.crt", *extra, cwd=folder)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def locked_server(yolo11n_repository, certificates, tmp_path_factory):
    """Admin key, no metrics, gRPC over TLS."""
    settings = options(
        yolo11n_repository,
        admin_key=KEY,
        metrics=False,
        grpc_server_cert=certificates / "server.crt",
        grpc_server_key=certificates / "server.key",
    )
    with started(settings, tmp_path_factory.mktemp("locked") / "tritonserver.log") as server:
        yield server


@pytest.fixture(scope="module")
def mutual_tls_server(yolo11n_repository, certificates, tmp_path_factory):
    """gRPC over TLS that requires a client certificate signed by the test CA."""
    settings = options(
        yolo11n_repository,
        grpc_server_cert=certificates / "server.crt",
        grpc_server_key=certificates / "server.key",
        grpc_root_cert=certificates / "ca.crt",
    )
    with started(settings, tmp_path_factory.mktemp("mutual") / "tritonserver.log") as server:
        yield server


def tls_client(server: TritonServer, certificates: Path, client_cert: bool = False):
    extra = {}
    if client_cert:
        extra = {"private_key": str(certificates / "client.key"), "certificate_chain": str(certificates / "client.crt")}
    return grpcclient.InferenceServerClient(
        server.grpc_url, ssl=True, root_certificates=str(certificates / "ca.crt"), **extra
    )


def http_reply(url: str, headers: dict[str, str] | None = None, method: str = "GET", body: bytes = b"{}"):
    """(status, body text) of one HTTP call; POST sends ``body``."""
    request = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def http_status(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> int:
    return http_reply(url, headers, method)[0]


def assert_handshake_refused(error: InferenceServerException) -> None:
    """The server closed the connection in the TLS handshake: gRPC's UNAVAILABLE, before any request."""
    assert error.status() == UNAVAILABLE, error
    assert re.fullmatch(
        r"failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127\.0\.0\.1:\d+: Socket closed",
        error.message(),
    ), error


def test_admin_apis_need_the_key(locked_server, certificates):
    client = tls_client(locked_server, certificates)
    try:
        for call in (
            client.get_model_repository_index,
            client.get_system_shared_memory_status,
            client.get_log_settings,
        ):
            with pytest.raises(InferenceServerException) as refused:
                call()
            assert (refused.value.status(), refused.value.message()) == (UNAVAILABLE, RESTRICTED), call
            call(headers={GRPC_ADMIN_KEY_HEADER: KEY})
        with pytest.raises(InferenceServerException) as wrong_key:
            client.get_trace_settings(headers={GRPC_ADMIN_KEY_HEADER: "wrong"})
        assert (wrong_key.value.status(), wrong_key.value.message()) == (UNAVAILABLE, RESTRICTED)
        # what clients need stays open: config (class names), statistics, metadata, health
        assert client.get_model_config("yolov8_postprocess", as_json=True)["config"]["parameters"]["class_names"]
        assert client.get_inference_statistics("yolov8", as_json=True)["model_stats"]
        assert client.is_server_ready()
    finally:
        client.close()
    index = f"{locked_server.http_url}/v2/repository/index"
    assert http_status(index, method="POST") == 403  # Forbidden
    assert http_status(index, {ADMIN_KEY_HEADER: KEY}, method="POST") == 200
    assert http_status(f"{locked_server.http_url}/v2/models/yolov8_postprocess/config") == 200


def test_metrics_can_be_turned_off(locked_server):
    assert not listening_addresses(locked_server.options.metrics_port)


def test_grpc_over_tls(locked_server, certificates, sample_images):
    payload = sample_images["bus.jpg"].read_bytes()
    client = tls_client(locked_server, certificates)
    try:
        assert client.infer("yolov8", [image_input(payload)]).as_numpy("num_dets")[0, 0] >= 1
    finally:
        client.close()
    plain = grpcclient.InferenceServerClient(locked_server.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as refused:
            plain.infer("yolov8", [image_input(payload)], client_timeout=10)
        assert_handshake_refused(refused.value)
    finally:
        plain.close()


def test_mutual_tls_needs_a_client_certificate(mutual_tls_server, certificates, sample_images):
    payload = sample_images["camera.png"].read_bytes()
    anonymous = tls_client(mutual_tls_server, certificates)
    known = tls_client(mutual_tls_server, certificates, client_cert=True)
    try:
        with pytest.raises(InferenceServerException) as refused:
            anonymous.infer("yolov8", [image_input(payload)], client_timeout=10)
        assert_handshake_refused(refused.value)
        assert known.infer("yolov8", [image_input(payload)]).as_numpy("num_dets")[0, 0] >= 1
    finally:
        anonymous.close()
        known.close()


def test_project_client_over_tls(locked_server, certificates, sample_images):
    """YoloTritonClient and the CLI speak TLS with the CA given; class names still come through."""
    from client.api import YoloTritonClient

    with YoloTritonClient(locked_server.grpc_url, root_certificates=str(certificates / "ca.crt")) as client:
        result = client.detect(sample_images["bus.jpg"])
    assert result.detections and result.detections[0].class_name == "red"  # YOLO11n's first class
    done = subprocess.run(
        [sys.executable, "-m", "client", "detect", "--url", locked_server.grpc_url, "--json", "--quiet",
         "--tls-root-cert", str(certificates / "ca.crt"), str(sample_images["camera.png"])],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["detections"]


def test_project_client_over_mutual_tls(mutual_tls_server, certificates, sample_images):
    """YoloTritonClient and the CLI present the client certificate; without it the server refuses them."""
    from client.api import DetectionError, YoloTritonClient

    ca, key, cert = (str(certificates / name) for name in ("ca.crt", "client.key", "client.crt"))
    with YoloTritonClient(
        mutual_tls_server.grpc_url, root_certificates=ca, private_key=key, certificate_chain=cert
    ) as yolo:
        result = yolo.detect(sample_images["zidane.jpg"])
    assert [d.class_name for d in result.detections] == ["red"] * 3  # Ultralytics found 3 of class 0 (red)
    anonymous = YoloTritonClient(mutual_tls_server.grpc_url, timeout_s=10, retries=0, root_certificates=ca)
    with anonymous, pytest.raises(DetectionError, match="wants a client certificate"):
        anonymous.detect(sample_images["zidane.jpg"])
    command = [sys.executable, "-m", "client", "detect", "--url", mutual_tls_server.grpc_url, "--json", "--quiet",
               "--tls-root-cert", ca, str(sample_images["zidane.jpg"])]  # fmt: skip
    done = subprocess.run([*command, "--tls-cert", cert, "--tls-key", key], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [d["class_name"] for d in json.loads(done.stdout)[0]["detections"]] == ["red"] * 3
    refused = subprocess.run([*command, "--timeout", "10"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert refused.returncode == 1 and NO_CLIENT_CERTIFICATE in refused.stderr, refused.stderr


@pytest.mark.parametrize("action", ["load", "unload"])
def test_http_model_load_and_unload_are_refused_even_with_the_key(locked_server, action):
    url = f"{locked_server.http_url}/v2/repository/models/yolov8/{action}"
    status, body = http_reply(url, method="POST")
    assert status == 403 and "restricted" in body, (status, body)
    status, body = http_reply(url, {ADMIN_KEY_HEADER: KEY}, method="POST")
    assert status == 503 and "explicit model load / unload is not allowed" in body, (status, body)  # UNAVAILABLE
    assert http_status(f"{locked_server.http_url}/v2/models/yolov8/ready") == 200


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v2/systemsharedmemory/status"),
        ("GET", "/v2/cudasharedmemory/status"),
        ("POST", "/v2/systemsharedmemory/unregister"),
        ("GET", "/v2/trace/setting"),
        ("POST", "/v2/trace/setting"),
        ("GET", "/v2/models/yolov8/trace/setting"),
        ("GET", "/v2/logging"),
        ("POST", "/v2/logging"),
    ],
)
def test_http_shared_memory_trace_and_logging_need_the_key(locked_server, method, path):
    url = locked_server.http_url + path
    for headers in ({}, {ADMIN_KEY_HEADER: "wrong"}):
        status, body = http_reply(url, headers, method)
        assert status == 403 and "restricted" in body, (headers, status, body)
    status, body = http_reply(url, {ADMIN_KEY_HEADER: KEY}, method)
    assert status == 200, body


def test_http_shared_memory_registration_needs_the_key(locked_server):
    """A real POSIX shared-memory region: refused without the key, registered and unregistered with it."""
    from multiprocessing import shared_memory

    region = shared_memory.SharedMemory(create=True, size=4096)
    base = f"{locked_server.http_url}/v2/systemsharedmemory"
    register = json.dumps({"key": f"/{region.name}", "offset": 0, "byte_size": 4096}).encode()
    admin = {ADMIN_KEY_HEADER: KEY}
    try:
        status, body = http_reply(f"{base}/region/probe/register", method="POST", body=register)
        assert status == 403 and "restricted" in body, (status, body)
        assert json.loads(http_reply(f"{base}/status", admin)[1]) == []
        assert http_reply(f"{base}/region/probe/register", admin, "POST", register)[0] == 200
        assert [r["name"] for r in json.loads(http_reply(f"{base}/status", admin)[1])] == ["probe"]
        assert http_reply(f"{base}/region/probe/unregister", method="POST")[0] == 403
        assert http_reply(f"{base}/region/probe/unregister", admin, "POST")[0] == 200
        assert json.loads(http_reply(f"{base}/status", admin)[1]) == []
    finally:
        http_reply(f"{base}/region/probe/unregister", admin, "POST")
        region.close()
        region.unlink()
