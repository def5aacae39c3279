"""Compare two detection lists: same count and class, IoU and score within tolerances (tests, gpu-check)."""

from __future__ import annotations


def box_iou(a: list[float], b: list[float]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mismatches(got: list[dict], expected: list[dict], min_iou: float = 0.95, max_score_diff: float = 0.01) -> list[str]:
    """Pair each expected detection with the best unused one of the same class; list every problem."""
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
        if iou < min_iou or abs(best["score"] - want["score"]) > max_score_diff:
            problems.append(f"{best} vs {want}: IoU {iou:.3f}, Δscore {abs(best['score'] - want['score']):.4f}")
    problems += [f"extra {g}" for g in unused]
    return problems
