"""``python -m client val`` on a pose model, served by a real tritonserver: box and keypoint mAP equal pycocotools'
scoring of Ultralytics' own predict.

The model is tests/models' fall_pose (YOLOv8s pose, kpt_shape [17, 3], labels Normal and Fall: the default fall
detector's boxes, a seeded keypoint branch), input 480x640. The set is tests/data/pose_set: the five sample
photos, labelled from fall_pose's own predict at conf 0.3 with every box corner and keypoint moved by a seeded
draw and keypoints the model scores below 0.3 not labelled (tests/data/pose_set/README.md). The reference
(tests/reference/ultralytics_pose_val.json, made by make_pose_val_reference.py) is pycocotools' COCOeval, bbox
and keypoints, of Ultralytics 8.4.190's ``predict(conf=0.001, iou=0.7, max_det=300)`` on the same ONNX.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from own_server import options, started
from val_set import build_pose_set, build_val_set

from client.cli import main

REFERENCE = json.loads((Path(__file__).resolve().parent / "reference" / "ultralytics_pose_val.json").read_text())
TOLERANCE = 0.002


@pytest.fixture(scope="module")
def pose_server(tmp_path_factory, family_repository):
    log = tmp_path_factory.mktemp("fall_pose_server") / "tritonserver.log"
    with started(options(family_repository("fall_pose")), log) as server:
        yield server


def val(capsys, url: str, data: Path, out: Path) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    status = main(["val", "--data", str(data), "--url", url, "--json", str(out), "--quiet"])
    stdout, stderr = capsys.readouterr()
    return status, stdout, stderr


def test_box_and_keypoint_map_equal_ultralytics_with_pycocotools(pose_server, tmp_path, capsys):
    data = build_pose_set(tmp_path / "pose_set")
    status, stdout, stderr = val(capsys, pose_server.grpc_url, data, tmp_path / "metrics.json")
    assert status == 0, stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics) == ["images", "box", "pose"]
    assert metrics["images"] == REFERENCE["images"] == 5
    assert 0.2 < REFERENCE["pose"]["map50_95"] < 0.8  # neither nothing nor everything: the keypoints matter
    for kind in ("box", "pose"):
        assert metrics[kind]["map50_95"] == pytest.approx(REFERENCE[kind]["map50_95"], abs=TOLERANCE), kind
        assert metrics[kind]["map50"] == pytest.approx(REFERENCE[kind]["map50"], abs=TOLERANCE), kind
        for served, expected in zip(metrics[kind]["per_class"], REFERENCE[kind]["per_class"], strict=True):
            assert (served["class_id"], served["name"]) == (expected["class_id"], expected["name"])
            assert (served["map50_95"] is None) == (expected["map50_95"] is None)
    header, *rows = stdout.splitlines()[1:]
    assert header.split() == ["class", "labels", "box", "mAP50-95", "box", "mAP50", "pose", "mAP50-95", "pose", "mAP50"]
    table = {row.split()[0]: row.split()[1:] for row in rows}
    box, pose = metrics["box"], metrics["pose"]
    values = [box["map50_95"], box["map50"], pose["map50_95"], pose["map50"]]
    assert table["all"] == [str(REFERENCE["labels"]), *(f"{v:.4f}" for v in values)]
    assert table["Fall"] == ["0", "-", "-", "-", "-"]


def test_a_pose_model_on_a_box_dataset_scores_boxes_with_a_warning(pose_server, tmp_path, capsys):
    data = build_val_set(tmp_path / "val_set")  # no kpt_shape: hand-made person boxes (tests/data/val_set)
    status, stdout, stderr = val(capsys, pose_server.grpc_url, data, tmp_path / "metrics.json")
    assert status == 0, stderr
    assert "warning: a pose model on a dataset without kpt_shape: box mAP only" in stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics) == ["map50_95", "map50", "images", "per_class"]
    assert metrics["images"] == 10 and 0.3 < metrics["map50_95"] < 1
    assert stdout.splitlines()[1].split() == ["class", "labels", "mAP50-95", "mAP50"]


def test_a_dataset_with_another_keypoint_count_is_a_data_error(pose_server, tmp_path, capsys):
    data = build_pose_set(tmp_path / "pose_set")
    for label in (tmp_path / "pose_set" / "labels").glob("*.txt"):  # 5 keypoints: the first five of each line
        label.write_text("".join(" ".join(line.split()[:20]) + "\n" for line in label.read_text().splitlines()))
    data.write_text(data.read_text().replace("kpt_shape: [17, 3]", "kpt_shape: [5, 3]"))
    status, stdout, stderr = val(capsys, pose_server.grpc_url, data, tmp_path / "none.json")
    assert status == 2
    assert "error: the served model gives [17] keypoints, DATA.yaml's kpt_shape 5" in stderr
    assert stdout == "" and not (tmp_path / "none.json").exists()
