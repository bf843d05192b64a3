"""Engine configuration: plain dataclasses with defaults that work on a laptop CPU.

`EngineConfig()` is the CPU default (small CNN, short training). `EngineConfig.for_device("cuda")` gives
the larger GPU defaults (ResNet-18, more steps, mixed precision). `EngineConfig.paper()` reproduces the
choices of the released AutoAL code (binary votes, raw SearchNet logits, GMM threshold on the softmax
over samples, sigmoid temperature 1e11, regularizer without gradient, inert loss module), so the
corrected default can be measured against it.

Sections: `model` (task model and its training), `mixture` (how the candidates' scores combine),
`holdout` (the two cross-fitted FitNets behind the held-out accuracy), `search` (the opt-in AutoAL
strategy search), `cost` (label costs), `tuning` (the task model's configuration tuned from the labels),
`pruning` (which candidates the mixture keeps each round); the
candidate list, batch settings and seed are top-level.

Every config round-trips through `to_dict()` / `from_dict()`. `validate()` (called by `from_dict` and by
`Engine`) raises a `ValueError` naming the field, the value given and what is allowed, e.g.
`model.image_size: expected an integer, got '32' (str)`; an unknown field raises
`unknown config field model.foo`. The names in MOVED_FIELDS still load, with a logged deprecation warning.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import types
import typing
from collections.abc import Callable, Iterator
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

    # the model family: "small_cnn" | "resnet18" (trained end to end) | "frozen" (a frozen feature extractor,
    # ``features``, and a trained head, ``head``)
    backbone: str = "small_cnn"
    image_size: int = 32  # inputs are resized to image_size x image_size
    channels: int | None = None  # None: taken from the labeled inputs at fit time (1 gray, 3 RGB)
    standardize: bool = False  # per-channel (x - mean) / std of the training images; False: (x - 0.5) / 0.25
    embedding_dim: int = 64  # width of the penultimate embedding (small_cnn; resnet18 uses 512)
    width: int = 16  # small_cnn: channels of the first conv block (the next two have 2x and 4x)
    # frozen: "pca" (PCA-whitened pixels) | "small_cnn" | "resnet18" (that backbone with the weights of
    # pretrained_path, frozen; its pooled features)
    features: str = "pca"
    pca_components: int = 50  # frozen + pca: at most this many (and fewer than the training images)
    head: str = "linear"  # frozen: "linear" (embedding = the features) | "mlp" (one hidden ReLU layer)
    head_hidden: int = 128  # frozen + mlp: hidden width (the embedding)
    dropout: float = 0.3  # dropout before the classifier head; MC-dropout samples only this layer
    # optional backbone weights: a local state_dict file (torch.save), or torchvision weights "<arch>:<WEIGHTS>"
    # (e.g. "resnet18:IMAGENET1K_V1"; the arch must be the backbone's, or the features' for frozen) that
    # torchvision downloads once into its cache, $TORCH_HOME/hub/checkpoints; None: no download, ever
    pretrained_path: str | None = None
    train_steps: int = 300  # optimizer steps per retrain when ``epochs`` is None (capped for tiny sets)
    epochs: int | None = None  # passes over the labeled set (steps grow with it); None: ``train_steps``
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    # training-time augmentation: "none" | "shift" (up to 1/8 of the side) | "shift_crop" (shifts and crops
    # of 75-100% of the side, resized back); the old true / false still load as "shift" / "none"
    augment: str = "shift"
    flip: bool = False  # random horizontal flips (off by default: they change the meaning of some classes)
    # "cross_entropy" | "label_smoothing" (``label_smoothing``) | "class_balanced" (weights n / (C n_c)) |
    # "focal" (``focal_gamma``)
    loss: str = "cross_entropy"
    label_smoothing: float = 0.1
    focal_gamma: float = 2.0
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
class PruningConfig:
    """Adaptive pruning of the candidate pool (autoal_engine/pruning.py): each round every candidate earns a
    class-diversity reward (TAILOR) and an action-elimination rule keeps the ones whose reward interval
    reaches the leader's; the mixture (equal weights or the search) runs over the survivors."""

    enabled: bool = False
    window: int = 5  # rounds of rewards the rule looks at (the most recent)
    warmup: int = 2  # rounds of rewards before anything is pruned
    confidence: float = 1.0  # z: half-width of each candidate's interval in standard errors
    min_active: int = 3  # candidates that always stay (the best by mean reward)
    # relative slack: k is pruned only when its interval is below (1 - tolerance) x the leader's lower bound, so
    # candidates whose rewards differ by a consistent but small amount are not eliminated (0: the plain rule)
    tolerance: float = 0.0
    only_while_unsure: bool = False  # prune only while the model is unsure of the pool (regime_confidence)


