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


# make targets whose steps a page lists as a numbered list of bold titles: the page -> the heading above the list
STEP_LISTS = {"bench": {"docs/performance.md": "## `make bench`", "benchmarks/README.md": "# Benchmarks"}}


def help_steps(target: str) -> list[str]:
    """The steps that ``make help`` gives for ``target``: its description up to the first ';', split at commas."""
    line = re.search(rf"^{target}:.*## (.*)$", (PROJECT_ROOT / "Makefile").read_text(), re.MULTILINE)
    return [normalized(step) for step in line.group(1).split(";")[0].split(", ")]


def listed_steps(text: str, heading: str) -> list[str]:
    """The bold titles of the first numbered list after ``heading`` in a page."""
    section = text[text.index(heading) :]
    titles = re.findall(r"^(\d+)\. \*\*(.+?)\*\*", section, re.MULTILINE)
    steps = []
    for number, title in titles:
        if int(number) != len(steps) + 1:
            break
        steps.append(normalized(title))
    return steps


def normalized(text: str) -> str:
    return re.sub(r"[`,]", "", text).strip().lower()


@pytest.mark.parametrize("target", sorted(STEP_LISTS))
def test_each_page_lists_the_steps_that_make_help_gives(target):
    for page, heading in STEP_LISTS[target].items():
        assert listed_steps((PROJECT_ROOT / page).read_text(), heading) == help_steps(target), page


def test_a_missing_step_is_seen():
    page = "## `make bench`\n\n1. **The engine in-process**: x\n2. **Paired rounds**: y\n"
    assert listed_steps(page, "## `make bench`") == ["the engine in-process", "paired rounds"]
    assert listed_steps(page, "## `make bench`") != help_steps("bench")


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
