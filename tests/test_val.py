"""``python -m client val`` against a real tritonserver: the served mAP equals Ultralytics' own.

tests/reference/ultralytics_val.json holds pycocotools' COCO mAP of Ultralytics' ``predict`` (conf 0.001,
iou 0.7, max_det 300) on the same ONNX and tests/data/val_set (see tests/reference/make_val_reference.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dataset_layouts import write_layouts
from val_set import build_val_set

from client.cli import main
from client.val import warn_if_names_differ
from evaluation.dataset import load_dataset

REFERENCE = Path(__file__).resolve().parent / "reference" / "ultralytics_val.json"
TOLERANCE = 0.002


def val(capsys, url: str, data: Path, out: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    status = main(["val", "--data", str(data), "--url", url, "--json", str(out), "--quiet", *args])
    stdout, stderr = capsys.readouterr()
    return status, stdout, stderr


@pytest.fixture(scope="module")
def val_set(tmp_path_factory) -> Path:
    return build_val_set(tmp_path_factory.mktemp("val_set"))


def test_served_map_equals_ultralytics_with_pycocotools(triton, val_set, tmp_path, capsys):
    reference = json.loads(REFERENCE.read_text())
    status, stdout, _ = val(capsys, triton.grpc_url, val_set, tmp_path / "metrics.json")
    assert status == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == reference["images"] == 10
    assert metrics["map50_95"] == pytest.approx(reference["map50_95"], abs=TOLERANCE)
    assert metrics["map50"] == pytest.approx(reference["map50"], abs=TOLERANCE)
    for served, expected in zip(metrics["per_class"], reference["per_class"], strict=True):
        assert (served["class_id"], served["name"]) == (expected["class_id"], expected["name"])
        for key in ("map50_95", "map50"):
            assert served[key] == (None if expected[key] is None else pytest.approx(expected[key], abs=TOLERANCE))
    rows = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()[2:]}
    assert rows["all"] == ["15", f"{metrics['map50_95']:.4f}", f"{metrics['map50']:.4f}"]
    assert rows["Fall"] == ["0", "-", "-"]


@pytest.fixture(scope="module")
def layouts(val_set, tmp_path_factory) -> dict:
    return write_layouts(val_set.parent, tmp_path_factory.mktemp("layouts"))


@pytest.mark.parametrize("layout", ["relative", "reversed_names"])  # the others: test_evaluation
def test_each_layout_of_the_set_scores_as_ultralytics(triton, layouts, layout, tmp_path, capsys, monkeypatch):
    reference = json.loads(REFERENCE.read_text())
    monkeypatch.chdir(layouts[layout].cwd)
    status, stdout, stderr = val(capsys, triton.grpc_url, layouts[layout].data, tmp_path / "metrics.json")
    assert status == 0, stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["map50_95"] == pytest.approx(reference["map50_95"], abs=TOLERANCE)
    assert metrics["map50"] == pytest.approx(reference["map50"], abs=TOLERANCE)
    assert [(c["class_id"], c["name"]) for c in metrics["per_class"]] == [(0, "Normal"), (1, "Fall")]
    assert "warning" not in stderr
    rows = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()[2:]}
    assert rows["Normal"][0] == "15" and rows["Fall"] == ["0", "-", "-"]


def test_an_unreadable_image_is_skipped_counted_and_fails_the_run(triton, val_set, tmp_path, capsys):
    dataset = tmp_path / "set"
    shutil.copytree(val_set.parent, dataset)
    broken = dataset / "images" / "broken.jpg"
    broken.write_bytes(b"not an image")
    status, _, stderr = val(capsys, triton.grpc_url, dataset / "data.yaml", tmp_path / "broken.json")
    assert status == 1
    assert f"error: {broken}: " in stderr
    assert "summary: 10 images scored, 1 failed" in stderr
    assert json.loads((tmp_path / "broken.json").read_text())["images"] == 10


def test_a_bad_label_is_a_data_error_before_any_request(val_set, tmp_path, capsys):
    dataset = tmp_path / "set"
    shutil.copytree(val_set.parent, dataset)
    label = dataset / "labels" / "camera.txt"
    label.write_text(label.read_text() + "5 0.5 0.5 0.1 0.1\n")
    status, stdout, stderr = val(capsys, "127.0.0.1:1", dataset / "data.yaml", tmp_path / "none.json")
    assert status == 2
    assert stderr == f"error: {label}:2: class 5 is not a class id in 0..1\n"
    assert stdout == "" and not (tmp_path / "none.json").exists()


def test_a_set_without_any_label_file_is_a_data_error(val_set, tmp_path, capsys):
    dataset = tmp_path / "set"
    shutil.copytree(val_set.parent, dataset)
    shutil.rmtree(dataset / "labels")
    status, stdout, stderr = val(capsys, "127.0.0.1:1", dataset / "data.yaml", tmp_path / "none.json")
    assert status == 2
    assert (
        f"no label file for any of the 10 images; the first would be {dataset / 'labels' / 'astronaut.txt'}" in stderr
    )
    assert stdout == "" and not (tmp_path / "none.json").exists()


def test_class_names_are_compared_by_id(layouts, capsys):
    dataset = load_dataset(layouts["reversed_names"].data)  # names: {1: Fall, 0: Normal}
    warn_if_names_differ(["Normal", "Fall"], dataset)
    assert capsys.readouterr().err == ""
    warn_if_names_differ(["Fall", "Normal"], dataset)
    assert "served classes ['Fall', 'Normal'], dataset classes ['Normal', 'Fall']" in capsys.readouterr().err
