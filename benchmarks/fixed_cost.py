"""The fixed cost: what the served pipeline adds around the stages' own compute, at concurrency 1, part by part.

    python -m benchmarks.fixed_cost [--requests 200] [--models default yolo11n] [--repository DIR]

For each model (``default``: the prepared repository, or --repository's, of any task; and tests/models' YOLO11n:
3 classes, 320x416, seeded random weights, about ten times faster), the bench prepares a repository, starts a
server with a trace file and sends the 1 MP JPEG one request at a time, in blocks that take turns: untraced,
then traced at rate 1 (``client.trace.Tracing``).
In the same turns it runs each stage's own code in-process (``benchmarks.stages``: the preprocessing, the served
CPU runtime and the postprocessing of the repository's task: what each ``execute`` does, without Triton), the
three in turn once per image, as the pipeline runs them: that is the stages' own compute. Each stage alone in a
loop of the same call (``stage_compute_alone_ms``) is faster, its caches and threads warm from the call before;
the difference is what running the stages one after the other costs, in-process as in the server. From the
traced requests' p50s:

- ``grpc_client_server``: client time minus server time (the client's request and reply, the transport, and
  the server's read of the request, which Triton's trace cannot tell from idle time);
- ``grpc_front_end``: the front end's hand-offs into and out of the ensemble, and the send;
- ``ensemble_scheduler``: the ensemble's time in no stage's queue or compute (its steps' hand-offs);
- per stage: ``queue``, ``input_copy`` (compute_input: the inputs into the stub's shared memory),
  ``stub_round_trip`` (compute_infer minus the stage's in-process compute, the fastest of each: the
  messages to and from the stub, its tensors' wrapping and the outputs' copy into shared memory) and
  ``output_copy`` (compute_output: the outputs out of shared memory).

``fixed_cost_ms`` is the client p50 minus the stages' own compute, in a way that a shared machine's slow
spells do not swamp (``summarize``); ``client_minus_compute_infer_ms`` is the client p50 minus the stages'
compute_infer as Triton's statistics count it, which holds the stub round trips: the measure of ``python -m
client report``'s figures. ``tracing_ratio`` is the traced client p50 over the untraced one.

``floor`` is the same measure on a copy of the repository whose stages answer at once without their work
(``benchmarks/floor_stage.py``: the real pipeline's inputs and outputs, none of its work): what Triton's
Python backend, the ensemble and gRPC cost around three stages that do nothing. ``waiting_floor`` is the
same with each stage keeping a core busy for its own compute's in-process p50 before it answers, and that
time counted as its compute: the fixed cost of three Python stages that take the real stages' time and run
none of their code. The waiting floor minus the floor is what the requests' length costs in the hand-offs; the
fixed cost minus the waiting floor, what the stages' own code adds beyond that (none where it is 0 or less).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.engine_baseline import served_cpu_runtime
from benchmarks.recipe_models import MODELS, prepared_repositories
from benchmarks.sample_image import RESULTS, one_megapixel_jpeg
from benchmarks.stages import Stages
from client.api import YoloTritonClient
from client.report import drive
from client.stage_stats import STAGES
from client.trace import Tracing, admin_headers
from client.trace_stats import BETWEEN, FRONT_END, RequestTrace
from prepare.repository import copy_linked
from prepare.warmup import without_warmup
from python_backends.paths import DEFAULT_REPOSITORY
from serving.processes import free_port
from serving.server import TritonServer
from serving.triton import ServerOptions

BLOCKS = 4  # untraced and traced blocks, in turns
WARMUP = 10  # requests before the first block
FLOOR_REAL_CALLS = 3  # a floor stage's real answers: the first of the WARMUP requests
FLOOR_STAGE = Path(__file__).with_name("floor_stage.py")  # a stage that answers at no cost


def stage_runs(repository: Path, configs: dict[str, dict], payload: bytes) -> dict[str, Callable[[], object]]:
    """Each stage's own work on ``payload``, as its ``execute`` does it, in-process (``benchmarks.stages``, the
    model on the served CPU runtime): stage → a call."""
    stages = Stages.of(repository, configs, served_cpu_runtime(configs["yolov8_infer"]))
    pixels, mapping = stages.preprocessor.from_bytes(payload)
    outputs, mappings = stages.infer(pixels[None]), mapping[None]
    pre = stages.preprocessor
    return {
        "yolov8_preprocess": lambda: pre.stack([t for t, _ in pre.from_bytes_batch([payload])]),
        "yolov8_infer": lambda: stages.infer(pixels[None]),
        "yolov8_postprocess": lambda: stages.postprocess(outputs, mappings),
    }


def timed_ms(call: Callable[[], object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e3)
    return times


def in_turn_ms(runs: dict[str, Callable[[], object]], count: int) -> dict[str, list[float]]:
    """stage → its times (ms) over ``count`` images, the stages' calls made in turn once per image."""
    times: dict[str, list[float]] = {stage: [] for stage in runs}
    for _ in range(count):
        for stage, call in runs.items():
            times[stage] += timed_ms(call, 1)
    return times


