"""The GPU path's selection logic, cache key and pure logic, on any machine; GPU parity where there is one."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from evaluation.detection_match import mismatches
from prepare.cli import main
from prepare.prepare_model import write_engine_settings
from prepare.repository import copy_template
from python_backends.infer.base import RuntimeUnavailable
from python_backends.infer.select import create_runtime, tensorrt_unavailable_reason
from python_backends.infer.tensorrt_engine import EngineKey, EngineOptions, options_from_parameters, parse_profile
from python_backends.infer.tensorrt_runtime import TensorSpec, profile_input_shapes, resolved_shape
from python_backends.paths import PROJECT_ROOT
from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.preprocess.cvcuda_preprocessor import GpuPreprocessingUnavailable, letterbox_plan
from python_backends.preprocess.letterbox import letterbox, letterbox_geometry
from python_backends.preprocess.preprocessor import Preprocessor
from python_backends.preprocess.select import create_preprocessor
from python_backends.triton_helpers.gpu_arrays import (
    concatenate_on,
    gpu_unavailable_reason,
    is_device_array,
    to_host,
)

NO_TENSORRT = tensorrt_unavailable_reason()
GPU_MODULES = (
    "python_backends.triton_helpers.gpu_arrays",
    "python_backends.triton_helpers.tensors",
    "python_backends.infer.tensorrt_engine",
    "python_backends.infer.tensorrt_build",
    "python_backends.preprocess.cvcuda_preprocessor",
    "python_backends.preprocess.select",
    "python_backends.infer.tensorrt_runtime",
    "python_backends.infer.fastdeploy_runtime",
    "python_backends.infer.select",
)


# --- runtime selection -------------------------------------------------------------------------


@pytest.mark.skipif(NO_TENSORRT is None, reason="this machine has a GPU with TensorRT: auto would pick it")
def test_auto_without_gpu_picks_onnxruntime(default_onnx):
    said = []
    runtime = create_runtime("auto", str(default_onnx), log=said.append)
    assert runtime.name == "onnxruntime" and runtime.device == "cpu"
    assert "using onnxruntime" in said[0] and "tensorrt" in said[0]


@pytest.mark.skipif(NO_TENSORRT is None, reason="this machine has a GPU with TensorRT")
def test_explicit_tensorrt_without_gpu_fails_with_the_reason(default_onnx):
    with pytest.raises(RuntimeUnavailable, match="runtime 'tensorrt' is unavailable: .*(GPU|cupy|tensorrt)"):
        create_runtime("tensorrt", str(default_onnx))


def test_fastdeploy_is_unavailable_unless_it_imports(default_onnx):
    try:
        import fastdeploy  # noqa: F401
    except Exception:
        with pytest.raises(RuntimeUnavailable, match="fastdeploy does not import"):
            create_runtime("fastdeploy", str(default_onnx))
    else:
        pytest.skip("fastdeploy imports here")


def test_unknown_runtime_is_refused(default_onnx):
    with pytest.raises(RuntimeUnavailable, match="unknown runtime 'tflite'"):
        create_runtime("tflite", str(default_onnx))


# --- engine cache key ---------------------------------------------------------------------------

BASE_KEY = EngineKey("10.13.0.35", "NVIDIA L4", "8.9", "ab" * 32, EngineOptions())


@pytest.mark.parametrize(
    "changed",
    [
        dataclasses.replace(BASE_KEY, tensorrt_version="10.13.2.6"),
        dataclasses.replace(BASE_KEY, gpu_name="NVIDIA L40S"),  # the same sm8.9
        dataclasses.replace(BASE_KEY, compute_capability="9.0"),
        dataclasses.replace(BASE_KEY, onnx_sha256="cd" * 32),
        dataclasses.replace(BASE_KEY, options=EngineOptions(input_height=480)),
        dataclasses.replace(BASE_KEY, options=EngineOptions(input_width=480)),
        dataclasses.replace(BASE_KEY, options=EngineOptions(min_batch=2)),
        dataclasses.replace(BASE_KEY, options=EngineOptions(opt_batch=1)),
        dataclasses.replace(BASE_KEY, options=EngineOptions(max_batch=40)),
        dataclasses.replace(BASE_KEY, options=EngineOptions(fp16=False)),
    ],
    ids=["trt", "gpu", "sm", "onnx", "height", "width", "min", "opt", "max", "precision"],
)
def test_engine_key_changes_with_each_part(changed):
    assert changed.digest() != BASE_KEY.digest()
    assert changed.filename() != BASE_KEY.filename()


def test_engine_key_is_stable_and_names_its_parts():
    again = EngineKey("10.13.0.35", "NVIDIA L4", "8.9", "ab" * 32, EngineOptions())
    assert again.digest() == BASE_KEY.digest()
    assert BASE_KEY.filename().startswith("yolov8-trt10.13.0.35-NVIDIA-L4-sm8.9-fp16-")
    odd = dataclasses.replace(BASE_KEY, gpu_name="NVIDIA H100 80GB HBM3 / MIG 1g.10gb")
    assert odd.filename().startswith("yolov8-trt10.13.0.35-NVIDIA-H100-80GB-HBM3-MIG-1g.10gb-sm8.9-fp16-")


def test_profile_and_precision_parameters():
    assert parse_profile("1, 1, 40") == (1, 1, 40)
    options = options_from_parameters({"precision": "fp32", "trt_batch_profile": "2,4,16"}, 480, 640)
    assert options == EngineOptions(480, 640, 2, 4, 16, fp16=False)
    assert options.input_shapes() == ((2, 3, 480, 640), (4, 3, 480, 640), (16, 3, 480, 640))
    assert options_from_parameters({}, 640, 640) == EngineOptions()  # 1/8/32, FP16
    with pytest.raises(ValueError, match="min <= opt <= max"):
        EngineOptions(min_batch=8, opt_batch=4)
    with pytest.raises(ValueError, match="three integers"):
        parse_profile("1,8")
    with pytest.raises(ValueError, match="fp16 or fp32"):
        options_from_parameters({"precision": "int8"}, 640, 640)


def test_prepare_writes_settings_the_served_model_reads_back(tmp_path):
    """What prepare --tensorrt writes into yolov8_infer's configs gives the served model the same options."""
    copy_template(PROJECT_ROOT / "model_repository", tmp_path)
    options = EngineOptions(640, 640, 1, 1, 40, fp16=False)
    write_engine_settings(tmp_path, options, tmp_path / "engines")
    for config in ("config.pbtxt", "configs/gpu.pbtxt"):
        text = (tmp_path / "yolov8_infer" / config).read_text()
        params = dict(re.findall(r'key: "(\w+)", value: \{ string_value: "([^"]*)" \}', text))
        assert options_from_parameters(params, 640, 640) == options, config
        assert params["engine_dir"] == str((tmp_path / "engines").resolve()), config


