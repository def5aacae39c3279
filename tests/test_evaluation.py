"""evaluation: the Ultralytics dataset reader and COCO scoring, on small datasets written here.

COCO's AP is the mean of the interpolated precision at the 101 recall points 0, 0.01, ..., 1, so the
expected values below are counted by hand: e.g. one of two objects found, and nothing scored above it,
keeps precision 1 up to recall 0.50, 51 points of 101.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from evaluation.coco import Prediction, evaluate
from evaluation.dataset import DatasetError, label_path, load_dataset

WIDTH, HEIGHT = 200, 100


def write_dataset(root: Path, labels: dict[str, str | None], names: object = ("Normal", "Fall")) -> Path:
    """images/<name>.png (WIDTH x HEIGHT, black) and labels/<name>.txt (None: no label file); returns data.yaml."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name, text in labels.items():
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
        if text is not None:
            (root / "labels" / f"{name}.txt").write_text(text)
    names_yaml = "".join(f"\n  {k}: {v}" for k, v in names.items()) if isinstance(names, dict) else list(names)
    (root / "data.yaml").write_text(f"path: .\nval: images\nnames: {names_yaml}\n")
    return root / "data.yaml"


def boxes(*rows) -> Prediction:
    """A prediction from rows of (x1, y1, x2, y2, score, class id)."""
    array = np.array(rows, np.float32).reshape(-1, 6)
    return Prediction(array[:, :4], array[:, 4], array[:, 5].astype(np.int64))


# --- the dataset reader ---


def test_labels_are_found_where_ultralytics_looks():
    assert label_path(Path("/d/images/train/images/a.b.jpg")) == Path("/d/images/train/labels/a.b.txt")
    assert label_path(Path("/d/pictures/a.png")) == Path("/d/pictures/a.txt")


def test_labels_in_pixels_and_a_missing_label_file_is_no_objects(tmp_path):
    data = write_dataset(tmp_path, {"one": "0 0.5 0.5 0.5 0.2\n1 0.25 0.75 0.1 0.5\n", "none": None, "empty": ""})
    dataset = load_dataset(data)
    assert [p.name for p in dataset.images] == ["empty.png", "none.png", "one.png"]
    assert dataset.names == {0: "Normal", 1: "Fall"}
    np.testing.assert_allclose(
        dataset.labels(tmp_path / "images" / "one.png"), [[0, 50, 40, 150, 60], [1, 40, 50, 60, 100]]
    )
    assert dataset.labels(tmp_path / "images" / "none.png").shape == (0, 5)
    assert dataset.labels(tmp_path / "images" / "empty.png").shape == (0, 5)


def test_names_as_a_mapping_and_val_as_a_list_or_a_text_file(tmp_path):
    data = write_dataset(tmp_path, {"a": "", "b": ""}, names={0: "person", 1: "bike", 2: "car"})
    assert load_dataset(data).names == {0: "person", 1: "bike", 2: "car"}
    (tmp_path / "more").mkdir()
    cv2.imwrite(str(tmp_path / "more" / "c.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "list.txt").write_text("./images/a.png\nmore/c.jpg\n")
    data.write_text("path: .\nval: list.txt\nnames: [person]\n")
    assert load_dataset(data).images == [tmp_path / "images" / "a.png", tmp_path / "more" / "c.jpg"]
    data.write_text("val: [images, more]\nnames: [person]\n")  # no path: the yaml's folder
    assert [p.name for p in load_dataset(data).images] == ["a.png", "b.png", "c.jpg"]


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("2 0.5 0.5 0.1 0.1", "class 2 is not a class id in 0..1"),
        ("-1 0.5 0.5 0.1 0.1", "class -1 is not a class id in 0..1"),
        ("0.5 0.5 0.5 0.1 0.1", "class 0.5 is not a class id"),
        ("0 0.5 0.5 0.1", "expected 5 numbers"),
        ("0 0.5 0.5 0.1 0.1 0.3", "expected 5 numbers"),
        ("0 0.5 zero 0.1 0.1", "expected 5 numbers"),
        ("0 0.5 0.5 1.5 0.1", "normalised to [0, 1]"),
    ],
)
def test_a_bad_label_line_names_the_file_and_line(tmp_path, line, complaint):
    data = write_dataset(tmp_path, {"good": "0 0.5 0.5 0.1 0.1\n", "bad": f"1 0.5 0.5 0.1 0.1\n\n{line}\n"})
    with pytest.raises(DatasetError) as error:
        load_dataset(data)
    assert f"{tmp_path / 'labels' / 'bad.txt'}:3: " in str(error.value)
    assert complaint in str(error.value)


@pytest.mark.parametrize(
    ("yaml_text", "complaint"),
    [
        ("path: .\nnames: [a]\n", "no 'val' entry"),
        ("val: nowhere\nnames: [a]\n", "neither a folder nor a .txt file"),
        ("val: images\nnames: {1: a}\n", "'names' must be a list or a mapping with ids 0..n-1"),
        ("val: images\n", "'names' must be a list"),
        ("[just, a, list]\n", "expected a mapping"),
    ],
)
def test_a_bad_dataset_file_is_a_dataset_error(tmp_path, yaml_text, complaint):
    data = write_dataset(tmp_path, {"a": ""})
    data.write_text(yaml_text)
    with pytest.raises(DatasetError, match=complaint.replace("[", r"\[").replace(".", r"\.")):
        load_dataset(data)


