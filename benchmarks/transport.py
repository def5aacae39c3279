"""How a 1080p frame travels: over gRPC, through the client's system shared memory, and as a JPEG over gRPC.

    python -m benchmarks.transport [--rounds 3] [--pairs 20] [--models default yolo11n] [--repository DIR]

On the default model and on tests/models' YOLO11n (3 classes, 320x416, seeded random weights: the same
pipeline around a ten times faster engine, where the frame's trip is a larger share of a request), each on a
server of its own (--allow-client-shm): one client per way, at concurrency 1, taking turns request by request
(gRPC frame, shared-memory frame, JPEG; see benchmarks/paired.py for why turns). Each round gives the three
p50s and the ratios between neighbours; the ratios printed are the median over the rounds. ``make bench``
runs it as its step 7.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.paired import timed_turns
from benchmarks.recipe_models import MODELS, prepared_repositories
from benchmarks.sample_image import RESULTS
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
    with YoloTritonClient(url) as wire, YoloTritonClient(url, shared_memory=True) as shared:
        turn = [("grpc", lambda: wire.detect(frame)), ("shm", lambda: shared.detect(frame))]
        turn.append(("jpeg", lambda: wire.detect(jpeg)))
        for _, call in turn:  # the shared-memory region is made and registered here, not in a timed turn
            call()
        times = timed_turns(turn, pairs)
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


def transports(rounds: int, pairs: int, out: Path, repositories: dict[str, Path]) -> dict:
    """{model: ``transport``'s figures} for each prepared repository of ``repositories``, each on a server of its
    own that allows client shared memory; its log in ``out``."""
    found = {}
    for name, served in repositories.items():
        options = ServerOptions(repository=served, http_port=free_port(), grpc_port=free_port(),
                                metrics_port=free_port(), allow_client_shm=True)  # fmt: skip
        with TritonServer(options, out / f"tritonserver_transport_{name}.log") as server:
            print(f"transport: {name}", flush=True)
            found[name] = transport(server.grpc_url, rounds, pairs)
    return found


def format_transport(found: dict) -> list[str]:
    """The section's lines for the summary: ``transports``' figures, a block per model."""
    lines = []
    for name, moved in found.items():
        lines += [
            "",
            f"a 1080p frame at concurrency 1 on {name} (medians of {len(moved['rounds'])} paired rounds):",
            f"  frame over gRPC          p50 {moved['grpc_p50_ms']:7.1f} ms   ({moved['frame_bytes'] / 1e6:.1f} MB)",
            f"  frame in shared memory   p50 {moved['shm_p50_ms']:7.1f} ms   = {moved['shm_per_grpc']:.3f}x gRPC "
            f"(target <= {SHM_PER_GRPC_TARGET})",
            f"  JPEG over gRPC           p50 {moved['jpeg_p50_ms']:7.1f} ms   ({moved['jpeg_bytes'] / 1e3:.0f} kB, "
            f"quality {JPEG_QUALITY}); shared memory = {moved['shm_per_jpeg']:.3f}x JPEG "
            f"(target < {SHM_PER_JPEG_TARGET})",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds; the ratios are their median")
    parser.add_argument("--pairs", type=int, default=20, help="turns of the three requests per round")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="default, or tests/models names")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="what `default` serves")
    args = parser.parse_args(argv)
    out = RESULTS / time.strftime("%Y%m%d-%H%M%S-transport")
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="transport_models_") as folder:
        repositories = prepared_repositories(tuple(args.models), Path(folder), args.repository)
        found = transports(args.rounds, args.pairs, out, repositories)
    (out / "transport.json").write_text(json.dumps(found, indent=1))
    print("\n".join(format_transport(found)) + f"\n\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
