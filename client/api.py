"""Python API over gRPC (tritonclient) for the ``yolov8`` and ``yolov8_raw`` ensembles."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions
from tritonclient.utils import InferenceServerException

from client.errors import RETRYABLE, DetectionError
from client.shared_memory import SharedFrames

ENSEMBLE = "yolov8"
RAW_ENSEMBLE = "yolov8_raw"
POSTPROCESS = "yolov8_postprocess"
OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes", "image_size")
# a pose model's, an OBB model's, a segment model's: only where the server has them
TASK_OUTPUTS = ("det_keypoints", "det_obb", "det_masks")
CLASSIFY_OUTPUTS = ("probs", "top_classes", "top_scores", "image_size")  # a classifier's, in place of OUTPUTS
ImageLike = Union[str, Path, bytes, np.ndarray]


def _ipv4(host: str) -> str:
    """``host`` as an IPv4 address (resolved when it is a name)."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]


def grpc_target(url: str) -> tuple[str, list[tuple] | None]:
    """(gRPC target, channel arguments) for ``url``; None keeps tritonclient's defaults.

    - ``host:port``: one server, unchanged;
    - ``host1:port1,host2:port2``: several servers (names resolved to IPv4 once, here);
    - ``dns:///name:port``: every address the name resolves to (a Kubernetes headless Service), re-resolved
      by gRPC when connections fail.

    Several servers are balanced per request with gRPC's ``round_robin`` policy: each call goes to the next
    ready server, so a call retried after UNAVAILABLE may land on another one.
    """
    if url.startswith("dns:"):
        target = url
    elif "," in url:
        endpoints = [e.strip().rsplit(":", 1) for e in url.split(",") if e.strip()]
        if any(len(e) != 2 for e in endpoints):
            raise ValueError(f"--url {url!r}: each endpoint needs host:port")
        target = "ipv4:" + ",".join(f"{_ipv4(host)}:{port}" for host, port in endpoints)
    else:
        return url, None
    keepalive = KeepAliveOptions()
    return target, [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.lb_policy_name", "round_robin"),
    ]


@dataclass(frozen=True)
class Detection:
    """One object: box x1, y1, x2, y2 in original-image pixels (an OBB's axis-aligned bounds).

    A pose model's detection has ``keypoints``: K x [x, y, score], x and y in original-image pixels; an
    OBB model's has ``obb``: cx, cy, w, h in original-image pixels and the angle in radians; a segment
    model's has ``rle``: its mask at the original image's size as COCO compressed RLE, {"size": [height,
    width], "counts": str}, which ``mask`` and ``polygon`` decode when asked. None otherwise.
    """

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str
    keypoints: list[list[float]] | None = None
    obb: tuple[float, float, float, float, float] | None = None
    rle: dict | None = None

    @property
    def mask(self) -> np.ndarray | None:
        """A segment model's mask: bool (height, width) of the original image, decoded from ``rle`` on each call."""
        if self.rle is None:
            return None
        from faster_coco_eval.core import mask as coco_mask

        return coco_mask.decode({"size": self.rle["size"], "counts": self.rle["counts"].encode()}).astype(bool)

    @property
    def polygon(self) -> list[tuple[float, float]] | None:
        """A segment model's mask outline: the x, y pixel points of its largest contour (the one of most points,
        Ultralytics' ``masks2segments(strategy="largest")``); [] for an empty mask."""
        mask = self.mask
        if mask is None:
            return None
        import cv2

        contours = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
        if not contours:
            return []
        largest = max(contours, key=len).reshape(-1, 2)
        return [(float(x), float(y)) for x, y in largest]

    def to_dict(self) -> dict:
        """The detection as JSON-ready values; keypoints, obb and mask (COCO RLE) only where the model gives them."""
        found = {"box": list(self.box), "score": self.score, "class_id": self.class_id, "class_name": self.class_name}
        if self.keypoints is not None:
            found["keypoints"] = [list(point) for point in self.keypoints]
        if self.obb is not None:
            found["obb"] = list(self.obb)
        if self.rle is not None:
            found["mask"] = dict(self.rle)
        return found


