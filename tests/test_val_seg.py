"""``python -m client val`` on a segment model, served by a real tritonserver: box and mask mAP equal pycocotools'
scoring of Ultralytics' own predict.

The model is tests/models' fall_seg (YOLOv8s segment, labels Normal and Fall: the default fall detector's boxes,
seeded mask coefficient and prototype branches), input 480x640, its masks served as COCO RLE at the photo's
size. The set is tests/data/seg_set: the five photos, 9 polygon labels made from fall_seg's own predict at
conf 0.3 (its masks' largest contours, scaled, shifted and jittered by seeded draws; tests/data/seg_set/README.md).
The reference (tests/reference/ultralytics_seg_val.json, made by make_seg_val_reference.py) is pycocotools'
COCOeval, bbox and segm, of Ultralytics 8.4.190's ``predict(conf=0.001, iou=0.7, max_det=300,
retina_masks=True)`` on the same ONNX.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from own_server import options, started
from val_set import build_pose_set, build_seg_set, build_val_set

from client.cli import main
from evaluation.dataset import load_dataset

REFERENCE = json.loads((Path(__file__).resolve().parent / "reference" / "ultralytics_seg_val.json").read_text())
TOLERANCE = 0.002


@pytest.fixture(scope="module")
def seg_server(tmp_path_factory, family_repository):
    log = tmp_path_factory.mktemp("fall_seg_server") / "tritonserver.log"
    with started(options(family_repository("fall_seg")), log) as server:
        yield server


def val(capsys, url: str, data: Path, out: Path) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    status = main(["val", "--data", str(data), "--url", url, "--json", str(out), "--quiet"])
    stdout, stderr = capsys.readouterr()
    return status, stdout, stderr


def test_a_segment_dataset_is_one_with_a_polygon_label(tmp_path):
    assert load_dataset(build_seg_set(tmp_path / "seg_set")).segments
    assert not load_dataset(build_val_set(tmp_path / "val_set")).segments  # box lines only
    assert not load_dataset(build_pose_set(tmp_path / "pose_set")).segments  # pose lines are not polygons


def test_box_and_mask_map_equal_ultralytics_with_pycocotools(seg_server, tmp_path, capsys):
    data = build_seg_set(tmp_path / "seg_set")
    status, stdout, stderr = val(capsys, seg_server.grpc_url, data, tmp_path / "metrics.json")
    assert status == 0, stderr
    assert "warning" not in stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics) == ["images", "box", "mask"]
    assert metrics["images"] == REFERENCE["images"] == 5
    assert 0.2 < REFERENCE["mask"]["map50_95"] < REFERENCE["box"]["map50_95"] < 0.8  # the masks matter
    for kind in ("box", "mask"):
        assert metrics[kind]["map50_95"] == pytest.approx(REFERENCE[kind]["map50_95"], abs=TOLERANCE), kind
        assert metrics[kind]["map50"] == pytest.approx(REFERENCE[kind]["map50"], abs=TOLERANCE), kind
        for served, expected in zip(metrics[kind]["per_class"], REFERENCE[kind]["per_class"], strict=True):
            assert (served["class_id"], served["name"]) == (expected["class_id"], expected["name"])
            assert (served["map50_95"] is None) == (expected["map50_95"] is None)
    header, *rows = stdout.splitlines()[1:]
    assert header.split() == ["class", "labels", "box", "mAP50-95", "box", "mAP50", "mask", "mAP50-95", "mask", "mAP50"]
    table = {row.split()[0]: row.split()[1:] for row in rows}
    box, mask = metrics["box"], metrics["mask"]
    values = [box["map50_95"], box["map50"], mask["map50_95"], mask["map50"]]
    assert table["all"] == [str(REFERENCE["labels"]), *(f"{v:.4f}" for v in values)]
    assert table["Fall"] == ["0", "-", "-", "-", "-"]


def test_a_segment_model_on_a_box_dataset_scores_boxes_with_a_warning(seg_server, tmp_path, capsys):
    data = build_val_set(tmp_path / "val_set")  # box lines only: hand-made person boxes (tests/data/val_set)
    status, stdout, stderr = val(capsys, seg_server.grpc_url, data, tmp_path / "metrics.json")
    assert status == 0, stderr
    assert "warning: a segment model on a dataset without polygon labels: box mAP only" in stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics) == ["map50_95", "map50", "images", "per_class"]
    assert metrics["images"] == 10 and 0.3 < metrics["map50_95"] < 1
    assert stdout.splitlines()[1].split() == ["class", "labels", "mAP50-95", "mAP50"]
