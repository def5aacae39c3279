"""prepare and serving of (batch, max_det, 6) heads: end-to-end exports and exports with NMS inside the graph.

The models are small synthetic graphs built here with onnx.helper. Their output is a fixed set of rows
(x1, y1, x2, y2, score, class) in network-input pixels, whatever the image, so every served detection
is known in advance: mapped back through the letterbox, clipped to the image, thresholded.
"""

import ast
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

from prepare.cli import set_cpu_runtime
from prepare.onnx_model import (
    UnsupportedModelError,
    make_batch_dynamic,
    read_model_info,
    verify_same_outputs,
    with_pixel_input,
)
from prepare.prepare_model import prepare
from python_backends.paths import PROJECT_ROOT

SIZE = 64  # network input, H = W
ROWS = [  # x1, y1, x2, y2, score, class in 64x64 network pixels, by descending score as Ultralytics pads them
    (8, 20, 24, 40, 0.9, 1),
    (40, 10, 70, 30, 0.8, 0),  # past the right edge and above the image: clipped
    (0, 16, 10, 26, 0.3, 0),
    (5, 5, 10, 10, 0.2, 1),  # under the default confidence threshold (0.25)
]
MAX_DET = 8  # the model's rows: the four above, then zero rows
NAMES = {0: "person", 1: "bicycle"}


def export_args(**changes) -> str:
    """Ultralytics' ``args`` metadata of an ONNX export (8.4), with ``changes``."""
    args = {"batch": 1, "half": False, "dynamic": False, "simplify": True, "opset": None, "nms": False}
    return str(args | changes)


def end2end_yolo(
    rows=ROWS,
    max_det=MAX_DET,
    end2end="True",
    args=None,
    task="detect",
    first_image_only=False,
    columns=6,
    batch_dim: int | str = 1,
) -> onnx.ModelProto:
    """A (batch_dim, 3, 64, 64) -> (batch_dim, max_det, columns) graph: ``rows`` then zeros, for every image.

    The image enters through a Reshape that hard-codes batch 1, as Ultralytics' static exports do
    (the rewrite makes it batch-dynamic). ``first_image_only``: the graph reads image 0 alone and
    outputs one set of rows whatever the batch, like an NMS loop that the export unrolled at batch 1.
    """
    table = np.zeros((max_det, columns), np.float32)
    table[: len(rows), :6] = np.array(rows, np.float32)
    nodes = []
    source = "images"
    if first_image_only:
        nodes.append(helper.make_node("Slice", ["images", "zero", "one", "zero"], ["first"]))
        source = "first"
    nodes += [
        helper.make_node("ReduceMean", [source], ["mean"], axes=[1, 2, 3], keepdims=1),  # (B, 1, 1, 1)
        helper.make_node("Reshape", ["mean", "batch_one"], ["per_image"]),  # (B, 1, 1)
        helper.make_node("Mul", ["per_image", "zero_f"], ["nothing"]),
        helper.make_node("Add", ["nothing", "table"], ["output0"]),  # (B, max_det, columns)
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 1, 1], np.int64), "batch_one"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array(0, np.float32), "zero_f"),
        numpy_helper.from_array(table, "table"),
    ]
    graph = helper.make_graph(
        nodes,
        "end2end",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch_dim, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch_dim, max_det, columns])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    meta = {
        "task": task,
        "stride": "32",
        "batch": "1",
        "imgsz": f"[{SIZE}, {SIZE}]",
        "names": str(NAMES),
        "args": args or export_args(),
        "end2end": end2end,
    }
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model


def nms_yolo(batch=1, dynamic=False) -> onnx.ModelProto:
    """An export with NMS inside the graph (``args`` nms True) at ``batch``, its loop unrolled at batch 1.

    ``dynamic``: the input's batch is symbolic, as in ``export(nms=True, dynamic=True, batch=N)``.
    """
    return end2end_yolo(
        end2end="False",
        args=export_args(nms=True, batch=batch, dynamic=dynamic),
        first_image_only=True,
        batch_dim="batch" if dynamic else batch,
    )


# --- what prepare reads from the export -------------------------------------------------------------


def test_an_end2end_export_is_read_as_an_end2end_head_with_the_models_max_det():
    info = read_model_info(end2end_yolo())
    assert (info.head, info.max_det, info.max_batch) == ("end2end", MAX_DET, None)
    assert info.head_dims() == [MAX_DET, 6] and info.class_names == ("person", "bicycle")