@dataclass(frozen=True)
class Classification:
    """A classifier's answer for one image: ``probs``, each class's probability by class id (Ultralytics'
    ``probs.data``), and ``top5``, the likeliest classes as (name, score) by descending score (``probs.top5``
    and ``top5conf``; fewer for a model of fewer classes), their ids in ``top5_ids``."""

    probs: list[float]
    top5: list[tuple[str, float]]
    top5_ids: list[int]

    def to_dict(self) -> dict:
        top5 = [
            {"class_id": class_id, "class_name": name, "score": score}
            for class_id, (name, score) in zip(self.top5_ids, self.top5)
        ]
        return {"probs": list(self.probs), "top5": top5}


@dataclass
class DetectionResult:
    """All detections for one image, by descending score (the CLI's JSON schema); a classifier's result has
    no detections and its ``classification``."""

    image: str
    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)
    classification: Classification | None = None

    def to_dict(self) -> dict:
        found = {"image": self.image, "width": self.width, "height": self.height}
        found["detections"] = [d.to_dict() for d in self.detections]
        if self.classification is not None:
            found["classification"] = self.classification.to_dict()
        return found


def read_image_bytes(image: str | Path | bytes) -> tuple[str, bytes]:
    """(label, encoded bytes) for a path or raw bytes."""
    if isinstance(image, (bytes, bytearray)):
        return "<bytes>", bytes(image)
    return str(image), Path(image).read_bytes()


@dataclass(frozen=True)
class PreparedRequest:
    """One inference request: the model to call, its inputs, a label per batch element, and the shared-memory
    slot its images are in (None: on the wire)."""

    model: str
    inputs: list
    labels: list[str]
    slot: int | None = None


def image_parts(images: list[ImageLike]) -> tuple[str, str, list[int], list, list[str]]:
    """(model, datatype, shape, parts, labels) of a request's ``IMAGE``: uint8 BGR arrays of one shape go to
    ``yolov8_raw`` (UINT8 [N, H, W, 3], parts the arrays), encoded images (paths/bytes) to ``yolov8`` (BYTES
    [N, 1], parts the encoded bytes)."""
    if all(isinstance(image, np.ndarray) for image in images):
        frames = [np.asarray(image, dtype=np.uint8) for image in images]
        if len({frame.shape for frame in frames}) > 1:
            raise ValueError("arrays in one batch must share one shape")
        return RAW_ENSEMBLE, "UINT8", [len(frames), *frames[0].shape], frames, ["<array>"] * len(frames)
    if any(isinstance(image, np.ndarray) for image in images):
        raise ValueError("a batch holds either encoded images or arrays, not both")
    labels, payloads = (list(x) for x in zip(*(read_image_bytes(image) for image in images)))
    return ENSEMBLE, "BYTES", [len(payloads), 1], payloads, labels


def build_request(
    images: list[ImageLike],
    conf: float | None,
    iou: float | None,
    grpc=grpcclient,
    frames: SharedFrames | None = None,
    block: bool = True,
) -> PreparedRequest | None:
    """Encoded images (paths/bytes) go to ``yolov8``; uint8 BGR arrays of one shape go to ``yolov8_raw``.

    With ``frames``, the images go through the client's shared memory, in a slot that the caller releases once it
    has the reply (None where ``block`` is False and no slot is free); else on the wire.
    """
    model, datatype, shape, parts, labels = image_parts(images)
    slot = None
    if frames is None:
        tensor = grpc.InferInput("IMAGE", shape, datatype)
        data = np.stack(parts) if datatype == "UINT8" else np.array(parts, dtype=object).reshape(shape)
        tensor.set_data_from_numpy(data)
    else:
        put = frames.put(parts, shape, datatype, block)
        if put is None:
            return None
        tensor, slot = put
    inputs = [tensor]
    for name, value in (("CONF_THRESHOLD", conf), ("IOU_THRESHOLD", iou)):
        if value is not None:
            threshold = grpc.InferInput(name, [len(images), 1], "FP32")
            threshold.set_data_from_numpy(np.full((len(images), 1), value, dtype=np.float32))
            inputs.append(threshold)
    return PreparedRequest(model, inputs, labels, slot)


