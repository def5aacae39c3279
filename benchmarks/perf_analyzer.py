"""Run perf_analyzer and read its results: the CSV (-f) and the "Composing models" blocks of its output."""

from __future__ import annotations

import csv
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from python_backends.paths import PROJECT_ROOT

PERF_ANALYZER = PROJECT_ROOT / ".venv" / "bin" / "perf_analyzer"
COMPOSING_FIELDS = ("inference_count", "execution_count", "queue", "compute_input", "compute_infer", "compute_output")
_MODEL = re.compile(r"^\s+(\w+), version: (\d+)\s*$")
_COUNT = re.compile(r"^\s+(Inference|Execution) count: (\d+)")
_LATENCY = re.compile(
    r"queue (\d+) usec \+ compute input (\d+) usec \+ compute infer (\d+) usec \+ compute output (\d+) usec"
)
NO_REQUEST = "No valid requests recorded"  # a measurement window ended before any request did


@dataclass(frozen=True)
class PerfRun:
    """One perf_analyzer run at one concurrency: its CSV row (µs) and each composing model's numbers (µs)."""

    concurrency: int
    row: dict[str, float]
    composing: dict[str, dict[str, float]]

    @property
    def throughput(self) -> float:
        return self.row["Inferences/Second"]


def parse_composing(stdout: str) -> dict[str, dict[str, float]]:
    """{model: {inference_count, execution_count, queue, compute_input, compute_infer, compute_output}}."""
    found: dict[str, dict[str, float]] = {}
    current = None
    for line in stdout.splitlines():
        if match := _MODEL.match(line):
            current = found.setdefault(match.group(1), {})
        elif current is not None and (match := _COUNT.match(line)):
            current[f"{match.group(1).lower()}_count"] = float(match.group(2))
        elif current is not None and (match := _LATENCY.search(line)):
            current.update(zip(COMPOSING_FIELDS[2:], map(float, match.groups())))
    return found


def run_perf_analyzer(
    model: str, url: str, input_data: Path, concurrency: int, csv_path: Path, interval_ms: int = 3000
) -> PerfRun:
    """perf_analyzer over gRPC at one concurrency; raises RuntimeError with its output's end on failure.

    A run that does not stabilize within 25 % (fast stages on a busy 2-core machine) is repeated once
    accepting any variation, with windows twice as long and up to 10 of them (a window in which a
    machine shared with other work stalled the server fails even that test otherwise); its log says
    so ("unstable" in the result's row).
    """

    def command(interval: int, trials: int, stability: int) -> list[str]:
        return [
            str(PERF_ANALYZER), "-m", model, "-i", "grpc", "-u", url, "--input-data", str(input_data),
            "--concurrency-range", f"{concurrency}:{concurrency}", "--measurement-interval", str(interval),
            "--max-trials", str(trials), "--stability-percentage", str(stability), "--verbose-csv", "-f", str(csv_path),
        ]  # fmt: skip

    unstable = False
    done = subprocess.run(command(interval_ms, 4, 25), capture_output=True, text=True, timeout=300)
    said = done.stdout + done.stderr
    if done.returncode != 0 and ("stable measurement" in said or NO_REQUEST in said):
        unstable = True  # longer windows, any spread: a window no request finished in is 4x longer
        longer = (4 if NO_REQUEST in said else 2) * interval_ms
        done = subprocess.run(command(longer, 10, 999), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-6:]
        raise RuntimeError(f"perf_analyzer on {model} exited {done.returncode}:\n" + "\n".join(tail))
    csv_path.with_suffix(".log").write_text(done.stdout)
    with open(csv_path) as f:
        row = {k: float(v) for k, v in next(csv.DictReader(f)).items()}
    row["unstable"] = float(unstable)
    composing = parse_composing(done.stdout)
    for name, values in composing.items():  # perf_analyzer 2.49 prints these but writes no CSV for them
        with open(csv_path.with_name(f"{csv_path.stem}.{name}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["Concurrency", *COMPOSING_FIELDS])
            writer.writerow([concurrency, *(values.get(k, 0.0) for k in COMPOSING_FIELDS)])
    return PerfRun(concurrency, row, composing)
