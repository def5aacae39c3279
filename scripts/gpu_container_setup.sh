#!/usr/bin/env bash
# Run once inside NVIDIA's tritonserver:<tag>-py3 container (the `setup` service of docker-compose.yml):
# install the GPU path's Python packages into /opt/pydeps, then build the TensorRT engine into
# $YOLOV8_ENGINE_DIR with the container's own TensorRT. Idempotent: a second run reuses both.
# `--packages-only` (the Dockerfile, at build time: no GPU, no model yet) installs the packages and stops.
set -euo pipefail
PACKAGES_ONLY=$([ "${1:-}" = "--packages-only" ] && echo true || echo false)
DEPS=${PYDEPS:-/opt/pydeps}
PROJECT=${PROJECT:-/opt/yolov8}
REPOSITORY=${REPOSITORY:-/models}
CONFIG_NAME=${CONFIG_NAME:-gpu}  # as the server's --model-config-name: the engine is the one it will ask for
MODEL="$REPOSITORY/yolov8_infer/1/model.onnx"
export PYTHONPATH="$PROJECT:$DEPS${PYTHONPATH:+:$PYTHONPATH}"
log() { printf '[gpu-setup] %s\n' "$*"; }

if ! $PACKAGES_ONLY; then
    [ -s "$MODEL" ] || { log "no $MODEL: run \`make setup\` (or python -m prepare) on the host first"; exit 2; }
    nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader || { log "no GPU visible"; exit 2; }
fi

# 1. Python packages for CUDA 13 (the 26.x images are CUDA 13) and both CPU runtimes that configs name
#    (cpu_runtime: onnxruntime or openvino), pinned as in requirements.txt; numpy comes with the image.
if [ ! -f "$DEPS/.installed" ]; then
    log "installing the GPU path's packages into $DEPS"
    python3 -m pip install -q --target "$DEPS" \
        cvcuda-cu13==0.19.0 cupy-cuda13x==14.2.0 nvidia-nvimgcodec-cu13==0.9.0.20 \
        onnx==1.17.0 onnxruntime==1.20.1 openvino==2026.4.1 openvino-telemetry==2025.2.0 \
        opencv-python-headless==4.10.0.84 pillow==11.0.0
    touch "$DEPS/.installed"
fi

# 2. TensorRT: the container's own libraries. Use their Python bindings if the image has them, else
#    install the bindings wheel of exactly the same version; trtexec builds when the image ships it.
if ! python3 -c "import tensorrt" 2>/dev/null; then
    lib=$(ls /usr/lib/*-linux-gnu/libnvinfer.so.*.*.* 2>/dev/null | head -n1 || true)
    [ -n "$lib" ] || { log "no libnvinfer in this image"; exit 2; }
    version=${lib##*libnvinfer.so.}
    log "installing tensorrt-cu13-bindings==$version.* to match the image's libnvinfer $version"
    python3 -m pip install -q --target "$DEPS" --no-deps "tensorrt-cu13-bindings==$version.*"
    # that wheel installs `tensorrt_bindings` only: the shim makes `import tensorrt` find it
    cp -r "$PROJECT/scripts/tensorrt_shim/tensorrt" "$DEPS/"
fi
# trtexec builds FP32 and, before TensorRT 11, FP16 engines; TensorRT 11's has no precision flags, so FP16
# there goes through the Python builder (python_backends/infer/tensorrt_build.py::trtexec_can_build)
[ -x /usr/src/tensorrt/bin/trtexec ] && export PATH="/usr/src/tensorrt/bin:$PATH"
python3 -c "import tensorrt; print('[gpu-setup] TensorRT', tensorrt.__version__)"

$PACKAGES_ONLY && { log "packages installed into $DEPS; the engine is built on a GPU (this script, or at model load)"; exit 0; }

# 3. The engine the server will load: its options (input size, batch profile, precision) and directory
#    read from the same yolov8_infer config, cached under the same key (TensorRT, GPU, options, ONNX hash).
python3 -m prepare.engine --repository "$REPOSITORY" --config-name "$CONFIG_NAME"
