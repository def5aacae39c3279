"""How a 1080p frame travels: over gRPC, through the client's system shared memory, and as a JPEG over gRPC.

    python -m benchmarks.transport [--rounds 3] [--pairs 20] [--repository model_repository]

One client per way, at concurrency 1, taking turns request by request (gRPC frame, shared-memory frame, JPEG;
see benchmarks/paired.py for why turns): each round gives the three p50s and the ratios between neighbours;
the ratios printed are the median over the rounds. ``make bench`` runs it as a section on its own server;
this module's ``main`` runs just this section on a server of its own (--allow-client-shm).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.paired import SETTLE_S
from client.api import YoloTritonClient
from python_backends.paths import DEFAULT_REPOSITORY, PROJECT_ROOT
from serving.processes import free_port
from serving.server import TritonServer
from serving.triton import ServerOptions

SAMPLE = PROJECT_ROOT / ".cache" / "samples" / "bus.jpg"
FRAME_WH = (1920, 1080)
JPEG_QUALITY = 90
SHM_PER_GRPC_TARGET = 0.85  # the shared-memory frame's p50 over the gRPC frame's
SHM_PER_JPEG_TARGET = 1.0  # the shared-memory frame's p50 over the JPEG's (below)


def hd_frame() -> tuple[np.ndarray, bytes]:
    """bus.jpg (810x1080) stretched to a 1920x1080 BGR frame (uint8 [1080, 1920, 3]), and that frame as a JPEG."""
    frame = cv2.resize(cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR), FRAME_WH, interpolation=cv2.INTER_LINEAR)
    return frame, cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()


def transport_round(url: str, frame: np.ndarray, jpeg: bytes, pairs: int) -> dict:
    """``pairs`` turns of three requests (frame over gRPC, frame through shared memory, JPEG over gRPC): p50s
    in ms and the ratios."""
    times: dict[str, list[float]] = {"grpc": [], "shm": [], "jpeg": []}
    with YoloTritonClient(url) as wire, YoloTritonClient(url, shared_memory=True) as shared:
        turn = [("grpc", lambda: wire.detect(frame)), ("shm", lambda: shared.detect(frame))]
        turn.append(("jpeg", lambda: wire.detect(jpeg)))
        for _, call in turn:  # the shared-memory region is made and registered here, not in a timed turn
            call()
        for _ in range(pairs):
            for name, call in turn:
                started = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - started) * 1e3)
                time.sleep(SETTLE_S)
    p50 = {f"{name}_p50_ms": statistics.median(ms) for name, ms in times.items()}
    return p50 | {
        "shm_per_grpc": p50["shm_p50_ms"] / p50["grpc_p50_ms"],
        "shm_per_jpeg": p50["shm_p50_ms"] / p50["jpeg_p50_ms"],
    }


def transport(url: str, rounds: int, pairs: int) -> dict:
    """``rounds`` transport rounds on the server at ``url`` (started with allow_client_shm); medians over them."""
    frame, jpeg = hd_frame()
    found = []
    for number in range(1, rounds + 1):
        print(f"transport round {number}: 1080p frame over gRPC, through shared memory, as JPEG ...", flush=True)
        found.append(transport_round(url, frame, jpeg, pairs))
    keys = found[0].keys()
    return {key: statistics.median(r[key] for r in found) for key in keys} | {
        "jpeg_bytes": len(jpeg),
        "frame_bytes": frame.nbytes,
        "rounds": found,
    }


def format_transport(found: dict) -> list[str]:
    """The section's lines for the summary."""
    return [
        "",
        f"a 1080p frame at concurrency 1 (medians of {len(found['rounds'])} paired rounds):",
        f"  frame over gRPC          p50 {found['grpc_p50_ms']:7.1f} ms   ({found['frame_bytes'] / 1e6:.1f} MB)",
        f"  frame in shared memory   p50 {found['shm_p50_ms']:7.1f} ms   = {found['shm_per_grpc']:.3f}x gRPC "
        f"(target <= {SHM_PER_GRPC_TARGET})",
        f"  JPEG over gRPC           p50 {found['jpeg_p50_ms']:7.1f} ms   ({found['jpeg_bytes'] / 1e3:.0f} kB, quality "
        f"{JPEG_QUALITY}); shared memory = {found['shm_per_jpeg']:.3f}x JPEG (target < {SHM_PER_JPEG_TARGET})",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds; the ratios are their median")
    parser.add_argument("--pairs", type=int, default=20, help="turns of the three requests per round")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args(argv)
    options = ServerOptions(
        repository=args.repository,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        allow_client_shm=True,
    )
    log = PROJECT_ROOT / ".cache" / "transport-tritonserver.log"
    with TritonServer(options, log) as server:
        found = transport(server.grpc_url, args.rounds, args.pairs)
    print("\n".join(format_transport(found)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
