"""INT8 on CPU: ``prepare --int8`` quantizes the installed model with NNCF, calibrated on photos as served."""

from __future__ import annotations

import numpy as np
import pytest
from sample_images import PHOTOS, SAMPLES

from python_backends.prepare.int8 import CalibrationError, head_decode_ops, read_calibration


def test_the_head_decode_stays_in_float(default_onnx):
    """The decode ops directly in /model.22, its DFL and class Sigmoid; not the head's conv blocks."""
    import openvino as ov

    names = head_decode_ops(ov.Core().read_model(str(default_onnx)))
    assert sorted(names) == sorted(
        ["/model.22/Sigmoid", "/model.22/Sub", "/model.22/Sub_1", "/model.22/Add_1", "/model.22/Add_2",
         "/model.22/Div_1", "/model.22/Mul_2", "/model.22/dfl/Reshape", "/model.22/dfl/Transpose",
         "/model.22/dfl/Softmax", "/model.22/dfl/conv/Conv", "/model.22/dfl/Reshape_1"]
    )  # fmt: skip


def test_calibration_reads_photos_as_served_and_counts_unreadable_files(tmp_path):
    from python_backends.preprocess.preprocessor import Preprocessor

    for name in PHOTOS[:2]:
        (tmp_path / name).write_bytes((SAMPLES / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "truncated.jpg").write_bytes((SAMPLES / "bus.jpg").read_bytes()[:200])
    found = read_calibration(tmp_path, 640, 640)
    assert len(found.tensors) == 2 and len(found.skipped) == 2
    expected = Preprocessor().from_bytes((SAMPLES / PHOTOS[0]).read_bytes())[0]
    np.testing.assert_array_equal(found.tensors[0], expected)
    assert found.summary().startswith("calibration: 2 images, 2 unreadable file(s) skipped (")
    assert found.warning() == (
        "warning: only 2 calibration images; 64 or more ordinary photos give reliable INT8 ranges"
    )


def test_an_empty_or_missing_folder_is_an_error(tmp_path):
    with pytest.raises(CalibrationError, match="holds no files"):
        read_calibration(tmp_path, 640, 640)
    (tmp_path / "a.jpg").write_bytes(b"junk")
    with pytest.raises(CalibrationError, match="holds 1 file\\(s\\), none a readable image"):
        read_calibration(tmp_path, 640, 640)
    with pytest.raises(CalibrationError, match="does not exist"):
        read_calibration(tmp_path / "missing", 640, 640)
