"""Training-time augmentation of the task model (``model.augment``, ``model.flip``), on batches of
images (n, C, S, S) in [0, 1], drawn from a seeded generator so a fit is reproducible.

- ``shift``: each image moved by up to S/8 pixels in each direction, zero padding (the CPU default).
- ``shift_crop``: a random crop of 75-100% of the side at a random place, resized back to S (bilinear):
  zoom and shift in one affine resampling.
- ``flip`` (separate, off by default): a horizontal mirror with probability 1/2; it changes the meaning of
  some classes (digits, text, arrows), so it is never on unless asked for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autoal_engine.config import ModelConfig


def augment(images: torch.Tensor, config: ModelConfig, generator: torch.Generator) -> torch.Tensor:
    if config.augment == "shift":
        images = random_shift(images, generator)
    elif config.augment == "shift_crop":
        images = random_crop(images, generator)
    if config.flip:
        images = random_flip(images, generator)
    return images


def random_shift(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to 1/8 of its side (zero padding)."""
    size = images.shape[-1]
    pad = max(1, size // 8)
    padded = F.pad(images, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (len(images), 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + size, dx:dx + size] for i, (dy, dx) in enumerate(offsets)])


def random_crop(images: torch.Tensor, generator: torch.Generator, smallest: float = 0.75) -> torch.Tensor:
    """A crop of side s in [smallest, 1] (of the image's) at a random position, resized back."""
    n = len(images)
    scale = smallest + (1.0 - smallest) * torch.rand(n, generator=generator)
    room = 1.0 - scale  # the crop's centre may move this far from the image's (in [-1, 1] coordinates)
    shift = (2 * torch.rand(n, 2, generator=generator) - 1) * room[:, None]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mirrored = torch.rand(len(images), generator=generator) < 0.5
    return torch.where(mirrored.to(images.device)[:, None, None, None], images.flip(-1), images)
