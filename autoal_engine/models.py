"""Task-model backbones, the training loop, and the one-pass pool outputs.

`TaskModel` = backbone -> embedding h(x) -> dropout -> linear head, plus an optional loss-prediction
module (Yoo & Kweon, "Learning Loss for Active Learning", CVPR 2019) that reads the backbone's stage
features. The dropout sits right before the head so MC-dropout (Gal et al., ICML 2017) runs T stochastic
passes through the head only, over the cached embedding, with BatchNorm untouched (spec section 6.5).

Families (``model.backbone``): ``small_cnn`` (three conv blocks, fast on 28-64 px gray or RGB images, the
CPU default), ``resnet18`` (torchvision, the CUDA default; 3x3 stride-1 stem for small images), and
``frozen``: a frozen feature extractor (PCA-whitened pixels, or a pretrained backbone) with a trained linear
or one-hidden-layer head. Pretrained weights (``model.pretrained_path``, pretrained_state) come from a local
file, or from torchvision's cache when the path names torchvision weights (``resnet18:IMAGENET1K_V1``).

Inputs are normalized inside the model: (x - 0.5) / 0.25, or with ``model.standardize`` by the training
images' per-channel mean and standard deviation (kept as buffers, so a saved model normalizes alike).
"""

from __future__ import annotations

import logging
import math
import os
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from torch import nn

from autoal_engine.augmentation import augment
from autoal_engine.config import ModelConfig, weights_name
from autoal_engine.data import ImageSource
from autoal_engine.head import head_outputs
from autoal_engine.losses import class_weights, per_sample_loss
from autoal_engine.pool_outputs import PoolOutputs
from autoal_engine.training import adam_with_cosine, minibatches

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"model.device: {device!r} was requested but CUDA is not available")
    return torch.device(device)


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (w, 2w, 4w channels; w = 16 by default), global pooling, a linear embedding."""

    def __init__(self, in_channels: int, embedding_dim: int, width: int = 16) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width)
        blocks, previous = [], in_channels
        for width in widths:
            blocks.append(nn.Sequential(
                nn.Conv2d(previous, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ))
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.embed = nn.Sequential(nn.Linear(widths[-1], embedding_dim), nn.ReLU(inplace=True))
        self.stage_channels = widths
        self.embedding_dim = embedding_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            stages.append(x.mean(dim=(2, 3)))
            if i < len(self.blocks) - 1:
                x = F.max_pool2d(x, 2)
        return self.embed(stages[-1]), stages


class ResNet18Backbone(nn.Module):
    """torchvision ResNet-18 without its classifier; embedding = the 512-d pooled features.

    From scratch the stem is a 3x3 stride-1 convolution (for small images). With pretrained weights the
    pretrained 7x7 stride-2 stem is kept, since the later layers were trained on its features; for
    ``in_channels`` other than 3 its filters are summed over the RGB channels and repeated (gray images
    are treated as R = G = B)."""

    def __init__(self, in_channels: int, pretrained_path: str | None = None) -> None:
        super().__init__()
        import torchvision

        net = torchvision.models.resnet18(weights=None)
        if pretrained_path:
            load_pretrained(net, pretrained_path, "resnet18")
            if in_channels != 3:
                rgb = net.conv1.weight.data
                net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
                net.conv1.weight.data.copy_(rgb.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels)
        else:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.stage_channels = (64, 128, 256, 512)
        self.embedding_dim = 512

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        stages = []
        for layer in self.layers:
            x = layer(x)
            stages.append(x.mean(dim=(2, 3)))
        return stages[-1], stages


class PixelPCA(nn.Module):
    """Frozen PCA whitening of the flattened pixels, fitted on the training images:
    z = (x - mu) V_k^T / sqrt(lambda_k), with k = min(components, n - 1, d) principal directions V_k and
    their variances lambda_k (scikit-learn's PCA). The output always has ``components`` columns (those
    beyond k are 0), so the head's shape does not depend on the number of labels."""

    def __init__(self, in_features: int, components: int) -> None:
        super().__init__()
        self.components = components
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("projection", torch.zeros(components, in_features))

    def fit(self, images: torch.Tensor) -> None:
        flat = images.reshape(len(images), -1).double().cpu().numpy()
        k = min(self.components, len(flat) - 1, flat.shape[1])
        projection = torch.zeros_like(self.projection)
        if k >= 1:
            pca = PCA(n_components=k, svd_solver="full" if len(flat) <= 1000 else "randomized", random_state=0)
            pca.fit(flat)
            scale = np.sqrt(np.maximum(pca.explained_variance_, 1e-8 * pca.explained_variance_.max()))
            projection[:k] = torch.from_numpy(pca.components_ / scale[:, None]).float()
            self.mean.copy_(torch.from_numpy(pca.mean_).float())
        self.projection.copy_(projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(len(x), -1) - self.mean) @ self.projection.T


