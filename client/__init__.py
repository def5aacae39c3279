"""Client for the YOLOv8 Triton ensemble: ``YoloTritonClient`` and the ``python -m client`` CLI.

Needs numpy, OpenCV and tritonclient; of the project it imports only ``evaluation`` (for ``client val``) and
``python_backends.defaults`` (the serving defaults, a module that imports nothing), so it runs without the
server's code.
"""

from client.api import Classification, Detection, DetectionResult, YoloTritonClient

__all__ = ["Classification", "Detection", "DetectionResult", "YoloTritonClient"]
