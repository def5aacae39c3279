"""Compare two detection lists: same count and class; IoU, score and box corners within bounds (tests, gpu-check)."""

from __future__ import annotations


def box_iou(a: list[float], b: list[float]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_diff(a: list[float], b: list[float]) -> float:
    """Largest |Δ| over the four coordinates (x1, y1, x2, y2) of two boxes, in pixels."""
    return max(abs(p - q) for p, q in zip(a, b))


def mismatches(
    got: list[dict],
    expected: list[dict],
    min_iou: float = 0.95,
    max_score_diff: float = 0.01,
    max_box_diff: float | None = None,
) -> list[str]:
    """Pair each expected detection with the best unused one of the same class; list every problem.

    A detection is ``{"class_id": int, "score": float, "box": [x1, y1, x2, y2]}`` in original-image
    pixels. ``max_box_diff`` (pixels, per coordinate) is checked only when given.
    """
    problems = []
    if len(got) != len(expected):
        problems.append(f"{len(got)} detections, expected {len(expected)}")
    unused = list(got)
    for want in expected:
        candidates = [g for g in unused if g["class_id"] == want["class_id"]]
        if not candidates:
            problems.append(f"missing {want}")
            continue
        best = max(candidates, key=lambda g: box_iou(g["box"], want["box"]))
        unused.remove(best)
        iou = box_iou(best["box"], want["box"])
        score_diff = abs(best["score"] - want["score"])
        shift = box_diff(best["box"], want["box"])
        if iou < min_iou or score_diff > max_score_diff or (max_box_diff is not None and shift > max_box_diff):
            problems.append(f"{best} vs {want}: IoU {iou:.3f}, Δscore {score_diff:.4f}, max |Δbox| {shift:.2f} px")
    problems += [f"extra {g}" for g in unused]
    return problems