# --- modules import without a GPU; pure logic -----------------------------------------------------


def test_gpu_modules_import_without_touching_cuda():
    """Importing every GPU module loads none of cupy, tensorrt, cvcuda, nvimgcodec or fastdeploy."""
    code = (
        "import importlib, sys\n"
        f"for name in {GPU_MODULES!r}: importlib.import_module(name)\n"
        "heavy = {'cupy', 'tensorrt', 'cvcuda', 'nvcv', 'nvidia.nvimgcodec', 'fastdeploy'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    reply = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("hw", "resize_shape", "tblr"),
    [
        ((1080, 810), (1, 640, 480, 3), (0, 0, 80, 80)),  # gain 640 / 1080: 810 -> 480, pad (640 - 480) / 2
        ((720, 1280), (1, 360, 640, 3), (140, 140, 0, 0)),  # gain 0.5
        ((600, 512), (1, 640, 546, 3), (0, 0, 47, 47)),  # 512 * 640 / 600 = 546.13 -> 546, pad 94 = 47 + 47
        ((481, 640), None, (79, 80, 0, 0)),  # gain 1: no resize; pad 159 = 79 + 80 (extra pixel at the bottom)
        ((640, 640), None, (0, 0, 0, 0)),
        ((10, 4000), (1, 2, 640, 3), (319, 319, 0, 0)),  # gain 0.16: 10 rows -> 1.6 -> 2
        ((3, 5), (1, 384, 640, 3), (128, 128, 0, 0)),  # gain 128 (upscaled): 3 rows -> 384, pad 256 = 128 + 128
    ],
)
def test_gpu_letterbox_plan_matches_the_cpu_letterbox(hw, resize_shape, tblr):
    """The CV-CUDA resize size and borders put the image exactly where the CPU letterbox does."""
    plan = letterbox_plan(*hw, 640, 640)
    assert plan.resize_shape == resize_shape
    assert (plan.top, plan.bottom, plan.left, plan.right) == tblr
    geo = letterbox_geometry(*hw, 640, 640)
    resized = (1, hw[0], hw[1], 3) if plan.resize_shape is None else plan.resize_shape
    assert resized[1:3] == (geo.resized_h, geo.resized_w)
    assert resized[1] + plan.top + plan.bottom == 640 and resized[2] + plan.left + plan.right == 640
    cpu = letterbox(np.zeros((*hw, 3), np.uint8), 640, 640)
    content = np.argwhere((cpu != 114).any(axis=2))
    assert tuple(content.min(axis=0)) == (plan.top, plan.left)
    assert tuple(content.max(axis=0) + 1) == (640 - plan.bottom, 640 - plan.right)


