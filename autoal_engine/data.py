"""Image inputs: validation, channel and size normalization, chunked loading.

The engine takes either a numpy array of images shaped (N, H, W) or (N, C, H, W) with C in {1, 3} and
float values in [0, 1] (uint8 arrays are accepted and divided by 255), or a list of image file paths.
`ImageSource` wraps both and yields float tensors (n, C, S, S) chunk by chunk, resized to the configured
size, so a pool of any length is processed in bounded memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from autoal_engine.cost import check_seconds

MIN_SIDE = 8
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P"}  # "P" is resolved after conversion, see _load_path


class ImageSource:
    """A validated sequence of images (array or file paths) that loads in chunks."""

    def __init__(self, inputs: np.ndarray | Sequence[str | os.PathLike], name: str = "inputs") -> None:
        self.name = name
        self._paths: list[str] | None = None
        self._array: np.ndarray | None = None
        if isinstance(inputs, np.ndarray):
            self._array = _check_array(inputs, name)
        elif isinstance(inputs, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in inputs):
            self._paths = [os.fspath(p) for p in inputs]
        else:
            raise ValueError(
                f"{name}: expected a numpy array (N, H, W) / (N, C, H, W) or a list of image file paths; "
                f"got {type(inputs).__name__}"
            )
        if len(self) == 0:
            raise ValueError(f"{name}: is empty")

    def __len__(self) -> int:
        return len(self._array) if self._array is not None else len(self._paths or [])

    def channels(self) -> int:
        """1 when every image is grayscale, else 3."""
        if self._array is not None:
            return 1 if self._array.ndim == 3 else int(self._array.shape[1])
        for path in self._paths or []:
            with _open(path, self.name) as image:
                if image.mode not in GRAY_MODES or (image.mode == "P" and _palette_has_color(image)):
                    return 3
        return 1

    def native_side(self, sample: int = 100) -> int:
        """The images' own resolution: the shorter side (for files, the median over the first ``sample``)."""
        if self._array is not None:
            return int(min(self._array.shape[-2:]))
        sides = []
        for path in (self._paths or [])[:sample]:
            with _open(path, self.name) as image:
                sides.append(min(image.size))
        return int(np.median(sides))

    def load(self, start: int, stop: int, size: int, channels: int) -> torch.Tensor:
        """Images start..stop as a float32 tensor (n, channels, size, size) in [0, 1]."""
        if self._array is not None:
            chunk = torch.from_numpy(np.ascontiguousarray(self._array[start:stop]))
            chunk = chunk.float() / 255.0 if chunk.dtype == torch.uint8 else chunk.float()
            if chunk.ndim == 3:
                chunk = chunk.unsqueeze(1)
            chunk = _to_channels(chunk, channels)
            if chunk.shape[-2:] != (size, size):
                chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True,
                                      align_corners=False).clamp_(0.0, 1.0)
            return chunk
        images = [_load_path(p, size, channels, self.name) for p in self._paths[start:stop]]  # type: ignore[index]
        return torch.stack(images)

    def batches(self, batch_size: int, size: int, channels: int) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (start, tensor) chunks covering the whole source in order."""
        for start in range(0, len(self), batch_size):
            yield start, self.load(start, min(start + batch_size, len(self)), size, channels)

    def load_all(self, size: int, channels: int) -> torch.Tensor:
        return self.load(0, len(self), size, channels)


def _check_array(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim not in (3, 4):
        raise ValueError(f"{name}: expected shape (N, H, W) or (N, C, H, W); got {array.shape}")
    if array.ndim == 4 and array.shape[1] not in (1, 3):
        raise ValueError(
            f"{name}: channel axis must be second with 1 or 3 channels (N, C, H, W); got {array.shape}"
            " (for channels-last arrays use array.transpose(0, 3, 1, 2))"
        )
    if min(array.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"{name}: images must be at least {MIN_SIDE} px on each side; got {array.shape[-2:]}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name}: expected float values in [0, 1] or uint8; got dtype {array.dtype}")
    if len(array) and not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if len(array) and (array.min() < -1e-6 or array.max() > 1.0 + 1e-6):
        raise ValueError(
            f"{name}: values must be in [0, 1]; got range [{array.min():.3g}, {array.max():.3g}]"
            " (divide 0-255 images by 255)"
        )
    return array


def _to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _open(path: str, name: str) -> Image.Image:
    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"{name}: cannot read image {path!r}: {error}") from error


def flatten(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode`` ("L" or "RGB") with its transparent pixels composited over white.

    A browser shows a transparent PNG on Label Studio's white page, so that is what the annotator labels.
    PIL's plain ``convert`` drops the alpha channel instead and shows whatever colour the file keeps under
    the transparent pixels: black in most files, stray colours in others (40% of the RGBA icons of
    Debian's Oxygen, GNOME, Tango and elementary themes), a background the annotator never saw.
    """
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert(mode)


def _palette_has_color(image: Image.Image) -> bool:
    rgb = np.asarray(flatten(image, "RGB"))
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


def _load_path(path: str, size: int, channels: int, name: str) -> torch.Tensor:
    with _open(path, name) as image:
        try:
            image = flatten(image, "L" if channels == 1 else "RGB")
        except OSError as error:
            raise ValueError(f"{name}: cannot decode image {path!r}: {error}") from error
        if min(image.size) < MIN_SIDE:
            raise ValueError(f"{name}: image {path!r} is smaller than {MIN_SIDE} px")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def check_labels(labels: Sequence, n: int, classes: Sequence | None = None) -> tuple[tuple, np.ndarray]:
    """Validate labels for n inputs; return (classes, class indices). Needs at least two distinct classes."""
    labels = list(labels) if not isinstance(labels, np.ndarray) else labels.tolist()
    if len(labels) != n:
        raise ValueError(f"labels: got {len(labels)} labels for {n} inputs")
    for label in labels:
        if label is None or (isinstance(label, float) and not np.isfinite(label)):
            raise ValueError(f"labels: contains a missing or NaN label ({label!r})")
    if classes is None:
        classes = sorted(set(labels), key=lambda c: (str(type(c)), c))
    classes = tuple(classes)
    if len(set(classes)) != len(classes):
        raise ValueError("classes: contains duplicates")
    index = {c: i for i, c in enumerate(classes)}
    unknown = [label for label in labels if label not in index]
    if unknown:
        raise ValueError(f"labels: {unknown[0]!r} is not one of the classes {list(classes)}")
    if len(set(labels)) < 2:
        raise ValueError(f"labels: need at least two different classes to train; got only {labels[0]!r}")
    return classes, np.array([index[label] for label in labels], dtype=np.int64)


def check_costs(costs: Sequence[float] | np.ndarray | None, n: int, name: str = "costs") -> np.ndarray:
    """Seconds per item as float64, NaN where unknown; each known value must be > 0."""
    if costs is None:
        return np.full(n, np.nan)
    try:
        values = np.asarray(costs, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: must be numbers (seconds), NaN where unknown") from error
    return check_seconds(values, n, name=name, allow_nan=True)