class FrozenFeatures(nn.Module):
    """The ``frozen`` family: a frozen extractor (``model.features``: PCA-whitened pixels, or a backbone with
    the weights of ``model.pretrained_path``) and, for ``model.head = "mlp"``, one trained ReLU layer.
    Embedding = the features (linear head) or the hidden layer (mlp); the loss module reads both."""

    def __init__(self, config: ModelConfig, in_channels: int) -> None:
        super().__init__()
        if config.features == "pca":
            self.extractor: nn.Module = PixelPCA(in_channels * config.image_size ** 2, config.pca_components)
            dim = config.pca_components
        else:
            if config.features == "small_cnn":
                self.extractor = SmallCNN(in_channels, config.embedding_dim, config.width)
                load_pretrained(self.extractor, config.pretrained_path or "", "small_cnn")
            else:
                self.extractor = ResNet18Backbone(in_channels, config.pretrained_path)
            self.extractor.requires_grad_(False)
            dim = self.extractor.embedding_dim
        self.hidden = (nn.Sequential(nn.Linear(dim, config.head_hidden), nn.ReLU(inplace=True))
                       if config.head == "mlp" else None)
        self.stage_channels = (dim,) if self.hidden is None else (dim, config.head_hidden)
        self.embedding_dim = dim if self.hidden is None else config.head_hidden

    def prepare(self, images: torch.Tensor) -> None:
        """Fit the PCA (when the features are PCA) on the normalized training images."""
        if isinstance(self.extractor, PixelPCA):
            self.extractor.fit(images)

    def train(self, mode: bool = True) -> FrozenFeatures:
        super().train(mode)
        self.extractor.eval()  # frozen: BatchNorm statistics stay those of the pretrained weights
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with torch.no_grad():
            features = self.extractor(x)
            if isinstance(features, tuple):
                features = features[0]
        if self.hidden is None:
            return features, [features]
        embedding = self.hidden(features)
        return embedding, [features, embedding]


