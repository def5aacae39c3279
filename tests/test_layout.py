"""The code is laid out by stage: each package imports only what its ``__init__`` docstring allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from python_backends.prepare.repository import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "python_backends"
# package -> the other python_backends packages it may import
ALLOWED = {
    "triton_helpers": set(),
    "preprocess": {"triton_helpers"},
    "infer": {"triton_helpers"},
    "postprocess": {"triton_helpers"},
    "prepare": {"infer"},
}


def project_imports(path: Path) -> set[str]:
    """The python_backends subpackages that the module at ``path`` imports (anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found |= {name.split(".")[1] for name in names if name.startswith("python_backends.") and "." in name}
    return found


def test_every_module_sits_in_a_stage_package():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    assert {p.parent.name for p in PACKAGE.glob("*/*.py")} == set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    for module in sorted((PACKAGE / package).glob("*.py")):
        imported = project_imports(module) - {package}
        assert imported <= ALLOWED[package], f"{module.relative_to(PROJECT_ROOT)} imports {sorted(imported)}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_docstring_says_what_it_may_import(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and "import" in doc.lower()
    for other in ALLOWED[package]:
        assert other in doc


@pytest.mark.parametrize("stage", ["yolov8_preprocess", "yolov8_infer", "yolov8_postprocess"])
def test_model_py_only_coordinates(stage):
    """A stage's model.py is the Triton model class and little else: the work lives in python_backends."""
    source = (PROJECT_ROOT / "model_repository" / stage / "1" / "model.py").read_text()
    tree = ast.parse(source)
    assert [node.name for node in tree.body if isinstance(node, ast.ClassDef)] == ["TritonPythonModel"]
    assert len(source.splitlines()) <= 80
