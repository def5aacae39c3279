"""Per-stage costs from Triton's ``/v2/models/stats`` (queue, compute input/infer/output)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import tritonclient.grpc as grpcclient

STAGES = ("yolov8_preprocess", "yolov8_infer", "yolov8_postprocess")
PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class StageCounters:
    """Cumulative counters of one model: success count, executions, inferences, and ns per phase."""

    success: int
    executions: int
    inferences: int
    ns: dict[str, int]

    def minus(self, before: StageCounters) -> StageCounters:
        return StageCounters(
            self.success - before.success,
            self.executions - before.executions,
            self.inferences - before.inferences,
            {phase: self.ns[phase] - before.ns[phase] for phase in self.ns},
        )

    def mean_ms(self, phase: str) -> float:
        """Mean milliseconds per request in ``phase``."""
        return self.ns[phase] / self.success / 1e6 if self.success else 0.0


def snapshot(client: grpcclient.InferenceServerClient, models: tuple[str, ...]) -> dict[str, StageCounters]:
    """Cumulative statistics of each model (version-summed)."""
    found: dict[str, StageCounters] = {}
    for model in models:
        stats = client.get_inference_statistics(model, as_json=True).get("model_stats", [])
        success = executions = inferences = 0
        ns = dict.fromkeys(PHASES, 0)
        for entry in stats:
            infer = entry.get("inference_stats", {})
            success += int(infer.get("success", {}).get("count", 0))
            executions += int(entry.get("execution_count", 0))
            inferences += int(entry.get("inference_count", 0))
            for phase in PHASES:
                ns[phase] += int(infer.get(phase, {}).get("ns", 0))
        found[model] = StageCounters(success, executions, inferences, ns)
    return found


def deltas(after: dict[str, StageCounters], before: dict[str, StageCounters]) -> dict[str, StageCounters]:
    return {model: after[model].minus(before[model]) for model in after}


def counted_deltas(
    client: grpcclient.InferenceServerClient,
    before: dict[str, StageCounters],
    sent: int,
    timeout_s: float = 10.0,
) -> dict[str, StageCounters]:
    """Deltas since ``before`` (of the same models) once each model counts ``sent`` successes, or at the timeout.

    Triton records a model's statistics just after it releases the response, so a snapshot taken right after
    the client's reply can miss the last request by a few ms.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        delta = deltas(snapshot(client, tuple(before)), before)
        if all(d.success >= sent for d in delta.values()) or time.monotonic() > deadline:
            return delta
        time.sleep(0.05)


def stage_table(delta: dict[str, StageCounters], ensemble: str = "yolov8") -> str:
    """A readable table: per stage, mean ms per request in each phase, and its share of the stages' total."""
    stage_ms = {m: sum(delta[m].mean_ms(p) for p in PHASES) for m in STAGES if m in delta}
    total = sum(stage_ms.values()) or 1.0
    lines = [
        f"{'stage':<20}{'requests':>9}{'batches':>9}"
        + "".join(f"{p:>15}" for p in PHASES)
        + f"{'total ms':>10}{'share':>7}"
    ]
    for model, ms in stage_ms.items():
        d = delta[model]
        lines.append(
            f"{model:<20}{d.success:>9}{d.executions:>9}"
            + "".join(f"{d.mean_ms(p):>15.2f}" for p in PHASES)
            + f"{ms:>10.2f}{ms / total:>7.0%}"
        )
    if ensemble in delta and delta[ensemble].success:
        d = delta[ensemble]
        server_ms = (
            (d.ns["queue"] + d.ns["compute_input"] + d.ns["compute_infer"] + d.ns["compute_output"]) / d.success / 1e6
        )
        lines.append(f"{ensemble + ' (ensemble)':<20}{d.success:>9}{'':>9}" + " " * 60 + f"{server_ms:>10.2f}")
    return "\n".join(lines)


def executions_by_batch_size(client: grpcclient.InferenceServerClient, model: str) -> Counter[int]:
    """Executions of ``model`` so far, per batch size (the samples one execution held), from its batch statistics."""
    found: Counter[int] = Counter()
    for entry in client.get_inference_statistics(model, as_json=True).get("model_stats", []):
        for batch in entry.get("batch_stats", []):
            found[int(batch["batch_size"])] += int(batch.get("compute_infer", {}).get("count", 0))
    return found
