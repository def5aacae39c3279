"""Letterbox and box mapping against Ultralytics (reference tensors pinned in the reference JSON).

The in-process Preprocessor and the served ``yolov8_preprocess`` hand uint8 RGB pixels to the model, which divides
them by 255 first (``prepare.onnx_model.with_pixel_input``): that float32 division of their pixels must give those
tensors bit for bit.
"""

import hashlib

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from python_backends.postprocess.postprocessor import scale_boxes
from python_backends.preprocess.letterbox import box_mapping, letterbox, letterbox_geometry
from python_backends.preprocess.preprocessor import Preprocessor

# LETTERBOX (gain, pad_x, pad_y, width, height) worked out by hand for the sample photos' (height, width):
# gain = min(640 / height, 640 / width); pad = round((640 - side * gain) / 2 - 0.1).
PHOTO_MAPPINGS = {
    "bus.jpg": [640 / 1080, 80, 0, 810, 1080],  # 1080 x 810: resized 640 x 480, pad_x (640 - 480) / 2
    "zidane.jpg": [0.5, 0, 140, 1280, 720],  # 720 x 1280: resized 360 x 640
    "grace_hopper.jpg": [640 / 600, 47, 0, 512, 600],  # 600 x 512: 546.13 wide, round(46.93 - 0.1) = 47
    "astronaut.png": [1.25, 0, 0, 512, 512],
    "camera.png": [1.25, 0, 0, 512, 512],
}


def sha256_of(pixels: np.ndarray) -> str:
    """SHA-256 of the little-endian bytes of uint8 ``pixels`` / 255 in float32 (the served model's first two
    operations, Ultralytics' ``im / 255``), as the reference JSON pins Ultralytics' predict input."""
    assert pixels.dtype == np.uint8
    return hashlib.sha256(np.divide(pixels, np.float32(255), dtype=np.float32).astype("<f4").tobytes()).hexdigest()


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
    """Decode + letterbox + BGR→RGB, then the model's /255, give exactly Ultralytics' predict input."""
    pre = Preprocessor(640, 640)
    for name, expected in reference["preprocessed"].items():
        tensor, _ = pre.from_bytes(sample_images[name].read_bytes())
        assert list(tensor[None].shape) == expected["shape"]
        assert sha256_of(tensor) == expected["sha256"], name


def test_served_preprocess_output_is_bitwise_ultralytics(grpc_client, sample_images, reference):
    """yolov8_preprocess on the real server returns Ultralytics' predict input as uint8 pixels, and the
    hand-worked LETTERBOX."""
    for name, expected in reference["preprocessed"].items():
        image = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[sample_images[name].read_bytes()]], dtype=object))
        outputs = [grpcclient.InferRequestedOutput("images"), grpcclient.InferRequestedOutput("LETTERBOX")]
        reply = grpc_client.infer("yolov8_preprocess", [image], outputs=outputs)
        tensor = reply.as_numpy("images")
        assert (list(tensor.shape), tensor.dtype) == (expected["shape"], np.uint8), name
        assert sha256_of(tensor) == expected["sha256"], name
        if name in PHOTO_MAPPINGS:
            np.testing.assert_allclose(reply.as_numpy("LETTERBOX")[0], PHOTO_MAPPINGS[name], rtol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    ("name", "hw"),
    [
        ("bus.jpg", (1080, 810)),
        ("zidane.jpg", (720, 1280)),
        ("grace_hopper.jpg", (600, 512)),
        ("camera.png", (512, 512)),
    ],
)
def test_box_mapping_of_the_photos(name, hw):
    mapping = box_mapping(*hw, 640, 640)
    assert mapping.dtype == np.float32
    np.testing.assert_allclose(mapping, PHOTO_MAPPINGS[name], rtol=1e-6)


def test_box_mapping_rounds_odd_padding_down():
    np.testing.assert_allclose(box_mapping(481, 640, 640, 640), [1.0, 0, 79, 640, 481])  # (640 - 481) / 2 = 79.5


def test_box_mapping_inverts_the_letterbox():
    mapping = box_mapping(1080, 810, 640, 640)  # gain 0.5926, pad_x 80
    np.testing.assert_allclose(mapping, [640 / 1080, 80, 0, 810, 1080], rtol=1e-6)
    gain = 640 / 1080
    boxes = np.array([[80 + 10 * gain, 20 * gain, 80 + 100 * gain, 200 * gain]], np.float32)
    np.testing.assert_allclose(scale_boxes(boxes, mapping), [[10, 20, 100, 200]], atol=1e-3)


def test_scale_boxes_clips_to_the_image():
    mapping = box_mapping(720, 1280, 640, 640)  # gain 0.5, pad_y 140
    np.testing.assert_allclose(mapping, [0.5, 0, 140, 1280, 720])
    out = scale_boxes(np.array([[-5, 100, 700, 600]], np.float32), mapping)
    np.testing.assert_allclose(out, [[0, 0, 1280, 720]])