def test_six_columns_make_an_end2end_head_without_the_metadata_saying_so():
    """YOLOv10's exports carry no ``end2end`` key; Ultralytics itself goes by the last dim, 6."""
    model = end2end_yolo()
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != "end2end"]
    del model.metadata_props[:]
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
    assert read_model_info(model).head == "end2end"


def test_nms_inside_the_graph_is_an_end2end_head_served_at_the_batch_its_loop_handles():
    assert read_model_info(nms_yolo()).max_batch == 1
    assert read_model_info(nms_yolo(dynamic=True, batch=4)).max_batch == 4  # padded to 4 inside the graph


def test_nms_inside_a_graph_of_a_fixed_batch_above_one_is_refused_with_the_export_to_make():
    with pytest.raises(UnsupportedModelError, match=r"exactly 2 images .* batch=1, or dynamic=True batch=2"):
        read_model_info(nms_yolo(batch=2))


def test_an_end2end_export_whose_output_is_not_six_columns_is_refused():
    with pytest.raises(UnsupportedModelError, match=r"expected \(batch, max_det, 6\)"):
        read_model_info(end2end_yolo(columns=7))


def test_a_raw_head_stays_raw_when_the_metadata_says_end2end_false():
    from tiny_models import tiny_yolo

    model = tiny_yolo(num_classes=3, size=64)
    model.metadata_props.add(key="end2end", value="False")
    model.metadata_props.add(key="args", value=export_args(nms=None))
    info = read_model_info(model)
    assert (info.head, info.max_det, info.max_batch, info.head_dims()) == ("raw", 0, None, [7, 84])


@pytest.mark.parametrize(("task", "columns"), [("pose", 6 + 17 * 3), ("obb", 7)])
def test_end_to_end_pose_and_obb_heads_are_read_with_their_task_values(task, columns):
    """YOLO26's NMS-free pose and OBB exports, and nms=True ones: (batch, max_det, 6 + extra)."""
    model = end2end_yolo(task=task, columns=columns)
    model.metadata_props.add(key="kpt_shape", value="[17, 3]")
    info = read_model_info(model)
    assert (info.task, info.head, info.max_det, info.head_dims()) == (task, "end2end", MAX_DET, [MAX_DET, columns])


@pytest.mark.parametrize(
    ("task", "columns", "expected"),
    [("pose", 6 + 17 * 2, r"57\): .* 17 x 3 keypoint values"), ("obb", 6, r"7\): .* 1 angle")],
)
def test_an_end_to_end_task_head_without_its_values_is_refused(task, columns, expected):
    model = end2end_yolo(task=task, columns=columns)
    model.metadata_props.add(key="kpt_shape", value="[17, 3]")
    with pytest.raises(UnsupportedModelError, match=rf"expected \(batch, max_det, {expected}"):
        read_model_info(model)


def test_the_metadata_for_ultralytics_says_end2end_as_a_bool():
    from prepare.onnx_model import ultralytics_metadata

    metadata = ultralytics_metadata(read_model_info(end2end_yolo()))
    assert metadata["end2end"] is True and metadata["args"]["nms"] is False
    assert ast.literal_eval(repr(metadata)) == metadata
    assert ultralytics_metadata(read_model_info(nms_yolo()))["args"]["nms"] is True


# --- what prepare installs ------------------------------------------------------------------------------