def parse_results(
    labels: list[str], out: dict[str, np.ndarray], names: list[str], classes: set[int] | None = None
) -> list[DetectionResult]:
    """Turn the ensemble's padded outputs into one DetectionResult per image (optionally only ``classes``);
    a classifier's outputs (``probs``) into results with their ``classification``."""
    if "probs" in out:
        return [
            DetectionResult(
                label, *(int(v) for v in out["image_size"][i]), classification=_classification(out, i, names)
            )
            for i, label in enumerate(labels)
        ]
    results = []
    for i, label in enumerate(labels):
        width, height = (int(v) for v in out["image_size"][i])
        count = int(out["num_dets"][i, 0])
        rows = {key: out[key][i, :count].tolist() for key in ("det_boxes", "det_scores", "det_classes")}
        keypoints = out["det_keypoints"][i, :count].tolist() if "det_keypoints" in out else [None] * count
        obbs = [tuple(o) for o in out["det_obb"][i, :count].tolist()] if "det_obb" in out else [None] * count
        masks = out["det_masks"][i, :count] if "det_masks" in out else [None] * count
        detections = []
        for k, class_id in enumerate(rows["det_classes"]):
            if classes is not None and class_id not in classes:
                continue
            name = names[class_id] if 0 <= class_id < len(names) else str(class_id)
            rle = None if masks[k] is None else {"size": [height, width], "counts": _text(masks[k])}
            box, score = tuple(rows["det_boxes"][k]), rows["det_scores"][k]
            detections.append(Detection(box, score, class_id, name, keypoints[k], obbs[k], rle))
        results.append(DetectionResult(label, width, height, detections))
    return results


def _classification(out: dict[str, np.ndarray], i: int, names: list[str]) -> Classification:
    """Image ``i``'s Classification from a classifier's outputs; the padding (class -1) is left out."""
    ids = [int(c) for c in out["top_classes"][i] if c >= 0]
    top5 = [(names[c] if c < len(names) else str(c), float(score)) for c, score in zip(ids, out["top_scores"][i])]
    return Classification([float(p) for p in out["probs"][i]], top5, ids)


def _text(value: bytes | str) -> str:
    """A BYTES output element as text (tritonclient gives bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def class_names_from_config(config: dict) -> list[str]:
    """The ``class_names`` JSON parameter that prepare writes into yolov8_postprocess's config."""
    raw = config.get("parameters", {}).get("class_names", {}).get("string_value", "[]")
    return list(json.loads(raw))


def outputs_from_config(config: dict) -> tuple[str, ...]:
    """The outputs to request: ``OUTPUTS`` and the task's (``TASK_OUTPUTS``) that yolov8_postprocess's config has;
    ``CLASSIFY_OUTPUTS`` for a classifier."""
    served = {output["name"] for output in config.get("output", [])}
    if "probs" in served:
        return CLASSIFY_OUTPUTS
    return OUTPUTS + tuple(name for name in TASK_OUTPUTS if name in served)


def shared_memory_target(url: str, shared_memory: bool) -> bool:
    """``shared_memory``, refused for several servers: a region is registered with one server, on this host."""
    if shared_memory and grpc_target(url)[1] is not None:
        raise ValueError(f"--url {url!r}: shared memory needs one server, on this host")
    return shared_memory


