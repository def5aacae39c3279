"""A classifier, prepared and served by a real tritonserver, equals Ultralytics' classify predict.

The model is tests/models' fall_cls (tests/models/make_cls_model.py): Ultralytics 8.4.190's yolov8s-cls.yaml
with 2 classes, labels Normal (class 0) and Fall (class 1), the default fall detector's trained backbone and
a seeded Classify head, exported to ONNX at imgsz 224, output [1, 2] (softmax). Served as probs [2],
top_classes [5] and top_scores [5] (3 rows of padding: class -1, score 0).

The reference is Ultralytics' predict on the same ONNX (tests/reference/cls_model.json, made by
make_cls_reference.py): ``probs.data`` and ``probs.top5`` of every sample photo, and the top-1 and top-5
counts on tests/cls_set.py's eight crops (four upright people labelled Normal, four turned on their side
labelled Fall).
"""

from __future__ import annotations

import asyncio
import csv
import json

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from cls_set import build_cls_set
from own_server import image_input, options, started
from sample_images import SAMPLES
from tritonclient.utils import InferenceServerException

from client.api import DetectionResult, YoloTritonClient
from client.async_api import AsyncYoloTritonClient
from client.cli import main
from python_backends.paths import PROJECT_ROOT

REFERENCE = json.loads((PROJECT_ROOT / "tests" / "reference" / "cls_model.json").read_text())
MAX_PROB_DIFF = 1e-3
OUTPUTS = {"probs": ("TYPE_FP32", [2]), "top_classes": ("TYPE_INT32", [5]), "top_scores": ("TYPE_FP32", [5])}


@pytest.fixture(scope="module")
def served(tmp_path_factory, family_repository):
    log = tmp_path_factory.mktemp("fall_cls_server") / "tritonserver.log"
    with started(options(family_repository("fall_cls")), log) as server:
        yield server


def _check(photo: str, probs: list[float], top5_ids: list[int]) -> None:
    want = REFERENCE["photos"][photo]
    assert np.abs(np.asarray(probs) - want["probs"]).max() <= MAX_PROB_DIFF, (photo, probs, want["probs"])
    assert top5_ids == want["top5"], photo


def test_the_ensembles_output_the_classifiers_outputs_and_no_detections(served):
    client = grpcclient.InferenceServerClient(served.grpc_url)
    try:
        for model in ("yolov8", "yolov8_raw", "yolov8_postprocess"):
            outputs = {o["name"]: o for o in client.get_model_config(model, as_json=True)["config"]["output"]}
            assert set(outputs) == {*OUTPUTS, "image_size"}, model
            for name, (dtype, dims) in OUTPUTS.items():
                assert (outputs[name]["data_type"], [int(d) for d in outputs[name]["dims"]]) == (dtype, dims), model
    finally:
        client.close()


def test_served_probabilities_and_top_5_match_ultralytics_through_both_ensembles(served):
    """Every sample photo: encoded to yolov8, and decoded (cv2.imread's BGR) to yolov8_raw."""
    with YoloTritonClient(served.grpc_url) as client:
        assert client.class_names == REFERENCE["names"] == ["Normal", "Fall"]
        for photo in REFERENCE["photos"]:
            for image in (SAMPLES / photo, cv2.imread(str(SAMPLES / photo), cv2.IMREAD_COLOR)):
                result = client.detect(image)
                assert result.detections == []
                _check(photo, result.classification.probs, result.classification.top5_ids)
                names = [REFERENCE["names"][c] for c in REFERENCE["photos"][photo]["top5"]]
                assert [name for name, _ in result.classification.top5] == names


def test_the_async_client_gets_the_same_classification(served):
    async def classify() -> DetectionResult:
        async with AsyncYoloTritonClient(served.grpc_url) as client:
            return await client.detect(SAMPLES / "bus.jpg")

    result = asyncio.run(classify())
    _check("bus.jpg", result.classification.probs, result.classification.top5_ids)


def test_a_batch_gets_each_images_own_probabilities_the_padding_and_no_effect_of_the_thresholds(served):
    photos = list(REFERENCE["photos"])[:2]
    payloads = [(SAMPLES / photo).read_bytes() for photo in photos]
    tensor = grpcclient.InferInput("IMAGE", [2, 1], "BYTES")
    tensor.set_data_from_numpy(np.array(payloads, dtype=object).reshape(2, 1))
    conf = grpcclient.InferInput("CONF_THRESHOLD", [2, 1], "FP32")
    conf.set_data_from_numpy(np.full((2, 1), 0.99, np.float32))  # above every probability: no effect
    client = grpcclient.InferenceServerClient(served.grpc_url)
    try:
        reply = client.infer("yolov8", [tensor, conf])
        for i, photo in enumerate(photos):
            classes, scores = reply.as_numpy("top_classes")[i], reply.as_numpy("top_scores")[i]
            _check(photo, reply.as_numpy("probs")[i].tolist(), classes[:2].tolist())
            assert classes[2:].tolist() == [-1] * 3 and scores[2:].tolist() == [0.0] * 3
            assert scores[:2].tolist() == sorted(reply.as_numpy("probs")[i].tolist(), reverse=True)
        conf.set_data_from_numpy(np.full((2, 1), 1.5, np.float32))
        with pytest.raises(InferenceServerException, match="conf_threshold must be a number in"):
            client.infer("yolov8", [tensor, conf])
        assert client.infer("yolov8", [image_input(payloads[0])]).as_numpy("image_size")[0].tolist() == [810, 1080]
    finally:
        client.close()


def test_detect_prints_writes_json_and_csv_and_draws_the_top_5(served, tmp_path, capsys):
    photo = SAMPLES / "zidane.jpg"
    want = REFERENCE["photos"]["zidane.jpg"]
    common = ["--url", served.grpc_url, "--quiet"]
    assert main(["detect", str(photo), *common]) == 0
    table = capsys.readouterr().out
    assert "zidane.jpg  (1280x720, top 5)" in table and table.splitlines()[1].split()[0] == "Normal"
    assert main(["detect", str(photo), "--json", "-o", str(tmp_path / "out.json"), *common]) == 0
    (found,) = json.loads((tmp_path / "out.json").read_text())
    assert [t["class_id"] for t in found["classification"]["top5"]] == want["top5"]
    assert main(["detect", str(photo), "--csv", "-o", str(tmp_path / "out.csv"), "--save", str(tmp_path), *common]) == 0
    (row,) = csv.DictReader((tmp_path / "out.csv").open())
    assert (row["top1_class_name"], row["top5_class_names"]) == ("Normal", "Normal;Fall")
    assert float(row["top1_score"]) == pytest.approx(max(want["probs"]), abs=MAX_PROB_DIFF)
    drawn, original = cv2.imread(str(tmp_path / "zidane.jpg")), cv2.imread(str(photo))
    changed = np.abs(drawn.astype(int) - original).sum(axis=2) > 60
    rows, cols = np.nonzero(changed)
    assert rows.max() < 120 and cols.max() < 300  # only the top 5's band in the top-left corner


def test_val_counts_top_1_and_top_5_on_a_classification_folder(served, tmp_path, capsys):
    root = build_cls_set(tmp_path / "cls_set")
    status = main(["val", "--data", str(root), "--url", served.grpc_url, "--json", str(tmp_path / "m.json"), "--quiet"])
    assert status == 0
    found, want = json.loads((tmp_path / "m.json").read_text()), REFERENCE["cls_set"]
    assert (
        (found["images"], found["top1"], found["top5"]) == (8, want["top1_correct"], want["top5_correct"]) == (8, 5, 8)
    )
    assert "8 images (test split)" in capsys.readouterr().out
