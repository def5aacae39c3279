"""Ultralytics' own ``predict`` in-process, timed: what a user runs instead of the served pipeline.

Run with a Python that has Ultralytics (the project never depends on it), by benchmarks/tasks.py:

    PYTHON benchmarks/ultralytics_worker.py MODEL.onnx TASK IMAGE IMGSZ_H IMGSZ_W

It loads the ONNX once, predicts on IMAGE (decoded each time, as a user passing a path), and then answers
each line ``N`` on stdin with one JSON line on stdout: the N predict times in ms, one call after another.
Segment models predict with ``retina_masks=True`` (masks at the original image's size, as served).
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    answers, sys.stdout = sys.stdout, sys.stderr  # Ultralytics prints to stdout; the answers go there alone
    from ultralytics import YOLO

    model_path, task, image, height, width = sys.argv[1:6]
    model = YOLO(model_path, task=task)
    options = {"imgsz": (int(height), int(width)), "verbose": False}
    if task == "segment":
        options["retina_masks"] = True
    model.predict(image, **options)  # loads the session and warms it up
    print(json.dumps({"ready": True}), file=answers, flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            started = time.perf_counter()
            model.predict(image, **options)
            times.append((time.perf_counter() - started) * 1e3)
        print(json.dumps(times), file=answers, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