def prepared(tmp_path, model: onnx.ModelProto, cpu_runtime="onnxruntime", max_det=300) -> tuple[Path, str]:
    """``model`` prepared into a repository under ``tmp_path``; the repository and prepare's summary."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "export.onnx"
    onnx.save(model, source)
    repository = tmp_path / "repository"
    summary = prepare(source, repository, max_det, template=PROJECT_ROOT / "model_repository")
    set_cpu_runtime(repository, cpu_runtime)
    return repository, summary


def config_of(repository: Path, model: str, name: str = "config.pbtxt") -> model_config_pb2.ModelConfig:
    path = repository / model / name
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def output_dims(config: model_config_pb2.ModelConfig) -> dict[str, list[int]]:
    return {tensor.name: list(tensor.dims) for tensor in config.output}


def max_batch_sizes(repository: Path) -> dict[str, int]:
    """max_batch_size of every config that prepare writes, variants included."""
    return {
        f"{model}/{name}": config_of(repository, model, name).max_batch_size
        for model in ("yolov8", "yolov8_raw", "yolov8_infer", "yolov8_preprocess", "yolov8_postprocess")
        for name in ("config.pbtxt", "configs/gpu.pbtxt")
        if (repository / model / name).exists()
    }


def test_prepare_serves_an_end2end_export_batch_dynamic_without_nms_and_at_most_its_rows(tmp_path):
    repository, summary = prepared(tmp_path, end2end_yolo())
    assert "end-to-end head of 8 rows (no NMS in postprocess)" in summary
    assert "1 Reshape(s) made batch-dynamic (max |diff| 0 at batch 2)" in summary
    installed = onnx.load(str(repository / "yolov8_infer" / "1" / "model.onnx"))
    assert installed.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    post = config_of(repository, "yolov8_postprocess")
    assert post.parameters["head"].string_value == "end2end"
    assert post.parameters["max_det"].string_value == "8"  # --max-det 300, but the model has 8 rows
    assert [list(t.dims) for t in post.input if t.name == "output0"] == [[MAX_DET, 6]]
    for name in ("config.pbtxt", "configs/gpu.pbtxt"):
        infer = config_of(repository, "yolov8_infer", name)
        assert output_dims(infer) == {"output0": [MAX_DET, 6]}, name
        assert infer.parameters["trt_batch_profile"].string_value == "1,8,32", name
    for model in ("yolov8", "yolov8_raw"):
        assert output_dims(config_of(repository, model))["det_boxes"] == [MAX_DET, 4]
    assert set(max_batch_sizes(repository).values()) == {32}
    head = np.fromfile(repository / "yolov8_postprocess" / "warmup" / "head.bin", np.float32)
    assert head.shape == (MAX_DET * 6,)


def test_max_det_below_the_models_rows_keeps_the_first_rows(tmp_path):
    repository, summary = prepared(tmp_path, end2end_yolo(), max_det=2)
    assert "end-to-end head of 8 rows, 2 kept per image (--max-det)" in summary
    assert config_of(repository, "yolov8_postprocess").parameters["max_det"].string_value == "2"
    assert output_dims(config_of(repository, "yolov8"))["det_scores"] == [2]


def test_nms_inside_a_batch_1_graph_is_installed_as_exported_and_every_stage_that_batches_it_takes_batch_1(tmp_path):
    export = nms_yolo()
    repository, summary = prepared(tmp_path, export)
    assert summary.endswith("the NMS inside this graph handles batch 1 only: serving batch 1")
    installed = onnx.load(str(repository / "yolov8_infer" / "1" / "model.onnx"))
    assert installed.SerializeToString() == with_pixel_input(export).SerializeToString()  # as exported, takes pixels
    assert max_batch_sizes(repository) == {
        "yolov8/config.pbtxt": 1,
        "yolov8_raw/config.pbtxt": 1,
        "yolov8_infer/config.pbtxt": 1,
        "yolov8_infer/configs/gpu.pbtxt": 1,
        "yolov8_preprocess/config.pbtxt": 32,  # take a batch only from the ensembles, which allow 1
        "yolov8_postprocess/config.pbtxt": 32,
    }
    gpu = config_of(repository, "yolov8_infer", "configs/gpu.pbtxt")
    assert gpu.parameters["trt_batch_profile"].string_value == "1,1,1"
    assert [w.batch_size for w in gpu.model_warmup] == [1]


def test_the_batch_rewrite_would_lose_all_but_the_first_image_of_such_a_graph():
    """Why the NMS graph is installed as exported: its loop, not a Reshape, fixes the batch."""
    export = end2end_yolo(first_image_only=True)
    dynamic, _ = make_batch_dynamic(export)
    with pytest.raises(UnsupportedModelError, match=r"batched output shape \(1, 8, 6\) != per-image \(2, 8, 6\)"):
        verify_same_outputs(export.SerializeToString(), dynamic.SerializeToString(), read_model_info(export))


def test_an_end2end_graph_that_fails_the_batch_2_check_is_served_at_batch_1_saying_why(tmp_path):
    export = end2end_yolo(first_image_only=True)
    repository, summary = prepared(tmp_path, export)
    assert summary.endswith(
        "batched output shape (1, 8, 6) != per-image (2, 8, 6): serving batch 1 as exported"
    ), summary
    assert onnx.load(str(repository / "yolov8_infer" / "1" / "model.onnx")).SerializeToString() == (
        with_pixel_input(export).SerializeToString()
    )
    assert max_batch_sizes(repository)["yolov8/config.pbtxt"] == 1
    assert max_batch_sizes(repository)["yolov8_infer/configs/gpu.pbtxt"] == 1


def test_a_dynamic_nms_export_is_served_in_batches_of_at_most_its_export_batch(tmp_path):
    repository, summary = prepared(tmp_path, nms_yolo(dynamic=True, batch=4))
    assert summary.endswith("the NMS inside this graph handles 4 images at most: serving batches of up to 4")
    sizes = max_batch_sizes(repository)
    assert (sizes["yolov8/config.pbtxt"], sizes["yolov8_infer/config.pbtxt"]) == (4, 4)
    gpu = config_of(repository, "yolov8_infer", "configs/gpu.pbtxt")
    assert gpu.parameters["trt_batch_profile"].string_value == "1,4,4"
    assert [w.batch_size for w in gpu.model_warmup] == [1, 4]


def test_the_default_profile_and_batch_sizes_come_back_when_a_raw_model_is_prepared_again(tmp_path):
    from tiny_models import tiny_yolo

    repository, _ = prepared(tmp_path, nms_yolo())
    source = tmp_path / "raw.onnx"
    onnx.save(tiny_yolo(num_classes=2, size=64), source)
    prepare(source, repository)
    assert set(max_batch_sizes(repository).values()) == {32}
    gpu = config_of(repository, "yolov8_infer", "configs/gpu.pbtxt")
    assert gpu.parameters["trt_batch_profile"].string_value == "1,8,32"
    assert [w.batch_size for w in gpu.model_warmup] == [1, 8, 32]
    assert config_of(repository, "yolov8_postprocess").parameters["head"].string_value == "raw"


# --- runtimes and the TensorRT build ---------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("export", ["end2end", "nms"])
def test_both_cpu_runtimes_run_the_installed_head(tmp_path, runtime, export):
    from python_backends.infer.onnxruntime_runtime import OnnxRuntimeSession
    from python_backends.infer.openvino_runtime import OpenVinoRuntime

    repository, _ = prepared(tmp_path, end2end_yolo() if export == "end2end" else nms_yolo())
    model_path = str(repository / "yolov8_infer" / "1" / "model.onnx")
    if runtime == "openvino":
        session = OpenVinoRuntime(model_path, intra_op_threads=1, cache_dir=tmp_path / "openvino")
    else:
        session = OnnxRuntimeSession(model_path, intra_op_threads=1)
    batch = 3 if export == "end2end" else 1
    head = session.run(np.random.default_rng(0).integers(0, 256, (batch, 3, SIZE, SIZE), dtype=np.uint8))
    table = np.zeros((MAX_DET, 6), np.float32)
    table[: len(ROWS)] = ROWS
    np.testing.assert_allclose(head, np.stack([table] * batch), atol=1e-6)
    assert session.max_batch_size == (32 if export == "end2end" else 1)


def test_the_tensorrt_build_takes_the_graph_as_it_is_without_an_nms_plugin_and_within_its_batch(tmp_path):
    from prepare.cli import engine_options
    from python_backends.infer.tensorrt_build import onnx_fixed_batch, trtexec_command
    from python_backends.infer.tensorrt_engine import DEFAULT_PROFILE

    repository, _ = prepared(tmp_path, nms_yolo())
    model_path = repository / "yolov8_infer" / "1" / "model.onnx"
    options = engine_options(repository, None, DEFAULT_PROFILE, fp16=True)
    assert (options.min_batch, options.opt_batch, options.max_batch) == (1, 1, 1)
    assert onnx_fixed_batch(model_path) == 1  # what prepare --tensorrt clamps the profile to
    assert not options.fp16  # NMS inside: FP32, whatever --no-fp16 says
    engine = tmp_path / "model.engine"
    # no --plugins, no --staticPlugins: EfficientNMS stays out, the head is the graph's own; no shape
    # flags, which trtexec refuses for a graph whose input is all fixed; no --fp16 with NMS inside
    assert trtexec_command("trtexec", model_path, options, engine) == [
        "trtexec",
        f"--onnx={model_path}",
        f"--saveEngine={engine}",
    ]
    ops = {node.op_type for node in onnx.load(str(model_path)).graph.node}
    pixels = {"Cast", "Div"}  # the pixel input's /255 (with_pixel_input)
    assert ops == pixels | {"Slice", "ReduceMean", "Reshape", "Mul", "Add"}  # no EfficientNMS_TRT node was added
    for export, profile in ((end2end_yolo(first_image_only=True), (1, 1, 1)), (end2end_yolo(), DEFAULT_PROFILE)):
        end2end_repository, _ = prepared(tmp_path / f"end2end_{profile[-1]}", export)
        options = engine_options(end2end_repository, None, DEFAULT_PROFILE, fp16=False)
        assert (options.min_batch, options.opt_batch, options.max_batch) == profile
    model_path = end2end_repository / "yolov8_infer" / "1" / "model.onnx"  # batch-dynamic
    assert trtexec_command("trtexec", model_path, options, engine) == [
        "trtexec",
        f"--onnx={model_path}",
        f"--saveEngine={engine}",
        "--minShapes=images:1x3x64x64",
        "--optShapes=images:8x3x64x64",
        "--maxShapes=images:32x3x64x64",
    ]


# --- served by a real tritonserver ----------------------------------------------------------------------

WIDE, TALL = (128, 64), (64, 128)  # (width, height): letterboxed at gain 0.5, 16 px of padding top or left
WIDE_DETECTIONS = {  # ROWS mapped back: x / 0.5, (y - 16) / 0.5, clipped to 128x64; the 0.2 row is under 0.25
    "boxes": [[16, 8, 48, 48], [80, 0, 128, 28], [0, 0, 20, 20]],
    "scores": [0.9, 0.8, 0.3],
    "classes": [1, 0, 0],
}
TALL_DETECTIONS = {  # (x - 16) / 0.5, y / 0.5, clipped to 64x128: the third box is clipped to zero width
    "boxes": [[0, 40, 16, 80], [48, 20, 64, 60], [0, 32, 0, 52]],
    "scores": [0.9, 0.8, 0.3],
    "classes": [1, 0, 0],
}


def png(width: int, height: int) -> bytes:
    import cv2

    image = np.full((height, width, 3), 90, np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


@contextmanager
def serving(tmp_path_factory, model: onnx.ModelProto, cpu_runtime: str):
    """``model`` prepared with ``cpu_runtime`` and served by a real tritonserver; yields the server."""
    from own_server import options, started

    directory = tmp_path_factory.mktemp(f"served_{cpu_runtime}")
    repository, _ = prepared(directory, model, cpu_runtime)
    with started(options(repository), directory / "tritonserver.log") as server:
        yield server


def detect(client, payloads: list[bytes], conf: float | None = None, iou: float | None = None) -> list[dict]:
    """The ensemble's outputs for one request of ``payloads``, image by image, the rows past num_dets checked zero."""
    import tritonclient.grpc as grpcclient

    inputs = [grpcclient.InferInput("IMAGE", [len(payloads), 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[p] for p in payloads], dtype=object))
    for name, value in (("CONF_THRESHOLD", conf), ("IOU_THRESHOLD", iou)):
        if value is not None:
            inputs.append(grpcclient.InferInput(name, [len(payloads), 1], "FP32"))
            inputs[-1].set_data_from_numpy(np.full((len(payloads), 1), value, np.float32))
    reply = client.infer("yolov8", inputs)
    found = []
    for i in range(len(payloads)):
        count = int(reply.as_numpy("num_dets")[i, 0])
        boxes, scores = reply.as_numpy("det_boxes")[i], reply.as_numpy("det_scores")[i]
        classes = reply.as_numpy("det_classes")[i]
        assert boxes.shape == (MAX_DET, 4)  # max_det is the model's 8 rows
        assert not boxes[count:].any() and not scores[count:].any() and not classes[count:].any()
        found.append(
            {
                "boxes": boxes[:count].tolist(),
                "scores": scores[:count].tolist(),
                "classes": classes[:count].tolist(),
                "size": reply.as_numpy("image_size")[i].tolist(),
            }
        )
    return found