def stub_round_trips(traces: list[RequestTrace], compute: dict[str, list[float]]) -> dict[str, float]:
    """stage → its compute_infer minus its own code's in-process time (ms), the fastest of each: the messages to
    and from its stub, the wrapping of its tensors and the outputs' copy into shared memory. A shared machine's
    slow spells only add time, and they come and go within seconds, so the fastest runs of two series measured
    apart compare where their medians would not; a negative difference (noise) counts as 0."""
    return {
        stage: round(max(0.0, min(t.spans_ms()[stage, "compute_infer"] for t in traces) - min(times)), 3)
        for stage, times in compute.items()
    }


def parts(traces: list[RequestTrace], traced: list[float], round_trips: dict[str, float]) -> dict:
    """The fixed cost's parts (ms, p50 over ``traces``, paired in order with their client times ``traced``), as
    the module's docstring names them."""
    spans = [t.spans_ms() for t in traces]

    def p50(key: tuple[str, str]) -> float:
        return round(statistics.median(s[key] for s in spans), 3)

    found: dict = {
        "grpc_client_server": round(statistics.median(c - t.server_ms() for c, t in zip(traced, traces)), 3),
        "grpc_front_end": p50((FRONT_END, "total")),
        "ensemble_scheduler": p50((BETWEEN, "total")),
    }
    for stage in STAGES:
        found[stage] = {
            "queue": p50((stage, "queue")),
            "input_copy": p50((stage, "compute_input")),
            "stub_round_trip": round_trips[stage],
            "output_copy": p50((stage, "compute_output")),
        }
    return found


def floor_repository(repository: Path, target: Path, wait_ms: dict[str, float] | None = None) -> Path:
    """A copy of ``repository`` whose stages answer without their work (``benchmarks/floor_stage.py``, each real
    ``model.py`` beside it as ``real_model.py``), each after keeping a core busy for ``wait_ms[stage]`` ms (none:
    at once). Each stage runs one instance without Triton's warm-up, so that its real calls are the first
    ``FLOOR_REAL_CALLS`` requests (at concurrency 1 one instance is all it uses)."""
    copy_linked(repository, target)
    for stage in STAGES:
        version = target / stage / "1"
        (version / "model.py").rename(version / "real_model.py")
        shutil.copyfile(FLOOR_STAGE, version / "model.py")
        config = target / stage / "config.pbtxt"
        text = re.sub(r"(instance_group \[ \{ count: )\d+", r"\g<1>1", without_warmup(config.read_text()))
        settings = {"floor_real_calls": FLOOR_REAL_CALLS, "floor_wait_ms": (wait_ms or {}).get(stage, 0.0)}
        entries = [f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in settings.items()]
        config.write_text(text + "\n" + "\n".join(entries) + "\n")  # more entries of the parameters map
    return target


