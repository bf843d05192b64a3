"""Benchmark data loaders and cost models; a loader whose package is absent is skipped with the reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoal_bench.cli import main
from autoal_bench.costs import (
    CONSTANT_SECONDS,
    DIFFICULTY_MAX_SECONDS,
    DIFFICULTY_MIN_SECONDS,
    item_costs,
)
from autoal_bench.datasets import (
    FASHION_DIR_ENV,
    BenchDataset,
    DatasetUnavailable,
    fashion_dir,
    load_dataset,
    load_digits_dataset,
    load_fashion,
    load_icons,
    load_image_folder,
    load_label_studio_export,
    load_mnist5k,
)
from ls_backend.labeling import parse_label_config, task_label


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


@pytest.mark.skipif(not (fashion_dir() / "train-images-idx3-ubyte.gz").exists(),
                    reason=f"Debian's dataset-fashion-mnist is not installed ({fashion_dir()} missing; "
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


def test_fashion_reads_the_folder_named_by_the_environment(tmp_path: Path, monkeypatch) -> None:
    for part, n in (("train", 6), ("t10k", 4)):
        with gzip.open(tmp_path / f"{part}-images-idx3-ubyte.gz", "wb") as handle:
            handle.write(bytes(16) + bytes(range(n)) * 784)
        with gzip.open(tmp_path / f"{part}-labels-idx1-ubyte.gz", "wb") as handle:
            handle.write(bytes(8) + bytes(k % 10 for k in range(n)))
    monkeypatch.setenv(FASHION_DIR_ENV, str(tmp_path))
    assert fashion_dir() == tmp_path
    data = load_fashion(size=None)
    assert data.name == "fashion" and data.inputs.shape == (10, 28, 28)
    assert data.labels.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    monkeypatch.setenv(FASHION_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DatasetUnavailable, match=FASHION_DIR_ENV):
        load_fashion()


def write_image(path: Path, value: int, rgb: bool, size: tuple[int, int] = (20, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode, color = ("RGB", (value, 0, 255 - value)) if rgb else ("L", value)
    Image.new(mode, size, color).save(path)


def test_image_folder_mixes_gray_and_rgb_of_any_size(tmp_path: Path) -> None:
    write_image(tmp_path / "cats" / "a.png", 10, rgb=False)
    write_image(tmp_path / "cats" / "b.jpg", 30, rgb=True, size=(40, 40))
    write_image(tmp_path / "dogs" / "c.png", 200, rgb=False, size=(8, 9))
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    data = load_image_folder(tmp_path, image_size=16)
    assert data.class_names == ("cats", "dogs")
    assert data.inputs.shape == (3, 3, 16, 16)  # one RGB image makes all RGB
    assert data.labels.tolist() == [0, 0, 1]
    assert abs(float(data.inputs[2].mean()) - 200 / 255) < 0.01
    assert load_dataset(str(tmp_path), image_size=16).n_classes == 2


def test_image_folder_reads_files_as_the_engine_does(tmp_path: Path) -> None:
    gray = Image.new("L", (12, 12), 90).convert("P")  # a palette of grays only: gray, as the engine reads it
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        gray.save(tmp_path / name / "gray.png")
    data = load_image_folder(tmp_path, image_size=8)
    assert data.inputs.shape == (2, 8, 8)
    assert np.allclose(data.inputs, 90 / 255, atol=0.01)
    write_image(tmp_path / "b" / "tiny.png", 50, rgb=False, size=(7, 9))  # the backend refuses it too
    with pytest.raises(ValueError, match=r"tiny\.png.*smaller than 8 px"):
        load_image_folder(tmp_path, image_size=8)


def test_image_folder_shows_transparent_pixels_white(tmp_path: Path) -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red kept under fully transparent pixels, which a browser shows as the page
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(rgba).save(tmp_path / name / "icon.png")
    data = load_image_folder(tmp_path, image_size=8)
    assert np.allclose(data.inputs, 1.0)


def write_icon(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (32, 32), (value, 0, 0, 255)).save(path)


def test_icons_are_classed_by_context_once_each_without_links_or_ambiguous_copies(tmp_path: Path) -> None:
    write_icon(tmp_path / "oxygen/base/32x32/actions/go.png", 1)
    write_icon(tmp_path / "oxygen/base/32x32/actions/go-copy.png", 1)  # same bytes, same context: once
    (tmp_path / "oxygen/base/32x32/actions/go-link.png").symlink_to("go.png")
    write_icon(tmp_path / "gnome/32x32/places/folder.png", 2)
    write_icon(tmp_path / "Tango/32x32/status/both.png", 3)  # the same bytes in two contexts: dropped
    write_icon(tmp_path / "Tango/32x32/apps/both.png", 3)
    write_icon(tmp_path / "elementary-xfce/mimes/32/text.png", 4)  # elementary's name for mimetypes
    write_icon(tmp_path / "elementary-xfce/panel/32/clock.png", 5)  # not a class
    data = load_icons(image_size=8, root=tmp_path)
    names = [data.class_names[i] for i in data.labels]
    assert names == ["actions", "places", "mimetypes"]  # theme by theme, context by context
    assert data.inputs.shape == (3, 3, 8, 8)


def test_icons_name_the_missing_package(tmp_path: Path) -> None:
    write_icon(tmp_path / "oxygen/base/32x32/actions/go.png", 1)
    with pytest.raises(DatasetUnavailable, match="gnome-icon-theme"):
        load_icons(root=tmp_path)


def test_image_folder_needs_two_classes(tmp_path: Path) -> None:
    write_image(tmp_path / "only" / "a.png", 10, rgb=False)
    with pytest.raises(ValueError, match="at least 2 class subfolders"):
        load_image_folder(tmp_path)


def choice(value: str, control: str = "label") -> dict:
    return {"type": "choices", "from_name": control, "to_name": "image", "value": {"choices": [value]}}


def annotation(value: str, seconds: float | None, cancelled: bool = False, control: str = "label",
               **fields) -> dict:
    return {"was_cancelled": cancelled, "lead_time": seconds, "result": [choice(value, control)], **fields}


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


LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<Choices name="label" toName="image" choice="single"><Choice value="Cat"/><Choice value="Dog"/></Choices>'
    '<Choices name="quality" toName="image" choice="single"><Choice value="sharp"/><Choice value="blurry"/>'
    "</Choices></View>"
)


def first_choice_rule(task: dict) -> str | None:
    """The rule the loader had before it used the backend's: the first non-cancelled annotation's first
    choice, from any control."""
    for note in task.get("annotations") or []:
        if note.get("was_cancelled"):
            continue
        for result in note.get("result") or []:
            if result.get("type") == "choices" and result["value"].get("choices"):
                return result["value"]["choices"][0]
    return None


def test_label_studio_export_labels_are_the_backends(tmp_path: Path, capsys) -> None:
    """Ground truth first, else the latest non-cancelled annotation, only the label control's results."""
    write_image(tmp_path / "a.png", 20, rgb=False)
    write_image(tmp_path / "b.png", 220, rgb=False)
    tasks = [
        {"id": 1, "data": {"image": "a.png"}, "annotations": [  # a newer annotation, then the older ground truth
            annotation("Dog", 9.0, id=11, updated_at="2024-02-01T00:00:00Z"),
            annotation("Cat", 3.0, id=10, updated_at="2024-01-01T00:00:00Z", ground_truth=True)]},
        {"id": 2, "data": {"image": "b.png"}, "annotations": [  # a cancelled one, an older one, the latest
            annotation("Cat", 1.0, cancelled=True, id=20, updated_at="2024-04-01T00:00:00Z"),
            annotation("Cat", 5.0, id=21, updated_at="2024-01-01T00:00:00Z"),
            annotation("Dog", 7.0, id=22, updated_at="2024-03-01T00:00:00Z")]},
        {"id": 3, "data": {"image": "b.png"}, "annotations": [  # another control's result comes first
            {"id": 30, "lead_time": 2.0, "result": [choice("blurry", "quality"), choice("Dog")]}]},
        {"id": 4, "data": {"thumb": "b.png", "image": "a.png"}, "annotations": [annotation("Cat", 4.0, id=40)]},
        {"id": 5, "data": {"image": "a.png"}, "annotations": [  # only the other control: unlabeled
            annotation("sharp", 6.0, control="quality", id=50)]},
    ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    interface = parse_label_config(LABEL_CONFIG)
    backend = [task_label(task, interface) for task in tasks]
    assert [label.label if label else None for label in backend] == ["Cat", "Dog", "Dog", "Cat", None]
    old_rule = [first_choice_rule(task) for task in tasks]
    assert old_rule == ["Dog", "Cat", "blurry", "Cat", "sharp"]  # the old rule trains on other labels

    data = load_label_studio_export(export, image_size=8, label_config=LABEL_CONFIG)
    assert data.class_names == ("Cat", "Dog")
    assert [data.class_names[k] for k in data.labels] == [label.label for label in backend if label]
    assert data.lead_times.tolist() == [label.lead_time for label in backend if label] == [3.0, 7.0, 2.0, 4.0]
    assert abs(float(data.inputs[3].mean()) - 20 / 255) < 0.01  # the config's $image, not the first field
    assert load_dataset(str(export), image_size=8, label_config=LABEL_CONFIG).labels.tolist() == [0, 1, 1, 0]

    with pytest.raises(ValueError, match=r"2 Choices controls \['label', 'quality'\].*--label-config"):
        load_label_studio_export(export)  # two choices controls: which one is the label is not guessed
    out = tmp_path / "out"
    assert main(["--dataset", str(export), "--out", str(out), "--no-progress"]) == 2
    assert "--label-config FILE" in capsys.readouterr().err
    config_file = tmp_path / "label_config.xml"
    config_file.write_text(LABEL_CONFIG)
    assert main(["--dataset", str(export), "--label-config", str(config_file), "--out", str(out)]) == 2
    assert "'budget' (500) exceeds the pool size" in capsys.readouterr().err  # loaded: 4 items are too few
    assert main(["--dataset", str(export), "--label-config", str(tmp_path / "none.xml"), "--out", str(out)]) == 2
    assert "--label-config" in capsys.readouterr().err


def test_label_studio_export_infers_a_single_choices_control(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 20, rgb=False)
    tasks = [{"id": 1, "data": {"image": "a.png"}, "annotations": [annotation("Cat", 1.0)]},
             {"id": 2, "data": {"image": "a.png"}, "annotations": [annotation("Dog", 2.0)]}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    assert load_label_studio_export(export, image_size=8).labels.tolist() == [0, 1]
    export.write_text(json.dumps([{"id": 1, "data": {"image": "a.png"}, "annotations": []}]))
    with pytest.raises(ValueError, match="0 Choices controls"):
        load_label_studio_export(export)
    with pytest.raises(ValueError, match="label config: .*Image"):
        load_label_studio_export(export, label_config="<View><Text name='t' value='$text'/></View>")


def test_lognormal_costs_follow_the_difficulty_only_as_much_as_rho_says() -> None:
    from scipy.stats import pearsonr, spearmanr

    from autoal_bench.costs import LOGNORMAL_BASE_SECONDS, ambiguity, edge_density, item_costs, normal_scores
    from autoal_bench.datasets import load_digits_dataset

    dataset = load_digits_dataset()
    difficulty = normal_scores(ambiguity(dataset.inputs, dataset.labels))
    independent = item_costs(dataset, "lognormal", rho=0.0, sigma=1.0)
    correlated = item_costs(dataset, "lognormal", rho=0.7, sigma=1.0)
    assert abs(pearsonr(np.log(independent), difficulty)[0]) < 0.01  # rho = 0: nothing to do with difficulty
    assert abs(spearmanr(independent, difficulty)[0]) < 0.05
    assert pearsonr(np.log(correlated), difficulty)[0] > 0.6
    assert np.log(independent).std() == pytest.approx(1.0, abs=1e-6)  # sigma is the log-seconds' spread
    assert np.exp(np.log(independent).mean()) == pytest.approx(LOGNORMAL_BASE_SECONDS)
    assert spearmanr(independent, edge_density(dataset.inputs))[0] > 0.8  # predictable from the pixels
    np.testing.assert_array_equal(independent, item_costs(dataset, "lognormal", rho=0.0, sigma=1.0))
    with pytest.raises(ValueError, match="--cost-rho"):
        item_costs(dataset, "lognormal", rho=1.5)


def test_lognormal_costs_stay_bounded_when_the_visual_feature_is_heavy_tailed() -> None:
    """One extreme edge density must not make one item cost hours (Fashion-MNIST's 8.8-sd item did)."""
    from scipy.stats import spearmanr

    from autoal_bench.costs import LOGNORMAL_BASE_SECONDS, lognormal_seconds

    rng = np.random.default_rng(0)
    visual = rng.pareto(1.5, size=12000)  # heavy-tailed: moment-standardized, its maximum is dozens of sds out
    visual[0] = visual.max() * 50
    difficulty = rng.uniform(size=12000)
    log_seconds = np.log(lognormal_seconds(visual, difficulty, rho=0.3, sigma=1.0) / LOGNORMAL_BASE_SECONDS)
    assert np.abs(log_seconds).max() < 4.5  # N(0, 1) over 12,000 items: about 3.9 at most
    assert log_seconds.std() == pytest.approx(1.0, abs=1e-6)
    assert spearmanr(log_seconds, visual)[0] > 0.9  # still ordered by what there is to look at
