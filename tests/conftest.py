"""Shared fixtures: the default model, sample photos, and a real tritonserver on free loopback ports."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from sample_images import PHOTOS, PROJECT_ROOT, SAMPLES, write_variants  # noqa: E402

DEFAULT_ONNX = PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"
REFERENCE = TESTS / "reference" / "ultralytics_predict.json"


# Seconds of the longest test files under `make test` (two workers on 2 vCPUs); the others take under 17 s.
LONGEST_FILES = {
    "test_docs_commands.py": 110,
    "test_int8.py": 83,
    "test_cluster.py": 63,
    "test_resilience.py": 56,
    "test_int8_heads.py": 52,
    "test_openvino_runtime.py": 43,
    "test_val_pose.py": 36,
    "test_val_seg.py": 30,
    "test_soak.py": 30,
    "test_shared_memory.py": 30,
    "test_kubernetes.py": 28,
    "test_tasks.py": 45,
    "test_opentelemetry.py": 25,
    "test_bad_input.py": 26,
    "test_model_families.py": 25,
    "test_queue_policy.py": 20,
    "test_supervisor.py": 19,
}


@pytest.hookimpl(trylast=True)  # after pytest's tmp_path plugin has set up the session's folder
def pytest_configure(config) -> None:
    """The process that ends the session (not a pytest-xdist worker) checks that the tests left nothing behind."""
    if not hasattr(config, "workerinput"):
        from leftovers import LeftoverCheck

        config.pluginmanager.register(LeftoverCheck(config), "leftover-check")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadfile``, the longest files go out first: pytest-xdist would hand out files with the most
    tests first, which leaves a long file of few tests (the soak, the probe restart) alone at the end."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        def _assign_work_unit(self, node) -> None:
            ordered = sorted(self.workqueue.items(), key=lambda unit: -LONGEST_FILES.get(Path(unit[0]).name, 0))
            self.workqueue.clear()
            self.workqueue.update(ordered)
            super()._assign_work_unit(node)

    return LongestFirst(config, log)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` first")
    return path


@pytest.fixture(scope="session", autouse=True)
def openvino_cache(tmp_path_factory) -> Path:
    """One OpenVINO cache for every compile of the session, servers' included (they inherit the variable).

    OpenVINO keys a compiled model on its file's path, and the tests serve models from temporary
    folders: in the project's .cache/openvino their blobs (45 MB each) would pile up, never read again.
    """
    from python_backends.infer.openvino_runtime import CACHE_DIR_ENV

    path = tmp_path_factory.mktemp("openvino")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, str(path))
        yield path


@pytest.fixture(scope="session")
def default_onnx() -> Path:
    return _require(DEFAULT_ONNX)


@pytest.fixture(scope="session")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory) -> dict[str, Path]:
    """Name → path of every real photo and format variant that the reference covers."""
    photos = {name: _require(SAMPLES / name) for name in PHOTOS}
    variants = write_variants(SAMPLES, tmp_path_factory.mktemp("variants"))
    return photos | {p.name: p for p in variants}


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory, default_onnx) -> Path:
    """A repository prepared from the default model, apart from the user's own model_repository/. Its auto runs
    OpenVINO on CPU, as the committed configs say: what ``make setup`` measured on this machine (written into the
    template) does not decide which runtime the session's server runs."""
    from prepare.cpu_runtime import write_cpu_runtime
    from prepare.prepare_model import prepare

    repository = tmp_path_factory.mktemp("model_repository")
    prepare(default_onnx, repository, template=PROJECT_ROOT / "model_repository")
    write_cpu_runtime(repository, "openvino")
    return repository


@pytest.fixture(scope="session")
def family_repository(tmp_path_factory, default_onnx):
    """name → a repository prepared from tests/models' model ``name`` (see tests/test_model_families.py), each
    made once per session."""
    from models.materialize import write_model

    from prepare.prepare_model import prepare

    @functools.cache
    def repository(name: str) -> Path:
        folder = tmp_path_factory.mktemp(name)
        model = write_model(name, folder, {"default": default_onnx})
        prepare(model, folder / "repository", template=PROJECT_ROOT / "model_repository")
        return folder / "repository"

    return repository


@pytest.fixture(scope="session")
def yolo11n_repository(family_repository) -> Path:
    """tests/models' YOLO11n (3 classes, 320x416, seeded random weights), prepared: a real export that runs about
    ten times faster than the default model, for the tests whose subject is not the model (routing, config
    variants)."""
    return family_repository("yolo11n")


@pytest.fixture(scope="session")
def triton(model_repository, tmp_path_factory):
    """A real tritonserver serving the ensemble on free loopback ports, with a trace file as python -m serving's
    (tracing off: the docs' ``yolo-triton trace`` turns it on)."""
    from own_server import options, started

    folder = tmp_path_factory.mktemp("triton")
    with started(options(model_repository, trace_file=folder / "trace.json"), folder / "tritonserver.log") as server:
        yield server


@pytest.fixture
def grpc_client(triton):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton.grpc_url)
    yield client
    client.close()
