"""decode_image and the header reader: limits before decoding, and cv2.imread's behaviour otherwise."""

import glob
import tempfile

import cv2
import numpy as np
import pytest
from bad_images import (
    bmp_bomb,
    cmyk_jpeg,
    encode,
    gif_bomb,
    hdr_bomb,
    jpeg_with_size,
    palette_png,
    png_bomb,
    pnm_bomb,
    tiff_bomb,
    webp_bomb,
)

from python_backends.preprocess.image_decode import ImageDecodeError, declared_size, decode_image
from python_backends.preprocess.jpeg import jpeg_is_truncated


def test_declared_size_of_every_parsed_format():
    image = np.zeros((30, 70, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".webp"):
        assert declared_size(encode(image, ext)) == (70, 30), ext
    lossless = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1]
    assert declared_size(lossless.tobytes()) == (70, 30)
    assert declared_size(b"II*\x00 a TIFF is left to OpenCV") is None
    for ext in (".tiff", ".ppm"):  # every format that Pillow reads gets the same check
        assert declared_size(encode(image, ext)) == (70, 30), ext


@pytest.mark.parametrize(
    "data, size",
    [
        (png_bomb(), (60000, 60000)),
        (jpeg_with_size(65000, 65000), (65000, 65000)),
        (bmp_bomb(), (60000, 60000)),
        (webp_bomb(), (16384, 16384)),
        (gif_bomb(), (65535, 65535)),
        (tiff_bomb(), (60000, 60000)),
        (pnm_bomb(), (60000, 60000)),
    ],
    ids=["png", "jpeg", "bmp", "webp", "gif", "tiff", "pnm"],
)
def test_bombs_are_refused_before_decoding(data, size):
    assert declared_size(data) == size
    with pytest.raises(ImageDecodeError, match=rf"image too large: its header declares {size[0]}x{size[1]}"):
        decode_image(data)


def test_pixel_and_byte_limits_are_configurable():
    data = encode(np.zeros((100, 100, 3), np.uint8))
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(ImageDecodeError, match="the limit is 9999"):
        decode_image(data, max_pixels=9_999)
    with pytest.raises(ImageDecodeError, match=rf"image too large: {len(data)} bytes encoded, the limit is 10\b"):
        decode_image(data, max_bytes=10)


def test_empty_random_and_truncated_input_is_refused(sample_images):
    with pytest.raises(ImageDecodeError, match="empty image"):
        decode_image(b"")
    with pytest.raises(ImageDecodeError, match="cannot decode image"):
        decode_image(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    jpeg = sample_images["bus.jpg"].read_bytes()
    assert not jpeg_is_truncated(jpeg)
    for cut in (len(jpeg) // 2, 400, 3):
        with pytest.raises(ImageDecodeError, match="truncated JPEG"):
            decode_image(jpeg[:cut])
    with pytest.raises(ImageDecodeError, match="truncated PNG header"):
        decode_image(png_bomb()[:20])


def test_tiny_and_extreme_aspect_images_decode():
    for shape in [(1, 1, 3), (10, 4000, 3), (4000, 10, 3)]:
        assert decode_image(encode(np.full(shape, 200, np.uint8))).shape == shape


@pytest.mark.parametrize("variant", ["bus_gray.jpg", "zidane_rgba.png", "hopper_16bit.png", "palette", "cmyk"])
def test_formats_decode_like_imread(sample_images, tmp_path, variant):
    if variant in ("palette", "cmyk"):
        make, ext = (palette_png, ".png") if variant == "palette" else (cmyk_jpeg, ".jpg")
        path = tmp_path / f"{variant}{ext}"
        path.write_bytes(make(sample_images["zidane.jpg"].read_bytes()))
    else:
        path = sample_images[variant]
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decode_image(path.read_bytes()), expected)


def test_formats_opencv_reads_only_from_a_file_leave_no_file(tmp_path, monkeypatch):
    """Radiance HDR, Sun raster and PFM decode as cv2.imread reads their file. cv2.imdecode writes them to a file
    of its own in /tmp and leaves it there when the decoder raises, as for this HDR header of 1.6 G pixels (over
    OpenCV's own limit of 2^30): one file per bad request, as large as the request."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    opencv_files = set(glob.glob("/tmp/__opencv_temp*"))
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), np.uint8)
    for ext, pixels in ((".hdr", image.astype(np.float32) / 255), (".ras", image), (".pfm", image.astype(np.float32))):
        data, path = encode(pixels, ext), tmp_path / f"image{ext}"
        path.write_bytes(data)
        expected = cv2.imread(str(path), cv2.IMREAD_COLOR)
        path.unlink()
        np.testing.assert_array_equal(decode_image(data), expected)
    with pytest.raises(ImageDecodeError, match="CV_IO_MAX_IMAGE_PIXELS"):
        decode_image(hdr_bomb(40000, 40000))
    assert list(tmp_path.iterdir()) == []
    assert set(glob.glob("/tmp/__opencv_temp*")) == opencv_files
