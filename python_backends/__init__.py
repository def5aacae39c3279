"""YOLOv8 serving logic, one package per ensemble stage, tested without Triton.

- ``preprocess``: encoded bytes or BGR frames → letterboxed float32 NCHW tensor and its LETTERBOX mapping;
- ``infer``: the detector runtimes (ONNX Runtime, OpenVINO, TensorRT, FastDeploy) → the raw YOLOv8 head;
- ``postprocess``: the head → NMS → detections in original-image pixels;
- ``triton_helpers``: what every stage's ``model.py`` shares: config parameters, tensors, device arrays,
  the drain gate, the CPU-activity lock;
- ``prepare``: an Ultralytics ONNX export → the model repository (``python -m python_backends.prepare``).

The Triton models in ``model_repository/*/1/model.py`` only coordinate: they read their config and hand
each request to these classes. The stages do not import each other; they may import ``triton_helpers``.
The stages import nothing outside ``python_backends``: the stubs load them inside Triton. Only ``prepare``
imports ``evaluation``, to score a quantized model (``prepare --int8 --data``).
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: model_repository/, .cache/