def pretrained_state(reference: str) -> dict[str, torch.Tensor]:
    """The state_dict ``model.pretrained_path`` names: a local file saved with torch.save (never a download),
    or torchvision weights ``<arch>:<WEIGHTS>`` (``resnet18:IMAGENET1K_V1``), read from torchvision's cache
    ($TORCH_HOME/hub/checkpoints), which torchvision fills with one download the first time."""
    name = weights_name(reference)
    if name is None:
        if not os.path.isfile(reference):
            raise ValueError(f"model.pretrained_path: no such file {reference!r}")
        try:
            return torch.load(reference, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file is a configuration error
            raise ValueError(f"model.pretrained_path: cannot read weights from {reference!r}: {error}") from error
    import torchvision

    arch, member = name
    members = torchvision.models.get_model_weights(arch)
    if member not in members.__members__:
        raise ValueError(f"model.pretrained_path: {reference!r}: torchvision has no {member} weights for {arch}; "
                         f"it has {list(members.__members__)}")
    weights = members[member]
    try:
        return weights.get_state_dict(progress=False, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - offline, a broken cache file: a configuration error
        raise ValueError(f"model.pretrained_path: cannot fetch {reference!r} from {weights.url} into "
                         f"{torch.hub.get_dir()}/checkpoints: {error}") from error


def load_pretrained(module: nn.Module, reference: str, family: str) -> None:
    """Load the weights of ``model.pretrained_path`` (pretrained_state) into ``module``, a ``family``
    backbone. Keys that do not match (a classifier head, a stem for another channel count) are skipped and
    logged. torchvision weights of another arch are neither fetched nor loaded: validation rejects them for
    the configured family, so only a tuning trial of another family meets them (as a local file of another
    backbone, whose keys all mismatch, they leave its initialization as it is)."""
    name = weights_name(reference)
    if name and name[0] != family:
        log.info("%s are %s weights: the %s backbone keeps its initialization", reference, name[0], family)
        return
    state = pretrained_state(reference)
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(usable, strict=False)
    log.info("loaded %d of %d weight tensors from %s", len(usable), len(own), reference)


class LossPredictionHead(nn.Module):
    """LL4AL loss module: per stage GAP -> FC(32) -> ReLU, concatenated -> FC(1)."""

    def __init__(self, stage_channels: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        self.stage_fcs = nn.ModuleList([nn.Linear(c, width) for c in stage_channels])
        self.out = nn.Linear(width * len(stage_channels), 1)

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        parts = [F.relu(fc(s)) for fc, s in zip(self.stage_fcs, stages, strict=True)]
        return self.out(torch.cat(parts, dim=1)).squeeze(1)


def loss_ranking_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """LL4AL pairwise margin loss: mean over pairs (i, B-1-i) of
    max(0, margin - sign(l_i - l_j) * (lhat_i - lhat_j)), each pair counted once."""
    half = len(predicted) // 2
    if half == 0:
        return predicted.sum() * 0.0
    pred_i, pred_j = predicted[:half], predicted.flip(0)[:half]
    sign = torch.sign(target[:half] - target.flip(0)[:half])
    return F.relu(margin - sign * (pred_i - pred_j)).mean()


class TaskModel(nn.Module):
    """Backbone -> embedding -> dropout -> linear head (+ loss-prediction head)."""

    def __init__(self, config: ModelConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if config.backbone == "small_cnn":
            self.backbone: nn.Module = SmallCNN(in_channels, config.embedding_dim, config.width)
            if config.pretrained_path:
                load_pretrained(self.backbone, config.pretrained_path, "small_cnn")
        elif config.backbone == "resnet18":
            self.backbone = ResNet18Backbone(in_channels, config.pretrained_path)
        elif config.backbone == "frozen":
            self.backbone = FrozenFeatures(config, in_channels)
        else:
            raise ValueError(f"model.backbone: unknown backbone {config.backbone!r}")
        dim = self.backbone.embedding_dim
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(dim, num_classes)
        self.loss_head = LossPredictionHead(self.backbone.stage_channels) if config.loss_head else None
        self.register_buffer("input_mean", torch.full((1, in_channels, 1, 1), 0.5))
        self.register_buffer("input_std", torch.full((1, in_channels, 1, 1), 0.25))

    def prepare(self, images: torch.Tensor, standardize: bool) -> None:
        """Before training: the input normalization (per-channel statistics of ``images`` when
        ``standardize``) and whatever the backbone fits on its training images (the PCA)."""
        if standardize:
            self.input_mean.copy_(images.mean(dim=(0, 2, 3)).view_as(self.input_mean))
            self.input_std.copy_(images.std(dim=(0, 2, 3)).clamp_min(1e-3).view_as(self.input_std))
        if hasattr(self.backbone, "prepare"):
            self.backbone.prepare(self.normalize(images))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor, detach_loss_features: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (logits, embedding, predicted loss)."""
        embedding, stages = self.backbone(self.normalize(x))
        logits = self.head(self.dropout(embedding))
        if self.loss_head is None:
            return logits, embedding, torch.zeros(len(x), device=x.device)
        if detach_loss_features:
            stages = [s.detach() for s in stages]
        return logits, embedding, self.loss_head(stages)


def _autocast(device: torch.device, config: ModelConfig):
    enabled = device.type == "cuda" and config.mixed_precision
    dtype = torch.bfloat16 if enabled and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def train_model(model: TaskModel, images: torch.Tensor, labels: torch.Tensor, config: ModelConfig,
                steps: int, seed: int, device: torch.device) -> TaskModel:
    """Train from scratch for a fixed number of steps: Adam, cosine schedule, the configured loss
    (losses.py) on augmented batches (augmentation.py), plus the LL4AL loss weighted by
    ``loss_head_weight`` (its features detached after ``loss_head_detach_at``)."""
    generator = torch.Generator().manual_seed(seed)
    model.prepare(images, config.standardize)
    model.to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = adam_with_cosine(trainable, config, steps)
    weights = class_weights(labels, model.head.out_features) if config.loss == "class_balanced" else None
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda" and config.mixed_precision
                                  and not torch.cuda.is_bf16_supported())
    detach_step = int(config.loss_head_detach_at * steps)
    batches = minibatches(len(images), min(config.batch_size, len(images)), steps, generator)
    for step, index in enumerate(batches):
        x = images[index]
        x = augment(x, config, generator)
        x, y = x.to(device, non_blocking=True), labels[index].to(device, non_blocking=True)
        with _autocast(device, config):
            logits, _, predicted_loss = model(x, detach_loss_features=step >= detach_step)
            per_sample = per_sample_loss(logits.float(), y, config, weights)
            loss = per_sample.mean()
            if model.loss_head is not None:
                loss = loss + config.loss_head_weight * loss_ranking_loss(predicted_loss.float(),
                                                                          per_sample.detach())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
    model.eval()
    return model


THUMBNAIL_SIZE = 16  # side of the grey thumbnail the cost model may read (cost.image_features)


class Embedded(NamedTuple):
    """One deterministic pass over images: logits (N, C), embeddings (N, D), the loss head's prediction (N,),
    and, when asked for, thumbnails (N, THUMBNAIL_SIZE**2), else None."""

    logits: np.ndarray
    embeddings: np.ndarray
    predicted_loss: np.ndarray
    thumbnails: np.ndarray | None


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """The image itself as the cost model reads it: the mean over channels of the model's input (N, C, H, W),
    average-pooled to THUMBNAIL_SIZE x THUMBNAIL_SIZE and flattened, (N, THUMBNAIL_SIZE**2). What an image
    shows (how much ink, how many edges, how cluttered it is) drives labeling time, and a classifier's
    embedding is trained to ignore most of it."""
    grey = images.float().mean(dim=1, keepdim=True)
    return F.adaptive_avg_pool2d(grey, THUMBNAIL_SIZE).flatten(1)


@torch.no_grad()
def embed(model: TaskModel, source: ImageSource, config: ModelConfig, channels: int,
          device: torch.device, with_thumbnails: bool = False) -> Embedded:
    """Deterministic pass: logits, embeddings, predicted loss (and thumbnails) as numpy arrays."""
    model.to(device).eval()
    logits, embeddings, losses, thumbs = [], [], [], []
    for _, chunk in source.batches(config.inference_batch_size, config.image_size, channels):
        with _autocast(device, config):
            out, emb, loss = model(chunk.to(device))
        logits.append(out.float().cpu().numpy())
        embeddings.append(emb.float().cpu().numpy())
        losses.append(loss.float().cpu().numpy())
        if with_thumbnails:
            thumbs.append(thumbnails(chunk).numpy())
    return Embedded(np.concatenate(logits), np.concatenate(embeddings), np.concatenate(losses),
                    np.concatenate(thumbs) if with_thumbnails else None)


def pool_outputs(model: TaskModel, source: ImageSource, config: ModelConfig, channels: int,
                 device: torch.device, labeled_embeddings: np.ndarray, batch_size: int, seed: int,
                 mc_samples: int, with_thumbnails: bool = False) -> PoolOutputs:
    """One pass over the pool: probabilities, embeddings, predicted loss and the MC-dropout digest (and the
    thumbnails the cost model reads, ``with_thumbnails``).

    The backbone runs once per item (`embed`); everything after it is `head.head_outputs`, the same code
    the fast path runs on cached vectors. MC dropout: h -> head(mask_t * h / (1 - p)) for t = 1..T with
    Bernoulli masks from a seeded generator, so scores are reproducible and cost T head evaluations, not
    T backbone passes. ``mc_samples=0`` skips the sampling (no strategy needs it).
    """
    embedded = embed(model, source, config, channels, device, with_thumbnails)
    return head_outputs(model.head, model.dropout.p, embedded.embeddings, embedded.predicted_loss,
                        labeled_embeddings, chunk=config.inference_batch_size, batch_size=batch_size, seed=seed,
                        mc_samples=mc_samples, device=device, thumbnails=embedded.thumbnails)


def steps_for(labeled: int, base_steps: int) -> int:
    """Training steps: the configured count, fewer for tiny sets (about 60 passes over the data)."""
    return int(min(base_steps, max(30, math.ceil(60 * labeled / 16))))


def training_steps(config: ModelConfig, labeled: int, base_steps: int | None = None) -> int:
    """Optimizer steps of one fit on ``labeled`` items: ceil(epochs * n / batch) when ``config.epochs`` is
    set (training grows with the labels), else ``steps_for(n, base_steps or config.train_steps)``."""
    if config.epochs is not None:
        return max(1, math.ceil(config.epochs * labeled / min(config.batch_size, labeled)))
    return steps_for(labeled, base_steps if base_steps is not None else config.train_steps)