def assert_detections(got: dict, want: dict, size: tuple[int, int]) -> None:
    assert got["size"] == list(size)
    np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-4)
    np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-6)
    assert got["classes"] == want["classes"]


class ServedModel:
    """A client of the class's ``server`` (each subclass serves its own model)."""

    @pytest.fixture(scope="class")
    def client(self, server):
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(server.grpc_url)
        yield client
        client.close()


class TestEnd2endServed(ServedModel):
    """An end-to-end export, batch-dynamic, on ONNX Runtime."""

    @pytest.fixture(scope="class")
    def server(self, tmp_path_factory):
        with serving(tmp_path_factory, end2end_yolo(), "onnxruntime") as server:
            yield server

    def test_detections_are_the_models_rows_mapped_to_the_image_clipped_and_thresholded(self, client):
        (wide,) = detect(client, [png(*WIDE)])
        assert_detections(wide, WIDE_DETECTIONS, WIDE)

    def test_a_batch_maps_each_image_through_its_own_letterbox(self, client):
        wide, tall = detect(client, [png(*WIDE), png(*TALL)])
        assert_detections(wide, WIDE_DETECTIONS, WIDE)
        assert_detections(tall, TALL_DETECTIONS, TALL)

    def test_a_request_threshold_applies_and_the_iou_threshold_removes_nothing(self, client):
        (wide,) = detect(client, [png(*WIDE)], conf=0.5, iou=0.0)
        first_two = {key: value[:2] for key, value in WIDE_DETECTIONS.items()}
        assert_detections(wide, first_two, WIDE)
        (everything,) = detect(client, [png(*WIDE)], conf=0.1, iou=0.0)  # overlaps kept: the model chose them
        assert everything["scores"] == pytest.approx([0.9, 0.8, 0.3, 0.2])

    def test_ultralytics_client_gets_the_end2end_metadata_and_the_models_rows(self, server):
        import tritonclient.grpc as grpcclient
        from test_ultralytics_client import load_triton_remote_model

        model = load_triton_remote_model()(f"grpc://{server.grpc_url}/yolov8_infer")
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            config = client.get_model_config("yolov8_infer", as_json=True)["config"]
        finally:
            client.close()
        metadata = model.metadata  # TritonRemoteModel eval()s the parameter
        assert metadata == ast.literal_eval(config["parameters"]["metadata"]["string_value"])  # nothing but data
        assert (metadata["task"], metadata["names"], metadata["imgsz"]) == ("detect", NAMES, [SIZE, SIZE])
        assert metadata["end2end"] is True and metadata["args"]["nms"] is False
        (head,) = model(np.zeros((2, 3, SIZE, SIZE), np.float32))
        assert head.shape == (2, MAX_DET, 6)  # shape[-1] == 6: Ultralytics' predict skips NMS for it
        np.testing.assert_allclose(head[1, : len(ROWS)], ROWS, atol=1e-6)