class YoloTritonClient:
    """Send images to the ensemble over gRPC and get typed detections back.

    Args:
        url: gRPC address: host:port, several as host1:port1,host2:port2, or dns:///name:port
            (several servers are balanced per request, round robin: see ``grpc_target``).
        timeout_s: per-call deadline in seconds (None: none).
        retries: extra attempts on UNAVAILABLE (server restarting, queue full), with exponential backoff.
            INVALID_ARGUMENT and other errors are raised at once.
        ssl, root_certificates, private_key, certificate_chain: TLS, and the client certificate for mutual TLS.
        classes: keep only these class ids (None: all).
        shared_memory: send the images through a system shared-memory region of this client instead of gRPC
            (one server, on this host, started with --allow-client-shm): see ``client.shared_memory``.
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        timeout_s: float | None = 60.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        ssl: bool = False,
        root_certificates: str | None = None,
        private_key: str | None = None,
        certificate_chain: str | None = None,
        classes: list[int] | None = None,
        shared_memory: bool = False,
    ):
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.classes = None if classes is None else set(classes)
        target, channel_args = grpc_target(url)
        self.client = grpcclient.InferenceServerClient(
            target,
            channel_args=channel_args,
            ssl=ssl or root_certificates is not None,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
        )
        self.tls_without_certificate = (ssl or root_certificates is not None) and certificate_chain is None
        self.last_attempts = 0  # attempts made by the latest call: 1 unless UNAVAILABLE was retried
        self._class_names: list[str] | None = None
        self._outputs: tuple[str, ...] = OUTPUTS
        self.frames = SharedFrames(self.client) if shared_memory_target(url, shared_memory) else None

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()
        self.client.close()

    def __enter__(self) -> YoloTritonClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_until_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the server and the ensemble are ready; TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.client.is_server_ready() and self.client.is_model_ready(ENSEMBLE):
                    return
            except InferenceServerException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url}: not ready after {timeout_s:.0f} s")
            time.sleep(0.25)

    @property
    def class_names(self) -> list[str]:
        """Class names from the served model's config; ids stand in when the config can't be read.

        The same read finds the task's outputs (``outputs_from_config``) that each request asks for.
        """
        if self._class_names is None:
            try:
                config = self.client.get_model_config(POSTPROCESS, as_json=True)["config"]
                self._class_names = class_names_from_config(config)
                self._outputs = outputs_from_config(config)
            except InferenceServerException:
                self._class_names = []
        return self._class_names

    @property
    def task_outputs(self) -> tuple[str, ...]:
        """The served task's outputs (of ``TASK_OUTPUTS``) that each request asks for; none for a detector, or
        when the config can't be read."""
        _ = self.class_names  # reads the config once
        return tuple(name for name in self._outputs if name in TASK_OUTPUTS)

    def detect(
        self, image: ImageLike, conf: float | None = None, iou: float | None = None, classes: list[int] | None = None
    ) -> DetectionResult:
        """Detect objects in one image: a path, encoded bytes, or a uint8 BGR array (H, W, 3)."""
        return self.detect_batch([image], conf=conf, iou=iou, classes=classes)[0]

    def detect_batch(
        self,
        images: list[ImageLike],
        conf: float | None = None,
        iou: float | None = None,
        classes: list[int] | None = None,
    ) -> list[DetectionResult]:
        """Detect objects in several images with one request; arrays must share one shape."""
        names = self.class_names
        outputs = [grpcclient.InferRequestedOutput(name) for name in self._outputs]
        request = build_request(list(images), conf, iou, frames=self.frames)
        try:

            def call():
                return self.client.infer(request.model, request.inputs, outputs=outputs, client_timeout=self.timeout_s)

            try:
                reply = self._with_retries(call)
            except DetectionError as exc:
                if request.slot is None or not self.frames.register_again(exc.message):
                    raise
                reply = self._with_retries(call)  # the server had lost the region (a restart): once more
        finally:
            if request.slot is not None:
                self.frames.release(request.slot)
        wanted = self.classes if classes is None else set(classes)
        return parse_results(request.labels, {n: reply.as_numpy(n) for n in self._outputs}, names, wanted)

    def _with_retries(self, call):
        self.last_attempts = 0
        while True:
            self.last_attempts += 1
            try:
                return call()
            except InferenceServerException as exc:
                if str(exc.status()) not in RETRYABLE or self.last_attempts > self.retries:
                    raise DetectionError.from_triton(exc, self.tls_without_certificate) from None
            time.sleep(self.backoff_s * 2 ** (self.last_attempts - 1))
