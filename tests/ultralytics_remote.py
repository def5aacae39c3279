"""Ultralytics' own Triton client, ``TritonRemoteModel`` (``ultralytics/utils/triton.py``), as Ultralytics ships it.

It needs only numpy and tritonclient, so it is read from the ultralytics wheel that setup downloads for the
sample photos and run as it is; the rest of Ultralytics needs torch and is never installed here.
"""

import types
import zipfile

import pytest

from python_backends.paths import PROJECT_ROOT


def load_triton_remote_model() -> type:
    """Ultralytics' ``TritonRemoteModel`` class, loaded from the downloaded wheel (never installed)."""
    wheel = next((PROJECT_ROOT / ".cache" / "wheels").glob("ultralytics-*.whl"), None)
    if wheel is None:
        pytest.fail("no ultralytics wheel in .cache/wheels: run `make setup` first")
    member = "ultralytics/utils/triton.py"
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read(member)
    module = types.ModuleType("ultralytics_triton")
    exec(compile(source, f"{wheel.name}/{member}", "exec"), module.__dict__)
    return module.TritonRemoteModel
