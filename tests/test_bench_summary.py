"""make bench's arithmetic: the paired rounds' ratios and their median, and perf_analyzer's unpaired ratios."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench import round_summary, summarize
from benchmarks.cpu_usage import cpu_ms_per_image
from benchmarks.engine_baseline import engine_runtime, served_cpu_runtime
from benchmarks.paired import PairedLatency, PairedThroughput
from benchmarks.perf_analyzer import PerfRun
from benchmarks.report import format_summary
from prepare.repository import copy_with_parameters
from python_backends.triton_helpers.config import instance_count

ENGINE = {1: {"p50_ms": 160.0, "p99_ms": 170.0, "images_per_s": 6.25, "cpu_ms_per_image": 318.0},
          2: {"p50_ms": 300.0, "p99_ms": 310.0, "images_per_s": 6.67, "cpu_ms_per_image": 299.0}}  # fmt: skip


def _round(client_ms: float, engine_ms: float, ensemble_at_4: float, own_ms: float | None = None) -> dict:
    latency = PairedLatency(
        engine_ms=[engine_ms - 1, engine_ms, engine_ms + 30],
        client_ms=[client_ms, client_ms + 1],
        own_ms=None if own_ms is None else [own_ms, own_ms + 2, own_ms - 50],
    )
    throughput = [
        PairedThroughput(1, 5.5, {1: 6.2, 2: 6.0}),  # ratio 0.887
        PairedThroughput(4, ensemble_at_4, {1: 6.3, 2: 6.5}),
    ]
    return round_summary(latency, throughput)


def _perf_run(concurrency: int, p50_ms: float, images_per_s: float, infer_ms: float, pre_post_ms=(0.0, 0.0)) -> PerfRun:
    row = {"p50 latency": p50_ms * 1e3, "p99 latency": p50_ms * 1.2e3, "Avg latency": p50_ms * 1e3,
           "Inferences/Second": images_per_s}  # fmt: skip
    composing = {"yolov8_infer": {"compute_infer": infer_ms * 1e3, "queue": 100.0},
                 "yolov8_preprocess": {"compute_infer": pre_post_ms[0] * 1e3, "compute_output": 300.0},
                 "yolov8_postprocess": {"compute_infer": pre_post_ms[1] * 1e3}}  # fmt: skip
    return PerfRun(concurrency, row, composing)


RUNTIMES = {"openvino": {"in_process_p50_ms": 104.8, "in_process_peak": 9.7, "in_process_cpu_ms": 200.0,
                         "first_ms": 130.0, "served_p50_ms": 118.2, "served_peak": 9.1,
                         "served_peak_concurrency": 4}}  # fmt: skip


def _summary(cores: int = 2, served: str = "openvino", runtimes: dict = RUNTIMES) -> dict:
    """Three rounds (own p50 medians 190, 150, 160 ms), perf_analyzer at concurrency 1 (preprocess 6 ms,
    postprocess 1 ms of compute) and 4, and the CPU per image at 4."""
    rounds = [_round(210.0, 155.0, 6.0, 190.0), _round(170.0, 155.0, 6.3, 150.0), _round(200.0, 190.0, 6.2, 160.0)]
    ensemble = {1: _perf_run(1, 200.0, 5.0, 185.0, pre_post_ms=(6.0, 1.0)), 4: _perf_run(4, 640.0, 6.1, 400.0)}
    cpu = {4: {"yolov8_preprocess": 7.0, "yolov8_infer": 313.0, "yolov8_postprocess": 0.6, "tritonserver": 1.8,
               "other": 2.0, "idle": 3.0}}  # fmt: skip
    return summarize(rounds, ensemble, ENGINE, {}, cpu, served, runtimes, cores=cores)


def test_a_round_pairs_each_ensemble_block_with_the_engine_just_before_it():
    r = _round(client_ms=170.0, engine_ms=155.0, ensemble_at_4=6.3)
    assert r["overhead_ratio"] == pytest.approx(170.5 / 155.0)  # medians: an outlier engine run does not count
    assert r["throughput_ratio"] == pytest.approx(6.3 / 6.5) and r["peak_concurrency"] == 4
    assert _round(170.0, 155.0, ensemble_at_4=5.0)["peak_concurrency"] == 1  # 5.5 / 6.2 beats 5.0 / 6.5
    assert r["own_overhead_ratio"] == r["overhead_ratio"]  # the server runs the reference runtime itself
    other = _round(client_ms=120.0, engine_ms=155.0, ensemble_at_4=6.3, own_ms=110.0)
    assert other["overhead_ratio"] == pytest.approx(120.5 / 155.0)  # against ONNX Runtime in-process
    assert other["own_overhead_ratio"] == pytest.approx(120.5 / 110.0)  # against the served runtime in-process


def test_headline_is_the_median_of_the_rounds_and_unpaired_ratios_are_kept_apart():
    summary = _summary()
    assert summary["overhead_ratio"] == pytest.approx(170.5 / 155.0)  # the median of 1.36, 1.10, 1.06
    assert summary["throughput_ratio"] == pytest.approx(6.2 / 6.5)
    assert summary["own_overhead_ratio"] == pytest.approx(170.5 / 150.0)  # the median of 1.108, 1.137, 1.253
    assert summary["unpaired"]["overhead_ratio"] == pytest.approx(200.0 / 160.0)
    assert summary["unpaired"]["throughput_ratio"] == pytest.approx(6.1 / 6.67)
    assert summary["unpaired"]["added_ms"] == pytest.approx(15.0)  # client mean 200 ms around 185 ms of engine
    assert summary["ensemble"][4]["server_ms"] == pytest.approx(400.4)  # infer 400.1 + preprocess's output 0.3
    text = format_summary(summary)
    assert "overhead ratio         1.100  (target <= 0.90;" in text
    assert "throughput ratio       0.954  (target >= 1.15;" in text
    assert (
        "own overhead ratio     1.137  (target <= 1.10; median of rounds: client p50 at concurrency 1 / openvino"
        in text
    )
    assert ("1: overhead 1.358 (210.5 / 155.0 ms), own 1.108 (/ 190.0 ms), throughput 0.923 (6.00 img/s at "
            "concurrency 4 / 6.50 img/s)") in text  # fmt: skip
    assert ("  openvino             104.8 ms        9.70    118.2 ms        9.10 (concurrency 4)    130.0 ms = 1.10x"
            in text)  # fmt: skip
    assert "   4          7.0        313.0          0.6          1.8          2.0          3.0" in text
    assert "batch 2: p50    300.0 ms     6.67 images/s    299.0 core-ms per image" in text


def test_the_ceiling_is_the_engine_plus_the_other_stages_compute():
    """Latency: the own runtime's median p50 (160) + preprocess 6 + postprocess 1 ms at concurrency 1; throughput:
    2 cores over openvino's 200 + preprocess 7 + postprocess 0.6 core-ms per image, against ONNX Runtime's 6.5."""
    summary = _summary()
    ceiling = summary["ceiling"]
    assert ceiling["overhead_ratio"] == pytest.approx(167.0 / 155.0)
    assert ceiling["own_overhead_ratio"] == pytest.approx(167.0 / 160.0)
    assert ceiling["throughput_ratio"] == pytest.approx(2000.0 / 207.6 / 6.5)
    text = format_summary(summary)
    assert "what 2 cores allow, if tritonserver, gRPC and the client cost nothing:" in text
    assert ("  overhead ratio     >= 1.077  (openvino 160.0 + preprocess 6.0 + postprocess 1.0 ms / onnxruntime "
            "155.0 ms)") in text  # fmt: skip
    assert ("  throughput ratio   <= 1.482  (9.63 img/s: 2 cores / (openvino 200.0 + preprocess 7.0 + postprocess "
            "0.6 core-ms per image), / onnxruntime 6.50 img/s)") in text  # fmt: skip
    faster = _summary(cores=4)["ceiling"]
    assert faster["peak_images_per_s"] == 9.7  # never above the runtime's own in-process peak
    served_reference = _summary(served="onnxruntime", runtimes={})["ceiling"]
    assert served_reference["engine_cpu_ms"] == 299.0  # ONNX Runtime's batch 2, its in-process peak


def test_cpu_per_image_splits_the_machine_between_the_server_the_rest_and_idle():
    before = {"tritonserver": 10.0, "yolov8_infer": 100.0, "machine busy": 500.0, "idle": 50.0}
    after = {"tritonserver": 10.2, "yolov8_infer": 109.0, "machine busy": 509.5, "idle": 50.5}
    per_image = cpu_ms_per_image(before, after, images=30)  # 5 s on 2 cores: 9.5 core-s busy, 0.5 idle
    assert per_image == pytest.approx({"tritonserver": 200 / 30, "yolov8_infer": 9000 / 30, "idle": 500 / 30,
                                       "other": 300 / 30})  # fmt: skip
    assert sum(per_image.values()) == pytest.approx(2 * 5 * 1e3 / 30)  # the machine, all accounted for


@pytest.mark.parametrize(
    ("config", "count"),
    [
        ({"instance_group": [{"count": 2, "kind": "KIND_CPU"}]}, 2),
        ({"instance_group": [{"count": 1}, {"count": 3}]}, 4),
        ({"instance_group": [{"kind": "KIND_CPU"}]}, 1),
        ({"max_batch_size": 8}, 1),
    ],
)
def test_instance_count_sums_the_groups(config, count):
    """The engine baseline runs one stream per instance of the config Triton loaded."""
    assert instance_count(config) == count


@pytest.mark.parametrize(
    ("runtime", "cpu_runtime", "served"),
    [("auto", "openvino", "openvino"), ("auto", "onnxruntime", "onnxruntime"), ("auto", "", "onnxruntime"),
     ("onnxruntime", "openvino", "onnxruntime"), ("openvino", "onnxruntime", "openvino")],
)  # fmt: skip
def test_the_served_cpu_runtime_is_the_named_one_or_autos_choice(runtime, cpu_runtime, served):
    config = {
        "input": [{"name": "images", "data_type": "TYPE_FP32", "dims": ["3", "640", "640"]}],
        "parameters": {"runtime": {"string_value": runtime}, "cpu_runtime": {"string_value": cpu_runtime}},
    }
    assert served_cpu_runtime(config) == served
    int8 = config | {"parameters": config["parameters"] | {"cpu_precision": {"string_value": "int8"}}}
    assert served_cpu_runtime(int8) == ("openvino" if runtime == "auto" else runtime)  # auto serves INT8 on OpenVINO


def test_the_table_serves_each_runtime_from_a_copy_that_names_it(model_repository, tmp_path):
    repo = copy_with_parameters(model_repository, tmp_path / "repo", "yolov8_infer", runtime="onnxruntime")
    assert '"runtime", value: { string_value: "onnxruntime" }' in (repo / "yolov8_infer" / "config.pbtxt").read_text()
    model = repo / "yolov8_infer" / "1" / "model.onnx"
    assert model.is_symlink() and model.resolve() == (model_repository / "yolov8_infer" / "1" / "model.onnx").resolve()
    assert (repo / "yolov8_preprocess" / "warmup").is_dir()


def test_engine_runtime_follows_the_config_triton_loaded(model_repository, grpc_client):
    """gRPC's JSON config (empty parameters left out) gives the infer stage's runtime: one stream per instance;
    ``auto`` serves the ``cpu_runtime`` that prepare wrote, whichever it measured faster on this machine."""
    config = grpc_client.get_model_config("yolov8_infer", as_json=True)["config"]
    runtime = engine_runtime(model_repository, config)
    assert runtime.name == "onnxruntime" and runtime.streams == instance_count(config) == 2
    assert runtime.run(np.zeros((1, 3, 640, 640), np.uint8)).shape == (1, 6, 8400)
    chosen = config["parameters"]["cpu_runtime"]["string_value"]  # what prepare measured fastest on this machine
    assert chosen in ("onnxruntime", "openvino")
    served = engine_runtime(model_repository, config, served_cpu_runtime(config))
    assert served.name == chosen and served.streams == 2
    assert served.run(np.zeros((1, 3, 640, 640), np.uint8)).shape == (1, 6, 8400)


def test_the_int8_part_has_its_own_rounds_targets_and_ceiling():
    """An INT8 server's rounds against the same ONNX Runtime FP32 engine, with the INT8 targets."""
    int8 = _summary(served="openvino-int8", runtimes={"openvino-int8": RUNTIMES["openvino"]})
    found = {"recall": 22 / 24, "found": 22, "expected": 24, "extra": 2, "summary": "found 22 of 24 (recall 0.917)"}
    summary = _summary() | {"int8": int8 | {"quantize_s": 41.6, "agreement": found}}
    text = format_summary(summary)
    assert "--- INT8: openvino-int8, quantized here in 42 s on 40 flips and crops of the sample photos" in text
    assert "(conf 0.25, IoU >= 0.5, same class): found 22 of 24 (recall 0.917); recall target >= 0.95" in text
    assert "ensemble `yolov8` serving openvino-int8, 1 MP JPEG" in text
    assert "overhead ratio         1.100  (target <= 0.50;" in text
    assert "throughput ratio       0.954  (target >= 2.00;" in text
    assert (
        "own overhead ratio     1.137  (target <= 1.20; median of rounds: client p50 at concurrency 1 / openvino-int8"
        in text
    )
    assert "  overhead ratio     >= 1.077  (openvino-int8 160.0 + preprocess 6.0" in text


