"""Model preparation: an Ultralytics YOLOv8 detection ONNX → a ready Triton model repository.

``python -m python_backends.prepare --onnx MODEL.onnx`` (``cli``): read the export's metadata and make
its batch dimension dynamic (``onnx_model``), install it and set every config to match
(``repository``, ``prepare_model``), and optionally build the TensorRT engine or quantize it to INT8 for
OpenVINO (``int8``).

Runs before serving, never inside Triton. May import ``python_backends.infer`` (the engine builder, the
runtimes), ``python_backends.preprocess`` and ``python_backends.postprocess`` (calibration and scoring see
images as served), and ``evaluation`` (mAP).
"""
