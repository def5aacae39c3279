"""The code is laid out one job per folder, and imports run one way: down the floors below.

    tools         the demo, the soak and the GPU check: drive a whole server
    benchmarks    make bench, make cluster-bench, perf_analyzer inputs
    cluster       the local cluster: replicas behind nginx and HAProxy
    serving       one supervised tritonserver
    prepare       an Ultralytics export -> the model repository (python -m prepare)
    client        the gRPC client and CLI: needs nothing of the server
    python_backends   what Triton loads: the stages' libraries (tested without Triton) and the project's paths
    evaluation    datasets, COCO mAP and detection matching, for client val and prepare --int8

Each package's ``__init__`` docstring says what it may import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from python_backends.paths import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "python_backends"
# python_backends package -> the other python_backends packages it may import
ALLOWED = {
    "triton_helpers": set(),
    "preprocess": {"triton_helpers"},
    "infer": {"triton_helpers"},
    "postprocess": {"triton_helpers"},
}
# python_backends' modules outside the stage packages: where the files are, and the serving defaults
LOOSE = {"paths", "defaults"}
GROUND = {"python_backends.defaults"}  # imports nothing; every floor may import it, the client included
# top-level package -> the other top-level packages it may import
FLOORS = {
    "evaluation": set(),
    "python_backends": set(),
    "client": {"evaluation"},
    "prepare": {"python_backends", "evaluation"},
    "serving": {"python_backends"},
    "cluster": {"serving", "python_backends"},
    "benchmarks": {"cluster", "serving", "prepare", "client", "evaluation", "python_backends"},
    "tools": {"benchmarks", "serving", "prepare", "client", "evaluation", "python_backends"},
}
# of what a server or the cluster runs, only prepare and the client score detections
SERVER_SIDE = ("python_backends", "serving", "cluster")
# what serving/ holds: the pieces of one supervised server, nothing else
SERVING_MODULES = {
    "__init__",
    "__main__",
    "server",
    "server_dirs",
    "triton",
    "supervisor",
    "probe",
    "processes",
    "lb_agent",
}
STAGES = {"yolov8_preprocess": "preprocess", "yolov8_infer": "infer", "yolov8_postprocess": "postprocess"}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name that the module at ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def backend_packages(path: Path) -> set[str]:
    """The python_backends subpackages that the module at ``path`` imports."""
    names = imported_modules(path)
    return {name.split(".")[1] for name in names if name.startswith("python_backends.") and name.count(".") >= 1}


def top_packages(path: Path) -> set[str]:
    """The project's top-level packages that the module at ``path`` imports (the ground floor's modules left out)."""
    return {name.split(".")[0] for name in imported_modules(path) - GROUND} & set(FLOORS)


@pytest.mark.parametrize("module", sorted(GROUND))
def test_the_ground_floor_imports_nothing_of_the_project(module):
    path = PROJECT_ROOT / (module.replace(".", "/") + ".py")
    assert {name.split(".")[0] for name in imported_modules(path)} & set(FLOORS) == set()


def test_imported_modules_reads_every_form_of_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import serving.server\nfrom client import api\ndef f():\n    from cluster.local import main\n")
    assert top_packages(module) == {"serving", "client", "cluster"}


def test_every_module_sits_in_a_stage_package():
    loose = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert loose == LOOSE
    assert {p.parent.name for p in PACKAGE.glob("*/*.py")} == set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    for module in sorted((PACKAGE / package).glob("*.py")):
        imported = backend_packages(module) - {package} - LOOSE
        assert imported <= ALLOWED[package], f"{module.relative_to(PROJECT_ROOT)} imports {sorted(imported)}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_docstring_says_what_it_may_import(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and "import" in doc.lower()
    for other in ALLOWED[package]:
        assert other in doc


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_no_import_runs_back_up_a_floor(package):
    for module in sorted((PROJECT_ROOT / package).rglob("*.py")):
        imported = top_packages(module) - {package}
        assert imported <= FLOORS[package], f"{module.relative_to(PROJECT_ROOT)} imports {sorted(imported)}"


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_top_package_docstring_says_what_it_may_import(package):
    doc = ast.get_docstring(ast.parse((PROJECT_ROOT / package / "__init__.py").read_text()))
    assert doc and ("import" in doc.lower()), package
    for other in FLOORS[package]:
        assert other in doc, f"{package}/__init__.py does not name {other}"


def test_serving_runs_one_server_and_nothing_else():
    assert {p.stem for p in (PROJECT_ROOT / "serving").glob("*.py")} == SERVING_MODULES


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_model_py_imports_only_its_stage_and_the_helpers(stage):
    """A stage's model.py reaches into its own stage package and triton_helpers, never another stage."""
    model_py = PROJECT_ROOT / "model_repository" / stage / "1" / "model.py"
    assert top_packages(model_py) == {"python_backends"}
    assert backend_packages(model_py) <= {STAGES[stage], "triton_helpers", *LOOSE}, model_py


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_model_py_only_coordinates(stage):
    """A stage's model.py is the Triton model class and little else: the work lives in python_backends."""
    source = (PROJECT_ROOT / "model_repository" / stage / "1" / "model.py").read_text()
    tree = ast.parse(source)
    assert [node.name for node in tree.body if isinstance(node, ast.ClassDef)] == ["TritonPythonModel"]
    assert len(source.splitlines()) <= 80


def test_project_root_is_defined_once():
    definitions = [
        path.relative_to(PROJECT_ROOT)
        for folder in (*FLOORS, "tests")
        for path in (PROJECT_ROOT / folder).rglob("*.py")
        if re.search(r"^PROJECT_ROOT = ", path.read_text(), re.MULTILINE)
    ]
    assert definitions == [Path("python_backends/paths.py")]


@pytest.mark.parametrize("package", SERVER_SIDE)
def test_nothing_that_serves_imports_evaluation(package):
    for module in sorted((PROJECT_ROOT / package).rglob("*.py")):
        assert "evaluation" not in top_packages(module), module.relative_to(PROJECT_ROOT)


def module_name(path: Path) -> str:
    """``client/cli.py`` -> ``client.cli``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` (module -> the modules it imports) as a list of modules, or [] when it has none."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str]:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*trail[trail.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*trail, nxt])):
                return cycle
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [node])):
            return cycle
    return []


def test_import_cycle_finds_a_circle_and_only_a_circle():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_no_import_circle_inside_a_package(package):
    """Modules of one package import each other one way (``__init__`` re-exports are left out)."""
    modules = {module_name(p): p for p in (PROJECT_ROOT / package).rglob("*.py") if p.name != "__init__.py"}
    graph = {name: imported_modules(path) & set(modules) for name, path in modules.items()}
    assert import_cycle(graph) == []