@dataclass
class HoldoutConfig:
    """The two cross-fitted FitNets trained at every fit, each on one stratified half of the labeled set
    and evaluated on the other: the held-out accuracy (and, with the search on, its simulated AL round)."""

    fitnet_steps: int = 150  # training steps of each FitNet (same backbone as the task model)
    min_labels: int = 8  # below this (or fewer than 2 classes with 2 labels) no FitNets: no held-out accuracy


@dataclass
class TuningConfig:
    """Budgeted tuning of the task model's configuration (autoal_engine/tuning/): successive halving over the
    training epochs, TPE over a hierarchical space (input, family and its parameters, loss), repeated
    stratified k-fold CV of the labeled set, and guarded adoption (a challenger must beat the incumbent by
    more than its CV standard error)."""

    enabled: bool = True  # tune when due (docs/tuning.md: the rule held on fresh seeds); off: the fixed ``model``
    # seconds of one tuning: CPU seconds of the process on a CPU (the same work on an idle or a busy machine),
    # wall seconds on CUDA; the incumbent is always evaluated first
    budget_seconds: float = 20.0
    growth_factor: float = 1.5  # tune again when the labeled set has grown by this factor since the last tuning
    folds: int = 3  # CV folds (fewer when a class has fewer labels; below 2: no tuning)
    repeats: int = 1  # CV repetitions with other fold assignments
    families: tuple[str, ...] = ("small_cnn", "frozen")  # model families the space may try (CUDA adds resnet18)
    flips: bool = False  # whether the space may try horizontal flips
    min_epochs: int = 20  # the first rung of successive halving (training epochs)
    max_epochs: int = 180  # the last rung; the adopted configuration trains for its best rung's epochs
    reduction_factor: int = 3  # eta: a rung keeps the best 1/eta of the trials and trains them eta times longer
    max_trials: int = 30
    startup_trials: int = 8  # random trials before TPE models the results


@dataclass
class CostConfig:
    """Label-cost model and value-per-cost priority (spec section 10)."""

    # priority = benefit / cost**gamma: 1 is value per second, 0 ignores cost, above 1 a task twice as fast may be
    # 2**gamma times less informative and still come first (4 was measured and not adopted in session 24:
    # docs/benchmark.md, "Seconds weighed more than the benefit")
    gamma: float = 1.0
    min_observations: int = 5  # fewer timed labels: uniform cost (cold start)
    shrinkage_n0: float = 100.0  # weight of the model: n / (n + n0), the rest goes to the median
    clip_quantile: float = 0.95  # observed seconds above this quantile are winsorized (idle time)
    max_seconds: float = 3600.0  # anything above is treated as idle and clipped first
    ridge_alpha: float = 1.0
    exploration: float = 0.1  # share of the head of the queue picked by benefit alone while cost counts
    min_spearman: float = 0.2  # cross-validated rank correlation below which predicted costs are ignored
    # principal components of the embedding used as cost-model features (8 until session 19; 16 predicts the
    # seconds within a class better: docs/benchmark.md, "Cost features: 16 principal components instead of 8")
    features: int = 16
    within_class: bool = True  # seconds relative to the predicted class's median (cost.py); False: raw seconds
    # 0: gamma at every size; n0 > 0: gamma x n0 / (n0 + n) with n labels, so cost-awareness fades as the labels
    # grow (cost.faded_gamma; opt-in: docs/benchmark.md, "Cost-awareness that fades with the labels")
    gamma_halving_labels: float = 0.0
    # True: the head's regions (k-means on the top prefilter x b) come from the benefit, as if cost-blind, and cost
    # only picks each region's item (batch.diverse_batch's pick_by); False: the regions come from value per second
    # (the default until session 21: docs/benchmark.md, "Cost that picks within the benefit's regions")
    pick_within_regions: bool = True
    # principal components of the image itself (a 16 x 16 grey thumbnail, models.thumbnails) added to the cost
    # model's features; 0: the embedding's alone (the default until session 22: on the default head 16 saved 26% of
    # the seconds against 13% on the rule's ten seeds, 19% against 8.5% over fifteen; docs/benchmark.md, "Image cost
    # features on the default head")
    image_features: int = 16
    # with pick_within_regions: the shortlist of the cost-aware part of the head is the top prefilter x b items by
    # benefit, so each region has about prefilter members to choose the cheap one from; None: diversity_prefilter,
    # as cost-blind, the default until session 23 (on ten fresh seeds 20 saved 15.5% of the seconds against -11.5%
    # for None; docs/benchmark.md, "A wider shortlist for cost to choose from")
    prefilter: int | None = 20


