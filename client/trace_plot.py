"""``yolo-triton trace --png``: a waterfall of the median request and of the 99th-percentile request."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from client.trace_stats import FRONT_END, PHASE_MARKS, RequestTrace

COLORS = {"queue": "0.75", "compute_input": "C0", "compute_infer": "C2", "compute_output": "C1", "send": "C3"}


def segments(trace: RequestTrace) -> list[tuple[str, str, float, float]]:
    """(row, part, start ms, end ms) of one request, from the moment the server had read it."""

    def ms(ns: int) -> float:
        return (ns - trace.received) / 1e6

    rows = [(FRONT_END, "queue", 0.0, ms(trace.ensemble["REQUEST_START"]))]
    for stage, marks in trace.stages.items():
        rows += [(stage, part, ms(marks[a]), ms(marks[b])) for part, (a, b) in PHASE_MARKS.items()]
    send_start = trace.mark("GRPC_SEND_START", "HTTP_SEND_START")
    rows.append((FRONT_END, "queue", ms(trace.ensemble["INFER_RESPONSE_COMPLETE"]), ms(send_start)))
    rows.append((FRONT_END, "send", ms(send_start), ms(trace.sent)))
    return rows


def nearest(traces: list[RequestTrace], percentile: float) -> RequestTrace:
    """The request whose server time is closest to the ``percentile`` of all."""
    target = float(np.percentile([t.server_ms() for t in traces], percentile))
    return min(traces, key=lambda t: abs(t.server_ms() - target))


def write_waterfall(traces: list[RequestTrace], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    for ax, (name, percentile) in zip(axes, (("p50", 50), ("p99", 99))):
        request = nearest(traces, percentile)
        rows = list(dict.fromkeys(row for row, *_ in segments(request)))
        for row, part, start, end in segments(request):
            ax.barh(rows.index(row), end - start, left=start, color=COLORS[part], label=part)
        ax.set_yticks(range(len(rows)), rows)
        ax.invert_yaxis()
        ax.set_title(f"{name} request: {request.server_ms():.1f} ms in the server", fontsize=10)
    handles = {label: handle for handle, label in zip(*axes[0].get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), fontsize=8, ncol=5, loc="upper center")
    axes[1].set_xlabel("ms since the server read the request")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=110)
    plt.close(fig)
