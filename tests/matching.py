"""Compare detections with Ultralytics' reference: same count, class, IoU >= 0.95, |Δscore| <= 0.01."""

from python_backends.postprocess.detection_match import box_iou, mismatches

__all__ = ["box_iou", "mismatches"]
