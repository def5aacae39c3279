"""docker-compose.yml, checked statically (no Docker engine here); `docker compose config` where the plugin is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from fnmatch import fnmatch

import pytest
import yaml

from python_backends.paths import PROJECT_ROOT
from serving.triton import MALLOC_ENVIRONMENT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
MIN_RELEASE = (26, 6)  # NVIDIA's 2025-2026 Triton security fixes


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _default(value: str) -> str:
    """``${VAR:-default}`` → default, as compose interpolates with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, f"unparsed duration {duration!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def _release(image: str, suffix: str) -> tuple[int, int]:
    match = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d\d)\.(\d\d)" + re.escape(suffix), _default(image))
    assert match, f"{image} is not a pinned tritonserver:YY.MM{suffix} tag"
    return int(match.group(1)), int(match.group(2))


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _dockerfile_base_image() -> str:
    """The FROM image with the ARG defaults declared before it filled in."""
    instructions = _dockerfile_instructions()
    defaults = dict(
        a.split("=", 1) for kind, a in instructions[: [k for k, _ in instructions].index("FROM")] if kind == "ARG"
    )
    (base,) = [a for kind, a in instructions if kind == "FROM"]
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], base)


def test_triton_image_is_built_from_a_patched_release(compose):
    triton, perf = compose["services"]["triton"], compose["services"]["perf"]
    base = _release(_dockerfile_base_image(), "-py3")
    assert base >= MIN_RELEASE
    assert _release(perf["image"], "-py3-sdk") == base
    tag = "{:02d}.{:02d}".format(*base)
    assert _default(triton["build"]["args"]["TRITON_TAG"]) == tag
    assert _default(triton["image"]).endswith(f":{tag}")  # the built image is tagged with its release
    assert compose["services"]["setup"]["image"] == triton["image"]
    assert compose["services"]["setup"]["build"] == triton["build"] == {"context": ".", "args": triton["build"]["args"]}


