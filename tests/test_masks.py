"""The segment masks' library without a server: retina masks inside each box, their COCO RLE, and the
postprocessor's det_masks. Served parity with Ultralytics is tests/test_tasks.py's (model fall_seg).

The masks are checked against the same steps done on the whole image with OpenCV (Ultralytics'
``process_mask_native``: upsample, cut the padding, resize, threshold, crop), and the RLE against
faster_coco_eval's (pycocotools') ``encode``, on random prototypes, coefficients and boxes: no model.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from faster_coco_eval.core import mask as coco_mask

from python_backends.postprocess.masks import (
    BoxMask,
    bilinear_weights,
    box_masks,
    encode_masks,
    rle_counts,
    rle_string,
    rle_strings,
    upsample_factor,
)
from python_backends.postprocess.postprocessor import Postprocessor

PROTO_HW = (120, 160)  # a 480x640 input's prototypes


def _box(top: int, left: int, mask: np.ndarray) -> BoxMask:
    """bool (rows, columns) ``mask`` at (top, left), laid out as box_masks lays its masks out."""
    by_column = np.zeros((mask.shape[1], mask.shape[0] + 2), bool)
    by_column[:, 1:-1] = mask.T
    return BoxMask(top, left, by_column)


def _coco(mask: np.ndarray) -> bytes:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]


def _whole_image_masks(prototypes, coefficients, boxes, image_hw):
    """Ultralytics' process_mask_native on the whole image, in OpenCV: bool (N, h, w)."""
    (mh, mw), (h, w) = prototypes.shape[1:], image_hw
    f = upsample_factor((mh, mw), image_hw)
    gain = min(f * mh / h, f * mw / w)
    pad_w, pad_h = (f * mw - max(round(w * gain), 1)) / 2, (f * mh - max(round(h * gain), 1)) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    bottom, right = top + max(round(h * gain), 1), left + max(round(w * gain), 1)
    masks = []
    for logits, (x1, y1, x2, y2) in zip(np.einsum("nc,chw->nhw", coefficients, prototypes), boxes):
        if f > 1:
            logits = cv2.resize(logits, (f * mw, f * mh), interpolation=cv2.INTER_LINEAR)
        full = cv2.resize(logits[top:bottom, left:right], (w, h), interpolation=cv2.INTER_LINEAR) > 0
        columns, rows = np.arange(w)[None, :], np.arange(h)[:, None]
        masks.append(full & (columns >= x1) & (columns < x2) & (rows >= y1) & (rows < y2))
    return np.array(masks)


def test_bilinear_weights_resize_as_opencv_does():
    row = np.random.default_rng(0).standard_normal(37).astype(np.float32)
    for target in (37 * 4, 101, 1080):
        want = cv2.resize(row[None], (target, 1), interpolation=cv2.INTER_LINEAR)[0]
        np.testing.assert_allclose(bilinear_weights(37, target, np.arange(target)) @ row, want, atol=1e-5)