def _ms(**marks: float) -> dict[str, int]:
    return {name: round(ms * 1e6) for name, ms in marks.items()}


def _stage(queue: float, start: float, input_end: float, output_start: float, end: float) -> dict[str, int]:
    return _ms(QUEUE_START=queue, COMPUTE_START=start, COMPUTE_INPUT_END=input_end, COMPUTE_OUTPUT_START=output_start,
               COMPUTE_END=end)  # fmt: skip


def test_fixed_cost_parts_add_up_to_the_client_time_minus_the_stages_compute():
    """One request traced by hand (ms): read 0, the ensemble 0.2-16.7, sent 16.8-17.0; the client took 19 ms, and
    the stages' own code 2.5, 9.0 and 0.8 ms in-process."""
    from benchmarks.fixed_cost import format_fixed_costs, summarize
    from client.trace_stats import RequestTrace

    trace = RequestTrace(
        _ms(
            GRPC_WAITREAD_END=0,
            REQUEST_START=0.2,
            INFER_RESPONSE_COMPLETE=16.7,
            GRPC_SEND_START=16.8,
            GRPC_SEND_END=17.0,
        ),  # fmt: skip
        {
            "yolov8_preprocess": _stage(0.3, 0.4, 0.5, 3.5, 4.0),
            "yolov8_infer": _stage(4.2, 4.3, 5.0, 15.0, 15.1),
            "yolov8_postprocess": _stage(15.3, 15.35, 15.4, 16.4, 16.5),
        },
    )
    compute = {"yolov8_preprocess": [2.5], "yolov8_infer": [9.0], "yolov8_postprocess": [0.8]}
    found = summarize([trace], [19.0], [18.5, 18.0, 19.0], compute)
    assert found["fixed_cost_ms"] == pytest.approx(19.0 - 12.3)
    assert found["client_minus_compute_infer_ms"] == pytest.approx(19.0 - (3.0 + 10.0 + 1.0))  # with the round trips
    assert found["tracing_ratio"] == round(19.0 / 18.5, 3) and found["server_p50_ms"] == pytest.approx(17.0)
    parts = found["parts_ms"]
    assert parts["grpc_client_server"] == pytest.approx(2.0)  # 19 ms at the client, 17 in the server
    assert parts["grpc_front_end"] == pytest.approx(0.2 + 0.1 + 0.2)  # in, out of the ensemble, and the send
    assert parts["ensemble_scheduler"] == pytest.approx(0.1 + 0.2 + 0.2 + 0.2)  # before, between, after the stages
    assert parts["yolov8_infer"] == pytest.approx(
        {"queue": 0.1, "input_copy": 0.7, "stub_round_trip": 10.0 - 9.0, "output_copy": 0.1}
    )
    assert parts["yolov8_postprocess"]["stub_round_trip"] == pytest.approx(0.2)
    total = sum(v if isinstance(v, float) else sum(v.values()) for v in parts.values())
    assert total == pytest.approx(found["fixed_cost_ms"])  # nothing left out, nothing counted twice
    text = "\n".join(format_fixed_costs({"yolo11n": found}))
    assert "fixed cost: client - stages' own compute            6.70" in text
    assert "client - stages' compute_infer (Triton's)           5.00" in text
    assert "  yolov8_infer input_copy                           0.70" in text


def test_the_stages_own_compute_is_timed_in_turn_once_per_image_as_the_pipeline_runs_them():
    """Each stage's call right after the stage before it, not in a loop of its own: run alone, a stage finds its
    caches and threads warm from its own last call, which the served pipeline never gives it."""
    from benchmarks.fixed_cost import in_turn_ms

    calls = []
    runs = {stage: (lambda stage=stage: calls.append(stage)) for stage in ("pre", "infer", "post")}
    times = in_turn_ms(runs, 3)
    assert calls == ["pre", "infer", "post"] * 3
    assert {stage: len(t) for stage, t in times.items()} == {"pre": 3, "infer": 3, "post": 3}
    assert all(t >= 0 for series in times.values() for t in series)
