"""NMS and head decoding against hand-checked cases of Ultralytics' non_max_suppression."""

import numpy as np
import pytest

from python_backends.postprocess.nms import greedy_nms, non_max_suppression
from python_backends.postprocess.postprocessor import Postprocessor, ThresholdError


def head_from(rows: list[tuple[float, float, float, float, list[float]]]) -> np.ndarray:
    """(4 + nc, N) head from (cx, cy, w, h, class scores) rows."""
    return np.array([[cx, cy, w, h, *scores] for cx, cy, w, h, scores in rows], np.float32).T.copy()


def test_overlapping_boxes_of_one_class_are_suppressed():
    head = head_from([(50, 50, 20, 20, [0.9, 0.0]), (52, 50, 20, 20, [0.8, 0.0]), (150, 150, 20, 20, [0.7, 0.0])])
    found = non_max_suppression(head, 0.25, 0.7)
    np.testing.assert_allclose(found.scores, [0.9, 0.7])
    np.testing.assert_allclose(found.boxes, [[40, 40, 60, 60], [140, 140, 160, 160]])


def test_nms_is_class_aware():
    head = head_from([(50, 50, 20, 20, [0.9, 0.0]), (50, 50, 20, 20, [0.0, 0.8])])
    found = non_max_suppression(head, 0.25, 0.7)
    assert found.class_ids.tolist() == [0, 1]


def test_iou_equal_to_threshold_is_kept():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)  # IoU exactly 0.5
    assert greedy_nms(boxes, np.array([0.9, 0.8], np.float32), 0.5, 300).tolist() == [0, 1]
    assert greedy_nms(boxes, np.array([0.9, 0.8], np.float32), 0.49, 300).tolist() == [0]


def test_confidence_filter_is_strict_and_uses_the_best_class():
    head = head_from([(50, 50, 10, 10, [0.25, 0.1]), (150, 50, 10, 10, [0.1, 0.3])])
    found = non_max_suppression(head, 0.25, 0.7)
    assert found.class_ids.tolist() == [1]
    np.testing.assert_allclose(found.scores, [0.3])


def test_max_det_keeps_the_best_and_sorts_by_score():
    rng = np.random.default_rng(0)
    scores = rng.random(50).astype(np.float32) * 0.7 + 0.3
    head = head_from([(20 * i + 10, 10, 8, 8, [s]) for i, s in enumerate(scores)])
    found = non_max_suppression(head, 0.25, 0.7, max_det=10)
    np.testing.assert_allclose(found.scores, np.sort(scores)[::-1][:10])


def test_class_filter():
    head = head_from([(50, 50, 10, 10, [0.9, 0.0]), (150, 50, 10, 10, [0.0, 0.8])])
    assert non_max_suppression(head, 0.25, 0.7, classes=np.array([1])).class_ids.tolist() == [1]


def test_postprocessor_pads_to_max_det_and_reports_the_size():
    post = Postprocessor(num_classes=1, max_det=5)
    head = head_from([(320, 320, 64, 64, [0.9])])
    mapping = np.array([0.5, 0, 140, 1280, 720], np.float32)
    padded = post.pad(post.detect(head, mapping), mapping)
    assert padded["num_dets"].tolist() == [1]
    assert padded["det_boxes"].shape == (5, 4) and not padded["det_boxes"][1:].any()
    np.testing.assert_allclose(padded["det_boxes"][0], [576, 296, 704, 424])  # (x - pad) / gain
    assert padded["image_size"].tolist() == [1280, 720]


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 1.5])
def test_thresholds_out_of_range_are_refused(bad):
    post = Postprocessor(num_classes=1)
    with pytest.raises(ThresholdError, match="in \\[0, 1\\]"):
        post.detect(head_from([(1, 1, 1, 1, [0.9])]), np.array([1, 0, 0, 640, 640], np.float32), conf_threshold=bad)