@pytest.mark.parametrize("image_hw", [(1080, 810), (720, 1280), (1080, 1920), (480, 636), (479, 641)])
def test_box_masks_equal_the_whole_image_upsampled_thresholded_and_cropped(image_hw):
    rng = np.random.default_rng(sum(image_hw))
    prototypes = rng.standard_normal((32, *PROTO_HW)).astype(np.float32)
    coefficients = rng.standard_normal((6, 32)).astype(np.float32)
    corners = np.sort(rng.uniform(-20, np.array(image_hw[::-1]) + 20, (6, 2, 2)), axis=1)  # some past the edges
    boxes = np.concatenate([corners[:, 0], corners[:, 1]], axis=1).clip(0, [*image_hw[::-1]] * 2).astype(np.float32)
    want = _whole_image_masks(prototypes, coefficients, boxes, image_hw)
    for box, expected in zip(box_masks(prototypes, coefficients, boxes, image_hw), want):
        got = np.zeros(image_hw, bool)
        got[box.top : box.top + box.mask.shape[0], box.left : box.left + box.mask.shape[1]] = box.mask
        assert (got != expected).sum() <= max(5, expected.sum() // 2000)  # float rounding on the edge only
        assert expected.sum() > 0


def test_the_upsampling_puts_the_padding_on_whole_pixels():
    assert upsample_factor(PROTO_HW, (1080, 1920)) == 1  # 640x360 content: 60 px of padding a side, 15 prototypes
    assert upsample_factor(PROTO_HW, (1080, 810)) == 1  # 360x480 content: 140 px a side, 35 prototypes
    assert upsample_factor(PROTO_HW, (480, 636)) == 2  # 636x480 content: 2 px a side, half a prototype
    assert upsample_factor(PROTO_HW, (479, 641)) == 4  # 639x477 content: 0.5 px a side


def test_rle_is_pycocotools_encoding_of_the_full_image_mask():
    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = rng.integers(1, 30, 2)
        top, left = rng.integers(0, height), rng.integers(0, width)
        mask = rng.random((rng.integers(0, height - top + 1), rng.integers(0, width - left + 1))) < rng.random()
        full = np.zeros((height, width), bool)
        full[top : top + mask.shape[0], left : left + mask.shape[1]] = mask
        assert rle_string(rle_counts(_box(top, left, mask), (height, width))) == _coco(full)


def test_rle_edges_a_run_across_columns_the_last_pixel_and_long_runs():
    across = np.zeros((4, 3), bool)
    across[2:, 0] = across[:2, 1] = True  # one run from column 0's bottom into column 1's top
    assert rle_counts(_box(0, 0, across), (4, 3)).tolist() == [2, 4, 6]
    assert rle_string(rle_counts(_box(0, 0, across), (4, 3))) == _coco(across)
    corner = np.ones((1, 1), bool)  # the image's last pixel
    assert rle_counts(_box(5, 5, corner), (6, 6)).tolist() == [35, 1]
    big = np.zeros((1080, 1920), bool)
    big[100:900, 300:1700] = True  # runs of a million pixels: several 5-bit groups each
    assert rle_string(rle_counts(_box(100, 300, big[100:900, 300:1700]), big.shape)) == _coco(big)
    assert rle_string(rle_counts(_box(0, 0, np.zeros((0, 0), bool)), (3, 2))) == _coco(np.zeros((3, 2), bool))
    corner_image = np.zeros((6, 6), bool)
    corner_image[5, 5] = True
    both = [rle_counts(_box(0, 0, across), (4, 3)), rle_counts(_box(5, 5, corner), (6, 6))]
    assert rle_strings(both) == [_coco(across), _coco(corner_image)]  # encoded at once, cut apart


def test_encode_masks_round_trips_through_coco_decode():
    mask = np.random.default_rng(1).random((50, 70)) < 0.3
    (rle,) = encode_masks([_box(10, 20, mask)], (100, 120))
    decoded = coco_mask.decode({"size": [100, 120], "counts": rle}).astype(bool)
    assert decoded[10:60, 20:90].tolist() == mask.tolist() and decoded.sum() == mask.sum()


def _segment_head(boxes: list[tuple[float, float, float, float]], coefficients: np.ndarray) -> np.ndarray:
    """float32 (4 + 2 + 32, 100): ``boxes`` (cx, cy, w, h) of class 0 scored 0.9 with ``coefficients``, in the
    first anchors; the rest scored 0."""
    head = np.zeros((38, 100), np.float32)
    for anchor, (box, coefficient) in enumerate(zip(boxes, coefficients)):
        head[0:4, anchor], head[4, anchor], head[6:, anchor] = box, 0.9, coefficient
    return head


def test_the_postprocessor_answers_rle_rows_and_drops_a_detection_whose_mask_is_empty():
    """Two far-apart boxes on a 480x640 input of a 480x640 image: one with a positive mask, one negative."""
    prototypes = np.ones((1, 32, *PROTO_HW), np.float32)
    coefficients = np.stack([np.full(32, 0.1), np.full(32, -0.1)]).astype(np.float32)
    head = _segment_head([(100, 100, 40, 60), (400, 300, 40, 60)], coefficients)
    mapping = np.array([[1.0, 0.0, 0.0, 640.0, 480.0]], np.float32)
    post = Postprocessor(2, max_det=5, task="segment")
    out = post.batch(head[None], mapping, [None], [None], prototypes)
    assert out["num_dets"].tolist() == [[1]] and out["det_boxes"][0, 0].tolist() == [80, 70, 120, 130]
    mask = coco_mask.decode({"size": [480, 640], "counts": out["det_masks"][0, 0]}).astype(bool)
    assert mask.sum() == 40 * 60 and mask[70:130, 80:120].all()
    assert out["det_masks"].shape == (1, 5) and out["det_masks"][0, 1:].tolist() == [b""] * 4
    nothing = post.batch(head[None], mapping, [None], [None], np.zeros_like(prototypes))  # every mask empty
    assert nothing["num_dets"].tolist() == [[0]] and nothing["det_masks"][0].tolist() == [b""] * 5
    with pytest.raises(ValueError, match="prototypes"):
        post.batch(head[None], mapping, [None], [None])