class TestNmsInsideServed(ServedModel):
    """An export with NMS inside, batch 1 only, on OpenVINO."""

    @pytest.fixture(scope="class")
    def server(self, tmp_path_factory):
        with serving(tmp_path_factory, nms_yolo(), "openvino") as server:
            yield server

    def test_the_ensemble_serves_batch_1_on_openvino(self, client):
        config = client.get_model_config("yolov8_infer", as_json=True)["config"]
        assert config["parameters"]["cpu_runtime"]["string_value"] == "openvino"
        assert client.get_model_config("yolov8", as_json=True)["config"]["max_batch_size"] == 1
        for payload, size, want in ((png(*WIDE), WIDE, WIDE_DETECTIONS), (png(*TALL), TALL, TALL_DETECTIONS)):
            (got,) = detect(client, [payload])
            assert_detections(got, want, size)

    def test_a_batch_of_two_is_refused_rather_than_half_detected(self, client):
        from tritonclient.utils import InferenceServerException

        with pytest.raises(InferenceServerException, match="batch-size must be <= 1 for 'yolov8'"):
            detect(client, [png(*WIDE), png(*TALL)])

    def test_ultralytics_client_gets_nms_true(self, server):
        from test_ultralytics_client import load_triton_remote_model

        model = load_triton_remote_model()(f"grpc://{server.grpc_url}/yolov8_infer")
        assert model.metadata["args"]["nms"] is True and model.metadata["batch"] == 1
        (head,) = model(np.zeros((1, 3, SIZE, SIZE), np.float32))
        np.testing.assert_allclose(head[0, : len(ROWS)], ROWS, atol=1e-6)
