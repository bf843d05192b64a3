"""Engine configuration: plain dataclasses with defaults that work on a laptop CPU.

`EngineConfig()` is the CPU default (small CNN, short training). `EngineConfig.for_device("cuda")` gives
the larger GPU defaults (ResNet-18, more steps, mixed precision). `EngineConfig.paper()` reproduces the
choices of the released AutoAL code (binary votes, raw SearchNet logits, GMM threshold on the softmax
over samples, sigmoid temperature 1e11, regularizer without gradient, inert loss module), so the
corrected default can be measured against it.

Every config round-trips through `to_dict()` / `from_dict()`; unknown or ill-typed fields raise a
`ValueError` naming the field.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_STRATEGIES: tuple[str, ...] = (
    "entropy",
    "margin",
    "least_confidence",
    "bald",
    "mean_std",
    "var_ratio",
    "coreset",
    "kmeans",
    "badge",
    "typiclust",
    "loss",
)


@dataclass
class ModelConfig:
    """Task model (and FitNet) backbone and training recipe."""

    backbone: str = "small_cnn"  # "small_cnn" | "resnet18"
    image_size: int = 32  # inputs are resized to image_size x image_size
    channels: int | None = None  # None: taken from the labeled inputs at fit time (1 gray, 3 RGB)
    embedding_dim: int = 64  # width of the penultimate embedding (small_cnn; resnet18 uses 512)
    dropout: float = 0.3  # dropout before the classifier head; MC-dropout samples only this layer
    pretrained_path: str | None = None  # optional local state_dict for the backbone; never downloaded
    train_steps: int = 300  # optimizer steps per retrain (independent of the labeled-set size)
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    augment: bool = True  # random shifts of up to 1/8 of the image while training
    loss_head: bool = True  # LL4AL loss-prediction module trained jointly (spec section 7, LPL)
    loss_head_weight: float = 1.0
    loss_head_detach_at: float = 0.6  # fraction of training after which LPL stops shaping the backbone
    inference_batch_size: int = 512
    mc_samples: int = 20  # T dropout passes through the head only
    device: str = "auto"  # "auto" (cuda when available) | "cpu" | "cuda" | "cuda:N"
    mixed_precision: bool = True  # used on CUDA only
    threads: int | None = None  # torch CPU threads; None leaves torch's default


def _moved_field(name: str, section: str) -> property:
    """``SearchConfig.<name>``, deprecated: reads and writes ``EngineConfig.<section>.<name>`` of the
    EngineConfig that holds this SearchConfig, with a logged warning."""

    def target(search: SearchConfig) -> Any:
        owner = search.__dict__.get("_owner")
        if owner is None:
            raise AttributeError(f"search.{name} moved to {section}.{name}; set it on EngineConfig.{section}")
        log.warning("config field search.%s is deprecated; use %s.%s", name, section, name)
        return getattr(owner, section)

    return property(lambda self: getattr(target(self), name), lambda self, value: setattr(target(self), name, value),
                    doc=f"Deprecated alias of ``EngineConfig.{section}.{name}``.")


@dataclass
class SearchConfig:
    """AutoAL-R strategy search (spec sections 8-9). Defaults are the corrected variant.

    Off by default: on the offline benchmark the learned weights did no better than equal weights over the
    same candidates (docs/benchmark.md, "Learned or equal weights"). With the search off the mixture is
    the equal-weight average of the candidates' percentile ranks."""

    enabled: bool = False  # True: learn per-sample strategy weights (AutoAL search) at every fit
    searchnet_input: str = "meta"  # "meta": MLP on per-sample meta-features | "image": CNN on pixels (paper)
    weighting: str = "softmax"  # "softmax" over strategies per sample | "logits": raw weights (paper)
    threshold: str = "gmm"  # "gmm": stable GMM quantile | "quantile": exact empirical quantile
    gmm_components: int = 5
    temperature: float | None = None  # None: annealed rho*std(z); a number fixes T (paper: 1e-11 on p)
    rho_start: float = 0.5
    rho_end: float = 0.1
    count_regularizer: str = "soft"  # "soft": Eq. 9 on the soft count | "hard": no gradient (paper)
    regularizer_weight: float = 1.0
    loss_module: str = "joint"  # "joint": LPL loss shapes SearchNet | "inert": trained, unused (paper)
    loss_module_weight: float = 1.0
    iterations: int = 200  # bi-level iterations
    fitnet_every: int = 2  # one FitNet (inner, head only) step every this many SearchNet steps
    hidden: int = 64
    lr: float = 1e-2
    fitnet_lr: float = 1e-3  # the FitNet heads' learning rate inside the search

    # Deprecated aliases (one release): these settings moved out of the search, see MOVED_FIELDS.
    candidate_scores = _moved_field("candidate_scores", "mixture")
    selection_ratio = _moved_field("selection_ratio", "mixture")
    fitnet_steps = _moved_field("fitnet_steps", "holdout")
    min_labels = _moved_field("min_labels", "holdout")


