"""Model preparation: an Ultralytics YOLOv8 detection ONNX → a ready Triton model repository.

``python -m prepare --onnx MODEL.onnx`` (``cli``): read the export's metadata and make
its batch dimension dynamic (``onnx_model``), install it and set every config to match
(``repository``, ``prepare_model``), and optionally build the TensorRT engine or quantize it to INT8 for
OpenVINO (``int8``).

Runs before serving, never inside Triton, from its own top-level package: ``python_backends`` holds only
what Triton loads. May import ``python_backends`` (the engine builder and the runtimes of ``infer``,
``preprocess`` and ``postprocess``, so calibration and scoring see images as served, and ``paths``) and
``evaluation`` (mAP).
"""
