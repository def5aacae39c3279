"""The GPU server's options and helpers: each checked on any machine where it can be, on a GPU where not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from python_backends.infer.tensorrt_build import trtexec_can_build
from python_backends.paths import PROJECT_ROOT
from python_backends.preprocess.cvcuda_preprocessor import GpuPreprocessingUnavailable, rgb_color_spec
from python_backends.preprocess.preprocessor import Preprocessor
from python_backends.preprocess.select import create_preprocessor
from python_backends.triton_helpers.gpu_arrays import concatenate_on, gpu_unavailable_reason, to_host
from serving.triton import ServerOptions, server_command

NO_GPU = gpu_unavailable_reason()


def test_nvimgcodec_rgb_is_srgb_from_0_7_on():
    assert rgb_color_spec(SimpleNamespace(ColorSpec=SimpleNamespace(SRGB="srgb", RGB="rgb"))) == "srgb"
    assert rgb_color_spec(SimpleNamespace(ColorSpec=SimpleNamespace(SRGB="srgb"))) == "srgb"  # 0.7 and later
    assert rgb_color_spec(SimpleNamespace(ColorSpec=SimpleNamespace(RGB="rgb"))) == "rgb"  # before 0.7
    with pytest.raises(GpuPreprocessingUnavailable, match="no SRGB/RGB ColorSpec"):
        rgb_color_spec(SimpleNamespace(ColorSpec=SimpleNamespace()))


def failing_gpu_preprocessor(*args, **kwargs):
    raise AttributeError("type object 'ColorSpec' has no attribute 'RGB'")  # what nvImageCodec 0.9 raised


def test_auto_falls_back_to_opencv_on_any_gpu_init_error_and_gpu_fails_with_it():
    said = []
    pre = create_preprocessor("auto", log=said.append, gpu_class=failing_gpu_preprocessor)
    assert isinstance(pre, Preprocessor)
    assert said == [
        "device auto: GPU preprocessing unavailable (AttributeError: type object 'ColorSpec' has no attribute "
        "'RGB'); using OpenCV on CPU"
    ]
    with pytest.raises(GpuPreprocessingUnavailable, match="device 'gpu' is unavailable: AttributeError: .*'RGB'"):
        create_preprocessor("gpu", gpu_class=failing_gpu_preprocessor)


def test_trtexec_builds_fp16_only_before_tensorrt_11():
    assert trtexec_can_build("10.13.0.35", fp16=True)
    assert not trtexec_can_build("11.4.0.106", fp16=True)  # no --fp16 there: the Python builder with ModelOpt
    assert trtexec_can_build("11.4.0.106", fp16=False)


def test_tensorrt_shim_stands_for_the_bindings_module(tmp_path):
    """The bindings wheel installs ``tensorrt_bindings`` only; with the shim, ``import tensorrt`` works."""
    bindings = tmp_path / "tensorrt_bindings"
    bindings.mkdir()
    (bindings / "__init__.py").write_text('__version__ = "11.4.0.106"\n\ndef nptype(t):\n    return "float32"\n')
    shutil.copytree(PROJECT_ROOT / "scripts" / "tensorrt_shim" / "tensorrt", tmp_path / "tensorrt")
    code = "import tensorrt; print(tensorrt.__version__, tensorrt.nptype(0), tensorrt.__name__)"
    reply = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert reply.stdout.split() == ["11.4.0.106", "float32", "tensorrt_bindings"]
    setup = (PROJECT_ROOT / "scripts" / "gpu_container_setup.sh").read_text()
    install = setup.index('--no-deps "tensorrt-cu13-bindings==')
    assert setup.index('cp -r "$PROJECT/scripts/tensorrt_shim/tensorrt" "$DEPS/"') > install
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()  # the image runs the script at build time
    assert dockerfile.index("COPY scripts/tensorrt_shim /opt/yolov8/scripts/tensorrt_shim") < dockerfile.index(
        "RUN bash /opt/yolov8/scripts/gpu_container_setup.sh"
    )


@pytest.mark.parametrize(
    ("gpus", "pool_mib", "flags"),
    [
        (0, 0, []),
        (1, 512, ["--cuda-memory-pool-byte-size=0:536870912"]),
        (2, 512, ["--cuda-memory-pool-byte-size=0:536870912", "--cuda-memory-pool-byte-size=1:536870912"]),
    ],
)
def test_cuda_memory_pool_flag_only_with_a_gpu(monkeypatch, gpus, pool_mib, flags):
    """512 MiB per GPU by default, one flag per GPU; none without a GPU (the GPU count is given: any machine)."""
    monkeypatch.setattr("serving.triton.gpu_count", lambda: gpus)
    assert ServerOptions().cuda_pool_mib == pool_mib
    assert [f for f in server_command(ServerOptions(cuda_pool_mib=512), Path("/b")) if "cuda-memory-pool" in f] == flags
    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert "--cuda-memory-pool-byte-size=0:536870912" in compose


def test_host_batches_join_on_the_host():
    a, b = np.ones((1, 3), np.float32), np.zeros((2, 3), np.float32)
    joined = concatenate_on([a, b], "cpu")
    assert isinstance(joined, np.ndarray) and joined.tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 0]]


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU is not None, reason=f"needs a CUDA GPU and CuPy: {NO_GPU}")
def test_a_batch_mixing_host_and_gpu_arrays_joins_on_either_device():
    import cupy as cp

    host, device = np.ones((1, 3), np.float32), cp.zeros((2, 3), cp.float32)
    on_gpu = concatenate_on([host, device], "gpu")
    on_cpu = concatenate_on([device, host], "cpu")
    assert isinstance(on_gpu, cp.ndarray) and cp.asnumpy(on_gpu).tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
    assert isinstance(on_cpu, np.ndarray) and on_cpu.tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 1]]


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU is not None, reason=f"needs a CUDA GPU and CuPy: {NO_GPU}")
def test_a_non_blocking_stream_reads_what_the_current_stream_wrote():
    """The TensorRT stream race: data joined on the default stream, read on a non-blocking one."""
    import cupy as cp

    from python_backends.triton_helpers.gpu_arrays import stream_waits_for_current

    reader = cp.cuda.Stream(non_blocking=True)
    for _ in range(5):
        data = cp.zeros(1 << 24, cp.float32)
        for _ in range(50):  # long queued work on the default stream
            data += 1
        stream_waits_for_current(cp, reader)
        with reader:
            copy = data.copy()
        reader.synchronize()
        assert float(copy.min()) == 50.0


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU is not None, reason=f"needs a CUDA GPU and CuPy: {NO_GPU}")
def test_one_request_of_several_images_equals_them_one_by_one(sample_images):
    pytest.importorskip("cvcuda", reason="needs CV-CUDA")
    from python_backends.preprocess.cvcuda_preprocessor import CvCudaPreprocessor

    pre = CvCudaPreprocessor()  # nvImageCodec decode where installed: one batched decode per request
    items = [sample_images[name].read_bytes() for name in ("bus.jpg", "zidane.jpg", "bus.jpg")]
    results = pre.from_bytes_batch(items)
    batch = to_host(pre.stack([tensor for tensor, _ in results]))
    for data, got, (_, mapping) in zip(items, batch, results):
        alone, alone_mapping = pre.from_bytes(data)
        np.testing.assert_array_equal(got, to_host(alone))
        np.testing.assert_array_equal(mapping, alone_mapping)