@dataclass
class EngineConfig:
    """Every engine setting, by section: ``model`` (task model), ``mixture`` (how candidates combine),
    ``holdout`` (the held-out FitNets), ``search`` (the opt-in AutoAL search), ``cost`` (label costs),
    ``tuning`` (the model's configuration chosen from the labels), ``pruning`` (the candidates kept)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    batch_size: int = 20  # b: labels expected before the next re-rank (sets t and the diverse batch)
    # "kmeans": with several candidates, the first batch_size items of the queue are a diverse batch
    # (autoal_engine/batch.py); a single candidate keeps its own order | "none": the top-b of the priority
    batch_diversity: str = "kmeans"
    diversity_prefilter: int = 10  # the diverse batch is chosen among the top prefilter * batch_size
    # the regime: the model is unsure of the pool while its mean max-probability there (1 - its expected 0-1
    # loss) is below regime_confidence; docs/engine.md, "The regime"
    regime_confidence: float = 0.8
    # while unsure, the diverse batch is chosen among the top diversity_prefilter_unsure * batch_size (None: always
    # diversity_prefilter)
    diversity_prefilter_unsure: int | None = None
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
            config.tuning.budget_seconds = 120.0
            config.tuning.families = ("small_cnn", "frozen", "resnet18")
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
        if not isinstance(data, dict):
            raise ValueError(f"config: expected a mapping, got {data!r} ({type(data).__name__})")
        data = _legacy_values(_move_deprecated(dict(data)))
        sections = {name: _build(kind, data.pop(name, {}), name) for name, kind in SECTIONS.items()}
        config = _build(cls, data, "config", **sections)
        config.validate()
        config.strategies = tuple(config.strategies)
        return config

    def validate(self) -> None:
        """Raise ValueError for the first field of the wrong type (by its annotation) or out of range
        (RULES), as ``<section>.<field>: <what is allowed>, got <value>``."""
        for where, value, hint in _typed_fields(self, ""):
            problem = _type_problem(value, hint)
            if problem:
                raise ValueError(f"{where}: {problem}")
        for where, rule in RULES.items():
            value = _value_at(self, where)
            problem = None if value is None else rule(value)
            if problem:
                raise ValueError(f"{where}: {problem}")
        if self.tuning.min_epochs > self.tuning.max_epochs:
            raise ValueError(f"tuning.min_epochs: must be <= tuning.max_epochs ({self.tuning.max_epochs}), "
                             f"got {self.tuning.min_epochs!r}")
        if self.model.backbone == "frozen" and self.model.features != "pca" and not self.model.pretrained_path:
            raise ValueError(f"model.features: {self.model.features!r} needs model.pretrained_path (a local "
                             "state_dict of that backbone, or its torchvision weights); without one use 'pca'")
        name = weights_name(self.model.pretrained_path) if self.model.pretrained_path else None
        frozen = self.model.backbone == "frozen"
        if name and name[0] != (self.model.features if frozen else self.model.backbone):
            model = f"frozen with {self.model.features!r} features" if frozen else repr(self.model.backbone)
            raise ValueError(f"model.pretrained_path: {self.model.pretrained_path!r} are {name[0]} weights, but the "
                             f"model is {model}")


TORCHVISION_ARCHS: tuple[str, ...] = ("resnet18",)  # the backbones whose torchvision weights pretrained_path may name


def weights_name(reference: str) -> tuple[str, str] | None:
    """``(arch, member)`` when ``reference`` (a ``model.pretrained_path``) names torchvision weights,
    ``<arch>:<WEIGHTS_ENUM_MEMBER>`` such as ``resnet18:IMAGENET1K_V1``; None when it is a local path: an
    existing file, or a string without ':' or with a path separator. The syntax only (no torchvision, no
    network): a malformed name or an unknown arch raises ValueError; whether torchvision has that member is
    known when the model is built."""
    if os.path.isfile(reference) or ":" not in reference or "/" in reference or "\\" in reference:
        return None
    arch, member = reference.split(":", 1)
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(f"model.pretrained_path: {reference!r} is no file, nor torchvision weights of an arch "
                         f"in {list(TORCHVISION_ARCHS)} ('<arch>:<WEIGHTS>', e.g. 'resnet18:IMAGENET1K_V1')")
    if not member.isidentifier():
        raise ValueError(f"model.pretrained_path: {reference!r} is no file, nor a torchvision weights name "
                         "'<arch>:<WEIGHTS>' (e.g. 'resnet18:IMAGENET1K_V1')")
    return arch, member


# --------------------------------------------------------------------------- validation


def _one_of(*choices: Any) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"{value!r} is not one of {list(choices)}"


def _at_least(low: int, note: str = "") -> Callable[[Any], str | None]:
    return lambda value: None if value >= low else f"must be >= {low}{note}, got {value!r}"


def _above(low: float) -> Callable[[Any], str | None]:
    return lambda value: None if value > low else f"must be > {low}, got {value!r}"


def _within(low: float, high: float, brackets: str) -> Callable[[Any], str | None]:
    """``brackets`` "[]", "[)", "(]" or "()": whether each end is included."""

    def check(value: Any) -> str | None:
        above = value >= low if brackets[0] == "[" else value > low
        below = value <= high if brackets[1] == "]" else value < high
        return None if above and below else f"must be in {brackets[0]}{low}, {high}{brackets[1]}, got {value!r}"

    return check


def _device(value: str) -> str | None:
    base, _, index = value.partition(":")
    ok = value in ("auto", "cpu", "cuda") or (base == "cuda" and index.isdigit())
    return None if ok else f"{value!r} is not one of ['auto', 'cpu', 'cuda', 'cuda:N']"


def _threads(value: int) -> str | None:
    return None if value >= 0 else f"must be >= 1 (or 0 or null for torch's default), got {value!r}"


def _channels(value: int) -> str | None:
    return None if value in (1, 3) else f"{value!r} is not one of [1, 3] (or null: from the inputs)"


def _families(value: tuple[str, ...]) -> str | None:
    unknown = [family for family in value if family not in FAMILIES]
    if unknown or not value:
        return f"{list(value)!r} must be a non-empty list of {list(FAMILIES)}"
    return None


def _not_empty(value: Any) -> str | None:
    return None if len(value) >= 1 else f"at least one strategy is needed, got {list(value)!r}"


FAMILIES = ("small_cnn", "resnet18", "frozen")
AUGMENTATIONS = ("none", "shift", "shift_crop")
LOSSES = ("cross_entropy", "label_smoothing", "class_balanced", "focal")

# Range checks by field; a None value (an Optional field left unset) is not checked.
RULES: dict[str, Callable[[Any], str | None]] = {
    "model.backbone": _one_of(*FAMILIES),
    "model.width": _at_least(1),
    "model.features": _one_of("pca", "small_cnn", "resnet18"),
    "model.pca_components": _at_least(1),
    "model.head": _one_of("linear", "mlp"),
    "model.head_hidden": _at_least(1),
    "model.epochs": _at_least(1),
    "model.augment": _one_of(*AUGMENTATIONS),
    "model.loss": _one_of(*LOSSES),
    "model.label_smoothing": _within(0, 1, "[)"),
    "model.focal_gamma": _at_least(0),
    "model.image_size": _at_least(8),
    "model.channels": _channels,
    "model.embedding_dim": _at_least(1),
    "model.dropout": _within(0, 1, "()"),
    "model.train_steps": _at_least(1),
    "model.batch_size": _at_least(1),
    "model.inference_batch_size": _at_least(1),
    "model.mc_samples": _at_least(2),
    "model.device": _device,
    "model.threads": _threads,
    "mixture.candidate_scores": _one_of("rank", "vote"),
    "mixture.selection_ratio": _within(0, 1, "(]"),
    "holdout.fitnet_steps": _at_least(1),
    "search.searchnet_input": _one_of("meta", "image"),
    "search.weighting": _one_of("softmax", "logits"),
    "search.threshold": _one_of("gmm", "quantile"),
    "search.gmm_components": _at_least(1),
    "search.temperature": _above(0),
    "search.rho_start": _above(0),
    "search.rho_end": _above(0),
    "search.count_regularizer": _one_of("soft", "hard"),
    "search.loss_module": _one_of("joint", "inert"),
    "search.iterations": _at_least(1),
    "search.fitnet_every": _at_least(1),
    "search.hidden": _at_least(1),
    "tuning.budget_seconds": _at_least(0),
    "tuning.growth_factor": _above(1),
    "tuning.folds": _at_least(2),
    "tuning.repeats": _at_least(1),
    "tuning.families": _families,
    "tuning.min_epochs": _at_least(1),
    "tuning.max_epochs": _at_least(1),
    "tuning.reduction_factor": _at_least(2),
    "tuning.max_trials": _at_least(1),
    "tuning.startup_trials": _at_least(0),
    "pruning.window": _at_least(1),
    "pruning.warmup": _at_least(0),
    "pruning.confidence": _at_least(0),
    "pruning.min_active": _at_least(1),
    "pruning.tolerance": _within(0, 1, "[)"),
    "cost.gamma": _at_least(0),
    "cost.clip_quantile": _within(0, 1, "(]"),
    "cost.max_seconds": _above(0),
    "cost.exploration": _within(0, 1, "[)"),
    "cost.features": _at_least(0),
    "cost.gamma_halving_labels": _at_least(0),
    "cost.image_features": _at_least(0),
    "cost.prefilter": _at_least(1),
    "strategies": _not_empty,
    "batch_size": _at_least(1),
    "batch_diversity": _one_of("kmeans", "none"),
    "diversity_prefilter": _at_least(1),
    "diversity_prefilter_unsure": _at_least(1),
    "regime_confidence": _within(0, 1, "[]"),
    "seed": _at_least(0),
}


def _typed_fields(config: Any, prefix: str) -> Iterator[tuple[str, Any, Any]]:
    """(dotted name, value, resolved annotation) of every field, sections first checked as sections."""
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        where, value, hint = prefix + item.name, getattr(config, item.name), hints[item.name]
        yield where, value, hint
        if dataclasses.is_dataclass(hint) and isinstance(value, hint):
            yield from _typed_fields(value, where + ".")


def _type_problem(value: Any, hint: Any) -> str | None:
    """What is wrong with ``value`` for the annotation ``hint``, or None. bool is not an int; an int is a
    float; an Optional field accepts None; a tuple[str, ...] field accepts a list or tuple of strings."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    kind = next(option for option in options if option is not type(None))
    got = f"got {value!r} ({type(value).__name__})"
    if kind is bool:
        return None if isinstance(value, bool) else f"expected true or false, {got}"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else f"expected an integer, {got}"
    if kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"expected a number, {got}"
        return None if math.isfinite(value) else f"expected a finite number, {got}"
    if kind is str:
        return None if isinstance(value, str) else f"expected a string, {got}"
    if typing.get_origin(kind) is tuple:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return None if ok else f"expected a list of strings, {got}"
    if dataclasses.is_dataclass(kind):
        return None if isinstance(value, kind) else f"expected a {kind.__name__}, {got}"
    raise TypeError(f"no type check for the annotation {hint!r}")  # a new field type: add its check here


def _value_at(config: EngineConfig, where: str) -> Any:
    value: Any = config
    for name in where.split("."):
        value = getattr(value, name)
    return value


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "mixture": MixtureConfig,
    "holdout": HoldoutConfig,
    "search": SearchConfig,
    "cost": CostConfig,
    "tuning": TuningConfig,
    "pruning": PruningConfig,
}

# Renamed fields, old -> new; from_dict reads the old names for one release after 0.1.0, with a warning
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


def _legacy_values(data: dict[str, Any]) -> dict[str, Any]:
    """Values of an older type that still load: ``model.augment`` true / false -> "shift" / "none"."""
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("augment"), bool):
        data["model"] = {**model, "augment": "shift" if model["augment"] else "none"}
    return data


def _build(kind: type, values: dict[str, Any], where: str, **extra: Any) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {values!r} ({type(values).__name__})")
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown config field {where}.{unknown[0]}")
    return kind(**values, **extra)
