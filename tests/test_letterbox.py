"""Letterbox and box mapping against Ultralytics (reference tensors pinned in the reference JSON)."""

import hashlib

import numpy as np
import pytest

from python_backends.postprocess.postprocessor import scale_boxes
from python_backends.preprocess.letterbox import box_mapping, letterbox, letterbox_geometry
from python_backends.preprocess.preprocessor import Preprocessor


@pytest.mark.parametrize(
    ("hw", "resized_wh", "tblr"),
    [
        ((1080, 810), (480, 640), (0, 0, 80, 80)),  # portrait: pad left/right
        ((720, 1280), (640, 360), (140, 140, 0, 0)),  # landscape
        ((600, 512), (546, 640), (0, 0, 47, 47)),  # odd total padding 94: 47 + 47
        ((481, 640), (640, 481), (79, 80, 0, 0)),  # odd 159: Ultralytics puts the extra pixel at the bottom
        ((1, 1), (640, 640), (0, 0, 0, 0)),  # upscaled
        ((10, 4000), (640, 2), (319, 319, 0, 0)),  # extreme aspect: 1.6 rounds to 2 rows
    ],
)
def test_geometry_matches_ultralytics_rounding(hw, resized_wh, tblr):
    geo = letterbox_geometry(*hw, 640, 640)
    assert (geo.resized_w, geo.resized_h) == resized_wh
    assert (geo.top, geo.bottom, geo.left, geo.right) == tblr
    assert geo.resized_h + geo.top + geo.bottom == 640
    assert geo.resized_w + geo.left + geo.right == 640


def test_letterbox_pads_with_114_and_keeps_content():
    image = np.full((100, 200, 3), 7, np.uint8)
    out = letterbox(image, 64, 64)
    assert out.shape == (64, 64, 3)
    assert (out[:16] == 114).all() and (out[-16:] == 114).all()
    assert (out[16:48] == 7).all()


def test_preprocessed_tensor_is_bitwise_ultralytics(sample_images, reference):
    """Decode + letterbox + BGR→RGB + /255 give exactly Ultralytics' predict input."""
    pre = Preprocessor(640, 640)
    for name, expected in reference["preprocessed"].items():
        tensor, _ = pre.from_bytes(sample_images[name].read_bytes())
        assert list(tensor[None].shape) == expected["shape"]
        assert hashlib.sha256(tensor.astype("<f4").tobytes()).hexdigest() == expected["sha256"], name


def test_box_mapping_inverts_the_letterbox():
    mapping = box_mapping(1080, 810, 640, 640)  # gain 0.5926, pad_x 80
    gain = 640 / 1080
    boxes = np.array([[80 + 10 * gain, 20 * gain, 80 + 100 * gain, 200 * gain]], np.float32)
    np.testing.assert_allclose(scale_boxes(boxes, mapping), [[10, 20, 100, 200]], atol=1e-3)


def test_scale_boxes_clips_to_the_image():
    mapping = box_mapping(720, 1280, 640, 640)  # gain 0.5, pad_y 140
    out = scale_boxes(np.array([[-5, 100, 700, 600]], np.float32), mapping)
    np.testing.assert_allclose(out, [[0, 0, 1280, 720]])
