"""The serving image installs what the committed model configs ask for, pinned as in the venv."""

from __future__ import annotations

import re

from python_backends.paths import PROJECT_ROOT

IMAGE_SETUP = PROJECT_ROOT / "scripts" / "gpu_container_setup.sh"
# a CPU runtime that a config may name -> the Python package it needs
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


def pins(text: str) -> dict[str, str]:
    """name → version of every ``name==version`` in ``text``."""
    return dict(re.findall(r"(?<![\w.-])([A-Za-z][\w.-]*)==([\w.]+)", text))


def named_cpu_runtimes() -> set[str]:
    configs = (PROJECT_ROOT / "model_repository").glob("*/**/*.pbtxt")
    return {
        runtime
        for config in configs
        for runtime in re.findall(r'key: "cpu_runtime", value: \{ string_value: "(\w+)" \}', config.read_text())
    }


def test_configs_name_cpu_runtimes_that_the_project_knows():
    assert named_cpu_runtimes(), "no committed config names a cpu_runtime"
    assert named_cpu_runtimes() <= set(RUNTIME_PACKAGES)


def test_image_installs_every_runtime_the_configs_name_pinned_as_in_the_venv():
    image = pins(IMAGE_SETUP.read_text())
    venv = pins((PROJECT_ROOT / "requirements.txt").read_text())
    for runtime in named_cpu_runtimes() | {"onnxruntime"}:  # onnxruntime: the fallback when another fails to load
        package = RUNTIME_PACKAGES[runtime]
        assert package in image, f"{IMAGE_SETUP.name} does not install {package}, which a config names"
        assert image[package] == venv[package], f"{package}: image {image[package]}, venv {venv[package]}"
    assert image["openvino-telemetry"] == venv["openvino-telemetry"]  # openvino's own dependency


def test_pins_reads_package_pins():
    assert pins("pip install a==1.2 b-c==3.0.1 # x==9") == {"a": "1.2", "b-c": "3.0.1", "x": "9"}