@dataclass
class MixtureConfig:
    """How the candidates' scores become one per item (autoal_engine/mixture.py), with or without the search."""

    candidate_scores: str = "rank"  # "rank": percentile ranks | "vote": binary top-ceil(tN) (paper)
    # t, the share of the pool one round labels: sets the votes' top-ceil(tN) and the search's target count;
    # None: batch_size / pool size, clipped to [0.02, 0.5]
    selection_ratio: float | None = None


@dataclass
class HoldoutConfig:
    """The two cross-fitted FitNets trained at every fit, each on one stratified half of the labeled set
    and evaluated on the other: the held-out accuracy (and, with the search on, its simulated AL round)."""

    fitnet_steps: int = 150  # training steps of each FitNet (same backbone as the task model)
    min_labels: int = 8  # below this (or fewer than 2 classes with 2 labels) no FitNets: no held-out accuracy


@dataclass
class CostConfig:
    """Label-cost model and value-per-cost priority (spec section 10)."""

    gamma: float = 0.5  # priority = benefit / cost**gamma; 0 ignores cost
    min_observations: int = 5  # fewer timed labels: uniform cost (cold start)
    shrinkage_n0: float = 100.0  # weight of the model: n / (n + n0), the rest goes to the median
    clip_quantile: float = 0.95  # observed seconds above this quantile are winsorized (idle time)
    max_seconds: float = 3600.0  # anything above is treated as idle and clipped first
    ridge_alpha: float = 1.0
    exploration: float = 0.1  # share of a budgeted batch picked cost-agnostically
    min_spearman: float = 0.2  # cross-validated rank correlation below which predicted costs are ignored
    features: int = 8  # principal components of the embedding used as cost-model features


