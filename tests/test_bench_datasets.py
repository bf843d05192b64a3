"""Benchmark data loaders and cost models; a loader whose package is absent is skipped with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoal_bench.costs import (
    CONSTANT_SECONDS,
    DIFFICULTY_MAX_SECONDS,
    DIFFICULTY_MIN_SECONDS,
    item_costs,
)
from autoal_bench.datasets import (
    FASHION_DIR,
    BenchDataset,
    DatasetUnavailable,
    load_dataset,
    load_digits_dataset,
    load_fashion,
    load_image_folder,
    load_label_studio_export,
    load_mnist5k,
)


def test_digits() -> None:
    data = load_digits_dataset()
    assert data.inputs.shape == (1797, 8, 8) and data.inputs.dtype == np.float32
    assert 0.0 <= data.inputs.min() and data.inputs.max() == 1.0
    assert data.n_classes == 10 and set(np.unique(data.labels)) == set(range(10))


def test_mnist5k() -> None:
    try:
        data = load_mnist5k()
    except DatasetUnavailable as reason:
        pytest.skip(f"mnist5k not available: {reason}")
    assert data.inputs.shape == (5000, 28, 28)
    assert 0.0 <= data.inputs.min() and data.inputs.max() <= 1.0 and data.inputs.max() > 0.9
    assert np.bincount(data.labels).tolist() == [500] * 10


@pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason=f"Debian's dataset-fashion-mnist is not installed ({FASHION_DIR} missing; "
                           "apt-get install -y dataset-fashion-mnist)")
def test_fashion_subsample_is_stratified_and_reproducible() -> None:
    data = load_fashion(size=1000, seed=3)
    assert data.name == "fashion1k"
    assert data.inputs.shape == (1000, 28, 28)
    assert np.bincount(data.labels).tolist() == [100] * 10
    assert data.class_names[9] == "ankle boot"
    again = load_fashion(size=1000, seed=3)
    assert np.array_equal(data.inputs, again.inputs)
    with pytest.raises(ValueError, match="fashion size"):
        load_fashion(size=10)


def test_fashion_missing_package_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion(root=tmp_path)


def write_image(path: Path, value: int, rgb: bool, size: tuple[int, int] = (20, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode, color = ("RGB", (value, 0, 255 - value)) if rgb else ("L", value)
    Image.new(mode, size, color).save(path)


def test_image_folder_mixes_gray_and_rgb_of_any_size(tmp_path: Path) -> None:
    write_image(tmp_path / "cats" / "a.png", 10, rgb=False)
    write_image(tmp_path / "cats" / "b.jpg", 30, rgb=True, size=(40, 40))
    write_image(tmp_path / "dogs" / "c.png", 200, rgb=False, size=(7, 9))
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    data = load_image_folder(tmp_path, image_size=16)
    assert data.class_names == ("cats", "dogs")
    assert data.inputs.shape == (3, 3, 16, 16)  # one RGB image makes all RGB
    assert data.labels.tolist() == [0, 0, 1]
    assert abs(float(data.inputs[2].mean()) - 200 / 255) < 0.01
    assert load_dataset(str(tmp_path), image_size=16).n_classes == 2


def test_image_folder_needs_two_classes(tmp_path: Path) -> None:
    write_image(tmp_path / "only" / "a.png", 10, rgb=False)
    with pytest.raises(ValueError, match="at least 2 class subfolders"):
        load_image_folder(tmp_path)


def annotation(choice: str, seconds: float | None, cancelled: bool = False) -> dict:
    return {
        "was_cancelled": cancelled,
        "lead_time": seconds,
        "result": [{"type": "choices", "from_name": "label", "to_name": "image", "value": {"choices": [choice]}}],
    }


def test_label_studio_export_with_local_images_and_lead_time(tmp_path: Path, monkeypatch) -> None:
    write_image(tmp_path / "media" / "one.png", 20, rgb=False)
    write_image(tmp_path / "files" / "sub" / "two.png", 220, rgb=False)
    write_image(tmp_path / "media" / "three.png", 120, rgb=False)
    monkeypatch.setenv("LOCAL_FILES_DOCUMENT_ROOT", str(tmp_path / "files"))
    tasks = [
        {"id": 1, "data": {"image": "media/one.png"}, "annotations": [annotation("Cat", 4.5)]},
        {"id": 2, "data": {"image": "/data/local-files/?d=sub/two.png"}, "annotations": [annotation("Dog", 12.0)]},
        {"id": 3, "data": {"image": f"file://{tmp_path / 'media' / 'three.png'}"},
         "annotations": [annotation("Dog", None, cancelled=True), annotation("Cat", None)]},
        {"id": 4, "data": {"image": "media/one.png"}, "annotations": []},  # unlabeled: skipped
    ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    data = load_label_studio_export(export, image_size=8)
    assert data.class_names == ("Cat", "Dog")
    assert data.labels.tolist() == [0, 1, 0]
    assert data.inputs.shape == (3, 8, 8)
    assert data.lead_times.tolist() == [4.5, 12.0, 8.25]  # the missing one gets the median
    assert item_costs(data, "lead-time").tolist() == [4.5, 12.0, 8.25]


def test_label_studio_export_refuses_remote_images(tmp_path: Path) -> None:
    tasks = [{"id": 1, "data": {"image": "https://example.com/a.png"}, "annotations": [annotation("A", 1.0)]},
             {"id": 2, "data": {"image": "https://example.com/b.png"}, "annotations": [annotation("B", 1.0)]}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    with pytest.raises(ValueError, match="remote"):
        load_label_studio_export(export)


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not one of digits, mnist5k, fashion"):
        load_dataset("imagenet")


def test_constant_and_lead_time_costs() -> None:
    digits = load_digits_dataset()
    assert np.all(item_costs(digits, "constant") == CONSTANT_SECONDS)
    with pytest.raises(ValueError, match="lead-time"):
        item_costs(digits, "lead-time")
    with pytest.raises(ValueError, match="cost model 'hours'"):
        item_costs(digits, "hours")


def test_difficulty_cost_is_higher_for_ambiguous_items() -> None:
    digits = load_digits_dataset()
    costs = item_costs(digits, "difficulty")
    assert costs.shape == (1797,)
    assert DIFFICULTY_MIN_SECONDS <= costs.min() and costs.max() <= DIFFICULTY_MAX_SECONDS
    assert costs.std() > 0.5
    # the same items with their pixels scrambled are ambiguous for any model: they must cost more
    rng = np.random.default_rng(0)
    noisy = digits.inputs.copy()
    noisy[:200] = rng.random((200, 8, 8), dtype=np.float32)
    scrambled = item_costs(BenchDataset("noisy", noisy, digits.labels, digits.class_names), "difficulty")
    assert scrambled[:200].mean() > costs[:200].mean() + 3.0
