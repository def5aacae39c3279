"""End-to-end heads (B, rows, 6): kept by score like Ultralytics' non_max_suppression(end2end=True), no NMS."""

import numpy as np
import pytest

from python_backends.postprocess.end2end import end2end_detections
from python_backends.postprocess.postprocessor import Postprocessor, ThresholdError

ROWS = 300
NO_LETTERBOX = np.array([1, 0, 0, 640, 640], np.float32)  # gain, pad_x, pad_y, width, height


def head_of(*detections: tuple[float, float, float, float, float, int], rows: int = ROWS) -> np.ndarray:
    """float32 (rows, 6): the given x1, y1, x2, y2, score, class rows, then zero rows as the model pads them."""
    head = np.zeros((rows, 6), np.float32)
    head[: len(detections)] = detections
    return head


def test_the_threshold_is_strict_and_padding_rows_never_count():
    head = head_of((0, 0, 10, 10, 0.5, 1), (20, 0, 30, 10, 0.25, 0), (40, 0, 50, 10, 0.2500001, 0))
    found = end2end_detections(head, conf_threshold=0.25)
    np.testing.assert_allclose(found.scores, [0.5, 0.2500001])
    assert found.class_ids.tolist() == [1, 0] and found.class_ids.dtype == np.int32
    assert len(end2end_detections(head, conf_threshold=0.0)) == 3  # the 297 zero rows are not > 0


def test_rows_keep_the_models_order_and_max_det_takes_the_first():
    head = head_of(*[(i, 0, i + 5, 5, 0.9 - i / 100, i % 3) for i in range(10)])
    found = end2end_detections(head, 0.25, max_det=4)
    np.testing.assert_allclose(found.boxes[:, 0], [0, 1, 2, 3])
    np.testing.assert_allclose(found.scores, [0.9, 0.89, 0.88, 0.87])


def test_max_det_counts_kept_rows_only():
    head = head_of((0, 0, 5, 5, 0.1, 0), (0, 0, 5, 5, 0.9, 0), (0, 0, 5, 5, 0.1, 0), (0, 0, 5, 5, 0.8, 1))
    np.testing.assert_allclose(end2end_detections(head, 0.25, max_det=2).scores, [0.9, 0.8])


def test_class_filter():
    head = head_of((0, 0, 5, 5, 0.9, 0), (0, 0, 5, 5, 0.8, 2), (0, 0, 5, 5, 0.7, 1))
    assert end2end_detections(head, 0.25, classes=np.array([1, 2])).class_ids.tolist() == [2, 1]


def test_overlapping_rows_of_one_class_are_all_kept_whatever_the_iou_threshold():
    head = head_of((10, 10, 50, 50, 0.9, 0), (10, 10, 50, 50, 0.8, 0))
    post = Postprocessor(num_classes=80, head_kind="end2end")
    assert len(post.detect(head, NO_LETTERBOX, iou_threshold=0.0)) == 2


def test_boxes_are_mapped_through_the_letterbox_and_clipped():
    # a 1280x720 image letterboxed into 640x640: gain 0.5, 140 px of padding above and below
    mapping = np.array([0.5, 0, 140, 1280, 720], np.float32)
    head = head_of((288, 148, 352, 212, 0.9, 0), (600, 100, 700, 600, 0.8, 1))
    found = Postprocessor(num_classes=2, head_kind="end2end").detect(head, mapping)
    np.testing.assert_allclose(found.boxes[0], [576, 16, 704, 144])  # (x - pad) / gain
    np.testing.assert_allclose(found.boxes[1], [1200, 0, 1280, 720])  # past the image: clipped to it


def test_a_batch_is_padded_to_max_det_image_by_image():
    post = Postprocessor(num_classes=2, max_det=5, head_kind="end2end")
    first = head_of((0, 0, 10, 10, 0.9, 1), (5, 5, 20, 20, 0.3, 0))
    second = head_of(*[(i, i, i + 8, i + 8, 0.6, 0) for i in range(7)])
    heads = np.stack([first, second])
    mappings = np.stack([NO_LETTERBOX, np.array([2, 0, 0, 1280, 1280], np.float32)])
    out = post.batch(heads, mappings, confs=[None, 0.5], ious=[None, None])
    assert out["num_dets"].tolist() == [[2], [5]]  # the second image's 7 rows above 0.5, cut to max_det
    assert out["det_boxes"].shape == (2, 5, 4)
    assert out["det_scores"].shape == out["det_classes"].shape == (2, 5)
    np.testing.assert_allclose(out["det_boxes"][0, :2], [[0, 0, 10, 10], [5, 5, 20, 20]])
    assert not out["det_boxes"][0, 2:].any() and not out["det_scores"][0, 2:].any()
    np.testing.assert_allclose(out["det_boxes"][1], [[i / 2, i / 2, (i + 8) / 2, (i + 8) / 2] for i in range(5)])
    assert out["det_classes"][0].tolist() == [1, 0, 0, 0, 0]
    assert out["image_size"].tolist() == [[640, 640], [1280, 1280]]


def test_a_per_request_conf_threshold_applies_and_a_bad_iou_threshold_is_still_refused():
    post = Postprocessor(num_classes=1, head_kind="end2end")
    head = head_of((0, 0, 5, 5, 0.4, 0), (0, 0, 5, 5, 0.6, 0))
    assert len(post.detect(head, NO_LETTERBOX)) == 2
    assert len(post.detect(head, NO_LETTERBOX, conf_threshold=0.5)) == 1
    with pytest.raises(ThresholdError, match="iou_threshold"):
        post.detect(head, NO_LETTERBOX, iou_threshold=1.5)


def test_a_head_of_the_other_kind_is_refused():
    with pytest.raises(ValueError, match=r"\(rows, 6\)"):
        Postprocessor(num_classes=2, head_kind="end2end").detect(np.zeros((6, 8400), np.float32), NO_LETTERBOX)
    with pytest.raises(ValueError, match="head must be one of raw, end2end"):
        Postprocessor(num_classes=2, head_kind="e2e")
