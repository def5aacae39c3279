"""evaluation's pose and mask metrics, offline, on one-image datasets written here whose answer is counted by hand.

The image is 200x100 (black); the labelled person is the box (0, 0)-(100, 100): area 10000 px, so the OKS scale
s² is 0.53 x 10000 = 5300. A keypoint d pixels from its label scores exp(-d² / (2 s² (2σ)²)); with σ = 1/2
(1/K of a 2-keypoint dataset) that is exp(-d² / 10600), so d = sqrt(-10600 ln 0.72) ≈ 59.6 px scores 0.72: a hit
at the OKS thresholds 0.50 ... 0.70, 5 of 10, mAP50-95 0.5 and mAP50 1.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from faster_coco_eval.core import mask as mask_util

from evaluation.coco import Prediction, evaluate_kinds
from evaluation.dataset import COCO_SIGMAS, DatasetError, load_dataset

WIDTH, HEIGHT = 200, 100
OFFSET = math.sqrt(-10600 * math.log(0.72))  # px: OKS 0.72 with σ 1/2 on this person


def write_dataset(root: Path, label: str, extra_yaml: str = "") -> Path:
    """images/a.png (WIDTH x HEIGHT) with labels/a.txt holding ``label``; returns data.yaml."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    (root / "labels" / "a.txt").write_text(label)
    (root / "data.yaml").write_text(f"path: .\nval: images\nnames: [Normal, Fall]\n{extra_yaml}")
    return root / "data.yaml"


def person(keypoints=None, masks=None) -> Prediction:
    """One detection of class 0 exactly on the labelled box, score 0.9, with its keypoints or mask."""
    points = None if keypoints is None else np.array([keypoints], np.float32)
    return Prediction(
        np.array([[0, 0, 100, 100]], np.float32),
        np.array([0.9], np.float32),
        np.array([0]),
        (WIDTH, HEIGHT),
        points,
        masks,
    )


def test_keypoints_score_by_oks_with_one_over_k_sigmas_and_unlabelled_points_left_out(tmp_path):
    # 3 keypoints x y v: (20, 30) and (60, 70) labelled, the third not (v 0): its guess anywhere changes nothing
    data = write_dataset(tmp_path, "0 0.25 0.5 0.5 1 0.1 0.3 2 0.3 0.7 1 0 0 0\n", "kpt_shape: [3, 3]\n")
    dataset = load_dataset(data)
    assert dataset.oks_sigmas == (1 / 3,) * 3
    # σ 1/3: exp(-d² / (2 * 5300 * (2/3)²)) = 0.72 at d = OFFSET * 2/3
    d = OFFSET * 2 / 3
    found = person([[20 + d, 30, 0.9], [60, 70 - d, 0.9], [190, 5, 0.1]])
    metrics = evaluate_kinds(dataset, {dataset.images[0]: found}, ("box", "pose"))
    assert metrics["box"].map50_95 == pytest.approx(1.0)
    assert metrics["pose"].map50_95 == pytest.approx(0.5) and metrics["pose"].map50 == pytest.approx(1.0)
    assert [c.map50_95 for c in metrics["pose"].per_class] == [pytest.approx(0.5), None]
    exact = person([[20, 30, 0.9], [60, 70, 0.9], [0, 0, 0.1]])
    assert evaluate_kinds(dataset, {dataset.images[0]: exact}, ("pose",))["pose"].map50_95 == pytest.approx(1.0)


def test_two_values_per_keypoint_and_the_dataset_sigmas(tmp_path):
    # kpt_shape [2, 2]: both labelled; kpt_oks_sigmas 1.0: (2σ)² = 4, OKS exp(-OFFSET² / (2 * 5300 * 4)) = 0.72^(1/4)
    data = write_dataset(tmp_path, "0 0.25 0.5 0.5 1 0.1 0.3 0.3 0.7\n", "kpt_shape: [2, 2]\nkpt_oks_sigmas: [1, 1]\n")
    dataset = load_dataset(data)
    assert dataset.oks_sigmas == (1.0, 1.0)
    found = person([[20 + OFFSET, 30, 0.9], [60 + OFFSET, 70, 0.9]])
    pose = evaluate_kinds(dataset, {dataset.images[0]: found}, ("pose",))["pose"]
    assert pose.map50_95 == pytest.approx(0.9)  # 0.72^(1/4) = 0.921: a hit at 0.50 ... 0.90, 9 of 10


