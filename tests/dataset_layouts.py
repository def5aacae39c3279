"""One labelled set written in each dataset layout ``python -m client val`` reads.

``write_layouts`` copies a set in Ultralytics' plain layout (``images/``, ``labels/``, classes Normal and
Fall) into one folder per layout; each holds the same images and the same objects, so each scores the same.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

NAMES = "names: {0: Normal, 1: Fall}\n"


@dataclass(frozen=True)
class Layout:
    """``data``: the DATA.yaml to pass to ``val``, relative to ``cwd`` (the folder to run it from) or absolute."""

    data: Path
    cwd: Path


def polygon(line: str) -> str:
    """A box line 'class cx cy w h' as a polygon line: the four edge midpoints, whose extent is the box."""
    if not line.strip():
        return line
    class_id, cx, cy, w, h = line.split()
    cx, cy, w, h = (float(v) for v in (cx, cy, w, h))
    points = (cx, cy - h / 2, cx + w / 2, cy, cx, cy + h / 2, cx - w / 2, cy)
    return " ".join([class_id, *(repr(p) for p in points)])


def rewrite_labels(labels: Path, change) -> None:
    """Apply ``change`` (a label file's text → new text) to every label file under ``labels``."""
    for path in labels.glob("*.txt"):
        path.write_text(change(path.read_text()))


def write_layouts(source: Path, out: Path) -> dict[str, Layout]:
    """Write ``source`` (images/, labels/) under ``out`` in each layout; layout name → Layout.

    Every layout but ``relative`` runs from ``out``, which holds no images/ of its own.
    """
    layouts = {}

    def plain(name: str, yaml_text: str, under: str = "") -> Path:
        root = out / name
        shutil.copytree(source / "images", root / under / "images")
        shutil.copytree(source / "labels", root / under / "labels")
        (root / "data.yaml").write_text(yaml_text)
        return root

    root = plain("relative", "path: .\nval: images\n" + NAMES)
    layouts["relative"] = Layout(Path("data.yaml"), root)

    root = plain("absolute", "", under="set")
    (root / "data.yaml").write_text(f"path: {root / 'set'}\nval: images\nnames: [Normal, Fall]\n")
    layouts["absolute"] = Layout(root / "data.yaml", out)

    root = out / "roboflow"  # as Roboflow exports: no path, splits beside the yaml named with ../
    shutil.copytree(source / "images", root / "valid" / "images")
    shutil.copytree(source / "labels", root / "valid" / "labels")
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnc: 2\nnames: ['Normal', 'Fall']\n"
    )
    layouts["roboflow"] = Layout(root / "data.yaml", out)

    root = plain("text_list", "val: lists/val.txt\n" + NAMES)
    (root / "lists" / "images").mkdir(parents=True)
    (root / "lists" / "labels").mkdir()
    lines = []
    for i, image in enumerate(sorted((root / "images").iterdir())):
        if i % 3 == 0:  # moved beside the list, listed relative to the list's folder
            shutil.move(image, root / "lists" / "images" / image.name)
            label = root / "labels" / f"{image.stem}.txt"
            if label.exists():
                shutil.move(label, root / "lists" / "labels" / label.name)
            lines.append(f"./images/{image.name}")
        else:  # relative to the root, or absolute
            lines.append(f"images/{image.name}" if i % 3 == 1 else str(image))
    (root / "lists" / "val.txt").write_text("\n".join(lines) + "\n")
    layouts["text_list"] = Layout(root / "data.yaml", out)

    root = plain("polygons", "path: .\nval: images\n" + NAMES)
    rewrite_labels(root / "labels", lambda text: "\n".join(polygon(line) for line in text.splitlines()))
    layouts["polygons"] = Layout(root / "data.yaml", out)

    root = plain("duplicates", "val: [images]\n" + NAMES)
    rewrite_labels(root / "labels", lambda text: text + text)
    layouts["duplicates"] = Layout(root / "data.yaml", out)

    root = plain("reversed_names", "val: images\nnames:\n  1: Fall\n  0: Normal\n")
    layouts["reversed_names"] = Layout(root / "data.yaml", out)
    return layouts
