"""``python -m prepare.engine --repository /models --config-name gpu``: the TensorRT engine the server will load.

Reads yolov8_infer's config as the server does (``configs/<name>.pbtxt``, else ``config.pbtxt``), so
the engine's options, key and directory are the ones ``model.py`` computes at load, and finds the
engine in the cache or builds it. Used by docker compose's ``setup`` service, where the repository is
read-only and ``prepare`` cannot rewrite configs. A config whose ``runtime`` never runs TensorRT
needs no engine. Imports nothing heavy: the serving image runs it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from prepare.pbtxt import triton_config
from python_backends.infer.settings import RuntimeSettings, runtime_settings
from python_backends.infer.tensorrt_build import ensure_engine
from python_backends.infer.tensorrt_engine import EngineBuildError, default_engine_dir

TENSORRT_RUNTIMES = ("auto", "tensorrt")


def infer_config(repository: Path, config_name: str | None) -> dict[str, Any]:
    """yolov8_infer's config as Triton reads it with ``--model-config-name=config_name`` (the same
    fallback to config.pbtxt when there is no such file)."""
    stage = repository / "yolov8_infer"
    named = stage / "configs" / f"{config_name}.pbtxt" if config_name else None
    path = named if named is not None and named.exists() else stage / "config.pbtxt"
    return triton_config(path.read_text())


def served_settings(repository: Path, config: dict[str, Any]) -> RuntimeSettings:
    """yolov8_infer's ``config`` read as the stage reads it (``runtime_settings``), for the newest version folder
    (``model_file``: the ONNX the server loads); ``engine_dir`` the engine directory the server uses."""
    versions = sorted(int(p.name) for p in (repository / "yolov8_infer").iterdir() if p.name.isdigit())
    if not versions:
        raise FileNotFoundError(f"no version folder in {repository / 'yolov8_infer'}")
    settings = runtime_settings(config, repository / "yolov8_infer" / str(versions[-1]))
    return replace(settings, engine_dir=settings.engine_dir or default_engine_dir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prepare.engine", description=__doc__)
    parser.add_argument("--repository", required=True, type=Path, help="the model repository the server loads")
    parser.add_argument("--config-name", help="as tritonserver's --model-config-name (gpu: configs/gpu.pbtxt)")
    args = parser.parse_args(argv)
    try:
        config = infer_config(args.repository, args.config_name)
        settings = served_settings(args.repository, config)
        if settings.runtime not in TENSORRT_RUNTIMES:
            print(f"yolov8_infer runs {settings.runtime!r}: no TensorRT engine to build")
            return 0
        print(ensure_engine(settings.model_file, settings.engine_options, settings.engine_dir))
    except (EngineBuildError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
