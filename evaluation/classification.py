"""Ultralytics' folder layout for classification, and a classifier's top-1 and top-5 accuracy on it.

A dataset is a folder ``root/{train,val,test}/<class name>/<image>``. The split read is the one Ultralytics'
``check_cls_dataset`` gives a validator: ``val``, else ``validation``, else ``valid``, else ``test``. Every
image under a class folder (searched recursively, Ultralytics' image suffixes) is labelled with that folder's
name; predictions are matched to it by class name, so the served model's class ids need not follow the
folders' order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.dataset import IMAGE_SUFFIXES
from evaluation.labels import DatasetError

SPLITS = ("val", "validation", "valid", "test")  # the first that exists is read


@dataclass
class ClassificationSet:
    """The images of one split (``split``: its folder) and each one's class name (its class folder's name)."""

    split: Path
    labels: dict[Path, str]

    @property
    def names(self) -> list[str]:
        """The class folders' names, sorted (Ultralytics' class order)."""
        return sorted(set(self.labels.values()))


def load_classification_set(root: Path) -> ClassificationSet:
    """The split of ``root`` that Ultralytics validates on, and its images' labels; DatasetError if there is none."""
    split = next((root / name for name in SPLITS if (root / name).is_dir()), None)
    if split is None:
        raise DatasetError(f"{root}: no {', '.join(SPLITS[:-1])} or {SPLITS[-1]} folder of class folders")
    labels = {
        image.resolve(): folder.name
        for folder in sorted(p for p in split.iterdir() if p.is_dir())
        for image in sorted(folder.rglob("*"))
        if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file()
    }
    if not labels:
        raise DatasetError(f"{split}: no images in class folders ({split}/<class name>/<image>)")
    return ClassificationSet(split, labels)


@dataclass
class Accuracy:
    """How many of ``images`` had their label first (``top1``) and among the first five (``top5``)."""

    images: int
    top1: int
    top5: int

    def to_dict(self) -> dict:
        share = (lambda n: n / self.images) if self.images else (lambda n: 0.0)
        return {"images": self.images, "top1": self.top1, "top5": self.top5,
                "top1_acc": share(self.top1), "top5_acc": share(self.top5)}  # fmt: skip


def accuracy(dataset: ClassificationSet, predictions: dict[Path, list[str]]) -> Accuracy:
    """Count the images of ``predictions`` (image → its top 5 class names, likeliest first) right at top 1 and 5."""
    top1 = top5 = 0
    for image, names in predictions.items():
        label = dataset.labels[image]
        top1 += bool(names) and names[0] == label
        top5 += label in names[:5]
    return Accuracy(len(predictions), top1, top5)