def test_bindings_take_the_profile_max_shape_dynamic_height_and_width_included():
    """A dynamic=True export is dynamic in batch, H and W: its bindings are sized at the profile's max input."""
    profile = ((1, 3, 480, 640), (8, 3, 480, 640), (32, 3, 480, 640))
    for shape in ((-1, 3, 480, 640), (-1, 3, -1, -1)):
        spec = TensorSpec("images", True, shape, np.dtype(np.float32))
        assert profile_input_shapes(spec, profile) == ((1, 3, 480, 640), (32, 3, 480, 640))
    fixed = TensorSpec("images", True, (1, 3, 640, 640), np.dtype(np.float32))  # NMS inside for batch 1: no profile
    assert profile_input_shapes(fixed, None) == ((1, 3, 640, 640), (1, 3, 640, 640))
    with pytest.raises(RuntimeUnavailable, match="dynamic but the engine has no profile"):
        profile_input_shapes(TensorSpec("images", True, (-1, 3, -1, -1), np.dtype(np.float32)), None)
    assert resolved_shape("output0", (32, 84, 6300)) == (32, 84, 6300)
    with pytest.raises(RuntimeUnavailable, match="even at the profile's max input shape"):
        resolved_shape("output0", (32, 84, -1))


@pytest.mark.skipif(NO_TENSORRT is None, reason="this machine has TensorRT and a GPU")
def test_gpu_classes_refuse_clearly_without_a_gpu(tmp_path, default_onnx):
    from python_backends.infer.fastdeploy_runtime import FastDeployRuntime
    from python_backends.infer.tensorrt_runtime import TensorRTRuntime

    with pytest.raises(RuntimeUnavailable, match="runtime 'tensorrt' is unavailable"):
        TensorRTRuntime(tmp_path / "missing.engine")
    try:
        import fastdeploy  # noqa: F401
    except Exception:
        with pytest.raises(RuntimeUnavailable, match="fastdeploy does not import"):
            FastDeployRuntime(default_onnx, EngineOptions(), tmp_path / "fd.engine")


def test_host_arrays_pass_through_the_device_helpers():
    a, b = np.ones((2, 3), np.float32), np.zeros((1, 3), np.float32)
    assert not is_device_array(a)
    assert to_host(a) is a
    assert concatenate_on([a, b], "cpu").shape == (3, 3) and concatenate_on([a], "cpu") is a
    assert Preprocessor.stack([a, a]).shape == (2, 2, 3) and Preprocessor.stack([a]).base is a

    class FakeDeviceArray:
        __cuda_array_interface__ = {}

    assert is_device_array(FakeDeviceArray())


def test_preprocessing_device_choice():
    assert isinstance(create_preprocessor("cpu", 320, 320), Preprocessor)
    with pytest.raises(ValueError, match="auto, cpu, gpu"):
        create_preprocessor("tpu")
    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is present: auto and gpu may take it")
    said = []
    assert isinstance(create_preprocessor("auto", log=said.append), Preprocessor)
    assert "using OpenCV on CPU" in said[0]
    with pytest.raises(GpuPreprocessingUnavailable, match="device 'gpu' is unavailable"):
        create_preprocessor("gpu")


