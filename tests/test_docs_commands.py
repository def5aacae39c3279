"""The docs' commands run as written: every shell line and Python snippet of the README, docs/, the benchmarks'
and the Kubernetes README, against a real server, from a folder outside the checkout, except the commands
that ``EXCEPTED`` lists with the reason.

What the docs take for granted is made real in that folder: ``.venv``, ``.cache`` and ``tests`` are the
checkout's (links), and the files a command names exist, small and real: ``yolov8n.onnx`` a small detector of
dynamic height and width, as a ``dynamic=True`` export is (tests/tiny_models.py), ``model.onnx`` tests/models'
YOLO11n export, ``yolov8s-pose.onnx``, ``yolov8s-obb.onnx`` and ``yolov8s-seg.onnx`` its fall_pose, fall_obb
and fall_seg, ``photos/``,
``a.jpg`` and ``b.png`` the sample photos, ``clip.mp4`` a short video, ``DATA.yaml`` the labelled test set,
``datasets/fall`` and ``fall.v2i.yolov8`` the same set in Ultralytics' and Roboflow's layouts.

Two things differ from what is written, both to leave the checkout and its ports alone:
- the server is the test's own: ``127.0.0.1:8001`` and the docs' example hosts become its address, and a
  client command without ``--url`` gets it;
- ``prepare`` installs into a copy of the model repository (``--repository``), not the checkout's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from dataset_layouts import write_layouts
from sample_images import SAMPLES
from tiny_models import tiny_detector
from val_set import build_val_set

from python_backends.paths import PROJECT_ROOT

PAGES = [
    PROJECT_ROOT / "README.md",
    *sorted((PROJECT_ROOT / "docs").glob("*.md")),
    PROJECT_ROOT / "benchmarks" / "README.md",
    PROJECT_ROOT / "deploy" / "kubernetes" / "README.md",
]
SHELL_BLOCKS = ("bash", "sh", "shell")
# command (a regular expression matching its start) -> why it does not run here
EXCEPTED = {
    r"make (demo|test|setup)\b": "make test runs make setup first; test_demo.py and this file walk make demo's path",
    r"make (serve|cluster)\b": "a server in the foreground; tests/test_serving_cli.py and test_cluster.py start them",
    r"make (bench|soak|cluster-bench)\b": "a long benchmark or soak (tests/test_soak.py runs a short soak)",
    r"make gpu-check\b": "needs a GPU",
    r".*--tensorrt\b": "needs a GPU with TensorRT",
    r"(docker|kubectl|kustomize|cd deploy/)": "needs Docker or a Kubernetes cluster; tests/test_compose.py and "
    "test_kubernetes.py check the files",
    r"(yolo export|python3 -m venv ~/ultralytics|~/ultralytics/)": "needs Ultralytics and PyTorch (several GB), "
    "which the tests never install",
    r"git checkout model_repository": "would undo the checkout's own configs",
    r"echo .* \| socat ": "needs make cluster running; tests/test_cluster.py reads HAProxy's socket",
    r"(KEY=|\.venv/bin/python -m serving\b)": "starts a server in the foreground; tests/test_serving_cli.py runs it",
    r"(\.venv/bin/)?python -m benchmarks\.(scaling|fixed_cost|transport|tasks)": "a benchmark",
    r".*--window \d+": "waits for a minute of live traffic; tests/test_stage_costs.py runs report",
    r"\.venv/bin/perf_analyzer ": "a benchmark; tests/test_stage_costs.py runs perf_analyzer",
    r"export TRITON_ADMIN_KEY": "for docker compose",
    r"from ultralytics import": "needs Ultralytics and PyTorch",
    r"\.venv/bin/yolo-triton val --data cls_set": "needs a served classifier; tests/test_classify.py runs val on it",
}
CLIENT = re.compile(r"\.venv/bin/(yolo-triton|python -m client) ")
PREPARE = re.compile(r"\.venv/bin/(yolo-triton-prepare|python -m prepare) ")
ADDRESS = re.compile(r"(127\.0\.0\.1|host\d):8001")


@dataclass(frozen=True)
class Snippet:
    page: str
    kind: str  # "shell" or "python"
    text: str

    def excepted(self) -> str | None:
        """Why the snippet does not run here, or None when it runs."""
        first = self.text.splitlines()[0]
        return next((why for pattern, why in EXCEPTED.items() if re.match(pattern, first)), None)


def snippets(page: Path) -> list[Snippet]:
    """Each shell command (continuation lines joined, comments dropped) and Python block of ``page``, in order."""
    found = []
    name = str(page.relative_to(PROJECT_ROOT))
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL):
        if language == "python":
            found.append(Snippet(name, "python", body))
        elif language in SHELL_BLOCKS:
            for line in body.replace("\\\n", " ").splitlines():
                command = re.sub(r"\s+#.*$", "", line).strip()
                if command and not command.startswith("#"):
                    found.append(Snippet(name, "shell", re.sub(r"\s+", " ", command)))
    return found


ALL = [snippet for page in PAGES for snippet in snippets(page)]
RUN = list({s.text: s for s in reversed(ALL) if s.excepted() is None}.values())[::-1]  # each text once, first page


def snippet_id(snippet: Snippet) -> str:
    return f"{snippet.page}: {snippet.text.splitlines()[0][:60]}"


def test_every_exception_is_still_in_the_docs():
    for pattern in EXCEPTED:
        assert any(re.match(pattern, s.text.splitlines()[0]) for s in ALL), f"no doc command matches {pattern!r}"


def test_the_docs_show_commands_in_the_readme_form():
    """Every project command runs from the venv, as the README's do: a bare ``python`` misses its packages."""
    for snippet in RUN:
        if snippet.kind == "shell":
            assert not re.match(r"python3? ", snippet.text), f"{snippet.page}: {snippet.text}"


