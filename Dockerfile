# The serving image: NVIDIA's Triton with this project's Python backends, model repository and the GPU
# path's Python packages baked in, so a container starts without pip. The same image serves on CPU
# (OpenVINO in FP32 or INT8, or ONNX Runtime, as prepare chose; OpenCV) and on GPU (TensorRT, CV-CUDA); deploy/kubernetes/overlays pick the flags.
#
#   make setup                                     # prepares model_repository/ (the ONNX, labels, configs)
#   docker build -t yolov8-triton:26.06 .          # or: docker compose build
#
# 26.06 or later: the first release with NVIDIA's 2025-2026 Triton security fixes (tests/test_compose.py).
ARG TRITON_TAG=26.06
FROM nvcr.io/nvidia/tritonserver:${TRITON_TAG}-py3

# Numeric, so Kubernetes' runAsNonRoot can verify it (deploy/kubernetes/base/deployment.yaml runs as the same).
ARG SERVER_UID=10001
ENV PROJECT=/opt/yolov8 \
    PYDEPS=/opt/pydeps \
    PYTHONPATH=/opt/yolov8:/opt/pydeps \
    PYTHONDONTWRITEBYTECODE=1 \
    YOLOV8_ENGINE_DIR=/engines \
    YOLOV8_OPENVINO_CACHE=/tmp/openvino \
    HOME=/tmp \
    CUPY_CACHE_DIR=/tmp/cupy \
    MALLOC_MMAP_THRESHOLD_=33554432 \
    MALLOC_TRIM_THRESHOLD_=268435456

# 1. Packages first: this layer is rebuilt only when the script (and so its pins) changes.
COPY scripts/gpu_container_setup.sh /opt/yolov8/scripts/gpu_container_setup.sh
COPY scripts/tensorrt_shim /opt/yolov8/scripts/tensorrt_shim
RUN bash /opt/yolov8/scripts/gpu_container_setup.sh --packages-only

# 2. Code (prepare/ for `python -m prepare.engine`, compose's engine build) and models (the ONNX, and the INT8
# model when prepare --int8 wrote one), owned by root and read-only
# to the server's user; OpenVINO compiles into YOLOV8_OPENVINO_CACHE, on /tmp, which compose and the pods keep writable.
COPY python_backends /opt/yolov8/python_backends
COPY prepare /opt/yolov8/prepare
COPY model_repository /models
RUN test -s /models/yolov8_infer/1/model.onnx || { echo "no model_repository/yolov8_infer/1/model.onnx: run make setup first" >&2; exit 1; } \
    && groupadd --gid "$SERVER_UID" yolov8 \
    && useradd --uid "$SERVER_UID" --gid "$SERVER_UID" --no-create-home --shell /usr/sbin/nologin yolov8 \
    && mkdir -p /engines && chown "$SERVER_UID:$SERVER_UID" /engines

USER ${SERVER_UID}:${SERVER_UID}
EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=none"]
