"""What the task model's training loop and the head's share: the mini-batch order and the optimizer.

- `minibatches`: index tensors of ``steps`` batches, in passes over a random permutation of the items
  (a new permutation when fewer than a batch are left in the current one);
- `adam_with_cosine`: Adam (``lr``, ``weight_decay``) with a cosine learning-rate schedule over the steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from autoal_engine.config import ModelConfig


def minibatches(n: int, batch: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` index tensors of ``batch`` of n items. The permutations are drawn from ``generator`` as the
    batches are taken, so a caller that draws from it between batches (augmentation) keeps its order."""
    order, position = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if position + batch > n:
            order, position = torch.randperm(n, generator=generator), 0
        yield order[position:position + batch]
        position += batch


def adam_with_cosine(parameters: Iterable[torch.nn.Parameter], config: ModelConfig, steps: int
                     ) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.CosineAnnealingLR]:
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
