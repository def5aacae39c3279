"""Client for the YOLOv8 Triton ensemble: ``YoloTritonClient`` and the ``python -m client`` CLI.

Needs only numpy, OpenCV and tritonclient: imports nothing else of the project, so it installs on its own.
"""

from client.api import Detection, DetectionResult, YoloTritonClient

__all__ = ["Detection", "DetectionResult", "YoloTritonClient"]
