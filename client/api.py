"""Python API over gRPC (tritonclient) for the ``yolov8`` ensemble."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

ENSEMBLE = "yolov8"
POSTPROCESS = "yolov8_postprocess"
OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes", "image_size")


@dataclass(frozen=True)
class Detection:
    """One object: box x1, y1, x2, y2 in original-image pixels."""

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str


@dataclass
class DetectionResult:
    """All detections for one image, by descending score (the CLI's JSON schema)."""

    image: str
    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self) | {"detections": [asdict(d) | {"box": list(d.box)} for d in self.detections]}


def read_image_bytes(image: str | Path | bytes) -> tuple[str, bytes]:
    """(label, encoded bytes) for a path or raw bytes."""
    if isinstance(image, (bytes, bytearray)):
        return "<bytes>", bytes(image)
    return str(image), Path(image).read_bytes()


class YoloTritonClient:
    """Send encoded images to the ensemble and get typed detections back.

    Args:
        url: gRPC address, host:port.
        model: the ensemble's name.
        timeout_s: per-call deadline, None for none.
    """

    def __init__(self, url: str = "127.0.0.1:8001", model: str = ENSEMBLE, timeout_s: float | None = 60.0):
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.client = grpcclient.InferenceServerClient(url)
        self._class_names: list[str] | None = None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> YoloTritonClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def class_names(self) -> list[str]:
        """Class names from the postprocess model's ``class_names`` parameter (set by prepare)."""
        if self._class_names is None:
            config = self.client.get_model_config(POSTPROCESS, as_json=True)["config"]
            raw = config.get("parameters", {}).get("class_names", {}).get("string_value", "[]")
            self._class_names = list(json.loads(raw))
        return self._class_names

    def class_name(self, class_id: int) -> str:
        names = self.class_names
        return names[class_id] if 0 <= class_id < len(names) else str(class_id)

    def detect(self, image: str | Path | bytes, conf: float | None = None, iou: float | None = None) -> DetectionResult:
        """Detect objects in one image (a path or encoded bytes)."""
        return self.detect_batch([image], conf=conf, iou=iou)[0]

    def detect_batch(
        self, images: list[str | Path | bytes], conf: float | None = None, iou: float | None = None
    ) -> list[DetectionResult]:
        """Detect objects in several images with one request (one batch)."""
        labels, payloads = zip(*(read_image_bytes(image) for image in images))
        inputs = self._inputs(list(payloads), conf, iou)
        outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS]
        reply = self.client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s)
        return self._results(list(labels), {name: reply.as_numpy(name) for name in OUTPUTS})

    @staticmethod
    def _inputs(payloads: list[bytes], conf: float | None, iou: float | None) -> list[grpcclient.InferInput]:
        batch = len(payloads)
        image = grpcclient.InferInput("IMAGE", [batch, 1], "BYTES")
        image.set_data_from_numpy(np.array(payloads, dtype=object).reshape(batch, 1))
        inputs = [image]
        for name, value in (("CONF_THRESHOLD", conf), ("IOU_THRESHOLD", iou)):
            if value is not None:
                tensor = grpcclient.InferInput(name, [batch, 1], "FP32")
                tensor.set_data_from_numpy(np.full((batch, 1), value, dtype=np.float32))
                inputs.append(tensor)
        return inputs

    def _results(self, labels: list[str], out: dict[str, np.ndarray]) -> list[DetectionResult]:
        results = []
        for i, label in enumerate(labels):
            count = int(out["num_dets"][i, 0])
            width, height = (int(v) for v in out["image_size"][i])
            detections = [
                Detection(
                    box=tuple(float(v) for v in out["det_boxes"][i, k]),
                    score=float(out["det_scores"][i, k]),
                    class_id=int(out["det_classes"][i, k]),
                    class_name=self.class_name(int(out["det_classes"][i, k])),
                )
                for k in range(count)
            ]
            results.append(DetectionResult(label, width, height, detections))
        return results
