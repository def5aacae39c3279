"""Compare two detection lists: same count and class; IoU, score and box corners within bounds (tests, gpu-check);
and how many of one list another finds (``agreement``: INT8 against FP32 in the tests and the bench)."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class Agreement:
    """How many ``expected`` detections another list finds (same class, IoU ≥ the bound), and how closely.

    ``ious`` and ``score_diffs`` hold one value per found detection; ``extra`` counts the other list's
    detections that match none.
    """

    found: int
    expected: int
    extra: int
    ious: tuple[float, ...]
    score_diffs: tuple[float, ...]

    @property
    def recall(self) -> float:
        return self.found / self.expected if self.expected else 1.0

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(
            self.found + other.found,
            self.expected + other.expected,
            self.extra + other.extra,
            self.ious + other.ious,
            self.score_diffs + other.score_diffs,
        )

    def summary(self) -> str:
        """One line: recall, mean IoU, extra detections, score differences (mean, largest)."""
        mean_iou = sum(self.ious) / len(self.ious) if self.ious else 0.0
        diffs = self.score_diffs or (0.0,)
        return (
            f"found {self.found} of {self.expected} (recall {self.recall:.3f}), mean IoU {mean_iou:.3f}, "
            f"{self.extra} extra; score Δ mean {sum(diffs) / len(diffs):.3f}, max {max(diffs):.3f}"
        )


def agreement(got: list[dict], expected: list[dict], min_iou: float = 0.5) -> Agreement:
    """Pair each expected detection with the unused one of ``got`` of its class that overlaps it most.

    Detections as in ``mismatches``. A pair counts when its IoU is at least ``min_iou``.
    """
    unused, ious, diffs = list(got), [], []
    for want in expected:
        candidates = [g for g in unused if g["class_id"] == want["class_id"]]
        if not candidates:
            continue
        best = max(candidates, key=lambda g: box_iou(g["box"], want["box"]))
        iou = box_iou(best["box"], want["box"])
        if iou >= min_iou:
            unused.remove(best)
            ious.append(iou)
            diffs.append(abs(best["score"] - want["score"]))
    return Agreement(len(ious), len(expected), len(unused), tuple(ious), tuple(diffs))
