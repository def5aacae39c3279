"""``python -m client detect``: the class filter and the per-class summary, against a real tritonserver.

At ``--conf 0.05 --iou 0.5`` the reference (tests/reference/) has camera.png: Normal 1, Fall 1, and
astronaut.png: Normal 4, Fall 2 (class ids 0 and 1).
"""

from __future__ import annotations

import json

import pytest

from client.cli import main

FALL = 1


@pytest.fixture(scope="module")
def photos(sample_images) -> list[str]:
    return [str(sample_images["camera.png"]), str(sample_images["astronaut.png"])]


def detect(capsys, url: str, sources: list[str], *args: str) -> tuple[int, list[dict], str]:
    """Run the CLI in this process on ``sources``: (exit code, its JSON results, its stderr)."""
    status = main(["detect", *sources, "--url", url, "--json", "--quiet", "--conf", "0.05", "--iou", "0.5", *args])
    out, err = capsys.readouterr()
    return status, json.loads(out), err


def summary_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("summary: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_classes_keeps_only_those_ids(triton, photos, capsys):
    _, everything, _ = detect(capsys, triton.grpc_url, photos)
    _, falls, _ = detect(capsys, triton.grpc_url, photos, "--classes", str(FALL))
    _, both, _ = detect(capsys, triton.grpc_url, photos, "--classes", "0", "1")
    assert [[d["class_id"] for d in r["detections"]] for r in falls] == [[FALL], [FALL, FALL]]
    assert falls == [r | {"detections": [d for d in r["detections"] if d["class_id"] == FALL]} for r in everything]
    assert both == everything


def test_summary_counts_detections_per_class(triton, photos, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    status, results, stderr = detect(capsys, triton.grpc_url, [*photos, str(broken)])
    assert status == 1 and f"error: {broken}: " in stderr  # reported, skipped, and the run went on
    assert [r["image"] for r in results] == photos
    summary = summary_line(stderr)
    assert summary.startswith("summary: 2 images, 1 failed, detections: Normal 5, Fall 3; "), summary
    assert summary.endswith(" s") and " images/s over " in summary, summary
    status, _, stderr = detect(capsys, triton.grpc_url, photos, "--classes", str(FALL))
    assert status == 0
    assert summary_line(stderr).startswith("summary: 2 images, 0 failed, detections: Fall 3; "), stderr