def as_run(snippet: Snippet, grpc_url: str, repository: Path) -> str:
    """The command with the test's server and a copy of the model repository (the module docstring)."""
    text = ADDRESS.sub(grpc_url, snippet.text)
    if CLIENT.search(text) and "--url" not in text:
        text += f" --url {grpc_url}"
    if PREPARE.search(text):
        text += f" --repository {repository}"
    return text


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, default_onnx, triton) -> Path:
    """A folder outside the checkout holding what the docs' commands name."""
    from models.materialize import write_model

    folder = tmp_path_factory.mktemp("newcomer")
    for checkout_path in (".venv", "tests"):
        (folder / checkout_path).symlink_to(PROJECT_ROOT / checkout_path)
    (folder / ".cache").mkdir()
    for cached in ("samples", "models"):
        (folder / ".cache" / cached).symlink_to(PROJECT_ROOT / ".cache" / cached)
    onnx.save(tiny_detector(dynamic_size=True), folder / "yolov8n.onnx")
    shutil.copy(
        write_model("yolo11n", tmp_path_factory.mktemp("yolo11n"), {"default": default_onnx}), folder / "model.onnx"
    )
    exports = (("fall_pose", "yolov8s-pose.onnx"), ("fall_obb", "yolov8s-obb.onnx"), ("fall_seg", "yolov8s-seg.onnx"))
    for name, export in exports:
        shutil.copy(write_model(name, tmp_path_factory.mktemp(name), {"default": default_onnx}), folder / export)
    (folder / "photos").mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(SAMPLES / name, folder / "photos" / name)
    shutil.copy(SAMPLES / "bus.jpg", folder / "a.jpg")
    shutil.copy(SAMPLES / "zidane.jpg", folder / "b.jpg")
    shutil.copy(SAMPLES / "camera.png", folder / "b.png")
    shutil.copy(SAMPLES / "bus.jpg", folder / "bus.jpg")
    write_clip(SAMPLES / "bus.jpg", folder / "clip.mp4")
    data = build_val_set(tmp_path_factory.mktemp("val_set"))
    for name in ("DATA.yaml", "my_set.yaml"):
        (folder / name).write_text(data.read_text().replace("path: .", f"path: {data.parent}"))
    layouts = write_layouts(data.parent, tmp_path_factory.mktemp("layouts"))
    shutil.copytree(layouts["relative"].cwd, folder / "datasets" / "fall")
    shutil.copytree(layouts["roboflow"].data.parent, folder / "fall.v2i.yolov8")
    return folder


def write_clip(photo: Path, out: Path, frames: int = 3) -> None:
    """A few frames of ``photo`` as an MP4 video."""
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 5, (image.shape[1], image.shape[0]))
    for shift in range(frames):
        writer.write(np.roll(image, 8 * shift, axis=1))
    writer.release()


@pytest.fixture(scope="module")
def repository_copy(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("prepared") / "model_repository"
    shutil.copytree(PROJECT_ROOT / "model_repository", copy, ignore=shutil.ignore_patterns("*.onnx", "warmup"))
    return copy


@pytest.mark.parametrize("snippet", RUN, ids=snippet_id)
def test_the_command_runs_as_written(snippet, workspace, repository_copy, triton):
    if snippet.kind == "python":
        code = ADDRESS.sub(triton.grpc_url, snippet.text)
        command = [str(workspace / ".venv" / "bin" / "python"), "-c", code]
    else:
        command = ["bash", "-c", as_run(snippet, triton.grpc_url, repository_copy)]
    done = subprocess.run(command, cwd=workspace, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{snippet.page}: {command[-1]}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
