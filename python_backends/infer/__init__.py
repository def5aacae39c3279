"""Stage 2, ``yolov8_infer``: float32 (B, 3, H, W) → the raw YOLOv8 head, float32 (B, 4 + classes, anchors).

Runtimes behind one interface (``base.InferenceRuntime``): ONNX Runtime and OpenVINO (FP32, compiled
model cached) on CPU, TensorRT on the GPU with its engine cache (``tensorrt_engine``) and builder
(``tensorrt_build``), and FastDeploy; ``select`` picks one from the ``runtime`` parameter (``auto`` on
CPU: the ``cpu_runtime`` that prepare measured fastest). ``cpu_activity`` is the lock through which the
infer instances learn whether another stage is working on the CPU (preprocess's ``model.py`` holds it
while it decodes).

May import ``python_backends.triton_helpers``; not the other stages.
"""
