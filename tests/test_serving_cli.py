"""``python -m serving``'s options: loopback by default, a loud warning otherwise, admin APIs behind a key."""

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from python_backends.paths import PROJECT_ROOT
from serving.__main__ import is_loopback, parse_args, server_options, warn_if_exposed
from serving.processes import free_port
from serving.triton import server_command, server_environment


def test_defaults_are_loopback_with_a_fresh_admin_key(tmp_path, monkeypatch):
    monkeypatch.setattr("serving.__main__.ADMIN_KEY_FILE", tmp_path / "admin_key")
    first, second = server_options(parse_args([])), server_options(parse_args([]))
    assert first.host == "127.0.0.1" and first.metrics
    assert first.admin_key and first.admin_key != second.admin_key
    key_file = tmp_path / "admin_key"
    assert key_file.read_text().strip() == second.admin_key and key_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("key", ["", "  "])
def test_an_empty_admin_key_is_refused(key, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(["--admin-key", key])
    assert exited.value.code == 2
    assert "--admin-key: must not be empty" in capsys.readouterr().err


def test_command_restricts_only_the_admin_apis(tmp_path):
    options = server_options(parse_args(["--admin-key", "K", "--no-metrics"]))
    command = server_command(options, tmp_path)
    restricted = "model-repository,shared-memory,trace,logging:admin-key=K"
    assert f"--grpc-restricted-protocol={restricted}" in command
    assert f"--http-restricted-api={restricted}" in command
    assert "--model-control-mode=none" in command and "--allow-metrics=false" in command
    assert not [arg for arg in command if arg.startswith("--metrics-port")]


def test_allow_client_shm_takes_shared_memory_out_of_the_admin_apis_on_loopback_only(tmp_path, capsys):
    options = server_options(parse_args(["--admin-key", "K", "--allow-client-shm"]))
    command = server_command(options, tmp_path)
    restricted = "model-repository,trace,logging:admin-key=K"  # Triton 2.51 has no --allow-client-shm flag
    assert f"--grpc-restricted-protocol={restricted}" in command and f"--http-restricted-api={restricted}" in command
    assert not [arg for arg in command if arg.startswith("--allow-client-shm")]
    with pytest.raises(SystemExit) as exited:
        parse_args(["--allow-client-shm", "--host", "0.0.0.0"])
    assert exited.value.code == 2
    assert "--allow-client-shm needs a loopback --host" in capsys.readouterr().err


def test_the_trace_file_goes_beside_the_log(tmp_path):
    """Tracing starts off; its file is named at start (Triton 2.51's trace API refuses a new one)."""
    beside = server_options(parse_args(["--admin-key", "K", "--log-file", str(tmp_path / "tritonserver.log")]))
    assert beside.trace_file == tmp_path / "tritonserver.trace.json"
    assert f"--trace-config=triton,file={tmp_path / 'tritonserver.trace.json'}" in server_command(beside, tmp_path)
    alone = server_options(parse_args(["--admin-key", "K", "--grpc-port", "9101"]))
    assert alone.trace_file == PROJECT_ROOT / ".cache" / "traces" / "trace-9101.json"
    named = server_options(parse_args(["--admin-key", "K", "--trace-file", "t/x.json"]))
    assert f"--trace-config=triton,file={Path('t/x.json').resolve()}" in server_command(named, tmp_path)


def test_tls_flags(tmp_path):
    base = ["--grpc-use-ssl", "--grpc-server-cert", "s.crt", "--grpc-server-key", "s.key"]
    assert "--grpc-use-ssl=true" in server_command(server_options(parse_args(base)), tmp_path)
    mutual = server_command(server_options(parse_args([*base, "--grpc-root-cert", "ca.crt"])), tmp_path)
    assert "--grpc-use-ssl-mutual=true" in mutual and "--grpc-root-cert=ca.crt" in mutual
    with pytest.raises(SystemExit):
        parse_args(["--grpc-use-ssl"])  # no certificate
    with pytest.raises(SystemExit):
        parse_args(["--grpc-server-cert", "s.crt"])  # a certificate without --grpc-use-ssl


def test_binding_another_address_warns_loudly(caplog):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    with caplog.at_level(logging.WARNING, logger="supervisor"):
        warn_if_exposed("127.0.0.1")
        assert not caplog.records
        warn_if_exposed("0.0.0.0")
    assert "binding 0.0.0.0" in caplog.text and "unfixed CVEs" in caplog.text


def test_stubs_get_opencv_pixel_limit():
    assert server_environment({})["OPENCV_IO_MAX_IMAGE_PIXELS"] == "40000000"
    assert server_environment({"OPENCV_IO_MAX_IMAGE_PIXELS": "100"})["OPENCV_IO_MAX_IMAGE_PIXELS"] == "100"


def test_stubs_get_the_allocator_settings():
    env = server_environment({})
    malloc = {key: value for key, value in env.items() if key.startswith("MALLOC_")}
    assert malloc == {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "268435456"}  # 32, 256 MiB
    assert server_environment({"MALLOC_TRIM_THRESHOLD_": "0"})["MALLOC_TRIM_THRESHOLD_"] == "0"  # the user's wins


@pytest.mark.parametrize(
    ("tensorrt_missing", "expected"), [(None, ["--model-config-name=gpu"]), ("TensorRT is not installed", [])]
)
def test_model_config_name_follows_tensorrt_unless_given(tmp_path, monkeypatch, tensorrt_missing, expected):
    """Where TensorRT runs (no reason it can't), the default is the gpu config; elsewhere config.pbtxt."""
    monkeypatch.setattr("serving.__main__.ADMIN_KEY_FILE", tmp_path / "admin_key")
    monkeypatch.setattr("serving.triton.tensorrt_unavailable_reason", lambda: tensorrt_missing)
    default = server_command(server_options(parse_args([])), tmp_path)
    assert [arg for arg in default if arg.startswith("--model-config-name")] == expected
    given = server_command(server_options(parse_args(["--model-config-name", "gpu"])), tmp_path)
    assert "--model-config-name=gpu" in given
    plain = server_command(server_options(parse_args(["--model-config-name", ""])), tmp_path)
    assert not [arg for arg in plain if arg.startswith("--model-config-name")]


def test_a_taken_port_stops_python_m_serving_before_it_starts_tritonserver(tmp_path):
    """Another process on the HTTP port: the supervisor names the port and the process, and exits with 1 without
    starting a tritonserver (none would answer health checks for it)."""
    with socket.create_server(("127.0.0.1", free_port())) as other:
        port = other.getsockname()[1]
        command = [sys.executable, "-m", "serving", "--repository", str(tmp_path), "--admin-key", "K"]
        command += ["--http-port", str(port), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
        command += ["--log-file", str(tmp_path / "tritonserver.log")]
        result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"giving up: port {port} (HTTP) is already in use on 127.0.0.1 by pid {os.getpid()} (" in result.stderr
    assert "tritonserver ready" not in result.stderr and not (tmp_path / "tritonserver.log").exists()
