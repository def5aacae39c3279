"""Inspect an Ultralytics ONNX export and make its batch dimension dynamic.

Two heads are served: ``raw`` (YOLOv8, YOLO11: (batch, 4 + classes + extra, anchors), NMS in
postprocess; ``extra`` is the task's, see ``prepare.tasks``) and ``end2end`` ((batch, max_det, 6) x1, y1,
x2, y2, score, class, in network-input pixels: YOLO26 and YOLOv10 detectors exported end-to-end, metadata
``end2end: True``, and any detector exported with NMS inside the graph, ``args`` with ``nms: True``).
A segment model has a second output, its mask prototypes (batch, 32, H/4, W/4).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from prepare.errors import UnsupportedModelError
from prepare.tasks import CLASSIFY, read_task
from python_backends.postprocess.masks import MASK_COEFFICIENTS, PROTO_STRIDE
from python_backends.postprocess.tasks import extra_channels

ANCHOR_STRIDES = (8, 16, 32)  # YOLOv8's three detection scales
END2END_COLUMNS = 6  # x1, y1, x2, y2, score, class id


@dataclass(frozen=True)
class YoloModelInfo:
    """What the serving configs need to know about a model.

    The head output is (batch, 4 + len(class_names) + extra, num_anchors) when ``head`` is ``raw`` (extra:
    ``python_backends.postprocess.tasks.extra_channels``), and (batch, max_det, 6) when it is ``end2end`` (detect only).
    """

    input_name: str
    output_name: str
    input_height: int
    input_width: int
    class_names: tuple[str, ...]
    stride: int
    num_anchors: int
    batch_dim: int | str  # an int for a static batch, a name for a dynamic one
    metadata: tuple[tuple[str, str], ...] = ()  # the export's metadata_props (key, value), in order
    head: str = "raw"  # raw | end2end
    max_det: int = 0  # an end2end head's rows; 0 for a raw head
    max_batch: int | None = None  # the most images one run of the graph handles; None: any, once batch-dynamic
    nms_inside: bool = False  # an end2end head whose graph runs NMS (``args`` nms True), not a top-k
    task: str = "detect"  # detect | pose | obb | classify
    kpt_shape: tuple[int, int] | None = None  # pose: keypoints per object, values per keypoint (3)
    prototypes_name: str | None = None  # segment: the second output, the mask prototypes

    def prototype_dims(self) -> list[int] | None:
        """segment: the prototypes' dims without the batch, [32, H/4, W/4]; None for the other tasks."""
        if self.prototypes_name is None:
            return None
        return [MASK_COEFFICIENTS, self.input_height // PROTO_STRIDE, self.input_width // PROTO_STRIDE]

    def head_dims(self) -> list[int]:
        """The head output's dims without the batch: [4 + classes + extra, anchors] raw, [max_det, 6 + extra]
        end2end, where extra is the task's values (extra_channels); [classes] for a classifier."""
        if self.task == CLASSIFY:
            return [len(self.class_names)]
        extra = extra_channels(self.task, self.kpt_shape[0] if self.kpt_shape else 0)
        if self.head == "end2end":
            return [self.max_det, END2END_COLUMNS + extra]
        return [4 + len(self.class_names) + extra, self.num_anchors]


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def read_model_info(model: onnx.ModelProto) -> YoloModelInfo:
    """Read task, class names, imgsz and stride from the metadata and check the graph is a head we serve."""
    meta = {p.key: p.value for p in model.metadata_props}
    task, kpt_shape = read_task(meta)
    if meta.get("head") == "RTDETRDecoder":
        raise UnsupportedModelError(
            "an RT-DETR model (head RTDETRDecoder: normalized centre boxes, no letterbox); only YOLO detection "
            "heads are served"
        )
    outputs = 2 if task == "segment" else 1
    if task == "segment" and len(model.graph.output) == 1:
        raise UnsupportedModelError(
            f"a segment model without its prototype output: expected output0 (batch, 4 + classes + "
            f"{MASK_COEFFICIENTS}, anchors) and output1 (batch, {MASK_COEFFICIENTS}, H/4, W/4), got only "
            f"{model.graph.output[0].name!r}; export it with Ultralytics, which writes both"
        )
    if len(model.graph.input) != 1 or len(model.graph.output) != outputs:
        raise UnsupportedModelError(
            f"expected 1 input and {outputs} output{'s' * (outputs > 1)} (a YOLO {task} head), got "
            f"{len(model.graph.input)} inputs and {len(model.graph.output)} outputs"
        )
    model_input, model_output = model.graph.input[0], model.graph.output[0]
    in_dims, out_dims = _dims(model_input), _dims(model_output)
    if len(in_dims) != 4 or in_dims[1] != 3:
        raise UnsupportedModelError(f"input {model_input.name!r} must be rank 4 (batch, 3, H, W), got {in_dims}")
    if len(out_dims) != (2 if task == CLASSIFY else 3):
        if task == CLASSIFY:
            raise UnsupportedModelError(
                f"output {model_output.name!r} of a classifier must be (batch, classes), got {out_dims}"
            )
        raise UnsupportedModelError(
            f"output {model_output.name!r} must be rank 3 (batch, 4 + classes, anchors) or (batch, max_det, 6), "
            f"got {out_dims}"
        )
    if "names" not in meta:
        raise UnsupportedModelError("no 'names' in the ONNX metadata: export the model with Ultralytics")
    names = ast.literal_eval(meta["names"])
    class_names = tuple(str(names[i]) for i in sorted(names))
    height, width = _image_size(meta, in_dims)
    stride = int(meta.get("stride", 32))
    num_anchors = sum((height // s) * (width // s) for s in ANCHOR_STRIDES)
    args = _literal(meta.get("args"), {})
    args = args if isinstance(args, dict) else {}
    common = {
        "input_name": model_input.name,
        "output_name": model_output.name,
        "input_height": height,
        "input_width": width,
        "class_names": class_names,
        "stride": stride,
        "num_anchors": num_anchors,
        "batch_dim": in_dims[0],
        "metadata": tuple(meta.items()),
        "task": task,
        "kpt_shape": kpt_shape,
    }
    if task == CLASSIFY:
        if out_dims[1] != len(class_names):
            raise UnsupportedModelError(
                f"output has {out_dims[1]} class probabilities but the metadata names {len(class_names)} classes"
            )
        return YoloModelInfo(**common | {"num_anchors": 0})
    if task == "segment":
        common["prototypes_name"] = _check_prototypes(model.graph.output[1], height, width)
    exported_end2end = _literal(meta.get("end2end"), False) is True or args.get("nms") is True
    if exported_end2end or out_dims[2] == END2END_COLUMNS:  # Ultralytics' own test: end2end, or 6 columns
        return _end2end_info(common, out_dims, model_output.name, args)
    _check_raw_head(out_dims, task, kpt_shape, len(class_names))
    if isinstance(out_dims[2], int) and out_dims[2] != num_anchors:
        raise UnsupportedModelError(f"output has {out_dims[2]} anchors, expected {num_anchors} for {height}x{width}")
    return YoloModelInfo(**common)


def _check_prototypes(output: onnx.ValueInfoProto, height: int, width: int) -> str:
    """The name of a segment model's prototype output, refused unless it is (batch, 32, H/4, W/4)."""
    expected = [MASK_COEFFICIENTS, height // PROTO_STRIDE, width // PROTO_STRIDE]
    dims = _dims(output)
    if len(dims) != 4 or dims[1:] != expected:
        raise UnsupportedModelError(
            f"a segment model's second output {output.name!r} must be the mask prototypes (batch, "
            f"{', '.join(map(str, expected))}) for a {height}x{width} input, got {dims}"
        )
    return output.name


def _check_raw_head(out_dims: list[int | str], task: str, kpt_shape: tuple[int, int] | None, classes: int) -> None:
    """Refuse a grid head whose channels are not 4 + classes + the task's extra channels."""
    extra = extra_channels(task, kpt_shape[0] if kpt_shape else 0)
    if out_dims[1] == 4 + classes + extra:
        return
    if task == "detect":
        raise UnsupportedModelError(
            f"output has {out_dims[1]} channels but the metadata names {classes} classes "
            f"(a detection head has 4 + classes); is this a segmentation or pose model without its 'task'?"
        )
    parts = {
        "pose": f"{kpt_shape[0]} x {kpt_shape[1]} keypoint values" if kpt_shape else "",
        "obb": "1 angle",
        "segment": f"{MASK_COEFFICIENTS} mask coefficients",
    }[task]
    raise UnsupportedModelError(
        f"output has {out_dims[1]} channels but the {task} head of {classes} classes has {4 + classes + extra} "
        f"(4 + classes + {parts})"
    )


def _end2end_info(common: dict, out_dims: list[int | str], output_name: str, args: dict) -> YoloModelInfo:
    """The info of a (batch, max_det, 6 + the task's values) head; with NMS inside the graph, the batch it
    handles."""
    task, kpt_shape = common["task"], common["kpt_shape"]
    columns = END2END_COLUMNS + extra_channels(task, kpt_shape[0] if kpt_shape else 0)
    if out_dims[2] != columns:
        keypoints = f" + {kpt_shape[0]} x 3 keypoint values" if kpt_shape else ""
        values = {
            "detect": "",
            "pose": keypoints,
            "obb": " + 1 angle",
            "segment": f" + {MASK_COEFFICIENTS} mask coefficients",
        }
        raise UnsupportedModelError(
            f"the metadata says end-to-end (end2end or nms) but output {output_name!r} is {out_dims}; "
            f"expected (batch, max_det, {columns}): x1, y1, x2, y2, score, class{values[task]}"
        )
    if not isinstance(out_dims[1], int):
        raise UnsupportedModelError(f"output {output_name!r} has a dynamic number of rows ({out_dims[1]!r})")
    nms_inside = args.get("nms") is True
    max_batch = nms_batch_limit(args, common["batch_dim"]) if nms_inside else None
    return YoloModelInfo(**common, head="end2end", max_det=out_dims[1], max_batch=max_batch, nms_inside=nms_inside)


def nms_batch_limit(args: dict, batch_dim: int | str) -> int:
    """The most images per run that an export with NMS inside the graph handles.

    Ultralytics' NMSModel runs NMS image by image in a loop that the export unrolls at its ``batch``
    (padding to ``batch`` first only when ``dynamic``): a graph of a fixed batch (its input's
    ``batch_dim``) handles exactly that batch; a batch-dynamic one up to the export's ``args`` batch,
    padded. The images past the loop get no detections, silently, so no run may hold more.
    """
    if isinstance(batch_dim, int):
        if batch_dim == 1:
            return 1
        raise UnsupportedModelError(
            f"the NMS inside this graph runs exactly {batch_dim} images at a time; export with batch=1, "
            f"or dynamic=True batch={batch_dim}"
        )
    return max(1, int(args.get("batch", 1)))


def _literal(text: str | None, default: object) -> object:
    """A metadata string as the Python literal it spells; ``default`` when absent or unparsable."""
    if text is None:
        return default
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError):
        return default


INT_KEYS = ("stride", "batch", "channels")  # Ultralytics' AutoBackend int()s these
# ... and eval()s these; also imgsz and names, which are replaced by the served ones
LITERAL_KEYS = ("args", "end2end", "kpt_shape")


def ultralytics_metadata(info: YoloModelInfo) -> dict[str, object]:
    """The export's metadata as Ultralytics' Triton client wants it, for the model as served.

    Every key of the export, in its order, with stride/batch/channels as ints and imgsz/names/args
    parsed; imgsz is the served [height, width] and names {int: str}. The keys AutoBackend requires
    (stride, task, batch, imgsz, names) are always there, defaulted where the export lacks them.
    """
    metadata = {key: _parsed(key, value) for key, value in info.metadata}
    metadata |= {"imgsz": [info.input_height, info.input_width], "names": dict(enumerate(info.class_names))}
    required = {"stride": info.stride, "task": "detect", "batch": 1}
    return metadata | {key: value for key, value in required.items() if key not in metadata}


def _parsed(key: str, value: str) -> object:
    """A metadata_props string as the Python value it spells; unparsable ones stay strings."""
    try:
        if key in INT_KEYS:
            return int(value)
        if key in LITERAL_KEYS:
            return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError):  # literal_eval('{[1]: 2}') is a TypeError
        pass
    return value


def _image_size(meta: dict[str, str], in_dims: list[int | str]) -> tuple[int, int]:
    if "imgsz" in meta:
        imgsz = ast.literal_eval(meta["imgsz"])
        height, width = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    elif isinstance(in_dims[2], int) and isinstance(in_dims[3], int):
        height, width = in_dims[2], in_dims[3]
    else:
        raise UnsupportedModelError("input size unknown: no 'imgsz' metadata and a dynamic H/W")
    if height % 32 or width % 32:
        raise UnsupportedModelError(f"input size {height}x{width} must be a multiple of 32")
    return height, width


def _constant_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Name → tensor for every initializer and Constant node output."""
    found = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    found[node.output[0]] = attr.t
    return found


def make_batch_dynamic(model: onnx.ModelProto, batch_name: str = "batch") -> tuple[onnx.ModelProto, int]:
    """Return a copy whose batch dimension is symbolic, and how many Reshape nodes were rewritten.

    Ultralytics' static exports hard-code batch 1 in the head's Reshape shapes; each such
    leading 1 becomes 0 ("copy this dim from the input"), which keeps the batch dimension.
    """
    dynamic = onnx.ModelProto()
    dynamic.CopyFrom(model)
    graph = dynamic.graph
    for value_info in (*graph.input, *graph.output):
        dim = value_info.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = batch_name
    del graph.value_info[:]  # stale intermediate shapes with batch 1

    constants = _constant_tensors(graph)
    batch_one: dict[int, onnx.TensorProto] = {}  # by id: Constant tensors may be unnamed
    rewritten = 0
    for node in graph.node:
        if node.op_type != "Reshape" or any(a.name == "allowzero" and a.i for a in node.attribute):
            continue
        tensor = constants.get(node.input[1])
        shape = None if tensor is None else numpy_helper.to_array(tensor)
        if shape is not None and shape.ndim == 1 and shape.size >= 2 and shape[0] == 1:
            batch_one[id(tensor)] = tensor
            rewritten += 1
    for tensor in batch_one.values():
        shape = numpy_helper.to_array(tensor).astype(np.int64)
        shape[0] = 0
        tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    return dynamic, rewritten


def verify_same_outputs(original: bytes, rewritten: bytes, info: YoloModelInfo, batch: int = 2, seed: int = 0) -> float:
    """Check that the rewritten model on a batch equals the original model image by image.

    Returns the largest absolute difference; raises UnsupportedModelError above tolerance.
    """
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    images = rng.random((batch, 3, info.input_height, info.input_width), dtype=np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    reference = ort.InferenceSession(original, options, providers=["CPUExecutionProvider"])
    batched = ort.InferenceSession(rewritten, options, providers=["CPUExecutionProvider"])
    singles = [reference.run(None, {info.input_name: images[i : i + 1]}) for i in range(batch)]
    try:
        batched_outputs = batched.run(None, {info.input_name: images})
    except Exception as exc:  # onnxruntime raises its own exception types
        raise UnsupportedModelError(f"the batch-{batch} model fails to run: {exc}") from exc
    largest = 0.0
    for index, got in enumerate(batched_outputs):  # the head, and a segment model's prototypes
        expected = np.concatenate([single[index] for single in singles])
        if got.shape != expected.shape:
            raise UnsupportedModelError(f"batched output shape {got.shape} != per-image {expected.shape}")
        diff = float(np.max(np.abs(got - expected)))
        scale = float(np.max(np.abs(expected))) or 1.0
        if diff > 1e-4 * scale + 1e-4:
            raise UnsupportedModelError(f"batched outputs differ from per-image outputs by {diff:.3g}")
        largest = max(largest, diff)
    return largest


PIXEL_SCALE = 255.0  # uint8 pixels → [0, 1], as Ultralytics' ``im / 255``


def with_pixel_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy that takes uint8 pixels, (batch, 3, H, W) RGB in 0..255, where the export takes float32 in [0, 1].

    Cast to float32 and Div by 255 come first in the graph: the float32 division of Ultralytics' ``/ 255``.
    The hand-off from yolov8_preprocess is then a quarter of float32's bytes. ONNX Runtime runs the division
    as written (the head is the float input's, bit for bit); OpenVINO runs a multiplication by 1/255, which
    rounds half of the 256 pixel values one float32 step apart from the division (benchmarks/README.md).
    A model that takes uint8 already is returned as it is.
    """
    pixels = onnx.ModelProto()
    pixels.CopyFrom(model)
    graph = pixels.graph
    image = graph.input[0]
    if image.type.tensor_type.elem_type == onnx.TensorProto.UINT8:
        return pixels
    name, as_float, scaled = image.name, f"{image.name}_float", f"{image.name}_normalized"
    for node in graph.node:
        node.input[:] = [scaled if value == name else value for value in node.input]
    graph.initializer.append(numpy_helper.from_array(np.array(PIXEL_SCALE, np.float32), f"{name}_scale"))
    graph.node.insert(0, onnx.helper.make_node("Div", [as_float, f"{name}_scale"], [scaled], name=f"{name}_div"))
    graph.node.insert(
        0, onnx.helper.make_node("Cast", [name], [as_float], to=onnx.TensorProto.FLOAT, name=f"{name}_cast")
    )
    image.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    return pixels
