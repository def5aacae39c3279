"""Per-request timings from Triton's trace files: each stage's queue and compute, the hand-offs, the front end.

Triton writes a traced request as records that share an ``id``: one with ``model_name`` (and ``parent_id`` for a
model that an ensemble ran), and one per timestamp (``{"id", "timestamps": [{"name", "ns"}]}``). An ensemble's
trace carries the front end's timestamps (``GRPC_WAITREAD_END``, ``GRPC_SEND_START``/``_END``; ``HTTP_RECV_END``,
``HTTP_SEND_START``/``_END`` for HTTP), its composing models' traces its id as their ``parent_id``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from client.stage_stats import PHASES, STAGES

FRONT_END = "grpc"
BETWEEN = "between_stages"
QUANTILES = {"p50": 50, "p90": 90, "p99": 99, "max": 100}
# (start, end) timestamps of each phase of a composing model, as Triton's statistics count them
PHASE_MARKS = {
    "queue": ("QUEUE_START", "COMPUTE_START"),
    "compute_input": ("COMPUTE_START", "COMPUTE_INPUT_END"),
    "compute_infer": ("COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START"),
    "compute_output": ("COMPUTE_OUTPUT_START", "COMPUTE_END"),
}

STAGE_MARKS = {mark for pair in PHASE_MARKS.values() for mark in pair}
ENSEMBLE_MARKS = {"REQUEST_START", "INFER_RESPONSE_COMPLETE"}
FRONT_END_MARKS = (
    {"GRPC_WAITREAD_END", "GRPC_SEND_START", "GRPC_SEND_END"},
    {"HTTP_RECV_END", "HTTP_SEND_START", "HTTP_SEND_END"},
)


@dataclass(frozen=True)
class RequestTrace:
    """One traced ensemble request: its timestamps (the front end's included) and each composing model's."""

    ensemble: dict[str, int]
    stages: dict[str, dict[str, int]]

    def mark(self, *names: str) -> int:
        """The ensemble's first timestamp among ``names`` (the gRPC one or its HTTP twin)."""
        return next(self.ensemble[n] for n in names if n in self.ensemble)

    @property
    def received(self) -> int:
        """The request read in full. Triton takes GRPC_WAITREAD_START when it starts waiting for a request, so
        the gRPC read cannot be told apart from idle time: the server's time starts here."""
        return self.mark("GRPC_WAITREAD_END", "HTTP_RECV_END")

    @property
    def sent(self) -> int:
        """The response handed to the network."""
        return self.mark("GRPC_SEND_END", "HTTP_SEND_END")

    def spans_ms(self) -> dict[tuple[str, str], float]:
        """(name, part) → ms of this request: each stage's four phases and their total; ``grpc``'s queue (the
        front end's hand-offs: read → the ensemble's start, the ensemble's response → send), compute_output
        (the send) and total; ``between_stages``' total (the ensemble's time in no stage's queue or compute)."""
        found: dict[tuple[str, str], float] = {}
        for stage, marks in self.stages.items():
            for phase, (start, end) in PHASE_MARKS.items():
                found[stage, phase] = (marks[end] - marks[start]) / 1e6
            found[stage, "total"] = sum(found[stage, p] for p in PHASES)
        start, response = self.ensemble["REQUEST_START"], self.ensemble["INFER_RESPONSE_COMPLETE"]
        send_start = self.mark("GRPC_SEND_START", "HTTP_SEND_START")
        found[FRONT_END, "queue"] = ((start - self.received) + (send_start - response)) / 1e6
        found[FRONT_END, "compute_output"] = (self.sent - send_start) / 1e6
        found[FRONT_END, "total"] = found[FRONT_END, "queue"] + found[FRONT_END, "compute_output"]
        busy = covered([(m["QUEUE_START"], m["COMPUTE_END"]) for m in self.stages.values()], start, response)
        found[BETWEEN, "total"] = (response - start - busy) / 1e6
        return found

    def server_ms(self) -> float:
        """End-to-end server time: from the request read in full to its response handed to the network."""
        return (self.sent - self.received) / 1e6

    def fixed_cost_ms(self) -> float:
        """The server time outside the stages' own work: ``server_ms`` minus each stage's compute_infer
        (COMPUTE_INPUT_END → COMPUTE_OUTPUT_START). What a request costs however fast the stages' code is:
        the front end, the queues, the tensor copies in and out of the Python stubs and the hand-offs."""
        work = sum(m["COMPUTE_OUTPUT_START"] - m["COMPUTE_INPUT_END"] for m in self.stages.values())
        return self.server_ms() - work / 1e6


def covered(intervals: list[tuple[int, int]], low: int, high: int) -> int:
    """Nanoseconds of [low, high] that the union of ``intervals`` covers."""
    total, reach = 0, low
    for start, end in sorted(intervals):
        start, end = max(start, reach), min(end, high)
        if end > start:
            total += end - start
            reach = end
    return total


def group(records: list[dict]) -> tuple[dict[int, dict], dict[int, dict[str, int]]]:
    """(id → the trace's model record, id → its timestamps by name) of a trace file's records."""
    models, marks = {}, defaultdict(dict)
    for record in records:
        if "model_name" in record:
            models[record["id"]] = record
        for stamp in record.get("timestamps", []):
            marks[record["id"]][stamp["name"]] = int(stamp["ns"])
    return models, marks


def request_traces(records: list[dict], ensemble: str = "yolov8", stages: tuple[str, ...] = STAGES):
    """The complete traces of ``ensemble``'s requests (every timestamp, each stage's child trace), in order."""
    models, marks = group(records)
    children: dict[int, dict[str, dict[str, int]]] = defaultdict(dict)
    for trace_id, model in models.items():
        if "parent_id" in model:
            children[model["parent_id"]][model["model_name"]] = marks[trace_id]
    found = []
    for trace_id, model in sorted(models.items()):
        if model["model_name"] == ensemble and "parent_id" not in model:
            mine, kids = marks[trace_id], children[trace_id]
            if is_complete(mine, kids, stages):
                found.append(RequestTrace(mine, {s: kids[s] for s in stages}))
    return found


def is_complete(ensemble: dict[str, int], children: dict[str, dict[str, int]], stages: tuple[str, ...]) -> bool:
    """Whether an ensemble's trace has what ``RequestTrace`` reads: its own and the front end's timestamps, and
    each stage's child trace with every phase's (a failed request has not)."""
    if not ensemble.keys() >= ENSEMBLE_MARKS or not any(f <= ensemble.keys() for f in FRONT_END_MARKS):
        return False
    return all(s in children and children[s].keys() >= STAGE_MARKS for s in stages)


def quantiles(values: list[float]) -> dict[str, float]:
    return {name: round(float(np.percentile(values, q)), 3) for name, q in QUANTILES.items()}


def summary(traces: list[RequestTrace]) -> dict:
    """``{"requests", "stages": {name: {part: {p50, p90, p99, max}}}, "fixed_cost_ms": {p50, p99}}``, in ms."""
    spans = [t.spans_ms() for t in traces]
    stages: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for name, part in spans[0]:
        stages[name][part] = quantiles([s[name, part] for s in spans])
    fixed = [t.fixed_cost_ms() for t in traces]
    return {
        "requests": len(traces),
        "stages": dict(stages),
        "fixed_cost_ms": {q: figure for q, figure in quantiles(fixed).items() if q in ("p50", "p99")},
    }


def slowest_share(traces: list[RequestTrace], top: int = 3) -> str:
    """Where the slowest 1 % of requests (by server time, at least one) lost their time: the parts whose mean
    over them exceeds their median over all requests the most."""
    ordered = sorted(traces, key=RequestTrace.server_ms)
    count = max(1, math.ceil(len(ordered) / 100))
    slow, spans = ordered[-count:], [t.spans_ms() for t in ordered]
    slow_spans = spans[-count:]
    parts = [key for key in spans[0] if key[1] != "total" or key[0] == BETWEEN]
    excess = {key: float(np.mean([s[key] for s in slow_spans]) - np.median([s[key] for s in spans])) for key in parts}
    median = float(np.median([t.server_ms() for t in ordered]))
    lost = float(np.mean([t.server_ms() for t in slow])) - median
    named = sorted(excess.items(), key=lambda item: -item[1])[:top]
    where = ", ".join(f"{name} {part} +{ms:.2f} ms" for (name, part), ms in named if ms > 0) or "nowhere in particular"
    return (
        f"slowest 1 % ({len(slow)} of {len(ordered)} requests, server time from {slow[0].server_ms():.2f} ms, "
        f"{lost:+.2f} ms on the median {median:.2f} ms): {where}"
    )


def table(result: dict) -> str:
    """``summary``'s figures as a readable table, one row per name and part."""
    lines = [f"{'stage':<20}{'part':<16}" + "".join(f"{q + ' ms':>10}" for q in QUANTILES)]
    for name, parts in result["stages"].items():
        for part, figures in parts.items():
            lines.append(f"{name:<20}{part:<16}" + "".join(f"{figures[q]:>10.2f}" for q in QUANTILES))
    fixed = result["fixed_cost_ms"]
    lines.append(
        f"\n{result['requests']} traced requests; fixed cost (server time minus the stages' compute_infer): "
        f"p50 {fixed['p50']:.2f} ms, p99 {fixed['p99']:.2f} ms"
    )
    return "\n".join(lines)
