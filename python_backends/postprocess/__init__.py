"""Stage 3, ``yolov8_postprocess``: the head and the LETTERBOX mapping → detections in original-image pixels.

Ultralytics-compatible NMS (``nms``), then boxes rescaled and laid out in fixed-size outputs
(``postprocessor``).

May import ``python_backends.triton_helpers``; not the other stages.
"""
