"""Per-sample classification losses of the task model (``model.loss``).

- ``cross_entropy``: l_i = -log p_{i, y_i}.
- ``label_smoothing``: cross-entropy against (1 - eps) onehot(y_i) + eps / C (Szegedy et al., "Rethinking the
  Inception Architecture", CVPR 2016); eps = ``model.label_smoothing``.
- ``class_balanced``: w_{y_i} * l_i with w_c = n / (C n_c) over the training labels (scikit-learn's
  "balanced" weights; classes absent from the labels get weight 0).
- ``focal``: (1 - p_{i, y_i})^gamma * l_i (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017);
  gamma = ``model.focal_gamma``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autoal_engine.config import ModelConfig


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """w_c = n / (C n_c) for the classes present, 0 for the others."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    present = counts > 0
    weights = torch.zeros(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor, config: ModelConfig,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """The loss of each sample (N,) under ``config.loss``; ``weights`` are the class weights of
    ``class_balanced``."""
    if config.loss == "cross_entropy":
        return F.cross_entropy(logits, labels, reduction="none")
    if config.loss == "label_smoothing":
        return F.cross_entropy(logits, labels, reduction="none", label_smoothing=config.label_smoothing)
    if config.loss == "class_balanced":
        if weights is None:
            raise ValueError("model.loss: 'class_balanced' needs the class weights")
        return F.cross_entropy(logits, labels, reduction="none") * weights.to(logits.device)[labels]
    if config.loss == "focal":
        log_p = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
        return -((1.0 - log_p.exp()) ** config.focal_gamma) * log_p
    raise ValueError(f"model.loss: unknown loss {config.loss!r}")
