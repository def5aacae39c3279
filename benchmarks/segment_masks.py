"""What a segment model's postprocess costs and what its answer weighs, on a 1080p photo with many detections.

    python -m benchmarks.segment_masks MODEL.onnx [--photo PHOTO] [--conf 0.25] [--repeat 30] [--smooth SIGMA]

MODEL.onnx is a segment export (output0 and the prototypes output1). Without ``--photo`` the photo is a
1920x1080 mosaic of the sample photos (.cache/samples): 4 x 2 tiles, bus and zidane in turn. The model runs
once (ONNX Runtime); then yolov8_postprocess's library (``Postprocessor``, task segment: NMS, masks, RLE)
runs ``--repeat`` times on its outputs, and the median wall and CPU time are printed with the detections it
found and the bytes of the outputs one image's answer carries (det_masks as Triton sends BYTES: a 4-byte
length per element). ``--smooth SIGMA`` blurs the prototypes (Gaussian, SIGMA prototype pixels) before the
postprocess, so that a weightless test model's ragged masks become smooth blobs, as a trained model's are.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from python_backends.infer.onnxruntime_runtime import OnnxRuntimeSession
from python_backends.paths import PROJECT_ROOT
from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.preprocess.preprocessor import Preprocessor

SAMPLES = PROJECT_ROOT / ".cache" / "samples"
MOSAIC = tuple(  # photo, x, y, width, height of its tile in the 1920x1080 mosaic: 4 x 2 tiles
    ("bus.jpg" if (x + y) % 2 == 0 else "zidane.jpg", 480 * x, 540 * y, 480, 540) for y in range(2) for x in range(4)
)


def mosaic() -> np.ndarray:
    """uint8 (1080, 1920, 3) BGR: the sample photos of ``MOSAIC``, each resized to its tile."""
    canvas = np.zeros((1080, 1920, 3), np.uint8)
    for name, x, y, width, height in MOSAIC:
        canvas[y : y + height, x : x + width] = cv2.resize(cv2.imread(str(SAMPLES / name)), (width, height))
    return canvas


def answer_bytes(outputs: dict[str, np.ndarray]) -> int:
    """The bytes of one image's outputs on the wire: each tensor's data, BYTES elements with their 4-byte length."""
    return sum(
        sum(4 + len(v) for v in array.reshape(-1)) if array.dtype == object else array.nbytes
        for array in outputs.values()
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a segment export (ONNX)")
    parser.add_argument("--photo", type=Path, help="default: the 1920x1080 mosaic of the sample photos")
    parser.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    parser.add_argument("--repeat", type=int, default=30, help="postprocess runs to take the median of")
    parser.add_argument("--smooth", type=float, help="blur the prototypes by this sigma (prototype pixels)")
    args = parser.parse_args(argv)
    image = cv2.imread(str(args.photo)) if args.photo else mosaic()
    runtime = OnnxRuntimeSession(str(args.model))
    _, _, height, width = (int(d) for d in runtime.session.get_inputs()[0].shape[:4])
    tensor, mapping = Preprocessor(height, width).from_bgr(image)
    head, prototypes = runtime.run_outputs(np.divide(tensor[None], np.float32(255), dtype=np.float32))  # an export
    if args.smooth:
        prototypes = np.stack([cv2.GaussianBlur(p, (0, 0), args.smooth) for p in prototypes[0]])[None]
    num_classes = head.shape[1] - 4 - prototypes.shape[1]
    post = Postprocessor(num_classes, task="segment", conf_threshold=args.conf)
    times, cpu_times = [], []
    for _ in range(args.repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        outputs = post.batch(head, mapping[None], [None], [None], prototypes)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    count = int(outputs["num_dets"][0, 0])
    print(f"{image.shape[1]}x{image.shape[0]}, {count} detections (conf {args.conf})")
    print(f"postprocess: median {statistics.median(times) * 1000:.1f} ms, best {min(times) * 1000:.1f} ms")
    print(f"postprocess CPU time (this process, all threads): median {statistics.median(cpu_times) * 1000:.1f} ms")
    print(f"postprocess CPU time: best {min(cpu_times) * 1000:.1f} ms")
    print(f"answer: {answer_bytes(outputs)} bytes, of which masks {sum(len(v) for v in outputs['det_masks'][0])}")


if __name__ == "__main__":
    main()
