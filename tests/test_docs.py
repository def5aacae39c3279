"""The docs stay true to the tree: every relative link resolves, and every `make` target and
`python -m` module they name exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from python_backends.paths import PROJECT_ROOT

PAGES = sorted(
    [
        PROJECT_ROOT / "README.md",
        PROJECT_ROOT / "deploy" / "kubernetes" / "README.md",
        PROJECT_ROOT / "benchmarks" / "README.md",
    ]
    + list((PROJECT_ROOT / "docs").glob("*.md"))
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MAKE = re.compile(r"(?<![\w-])make ([a-z][a-z-]*)")
MODULE = re.compile(r"python3? -m ([A-Za-z_][\w.]*)")
EXTERNAL_MODULES = {"venv", "pip", "pytest", "ruff"}  # modules of Python or of the venv, not the project's
MAKE_WORDS = {"sure"}  # "make sure" in prose


def page_id(page: Path) -> str:
    return str(page.relative_to(PROJECT_ROOT))


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (PROJECT_ROOT / "Makefile").read_text(), re.MULTILINE))


def test_the_docs_exist_and_the_readme_links_every_page():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert readme.index("make demo") < readme.index("make test") < 800  # the two commands open it
    linked = {(PROJECT_ROOT / target.split("#")[0]).resolve() for target in LINK.findall(readme)}
    for page in PAGES:
        if page.name != "README.md" or page.parent != PROJECT_ROOT:
            assert page.resolve() in linked, f"README.md does not link {page_id(page)}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page_id(page)} links {target}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_make_targets_exist(page):
    named = set(MAKE.findall(page.read_text())) - MAKE_WORDS
    assert named <= make_targets(), f"{page_id(page)} names make {sorted(named - make_targets())}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_python_modules_exist(page):
    for module in sorted(set(MODULE.findall(page.read_text())) - EXTERNAL_MODULES):
        assert importlib.util.find_spec(module) is not None, f"{page_id(page)} names python -m {module}"


def test_the_checks_see_a_broken_page(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[x](missing.md) `make nonesuch` `python -m serving.nonesuch`")
    assert not (page.parent / LINK.findall(page.read_text())[0]).exists()
    assert set(MAKE.findall(page.read_text())) - make_targets() == {"nonesuch"}
    assert importlib.util.find_spec(MODULE.findall(page.read_text())[0]) is None
