"""Client for the YOLOv8 Triton ensemble: ``YoloTritonClient`` and the ``python -m client`` CLI."""

from client.api import Detection, DetectionResult, YoloTritonClient

__all__ = ["Detection", "DetectionResult", "YoloTritonClient"]
