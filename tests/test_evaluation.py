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
from dataset_layouts import write_layouts

from evaluation.coco import Prediction, evaluate
from evaluation.dataset import DatasetError, load_dataset
from evaluation.labels import label_path, read_labels

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


def boxes(*rows, size: tuple[int, int] | None = (WIDTH, HEIGHT)) -> Prediction:
    """A prediction from rows of (x1, y1, x2, y2, score, class id) on an image decoded at ``size``."""
    array = np.array(rows, np.float32).reshape(-1, 6)
    return Prediction(array[:, :4], array[:, 4], array[:, 5].astype(np.int64), size)


def scores(metrics) -> list:
    """The metrics as one flat list: overall mAPs, images, each class's instances and mAPs, classes with labels."""
    per_class = [v for c in metrics.per_class for v in (c.class_id, c.name, c.instances, c.map50_95, c.map50)]
    with_labels = sum(c.instances > 0 for c in metrics.per_class)
    return [metrics.map50_95, metrics.map50, metrics.images, *per_class, with_labels]


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
        dataset.labels(tmp_path / "images" / "one.png", WIDTH, HEIGHT), [[0, 50, 40, 150, 60], [1, 40, 50, 60, 100]]
    )
    assert dataset.labels(tmp_path / "images" / "none.png", WIDTH, HEIGHT).shape == (0, 5)
    assert dataset.labels(tmp_path / "images" / "empty.png", WIDTH, HEIGHT).shape == (0, 5)


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
        ("0 0.5 0.5 0.1", "expected 'class cx cy w h' or a polygon"),
        ("0 0.5 0.5 0.1 0.1 0.3", "expected 'class cx cy w h' or a polygon"),
        ("0 0.1 0.1 0.2 0.1 0.2 0.2 0.3", "expected 'class cx cy w h' or a polygon"),
        ("0 0.5 zero 0.1 0.1", "expected 'class cx cy w h' or a polygon"),
        ("0 0.5 0.5 1.5 0.1", "normalised to [0, 1]"),
        ("0 0.1 0.1 0.2 0.1 0.2 -0.02", "normalised to [0, 1]"),
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
        ("val: nowhere\nnames: [a]\n", "val entry not found: looked for "),
        ("val: data.yaml\nnames: [a]\n", "neither a folder nor a .txt file"),
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


def test_a_polygon_is_its_extent_and_a_repeated_row_counts_once(tmp_path):
    labels = tmp_path / "a.txt"
    labels.write_text("1 0.2 0.1 0.6 0.3 0.4 0.9\n0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n0 0.5 0.5 1.005 0.2\n")
    np.testing.assert_allclose(
        read_labels(labels, 2).boxes, [[0, 0.5, 0.5, 0.2, 0.2], [0, 0.5, 0.5, 1.005, 0.2], [1, 0.4, 0.5, 0.4, 0.8]]
    )


def test_no_label_file_for_any_image_is_an_error_that_says_where_it_looked(tmp_path):
    data = write_dataset(tmp_path, {"a": None, "b": None})
    with pytest.raises(DatasetError) as error:
        load_dataset(data)
    assert f"no label file for any of the 2 images; the first would be {tmp_path / 'labels' / 'a.txt'}" in str(
        error.value
    )


def test_a_relative_path_that_means_two_datasets_is_an_error(tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "set", {"a": "0 0.5 0.5 0.1 0.1\n"})
    write_dataset(tmp_path / "elsewhere", {"b": "0 0.5 0.5 0.1 0.1\n"})
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="make path absolute"):
        load_dataset(data)
    monkeypatch.chdir(tmp_path)  # no images/ here: the yaml's folder is the only reading
    assert load_dataset(data).images == [tmp_path / "set" / "images" / "a.png"]


def test_every_layout_scores_the_same(tmp_path, monkeypatch):
    labels = {
        "a": "0 0.25 0.5 0.5 1\n1 0.85 0.7 0.2 0.4\n",
        "b": "1 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n",
        "c": "0 0.6 0.4 0.3 0.3\n",
        "empty": "",
        "none": None,
    }
    source = write_dataset(tmp_path / "source", labels).parent
    found = {  # by image name: hits, a loose box, a false positive, a miss
        "a": boxes((0, 0, 100, 100, 0.9, 0), (150, 50, 190, 90, 0.3, 0), (150, 50, 190, 85, 0.7, 1)),
        "b": boxes((80, 40, 120, 60, 0.8, 1), (40, 30, 60, 50, 0.6, 1)),
        "c": boxes((90, 25, 150, 55, 0.5, 0)),
        "empty": boxes((10, 10, 20, 20, 0.4, 0)),
        "none": boxes(),
    }
    monkeypatch.chdir(tmp_path)
    plain = load_dataset(source / "data.yaml")
    expected = scores(evaluate(plain, {image: found[image.stem] for image in plain.images}))
    assert 0.1 < expected[0] < 0.9 and expected[-1] == 2  # both classes have labels, neither is perfect
    for name, layout in write_layouts(source, tmp_path / "layouts").items():
        monkeypatch.chdir(layout.cwd)
        dataset = load_dataset(layout.data)
        assert sorted(p.stem for p in dataset.images) == sorted(labels), name
        metrics = evaluate(dataset, {image: found[image.stem] for image in dataset.images})
        assert scores(metrics) == pytest.approx(expected, abs=1e-6), name


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


def test_labels_are_scaled_to_the_size_the_detector_decoded(two_people):
    # the file is 200x100; a detector that decoded it at 400x200 finds the objects at twice the pixels
    found = boxes((0, 0, 200, 200, 0.9, 0), (300, 100, 380, 180, 0.8, 0), size=(400, 200))
    metrics = evaluate(two_people, {two_people.images[0]: found})
    assert metrics.map50_95 == pytest.approx(1.0)


def test_without_a_decoded_size_the_file_header_gives_it(two_people, tmp_path):
    found = boxes((0, 0, 100, 100, 0.9, 0), (150, 50, 190, 90, 0.8, 0), size=None)
    assert evaluate(two_people, {two_people.images[0]: found}).map50_95 == pytest.approx(1.0)
    two_people.images[0].write_bytes(b"not an image")
    with pytest.raises(OSError):
        evaluate(two_people, {two_people.images[0]: found})


def test_per_class_rows_follow_the_class_ids_with_names_in_reverse_order(tmp_path):
    names = {1: "Fall", 0: "Normal"}
    dataset = load_dataset(write_dataset(tmp_path, {"a": "0 0.25 0.5 0.5 1\n1 0.85 0.7 0.2 0.4\n"}, names=names))
    assert list(dataset.names.items()) == [(0, "Normal"), (1, "Fall")]
    metrics = evaluate(dataset, {dataset.images[0]: boxes((0, 0, 100, 100, 0.9, 0))})  # Normal found, Fall not
    normal, fall = metrics.per_class
    assert (normal.class_id, normal.name, normal.instances, normal.map50_95) == (0, "Normal", 1, pytest.approx(1.0))
    assert (fall.class_id, fall.name, fall.instances, fall.map50_95) == (1, "Fall", 1, 0.0)
