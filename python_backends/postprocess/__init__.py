"""Stage 3, ``yolov8_postprocess``: the head and the LETTERBOX mapping → detections in original-image pixels.

Ultralytics-compatible NMS (``nms``), then boxes rescaled and laid out in fixed-size outputs
(``postprocessor``); a classifier's probabilities and top 5 (``classify``).

May import ``python_backends.triton_helpers``; not the other stages.
"""