@pytest.mark.skipif(NO_TENSORRT is None, reason="this machine has TensorRT and a GPU")
def test_prepare_tensorrt_without_tensorrt_exits_2_and_touches_nothing(tmp_path, default_onnx, capsys):
    repo = tmp_path / "repo"
    assert main(["--onnx", str(default_onnx), "--repository", str(repo), "--tensorrt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and ("tensorrt" in err or "GPU" in err)
    assert not repo.exists()


# --- on a GPU -------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg"])
def test_cvcuda_preprocessing_matches_opencv(name, sample_images):
    pytest.importorskip("cvcuda", reason="needs CV-CUDA on a GPU")
    if gpu_unavailable_reason():
        pytest.skip(f"needs a GPU: {gpu_unavailable_reason()}")
    from python_backends.preprocess.cvcuda_preprocessor import CvCudaPreprocessor

    data = sample_images[name].read_bytes()
    cpu_tensor, cpu_map = Preprocessor().from_bytes(data)
    gpu_tensor, gpu_map = CvCudaPreprocessor(gpu_decode=False).from_bytes(data)
    np.testing.assert_array_equal(gpu_map, cpu_map)
    assert gpu_tensor.dtype == cpu_tensor.dtype == np.uint8  # pixels: yolov8_infer's model divides by 255
    assert np.abs(to_host(gpu_tensor).astype(np.int16) - cpu_tensor).max() <= 2  # linear resize rounding: 1-2 levels


@pytest.mark.gpu
@pytest.mark.skipif(NO_TENSORRT is not None, reason=f"needs a GPU with cupy and tensorrt: {NO_TENSORRT}")
def test_tensorrt_head_matches_onnxruntime(model_repository, sample_images, tmp_path):
    onnx_path = model_repository / "yolov8_infer" / "1" / "model.onnx"
    trt = create_runtime("tensorrt", str(onnx_path), engine_options=EngineOptions(fp16=False), engine_dir=tmp_path)
    ort = create_runtime("onnxruntime", str(onnx_path))
    image = cv2.imread(str(sample_images["bus.jpg"]))
    tensor, mapping = Preprocessor().from_bgr(image)
    batch = np.stack([tensor] * 3)
    got, want = trt.run(batch), ort.run(batch)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-2 * max(1.0, float(np.abs(want).max()))
    # (B, 4 + classes, anchors): box rows in network pixels (up to 640), score rows in [0, 1]; each its own bound.
    assert np.abs(got[:, :4] - want[:, :4]).max() < 1e-2 * float(np.abs(want[:, :4]).max())
    assert np.abs(got[:, 4:] - want[:, 4:]).max() < 1e-2
    post = Postprocessor(num_classes=got.shape[1] - 4)
    for got_head, want_head in zip(got, want):  # after NMS, in original-image pixels
        found = [post.detect(head, mapping) for head in (got_head, want_head)]
        dicts = [
            [
                {"box": b.tolist(), "score": float(s), "class_id": int(c)}
                for b, s, c in zip(d.boxes, d.scores, d.class_ids)
            ]
            for d in found
        ]
        assert dicts[1] and not mismatches(*dicts), mismatches(*dicts)


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="this machine has a CUDA GPU and CuPy")
def test_cvcuda_preprocessor_refuses_clearly_without_a_gpu():
    from python_backends.preprocess.cvcuda_preprocessor import CvCudaPreprocessor

    with pytest.raises(GpuPreprocessingUnavailable, match="cupy|GPU|cvcuda"):
        CvCudaPreprocessor()


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="this machine has a CUDA GPU and CuPy")
def test_gpu_check_exits_non_zero_without_a_gpu(capsys):
    from tools.gpu_check import main as gpu_check

    assert gpu_check([]) == 3
    assert "gpu-check needs an NVIDIA GPU" in capsys.readouterr().err


def test_perf_input_prefixes_each_image_with_its_length(tmp_path):
    import base64
    import struct

    from client.perf_input import input_data

    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff\xd8 not really a jpeg")
    (entry,) = input_data([image])["data"]
    raw = base64.b64decode(entry["IMAGE"]["content"]["b64"])
    assert struct.unpack("<I", raw[:4])[0] == len(raw) - 4 and raw[4:] == image.read_bytes()
    assert entry["IMAGE"]["shape"] == [1]