def measure(repository: Path, payload: Path, requests: int, out: Path, tag: str,
            waits_ms: dict[str, float] | None = None) -> dict:  # fmt: skip
    """The fixed cost of the server on ``repository`` at concurrency 1 (see the module's docstring). With
    ``waits_ms`` (a ``floor_repository``) each stage's compute is its wait, not its own code's in-process time."""
    options = ServerOptions(repository=repository, http_port=free_port(), grpc_port=free_port(),
                            metrics_port=free_port(), trace_file=out / f"trace_{tag}" / "trace.json")  # fmt: skip
    block = max(1, requests // BLOCKS)
    compute_calls = max(3, block // 4)  # each stage's in-process calls after a block, in turn and alone
    with (
        TritonServer(options, out / f"tritonserver_fixed_{tag}.log") as server,
        YoloTritonClient(server.grpc_url) as client,
    ):
        configs = {s: client.client.get_model_config(s, as_json=True)["config"] for s in STAGES}
        runs = stage_runs(repository, configs, payload.read_bytes()) if waits_ms is None else {}
        drive(client, [payload], 1, WARMUP)
        untraced, traced, traces = [], [], []
        compute = {stage: [] if waits_ms is None else [waits_ms.get(stage, 0.0)] for stage in STAGES}
        alone: dict[str, list[float]] = {stage: [] for stage in runs}
        for number in range(BLOCKS):
            if number % 2 == 0:
                untraced += drive(client, [payload], 1, block)
            else:
                with Tracing(client.client, admin_headers(None), block) as tracing:
                    tracing.on()
                    traced += drive(client, [payload], 1, block)
                traces += tracing.collect()
            for stage, times in in_turn_ms(runs, compute_calls).items():
                compute[stage] += times
            for stage, call in runs.items():
                alone[stage] += timed_ms(call, compute_calls)
    input_hw = [int(d) for d in configs["yolov8_infer"]["input"][0]["dims"][1:]]
    found = {"input_hw": input_hw} | summarize(traces, traced, untraced, compute)
    if alone:
        found["stage_compute_alone_ms"] = {stage: round(statistics.median(t), 3) for stage, t in alone.items()}
    return found


def summarize(traces: list[RequestTrace], traced: list[float], untraced: list[float],
              compute: dict[str, list[float]]) -> dict:  # fmt: skip
    """The figures of one model from its traces, the client times (ms) of the traced and untraced requests
    and each stage's in-process times (ms).

    ``fixed_cost_ms`` is the client p50 minus the stages' own compute, taken so that the engine's time, which
    a shared machine's slow spells move by milliseconds, cancels: the p50 over the traced requests of each
    one's client time minus its own stages' compute_infer, plus the stages' stub round trips
    (``stub_round_trips``). ``traced`` pairs with ``traces`` in order (concurrency 1, every request traced).
    The parts add up to it (their p50s nearly).
    """
    if len(traced) != len(traces):
        raise ValueError(f"{len(traced)} traced requests but {len(traces)} complete traces: cannot pair them")
    client_p50, server_p50 = statistics.median(traced), statistics.median(t.server_ms() for t in traces)
    round_trips = stub_round_trips(traces, compute)
    outside = statistics.median(c - t.server_ms() + t.fixed_cost_ms() for c, t in zip(traced, traces))
    return {
        "requests": len(traced) + len(untraced),
        "traced": len(traces),
        "client_p50_ms": round(client_p50, 3),
        "client_untraced_p50_ms": round(statistics.median(untraced), 3),
        "tracing_ratio": round(client_p50 / statistics.median(untraced), 3),
        "server_p50_ms": round(server_p50, 3),
        "stage_compute_ms": {stage: round(statistics.median(times), 3) for stage, times in compute.items()},
        "fixed_cost_ms": round(outside + sum(round_trips.values()), 3),
        "client_minus_compute_infer_ms": round(outside, 3),
        "trace_fixed_cost_p50_ms": round(statistics.median(t.fixed_cost_ms() for t in traces), 3),
        "parts_ms": parts(traces, traced, round_trips),
    }


def fixed_costs(image: Path, requests: int, out: Path, repositories: dict[str, Path]) -> dict:
    """{model: ``measure``'s figures, with its floors} for each prepared repository of ``repositories``."""
    found = {}
    with tempfile.TemporaryDirectory(prefix="fixed_cost_") as folder:
        for name, served in repositories.items():
            print(f"fixed cost: {name}, {requests} requests at concurrency 1 ...", flush=True)
            found[name] = measure(served, image, requests, out, name)
            print(f"fixed cost: {name}'s floor (stages that answer at once, without their work) ...", flush=True)
            floor = floor_repository(served, Path(folder) / f"{name}_floor")
            found[name]["floor"] = measure(floor, image, requests, out, f"{name}_floor", waits_ms={})
            print(f"fixed cost: {name}'s waiting floor (stages that take their compute's time) ...", flush=True)
            waits = found[name]["stage_compute_ms"]
            waiting = floor_repository(served, Path(folder) / f"{name}_waiting", waits)
            found[name]["waiting_floor"] = measure(waiting, image, requests, out, f"{name}_waiting", waits_ms=waits)
    return found


def format_fixed_costs(found: dict) -> list[str]:
    """The fixed cost's table: one column per model, one row per part (ms, p50)."""
    names = list(found)
    rows = [f"{'fixed cost at concurrency 1 (p50 ms)':<44}" + "".join(f"{n:>12}" for n in names)]

    def row(label: str, values: list[float]) -> None:
        rows.append(f"{label:<44}" + "".join(f"{v:>12.2f}" for v in values))

    row("client time (traced)", [found[n]["client_p50_ms"] for n in names])
    row("stages' own compute (in-process, in turn)", [sum(found[n]["stage_compute_ms"].values()) for n in names])
    if all("stage_compute_alone_ms" in found[n] for n in names):
        row("  each stage alone in a loop", [sum(found[n]["stage_compute_alone_ms"].values()) for n in names])
    row("client - stages' compute_infer (Triton's)", [found[n]["client_minus_compute_infer_ms"] for n in names])
    row("fixed cost: client - stages' own compute", [found[n]["fixed_cost_ms"] for n in names])
    for part in ("grpc_client_server", "grpc_front_end", "ensemble_scheduler"):
        row(f"  {part}", [found[n]["parts_ms"][part] for n in names])
    for stage in STAGES:
        for part in ("queue", "input_copy", "stub_round_trip", "output_copy"):
            row(f"  {stage} {part}", [found[n]["parts_ms"][stage][part] for n in names])
    row("tracing: traced p50 / untraced p50", [found[n]["tracing_ratio"] for n in names])
    if all("floor" in found[n] and "waiting_floor" in found[n] for n in names):
        row("floor: client time, stages answering at once", [found[n]["floor"]["client_p50_ms"] for n in names])
        row("waiting floor: fixed cost, stages that wait", [found[n]["waiting_floor"]["fixed_cost_ms"] for n in names])
        row(
            "fixed cost - waiting floor: the stages' code",
            [found[n]["fixed_cost_ms"] - found[n]["waiting_floor"]["fixed_cost_ms"] for n in names],
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per model, half of them traced")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="default, or tests/models names")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="what `default` serves")
    args = parser.parse_args(argv)
    out = RESULTS / time.strftime("%Y%m%d-%H%M%S-fixed")
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="fixed_cost_models_") as folder:
        repositories = prepared_repositories(tuple(args.models), Path(folder), args.repository)
        found = fixed_costs(one_megapixel_jpeg(out), args.requests, out, repositories)
    (out / "fixed_cost.json").write_text(json.dumps(found, indent=1))
    print("\n".join(format_fixed_costs(found)) + f"\n\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