def test_an_unreadable_image_has_no_labels_in_pixels(tmp_path):
    data = write_dataset(tmp_path, {"a": "0 0.5 0.5 0.1 0.1\n"})
    (tmp_path / "images" / "a.png").write_bytes(b"not an image")
    dataset = load_dataset(data)  # listing and labels need no pixels
    with pytest.raises(OSError):
        dataset.labels(dataset.images[0])


# --- COCO scoring ---


@pytest.fixture
def two_people(tmp_path):
    """One image, two class-0 objects: (0, 0)-(100, 100) and (150, 50)-(190, 90) in pixels."""
    return load_dataset(write_dataset(tmp_path, {"a": "0 0.25 0.5 0.5 1\n0 0.85 0.7 0.2 0.4\n"}))


def test_perfect_predictions_score_one(two_people):
    image = two_people.images[0]
    metrics = evaluate(two_people, {image: boxes((0, 0, 100, 100, 0.9, 0), (150, 50, 190, 90, 0.8, 0))})
    assert metrics.map50_95 == pytest.approx(1.0) and metrics.map50 == pytest.approx(1.0)
    assert metrics.images == 1
    normal, fall = metrics.per_class
    assert (normal.class_id, normal.name, normal.instances, normal.map50_95) == (0, "Normal", 2, pytest.approx(1.0))
    assert (fall.class_id, fall.name, fall.instances, fall.map50_95, fall.map50) == (1, "Fall", 0, None, None)


def test_one_of_two_found_keeps_precision_one_up_to_recall_half(two_people):
    metrics = evaluate(two_people, {two_people.images[0]: boxes((0, 0, 100, 100, 0.9, 0))})
    assert metrics.map50_95 == pytest.approx(51 / 101) and metrics.map50 == pytest.approx(51 / 101)


def test_a_false_positive_above_the_hits_halves_precision(two_people):
    found = boxes((0, 100, 10, 110, 0.95, 0), (0, 0, 100, 100, 0.9, 0), (150, 50, 190, 90, 0.8, 0))
    metrics = evaluate(two_people, {two_people.images[0]: found})
    # precision 0, 1/2, 2/3 at recall 0, 1/2, 1: interpolated 2/3 at every recall point
    assert metrics.map50_95 == pytest.approx(2 / 3) and metrics.map50 == pytest.approx(2 / 3)


def test_a_loose_box_counts_only_up_to_its_iou(two_people):
    # (0, 0)-(100, 78) against (0, 0)-(100, 100): IoU 0.78, a hit at thresholds 0.50 ... 0.75 (6 of 10)
    found = boxes((0, 0, 100, 78, 0.9, 0), (150, 50, 190, 90, 0.8, 0))
    metrics = evaluate(two_people, {two_people.images[0]: found})
    assert metrics.map50 == pytest.approx(1.0)
    # above 0.75 the loose box, scored first, is a false positive, then the second box finds 1 of 2:
    # precision 1/2 up to recall 0.50 (51 points of 101) and 0 beyond
    assert metrics.map50_95 == pytest.approx((6 * 1.0 + 4 * 0.5 * 51 / 101) / 10)


def test_the_overall_map_averages_the_classes_with_labels(tmp_path):
    data = write_dataset(tmp_path, {"a": "0 0.25 0.5 0.5 1\n1 0.85 0.7 0.2 0.4\n1 0.6 0.2 0.1 0.2\n"})
    dataset = load_dataset(data)
    # class 0 found; class 1: one of two; a class-1 box on the class-0 object is a false positive of class 1
    found = boxes((0, 0, 100, 100, 0.9, 0), (150, 50, 190, 90, 0.8, 1), (0, 0, 100, 100, 0.1, 1))
    metrics = evaluate(dataset, {dataset.images[0]: found})
    normal, fall = metrics.per_class
    assert normal.map50_95 == pytest.approx(1.0) and fall.map50_95 == pytest.approx(51 / 101)
    assert metrics.map50_95 == pytest.approx((1 + 51 / 101) / 2)


def test_images_without_predictions_are_left_out_and_unknown_classes_ignored(tmp_path):
    dataset = load_dataset(write_dataset(tmp_path, {"a": "0 0.25 0.5 0.5 1\n", "b": "0 0.5 0.5 0.2 0.2\n"}))
    a = dataset.images[0]
    metrics = evaluate(dataset, {a: boxes((0, 0, 100, 100, 0.5, 0), (0, 0, 100, 100, 0.9, 7))})
    assert metrics.images == 1 and metrics.map50_95 == pytest.approx(1.0)


def test_no_detections_at_all_score_zero(two_people):
    metrics = evaluate(two_people, {two_people.images[0]: boxes()})
    assert metrics.map50_95 == 0.0 and metrics.map50 == 0.0


def test_the_json_form_has_exactly_the_documented_keys(two_people):
    metrics = evaluate(two_people, {two_people.images[0]: boxes((0, 0, 100, 100, 0.9, 0))})
    as_dict = metrics.to_dict()
    assert list(as_dict) == ["map50_95", "map50", "images", "per_class"]
    assert [list(c) for c in as_dict["per_class"]] == [["class_id", "name", "map50_95", "map50"]] * 2