def test_image_bakes_in_code_models_and_packages_and_runs_as_non_root():
    instructions = _dockerfile_instructions()
    copies = {tuple(a.split()) for kind, a in instructions if kind == "COPY"}
    assert {("python_backends", "/opt/yolov8/python_backends"), ("model_repository", "/models")} <= copies
    runs = " ".join(a for kind, a in instructions if kind == "RUN")
    assert "gpu_container_setup.sh --packages-only" in runs  # pip at build time, never at start
    assert "--packages-only" in (PROJECT_ROOT / "scripts" / "gpu_container_setup.sh").read_text()
    user = [a for kind, a in instructions if kind == "USER"][-1]
    uid = re.sub(r"\$\{SERVER_UID\}", re.search(r"^ARG SERVER_UID=(\d+)$", DOCKERFILE.read_text(), re.M).group(1), user)
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", uid), f"USER {user}: numeric and non-root, so runAsNonRoot can check it"


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_else():
    patterns = [p for p in (PROJECT_ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    assert patterns[0] == "*"  # .venv, .cache and benchmark results stay out of the context
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {a.split()[0] for kind, a in _dockerfile_instructions() if kind == "COPY"}
    assert copied == included


def test_the_image_takes_an_int8_model_and_compiles_openvino_models_into_tmp(compose):
    """prepare --int8 writes model_int8.xml/.bin beside the ONNX; the server's user can write only /tmp."""
    patterns = [p for p in (PROJECT_ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    excluding = [p for p in patterns[1:] if not p.startswith("!")]
    for name in ("model_int8.xml", "model_int8.bin"):
        assert not [p for p in excluding if fnmatch(f"model_repository/yolov8_infer/1/{name}", p)]
    environment = " ".join(a for kind, a in _dockerfile_instructions() if kind == "ENV")
    assert re.search(r"\bYOLOV8_OPENVINO_CACHE=/tmp/\S+", environment)
    assert compose["services"]["triton"]["tmpfs"] == ["/tmp"]


@pytest.mark.parametrize("service", ["setup", "triton"])
def test_gpu_is_reserved(compose, service):
    devices = compose["services"][service]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_shm_size_holds_a_full_batch(compose):
    size = compose["services"]["triton"]["shm_size"]
    number, unit = re.fullmatch(r"(\d+)([kmg])b?", size.lower()).groups()
    batch_bytes = 32 * 3 * 640 * 640 * 4  # max_batch_size 32 of FP32 640x640
    assert int(number) * {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit] >= 4 * batch_bytes


def test_triton_gets_the_allocator_settings_of_our_launcher(compose):
    environment = compose["services"]["triton"]["environment"]
    assert {key: environment.get(key) for key in MALLOC_ENVIRONMENT} == MALLOC_ENVIRONMENT
    assert (environment["MALLOC_MMAP_THRESHOLD_"], environment["MALLOC_TRIM_THRESHOLD_"]) == ("33554432", "268435456")


def test_triton_loads_the_gpu_config_variants(compose):
    command = compose["services"]["triton"]["command"]
    assert "--model-config-name=gpu" in command
    assert (PROJECT_ROOT / "model_repository" / "yolov8_infer" / "configs" / "gpu.pbtxt").is_file()


@pytest.mark.parametrize("service", ["setup", "triton"])
def test_containers_use_the_images_code_on_a_read_only_root(compose, service):
    service = compose["services"][service]
    assert service["read_only"] is True
    assert not [v for v in service["volumes"] if v.startswith("./")], "the image holds the code and models"
    assert "engines:/engines" in " ".join(service["volumes"])


def test_healthcheck_and_grace_period_outlast_the_drain(compose):
    triton = compose["services"]["triton"]
    assert any("/v2/health/ready" in part for part in triton["healthcheck"]["test"])
    exit_timeout = next(int(a.split("=")[1]) for a in triton["command"] if a.startswith("--exit-timeout-secs="))
    assert _seconds(triton["stop_grace_period"]) > exit_timeout


def test_ports_are_loopback_and_admin_apis_restricted(compose):
    triton = compose["services"]["triton"]
    assert triton["ports"] and all(p.startswith("127.0.0.1:") for p in triton["ports"])
    command = " ".join(triton["command"])
    assert "--model-control-mode=none" in command
    for flag in ("--http-restricted-api=", "--grpc-restricted-protocol="):
        (arg,) = [a for a in triton["command"] if a.startswith(flag)]
        apis = set(arg.split("=", 1)[1].split(":")[0].split(","))
        assert {"model-repository", "model-config", "shared-memory", "statistics", "trace", "logging"} <= apis


CLIENT_SHM_FLAG = "# - --allow-client-shm=true"  # commented out: client shared memory is off
CLIENT_SHM_RELEASE = (26, 4)  # Triton 2.68: the first release that refuses client shared memory without the flag


@pytest.mark.parametrize("manifest", [COMPOSE, PROJECT_ROOT / "deploy" / "kubernetes" / "base" / "deployment.yaml"])
def test_client_shared_memory_is_off_with_the_flag_that_turns_it_on_beside_the_command(compose, manifest):
    """The image's Triton needs --allow-client-shm=true for clients' shared memory: the manifests carry it as a
    comment right after the restricted lists (off: shared-memory stays an admin API)."""
    assert _release(_dockerfile_base_image(), "-py3") >= CLIENT_SHM_RELEASE
    lines = [line.strip() for line in manifest.read_text().splitlines()]
    (at,) = [i for i, line in enumerate(lines) if line == CLIENT_SHM_FLAG]
    (restricted,) = [i for i, line in enumerate(lines) if line.startswith("- --grpc-restricted-protocol=")]
    assert 0 < at - restricted <= 4
    assert not [line for line in lines if line.startswith("- --allow-client-shm")]
    assert not [a for a in compose["services"]["triton"]["command"] if "allow-client-shm" in a]


def test_setup_runs_once_before_triton_and_perf_is_a_bench_profile(compose):
    services = compose["services"]
    assert services["triton"]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert services["setup"]["entrypoint"] == ["bash", "/opt/yolov8/scripts/gpu_container_setup.sh"]
    assert (PROJECT_ROOT / "scripts" / "gpu_container_setup.sh").exists()
    assert services["perf"]["profiles"] == ["bench"]
    assert "perf_analyzer" in " ".join(services["perf"]["command"])


def _compose_command() -> list[str] | None:
    """``docker compose`` (the plugin), else the standalone ``docker-compose``, else None."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_config_accepts_it():
    compose = _compose_command()
    if compose is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed here")
    env = {**os.environ, "TRITON_ADMIN_KEY": "test-key"}
    reply = subprocess.run(
        [*compose, "-f", str(COMPOSE), "--profile", "bench", "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert reply.returncode == 0, reply.stderr
    assert "nvcr.io/nvidia/tritonserver:26.06-py3-sdk" in reply.stdout  # tag interpolated, perf profile included
