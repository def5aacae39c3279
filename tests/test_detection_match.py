"""The parity matcher: CPU_PARITY fails a 3 px shift of one box that the default IoU bound lets pass."""

from matching import CPU_PARITY, box_iou, mismatches

# The first two of Ultralytics' detections on bus.jpg (conf=0.25, iou=0.7), pixels of the 810x1080 photo.
REFERENCE = [
    {"class_id": 0, "score": 0.66145, "box": [216.883, 393.665, 349.346, 889.44]},
    {"class_id": 0, "score": 0.65096, "box": [34.091, 384.99, 218.275, 909.81]},
]
# The first box moved 3 px to the right, as a rescale error would; IoU 129.463 / 135.463 = 0.9557.
SHIFTED_3PX = [
    {"class_id": 0, "score": 0.66145, "box": [219.883, 393.665, 352.346, 889.44]},
    REFERENCE[1],
]
# Off by 0.2 px and 0.0004 in score: within the measured error of the served ensemble.
WITHIN_CPU_PARITY = [
    {"class_id": 0, "score": 0.66105, "box": [217.083, 393.465, 349.546, 889.64]},
    REFERENCE[1],
]


def test_cpu_parity_values():
    assert CPU_PARITY == {"max_box_diff": 0.5, "max_score_diff": 1e-3}


def test_a_3px_shift_passes_the_iou_bound_alone():
    assert 0.955 < box_iou(SHIFTED_3PX[0]["box"], REFERENCE[0]["box"]) < 0.956
    assert mismatches(SHIFTED_3PX, REFERENCE) == []


def test_cpu_parity_fails_a_3px_shift_of_one_box():
    (problem,) = mismatches(SHIFTED_3PX, REFERENCE, **CPU_PARITY)
    assert "max |Δbox| 3.00 px" in problem and "216.883" in problem


def test_cpu_parity_fails_a_score_gap_of_2e_3():
    got = [{**REFERENCE[0], "score": 0.66345}, REFERENCE[1]]
    assert mismatches(got, REFERENCE) == []
    (problem,) = mismatches(got, REFERENCE, **CPU_PARITY)
    assert "Δscore 0.0020" in problem


def test_cpu_parity_accepts_the_measured_error():
    assert mismatches(WITHIN_CPU_PARITY, REFERENCE, **CPU_PARITY) == []


def test_count_and_class_are_checked():
    assert mismatches(REFERENCE[:1], REFERENCE, **CPU_PARITY) == ["1 detections, expected 2", f"missing {REFERENCE[1]}"]
    other_class = [REFERENCE[0], {**REFERENCE[1], "class_id": 1}]
    assert mismatches(other_class, REFERENCE, **CPU_PARITY) == [f"missing {REFERENCE[1]}", f"extra {other_class[1]}"]
