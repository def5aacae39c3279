"""The serving defaults, in one place: what a request gets when it names no threshold, and the CPU precisions.

The committed configs hold the same values (``yolov8_postprocess``'s ``conf_threshold``, ``iou_threshold`` and
``max_det``, ``yolov8_infer``'s ``cpu_precision``; ``tests/test_defaults.py`` holds them equal), ``prepare``
writes them, the stages fall back to them when a parameter is empty, and the client, ``client val`` and
``prepare --int8`` quote them; so do the admin key's header and file, which the server checks and the client
sends. Imports nothing of the project, so the client may import it without the server's code.
"""

from pathlib import Path

CONF_THRESHOLD = 0.25  # Ultralytics' predict default
IOU_THRESHOLD = 0.7  # Ultralytics' predict and val default; no effect on an end-to-end head
MAX_DET = 300  # detections kept per image: the outputs' rows (prepare --max-det)
VAL_CONF_THRESHOLD = 0.001  # Ultralytics' val default: client val and prepare --int8 score at it
CPU_PRECISIONS = ("fp32", "int8")  # yolov8_infer's cpu_precision; int8 runs prepare --int8's model on OpenVINO
CPU_PRECISION = CPU_PRECISIONS[0]  # the default: auto never picks int8 itself

# Admin APIs (model repository, shared memory, trace, logging) take the key in this HTTP header; Triton prefixes a
# restricted API's gRPC header. python -m serving writes a key it makes to ADMIN_KEY_FILE (the checkout's .cache).
ADMIN_KEY_HEADER = "admin-key"
GRPC_ADMIN_KEY_HEADER = f"triton-grpc-protocol-{ADMIN_KEY_HEADER}"
ADMIN_KEY_FILE = Path(__file__).resolve().parent.parent / ".cache" / "admin_key"

# A client's system shared-memory region for its images (client.shared_memory): /dev/shm/<prefix><pid>_<random>.
# The tests' leftover check (serving.processes) looks for it too.
CLIENT_SHM_PREFIX = "yolo_triton_client_"
