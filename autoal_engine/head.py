"""The task model's head on cached embeddings: the fast path's outputs, training and held-out accuracy.

The task model is backbone -> embedding h(x) -> dropout -> linear head (models.py). Everything after the
backbone is cheap, so once the pool's embeddings are cached (embedding_cache.py) a new label needs no
pass over images:

- `head_outputs`: the pool outputs every strategy reads (probabilities, MC-dropout digest through the head,
  predicted loss) from cached vectors; it is also the second half of `models.pool_outputs`, so a ranking
  from cached vectors equals the ranking from images under the same model;
- `train_head`: retrain the head on the labeled items' cached embeddings (Adam, cosine schedule, the
  configured loss, dropout before the head as in the full fit; no augmentation: the embeddings are of the
  plain images), warm-started from the current head;
- `head_cv_accuracy`: stratified k-fold accuracy of heads trained on the cached embeddings, the held-out
  accuracy that costs milliseconds instead of two extra networks. It reads high on the labels the backbone
  was trained on (their embeddings have seen their labels); on labels newer than the backbone it is
  a plain held-out estimate.

A cached vector is the embedding, then the image's thumbnail when the cost model reads images
(``cost.image_features``; models.thumbnails), then one column: the loss-prediction head's output (0 without a
loss head), since the loss head reads backbone stages that the cache does not keep.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from autoal_engine.config import ModelConfig
from autoal_engine.losses import class_weights, per_sample_loss
from autoal_engine.pool_outputs import PoolOutputs, mc_digest
from autoal_engine.training import adam_with_cosine, minibatches


def split_vectors(vectors: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(embeddings (N, width), predicted loss (N,), thumbnails (N, P) or None) of cached vectors: (N, width + 1)
    without thumbnails, (N, width + P + 1) with them."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] < width + 1:
        raise ValueError(f"vectors: expected an (N, D + 1) array of cached {width}-d embeddings, got shape "
                         f"{vectors.shape}")
    thumbs = vectors[:, width:-1] if vectors.shape[1] > width + 1 else None
    return vectors[:, :width], vectors[:, -1], thumbs


def join_vectors(embeddings: np.ndarray, predicted_loss: np.ndarray,
                 thumbnails: np.ndarray | None = None) -> np.ndarray:
    """The cached form (N, D [+ P] + 1) of embeddings, thumbnails and the loss head's predictions."""
    parts = [embeddings] + ([] if thumbnails is None else [thumbnails]) + [predicted_loss[:, None]]
    return np.concatenate(parts, axis=1).astype(np.float32)


@torch.no_grad()
def head_outputs(head: torch.nn.Linear, dropout: float, embeddings: np.ndarray, predicted_loss: np.ndarray,
                 labeled_embeddings: np.ndarray, *, chunk: int, batch_size: int, seed: int, mc_samples: int,
                 device: torch.device, thumbnails: np.ndarray | None = None) -> PoolOutputs:
    """Pool outputs from embeddings: p = softmax(W h + b); MC dropout: T passes of head(m_t * h / (1 - p))
    with Bernoulli masks from a generator seeded ``seed + 7919``, drawn ``chunk`` rows at a time (the same
    draws as a pass over images in chunks of that size). ``mc_samples = 0``: the digest of the plain pass."""
    generator = torch.Generator(device="cpu").manual_seed(seed + 7919)
    keep = 1.0 - dropout
    head = head.to(device).eval()
    n = len(embeddings)
    arrays: dict[str, np.ndarray] = {}  # filled chunk by chunk: no per-chunk pieces to join (one copy at 10^6)
    for start in range(0, n, chunk):
        emb = torch.from_numpy(np.ascontiguousarray(embeddings[start:start + chunk], dtype=np.float32)).to(device)
        probs = torch.softmax(head(emb).float(), dim=1)
        if mc_samples > 0:
            masks = (torch.rand((mc_samples, *emb.shape), generator=generator) < keep).to(device)
            mc_probs = torch.softmax(head(emb.unsqueeze(0) * masks / keep), dim=-1)
        else:
            mc_probs = probs.unsqueeze(0)
        digest = mc_digest(mc_probs.cpu().numpy())
        digest["probs"] = probs.cpu().numpy()
        digest["embeddings"] = emb.cpu().numpy()
        digest["predicted_loss"] = np.asarray(predicted_loss[start:start + chunk], dtype=np.float32)
        for key, value in digest.items():
            if key not in arrays:
                arrays[key] = np.empty((n, *value.shape[1:]), dtype=value.dtype)
            arrays[key][start:start + len(value)] = value
    return PoolOutputs(labeled_embeddings=labeled_embeddings.astype(np.float32), batch_size=batch_size, seed=seed,
                       thumbnails=thumbnails, **arrays)


def train_head(head: torch.nn.Linear, embeddings: np.ndarray, labels: np.ndarray, config: ModelConfig,
               steps: int, seed: int) -> torch.nn.Linear:
    """A copy of ``head`` trained ``steps`` Adam steps (lr, weight decay, cosine schedule and loss of
    ``config``) on mini-batches of the embeddings, with dropout ``config.dropout`` before it."""
    generator = torch.Generator().manual_seed(seed)
    trained = copy.deepcopy(head).cpu().train()
    x_all = torch.from_numpy(np.asarray(embeddings, dtype=np.float32))
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    optimizer, scheduler = adam_with_cosine(trained.parameters(), config, steps)
    weights = class_weights(y_all, trained.out_features) if config.loss == "class_balanced" else None
    dropout = torch.nn.Dropout(config.dropout)
    for index in minibatches(len(x_all), min(config.batch_size, len(x_all)), steps, generator):
        loss = per_sample_loss(trained(dropout(x_all[index])), y_all[index], config, weights).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return trained.eval()


def head_cv_accuracy(head: torch.nn.Linear, embeddings: np.ndarray, labels: np.ndarray, config: ModelConfig,
                     steps: int, seed: int, folds: int = 3) -> float | None:
    """Stratified k-fold accuracy (tuning.folds.cv_folds: k <= ``folds``, every test fold holds every class
    with two or more labels) of heads trained, each from a fresh initialization, on the other folds'
    embeddings; None when no two classes have two labels."""
    from autoal_engine.tuning.folds import cv_folds  # here: the tuning package imports models, which import this

    labels = np.asarray(labels)
    pairs = cv_folds(labels, folds, repeats=1, seed=seed)
    if not pairs:
        return None
    correct = tested = 0
    for fold, (train_idx, test_idx) in enumerate(pairs):
        torch.manual_seed(seed + fold)
        fresh = torch.nn.Linear(head.in_features, head.out_features)
        trained = train_head(fresh, embeddings[train_idx], labels[train_idx], config, steps, seed + fold)
        with torch.no_grad():
            predicted = trained(torch.from_numpy(np.asarray(embeddings[test_idx], dtype=np.float32))).argmax(1)
        correct += int((predicted.numpy() == labels[test_idx]).sum())
        tested += len(test_idx)
    return correct / tested