@pytest.mark.parametrize(("kpt_shape", "sigmas"), [("[17, 3]", COCO_SIGMAS), ("[17, 2]", (1 / 17,) * 17)])
def test_cocos_sigmas_only_for_17_keypoints_of_3_values_as_ultralytics(tmp_path, kpt_shape, sigmas):
    values = 17 * int(kpt_shape[-2])
    data = write_dataset(tmp_path, "0 0.5 0.5 0.2 0.2" + " 0.5" * values + "\n", f"kpt_shape: {kpt_shape}\n")
    assert load_dataset(data).oks_sigmas == pytest.approx(sigmas)
    assert COCO_SIGMAS[0] == 0.026 and COCO_SIGMAS[-1] == 0.089


@pytest.mark.parametrize(
    ("yaml_text", "label", "complaint"),
    [
        ("kpt_shape: [2, 3]\n", "0 0.5 0.5 0.2 0.2 0.1 0.1 2\n", "expected 'class cx cy w h' and 2 keypoints of 3"),
        ("kpt_shape: [1, 3]\n", "0 0.5 0.5 0.2 0.2 0.1 0.1 -1\n", "a keypoint's visibility is negative"),
        ("kpt_shape: [1, 3]\n", "0 0.5 0.5 0.2 0.2 1.1 0.1 2\n", "normalised to [0, 1]"),
        ("kpt_shape: [1, 4]\n", "", "'kpt_shape' must be [keypoints, 2 or 3]"),
        ("kpt_shape: 17\n", "", "'kpt_shape' must be [keypoints, 2 or 3]"),
        ("kpt_shape: [2, 3]\nkpt_oks_sigmas: [0.1]\n", "", "'kpt_oks_sigmas' must be 2 positive numbers"),
        ("kpt_oks_sigmas: [0.1]\n", "", "'kpt_oks_sigmas' without 'kpt_shape'"),
    ],
)
def test_a_bad_pose_dataset_is_a_dataset_error(tmp_path, yaml_text, label, complaint):
    with pytest.raises(DatasetError, match=complaint.replace("[", r"\[").replace(".", r"\.")):
        load_dataset(write_dataset(tmp_path, label, yaml_text))


def rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a uint8 (HEIGHT, WIDTH) mask, counts as str (as JSON carries it)."""
    encoded = mask_util.encode(np.asfortranarray(mask))
    return {"size": encoded["size"], "counts": encoded["counts"].decode()}


def test_masks_score_by_mask_iou_against_the_polygon(tmp_path):
    # the polygon (0, 0), (100, 0), (100, 24), (0, 100): its box is the detection's box, its area 6200 px
    dataset = load_dataset(write_dataset(tmp_path, "0 0 0 0.5 0 0.5 0.24 0 1\n"))
    outline = np.array([[0, 0], [100, 0], [100, 24], [0, 100]])
    polygon = cv2.fillPoly(np.zeros((HEIGHT, WIDTH), np.uint8), [outline], 1)
    square = np.zeros((HEIGHT, WIDTH), np.uint8)
    square[:100, :100] = 1
    image = dataset.images[0]
    on_polygon = evaluate_kinds(dataset, {image: person(masks=[rle(polygon)])}, ("box", "mask"))
    assert on_polygon["box"].map50_95 == pytest.approx(1.0) and on_polygon["mask"].map50_95 == pytest.approx(1.0)
    # the square on the polygon: IoU about 0.62, a hit at 0.50, 0.55, 0.60: the mask, not the box, is scored
    on_square = evaluate_kinds(dataset, {image: person(masks=[rle(square)])}, ("box", "mask"))
    assert on_square["box"].map50_95 == pytest.approx(1.0)
    assert on_square["mask"].map50 == pytest.approx(1.0) and on_square["mask"].map50_95 == pytest.approx(0.3)


def test_a_box_label_is_its_rectangle_as_a_mask(tmp_path):
    dataset = load_dataset(write_dataset(tmp_path, "0 0.25 0.5 0.5 1\n"))  # the box (0, 0)-(100, 100)
    loose = np.zeros((HEIGHT, WIDTH), np.uint8)
    loose[:, :72] = 1  # IoU 0.72 with the rectangle: 5 of 10 thresholds
    mask = evaluate_kinds(dataset, {dataset.images[0]: person(masks=[rle(loose)])}, ("mask",))["mask"]
    assert mask.map50_95 == pytest.approx(0.5) and mask.map50 == pytest.approx(1.0)


def test_pose_and_mask_metrics_need_their_labels_and_predictions(tmp_path):
    dataset = load_dataset(write_dataset(tmp_path, "0 0.25 0.5 0.5 1\n"))
    with pytest.raises(ValueError, match="kpt_shape in DATA.yaml"):
        evaluate_kinds(dataset, {dataset.images[0]: person()}, ("pose",))
    with pytest.raises(ValueError, match="mask metrics need each prediction's masks"):
        evaluate_kinds(dataset, {dataset.images[0]: person()}, ("mask",))
