"""Write perf_analyzer's ``--input-data`` JSON for the ensemble: encoded images as IMAGE (TYPE_STRING).

    python -m client.perf_input OUT.json IMAGE [IMAGE ...]

Each BYTES element is a 4-byte little-endian length followed by the bytes, base64-encoded
(perf_analyzer ``docs/input_data.md``). Standard library only, and the ``client`` package needs just numpy and
tritonclient: docker compose's ``perf`` service runs it in the -py3-sdk image.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
from pathlib import Path


def input_data(images: list[Path]) -> dict:
    """One perf_analyzer data entry per image, each a batch-1 IMAGE of shape [1]."""
    entries = []
    for image in images:
        raw = image.read_bytes()
        element = struct.pack("<I", len(raw)) + raw
        entries.append({"IMAGE": {"content": {"b64": base64.b64encode(element).decode()}, "shape": [1]}})
    return {"data": entries}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out, images = Path(argv[0]), [Path(a) for a in argv[1:]]
    out.write_text(json.dumps(input_data(images)))
    print(f"wrote {out} ({len(images)} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
