"""The shared per-sample outputs every candidate strategy reads, computed in one pass over a pool.

The task model's pass over a pool produces, per sample: the softmax probabilities (dropout off), the
penultimate embedding, the loss-prediction head's output, and a digest of T MC-dropout samples taken
through the head only (Gal, Islam & Ghahramani, ICML 2017). The digest keeps memory at O(N * C)
instead of O(T * N * C):

- ``mc_mean_probs``     p_bar = 1/T sum_t p^(t)
- ``mc_mean_entropy``   1/T sum_t H[p^(t)]
- ``mc_std``            1/C sum_c sqrt(E_t[(p_c^(t))^2] - (E_t p_c^(t))^2)
- ``mc_mode_fraction``  max_c #{t : argmax p^(t) = c} / T

Diversity strategies also need the labeled set's embeddings (``labeled_embeddings``). The cost model may read
the images themselves (``thumbnails``, with ``cost.image_features``); no strategy does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

EPS = 1e-12


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats along the last axis: H[p] = -sum_c p_c log p_c."""
    p = np.clip(probs, EPS, 1.0)
    return -(probs * np.log(p)).sum(axis=-1)


def mc_digest(mc_probs: np.ndarray) -> dict[str, np.ndarray]:
    """Summarize MC samples shaped (T, N, C) into the four per-sample statistics above."""
    mc_probs = np.asarray(mc_probs, dtype=np.float64)
    if mc_probs.ndim != 3:
        raise ValueError(f"mc_probs must be shaped (T, N, C); got {mc_probs.shape}")
    t, n, c = mc_probs.shape
    mean = mc_probs.mean(axis=0)
    variance = np.clip((mc_probs**2).mean(axis=0) - mean**2, 0.0, None)
    votes = mc_probs.argmax(axis=2)  # (T, N)
    counts = np.zeros((n, c), dtype=np.int64)
    for row in votes:
        counts[np.arange(n), row] += 1
    return {
        "mc_mean_probs": mean.astype(np.float32),
        "mc_mean_entropy": entropy(mc_probs).mean(axis=0).astype(np.float32),
        "mc_std": np.sqrt(variance).mean(axis=1).astype(np.float32),
        "mc_mode_fraction": (counts.max(axis=1) / t).astype(np.float32),
    }


@dataclass
class PoolOutputs:
    """Per-sample model outputs over one pool (N samples, C classes, D embedding dims)."""

    probs: np.ndarray  # (N, C)
    embeddings: np.ndarray  # (N, D)
    mc_mean_probs: np.ndarray  # (N, C)
    mc_mean_entropy: np.ndarray  # (N,)
    mc_std: np.ndarray  # (N,)
    mc_mode_fraction: np.ndarray  # (N,)
    predicted_loss: np.ndarray  # (N,); zeros when the model has no loss head
    labeled_embeddings: np.ndarray  # (L, D)
    batch_size: int = 20  # b: how many labels the next round takes (sets k for batch-aware strategies)
    seed: int = 0
    thumbnails: np.ndarray | None = None  # (N, P) the images as the cost model reads them; None: not asked for

    def __post_init__(self) -> None:
        n = len(self.probs)
        if self.probs.ndim != 2 or n == 0:
            raise ValueError(f"probs must be a non-empty (N, C) array; got shape {self.probs.shape}")
        for name in ("embeddings", "mc_mean_probs", "mc_mean_entropy", "mc_std", "mc_mode_fraction",
                     "predicted_loss", "thumbnails"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows; probs has {n}")
        if self.labeled_embeddings.ndim != 2 or self.labeled_embeddings.shape[1] != self.embeddings.shape[1]:
            raise ValueError("labeled_embeddings must be (L, D) with the pool embeddings' D")

    @property
    def size(self) -> int:
        return len(self.probs)

    @property
    def num_classes(self) -> int:
        return self.probs.shape[1]

    @classmethod
    def from_arrays(
        cls,
        probs: np.ndarray,
        *,
        mc_probs: np.ndarray | None = None,
        embeddings: np.ndarray | None = None,
        predicted_loss: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
        labeled_labels: np.ndarray | None = None,  # deprecated and ignored: no strategy reads them
        batch_size: int = 20,
        seed: int = 0,
    ) -> PoolOutputs:
        """Build outputs from plain arrays (tests, notebooks). Missing parts get neutral values:
        MC samples default to T=2 copies of ``probs``, embeddings to ``probs``, no labeled set."""
        if labeled_labels is not None:
            log.warning("PoolOutputs.from_arrays: labeled_labels is deprecated and ignored")
        probs = np.asarray(probs, dtype=np.float32)
        n = len(probs)
        if mc_probs is None:
            mc_probs = np.stack([probs, probs])
        emb = probs if embeddings is None else np.asarray(embeddings, dtype=np.float32)
        lab = np.zeros((0, emb.shape[1]), np.float32) if labeled_embeddings is None else labeled_embeddings
        return cls(
            probs=probs,
            embeddings=emb,
            predicted_loss=np.zeros(n, np.float32) if predicted_loss is None else np.asarray(predicted_loss),
            labeled_embeddings=np.asarray(lab, dtype=np.float32),
            batch_size=batch_size,
            seed=seed,
            **mc_digest(mc_probs),
        )
