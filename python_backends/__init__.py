"""What Triton loads: one package per ensemble stage and their helpers, tested without Triton.

- ``preprocess``: encoded bytes or BGR frames → letterboxed float32 NCHW tensor and its LETTERBOX mapping;
- ``infer``: the detector runtimes (ONNX Runtime, OpenVINO, TensorRT, FastDeploy) → the raw YOLOv8 head;
- ``postprocess``: the head → NMS → detections in original-image pixels;
- ``triton_helpers``: what every stage's ``model.py`` shares: config parameters, tensors, device arrays,
  the drain gate, the CPU-activity lock;
- ``paths``: where the checkout, its caches and the model repository are.

The Triton models in ``model_repository/*/1/model.py`` only coordinate: they read their config and hand
each request to these classes. The stages do not import each other; they may import ``triton_helpers``
and ``paths``. Nothing here imports anything outside ``python_backends``: the stubs load it inside Triton,
and the serving image holds this folder alone. ``prepare``, above it, writes the repository these stages serve.
"""