@dataclass
class EngineConfig:
    """Every engine setting, by section: ``model`` (task model), ``mixture`` (how candidates combine),
    ``holdout`` (the held-out FitNets), ``search`` (the opt-in AutoAL search), ``cost`` (label costs)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    batch_size: int = 20  # b: labels expected before the next re-rank (sets t and the diverse batch)
    # "kmeans": with several candidates, the first batch_size items of the queue are a diverse batch
    # (autoal_engine/batch.py); a single candidate keeps its own order | "none": the top-b of the priority
    batch_diversity: str = "kmeans"
    diversity_prefilter: int = 10  # the diverse batch is chosen among the top prefilter * batch_size
    seed: int = 0

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "search" and isinstance(value, SearchConfig):
            value.__dict__["_owner"] = self  # for the deprecated aliases (search.fitnet_steps, ...)

    @classmethod
    def for_device(cls, device: str) -> EngineConfig:
        """Defaults for a device: CPU keeps the small CNN, CUDA gets ResNet-18 and longer training."""
        config = cls()
        if device.startswith("cuda"):
            config.model = ModelConfig(
                backbone="resnet18",
                image_size=64,
                embedding_dim=512,
                train_steps=1000,
                batch_size=128,
                inference_batch_size=1024,
                device=device,
            )
            config.holdout.fitnet_steps = 400
            config.search.iterations = 400
        else:
            config.model.device = device
        return config

    @classmethod
    def paper(cls) -> EngineConfig:
        """The released AutoAL code's choices (spec section 3), for ablations."""
        config = cls()
        config.strategies = ("least_confidence", "margin", "entropy", "kmeans", "bald", "var_ratio", "mean_std")
        config.batch_diversity = "none"  # the released code takes the top-b
        config.mixture.candidate_scores = "vote"
        config.search = SearchConfig(
            searchnet_input="image",
            weighting="logits",
            threshold="gmm",
            temperature=1e-11,
            count_regularizer="hard",
            loss_module="inert",
        )
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineConfig:
        """The config of ``to_dict()`` output or of a partial dict (missing fields keep their defaults).

        The old names in MOVED_FIELDS (``search.fitnet_steps``, ...) are still read, with a logged
        deprecation warning; given together with the new name, the old one wins (the backend merges
        AUTOAL_ENGINE_CONFIG over the full default dict, so an old name there is the user's value)."""
        data = _move_deprecated(dict(data))
        sections = {name: _build(kind, data.pop(name, {}), name) for name, kind in SECTIONS.items()}
        config = _build(cls, data, "config", **sections)
        config.strategies = tuple(config.strategies)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the first field with an impossible value."""
        checks = [
            ("model.backbone", self.model.backbone in ("small_cnn", "resnet18")),
            ("model.image_size", self.model.image_size >= 8),
            ("model.channels", self.model.channels in (None, 1, 3)),
            ("model.dropout", 0.0 < self.model.dropout < 1.0),
            ("model.train_steps", self.model.train_steps >= 1),
            ("model.mc_samples", self.model.mc_samples >= 2),
            ("mixture.candidate_scores", self.mixture.candidate_scores in ("rank", "vote")),
            ("search.searchnet_input", self.search.searchnet_input in ("meta", "image")),
            ("search.weighting", self.search.weighting in ("softmax", "logits")),
            ("search.threshold", self.search.threshold in ("gmm", "quantile")),
            ("search.count_regularizer", self.search.count_regularizer in ("soft", "hard")),
            ("search.loss_module", self.search.loss_module in ("joint", "inert")),
            ("search.iterations", self.search.iterations >= 1),
            ("cost.gamma", 0.0 <= self.cost.gamma <= 1.0),
            ("cost.exploration", 0.0 <= self.cost.exploration < 1.0),
            ("strategies", len(self.strategies) >= 1),
            ("batch_size", self.batch_size >= 1),
            ("batch_diversity", self.batch_diversity in ("kmeans", "none")),
            ("diversity_prefilter", self.diversity_prefilter >= 1),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"config field {name!r} has an invalid value")


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "mixture": MixtureConfig,
    "holdout": HoldoutConfig,
    "search": SearchConfig,
    "cost": CostConfig,
}

# Renamed fields, old -> new; from_dict reads the old names for one release (deprecated in 0.2)
MOVED_FIELDS: dict[str, str] = {
    "search.candidate_scores": "mixture.candidate_scores",
    "search.selection_ratio": "mixture.selection_ratio",
    "search.fitnet_steps": "holdout.fitnet_steps",
    "search.min_labels": "holdout.min_labels",
}


def _move_deprecated(data: dict[str, Any]) -> dict[str, Any]:
    """Copy the sections that hold old names, moving each old name's value to its new place."""
    for old, new in MOVED_FIELDS.items():
        old_section, old_name = old.split(".")
        new_section, new_name = new.split(".")
        values = data.get(old_section)
        if not isinstance(values, dict) or old_name not in values:
            continue
        target = data.get(new_section, {})
        if not isinstance(target, dict):
            continue  # _build reports the ill-typed section
        values = data[old_section] = dict(values)
        target = data[new_section] = dict(target)
        if new_name in target and target[new_name] != values[old_name]:
            log.warning("config fields %s = %r and %s = %r both given; using %s (the deprecated name)",
                        old, values[old_name], new, target[new_name], old)
        log.warning("config field %s is deprecated; use %s", old, new)
        target[new_name] = values.pop(old_name)
    return data


def _build(kind: type, values: dict[str, Any], where: str, **extra: Any) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"config field {where!r} must be a mapping")
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown config field {where}.{unknown[0]}")
    return kind(**values, **extra)
