#!/usr/bin/env bash
# How benchmarks/gpu/<date>/ was made on a lent GPU host that can't build the venv: no network, Python 3.12
# with CuPy, OpenCV, onnxruntime (CPU) and numpy, but no tritonserver, CV-CUDA or TensorRT.
#
# Before this ran, earlier calls copied the parts of an xz tarball to /tmp/gpu-carry-*. It was made here
# from the cp312 wheels, trimmed to Python 3.12:
#   site/  pytriton/tritonserver (3.12 stub only) and nvidia_pytriton.libs, cvcuda-cu13 0.19.0,
#          tritonclient 2.49.0 (Python), python-rapidjson (and protobuf 4.25.9, dropped: the host's onnx
#          needs its own protobuf 7, which tritonclient's gRPC stubs accept)
#   bin/   perf_analyzer from the tritonclient 2.49.0 wheel
#   nvimgcodec_pkg/  nvidia-nvimgcodec-cu13 0.9.0.20 (its `nvidia/__init__.py` would hide the host's nvidia.*)
# Then: bash benchmarks/gpu/run_on_bare_host.sh OUT_DIR   (the GPU tests, then python -m serving.gpu_check,
# as Triton starts by default and with its pinned-memory pool off). The packages go into the host's own
# site-packages: the Python backend's stubs did not see a PYTHONPATH folder of them.
# That host's NumPy was 2.5.2, which the 2.51 stub can't use (serving/triton.py::stub_numpy_problem); the
# server runner now refuses to start there, so a rerun needs NumPy 1.x (numpy==1.26.4) and, with it, CuPy 13.6
# (cupy-cuda13x 14 requires NumPy 2), and an OpenCV that imports under NumPy 1.x (the pinned 4.10.0.84 does).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?usage: run_on_bare_host.sh OUT_DIR}
G=/tmp/gpu
mkdir -p "$G" "$OUT"
exec > >(tee "$OUT/run_on_bare_host.log") 2>&1

cat /tmp/gpu-carry-* | xz -d | tar -x -C "$G" || exit 2
site_packages=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf "$G/site/google"
cp -r "$G"/site/* "$site_packages/"
cp -r "$G/nvimgcodec_pkg/nvimgcodec" "$site_packages/nvidia/"
if ! python3 -m pytest --version > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target "$site_packages" .cache/gpu-carry/pytest/*.whl
fi
export PYTHONPATH="$PWD"
mkdir -p .cache/models  # the tests' default model: the prepared copy stands in (one 44 MB file to carry, not two)
ln -sf "$PWD/model_repository/yolov8_infer/1/model.onnx" .cache/models/yolov8s-fall-detection.onnx

# perf_analyzer where benchmarks/perf_analyzer.py looks for it, with the two libraries it lacks (as setup.sh does)
mkdir -p .venv/bin "$G/palibs"
ln -sf "$(ls "$site_packages"/nvidia_pytriton.libs/libb64-*.so.0d)" "$G/palibs/libb64.so.0d"
ln -sf "$(ls "$site_packages"/nvidia_pytriton.libs/libcudart-*.so.12*)" "$G/palibs/libcudart.so.12"
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$G/palibs" "$G/bin/perf_analyzer" > .venv/bin/perf_analyzer
chmod +x .venv/bin/perf_analyzer "$G/bin/perf_analyzer"

python3 -c "
import cupy, cvcuda, tritonclient.grpc
from nvidia import nvimgcodec
print('cupy', cupy.__version__, 'cvcuda', cvcuda.__version__, 'nvimgcodec', nvimgcodec.__version__)"
python3 -c "from serving.triton import build_backend_dir; print(build_backend_dir())"

if [ -z "${SKIP_TESTS:-}" ]; then
    echo "=== GPU tests"
    timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu_fixes.py tests/test_gpu_path.py 2>&1 | tail -40
fi
day=$(date +%F)
echo "=== gpu_check, tritonserver as it starts by default"
timeout 200 python3 -m serving.gpu_check --out "$OUT/$day"
echo "gpu_check exit status $?"
echo "=== gpu_check, tritonserver with --pinned-memory-pool-byte-size=0"
timeout 200 python3 -m serving.gpu_check --out "$OUT/$day-no-pinned-pool" --server-arg=--pinned-memory-pool-byte-size=0
echo "gpu_check exit status $?"
