#!/usr/bin/env bash
# How benchmarks/gpu/<date>/ is made on a bare GPU host that can't build the venv: no network, Python 3.12
# with CuPy, OpenCV, onnxruntime (CPU) and numpy, but no tritonserver, CV-CUDA or TensorRT.
#
# Before this runs, earlier calls copy to /tmp:
#   /tmp/gpu-carry-*  the parts of an xz tarball made here from the cp312 wheels, trimmed to Python 3.12:
#     site/  pytriton/tritonserver (3.12 stub only) and nvidia_pytriton.libs, cvcuda-cu13 0.19.0,
#            tritonclient 2.49.0 (Python), python-rapidjson (and protobuf 4.25.9, dropped: the host's onnx
#            needs its own protobuf 7, which tritonclient's gRPC stubs accept)
#     bin/   perf_analyzer from the tritonclient 2.49.0 wheel
#     nvimgcodec_pkg/  nvidia-nvimgcodec-cu13 0.9.0.20 (its `nvidia/__init__.py` would hide the host's nvidia.*)
#   /tmp/gpu-wheels/  numpy 1.26.4 and cupy-cuda13x 13.6.0 (cp312): the 2.51 stub needs NumPy 1.x
#     (serving/triton.py::stub_numpy_problem), the host has NumPy 2.5.2, and CuPy 14 requires NumPy 2.
# Then: bash benchmarks/gpu/run_on_bare_host.sh OUT_DIR [gpu_check flags]. Everything goes into a venv that
# sees the host's packages (--system-site-packages) with its own NumPy 1.x and CuPy 13 in front; the host's
# Python is left as it was. The stubs use that venv too: serving.triton puts its bin folder first on PATH.
# The first run (2026-11-26, 14:16) copied the packages into the host's site-packages instead and kept the
# host's NumPy 2.5.2, so every served request failed there.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?usage: run_on_bare_host.sh OUT_DIR}
G=/tmp/gpu
mkdir -p "$G" "$OUT"
exec > >(tee "$OUT/run_on_bare_host.log") 2>&1

cat /tmp/gpu-carry-* | xz -d | tar -x -C "$G" || exit 2
if ! python3 -m venv --without-pip --system-site-packages "$G/venv"; then  # what venv writes, where it is missing
    real=$(readlink -f "$(command -v python3)")
    mkdir -p "$G/venv/bin" && ln -sf "$real" "$G/venv/bin/python3"
    printf 'home = %s\ninclude-system-site-packages = true\n' "$(dirname "$real")" > "$G/venv/pyvenv.cfg"
fi
PY="$G/venv/bin/python3"
site_packages=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
python3 -c "import site; print('\n'.join(site.getsitepackages()))" > "$site_packages/host.pth"  # python3 may be a venv
mkdir -p "$site_packages/scipy"  # the host's SciPy needs NumPy 2; CuPy 13 imports it only if it can
echo 'raise ImportError("SciPy is hidden here: the host has a build for NumPy 2")' > "$site_packages/scipy/__init__.py"
rm -rf "$G/site/google"
cp -r "$G"/site/* "$site_packages/"
mkdir -p "$site_packages/nvidia"  # a namespace portion beside the host's nvidia.* packages
cp -r "$G/nvimgcodec_pkg/nvimgcodec" "$site_packages/nvidia/"
for wheel in /tmp/gpu-wheels/*.whl .cache/gpu-carry/pytest/*.whl; do  # a wheel is a zip of its site-packages files
    "$PY" -m zipfile -e "$wheel" "$site_packages/" || exit 2
done
export PYTHONPATH="$PWD"
mkdir -p .cache/models  # the tests' default model: the prepared copy stands in (one 44 MB file to carry, not two)
ln -sf "$PWD/model_repository/yolov8_infer/1/model.onnx" .cache/models/yolov8s-fall-detection.onnx

# perf_analyzer where benchmarks/perf_analyzer.py looks for it, with the two libraries it lacks (as setup.sh does)
mkdir -p .venv/bin "$G/palibs"
ln -sf "$(ls "$site_packages"/nvidia_pytriton.libs/libb64-*.so.0d)" "$G/palibs/libb64.so.0d"
ln -sf "$(ls "$site_packages"/nvidia_pytriton.libs/libcudart-*.so.12*)" "$G/palibs/libcudart.so.12"
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$G/palibs" "$G/bin/perf_analyzer" > .venv/bin/perf_analyzer
chmod +x .venv/bin/perf_analyzer "$G/bin/perf_analyzer"

"$PY" -c "
import numpy, cupy, cvcuda, cv2, onnxruntime, tritonclient.grpc, pytest
print('numpy', numpy.__version__, 'cv2', cv2.__version__, 'onnxruntime', onnxruntime.__version__)
from nvidia import nvimgcodec
print('cupy', cupy.__version__, 'cvcuda', cvcuda.__version__, 'nvimgcodec', nvimgcodec.__version__)"
"$PY" -c "from serving.triton import build_backend_dir; print(build_backend_dir())" || exit 2

if [ -z "${SKIP_TESTS:-}" ]; then
    echo "=== GPU tests"
    timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu_fixes.py tests/test_gpu_path.py 2>&1 | tail -40
fi
day=$(date +%F)
shift
echo "=== gpu_check $*"
timeout 300 "$PY" -m tools.gpu_check --out "$OUT/$day" "$@"
echo "gpu_check exit status $?"
