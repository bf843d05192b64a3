"""The hierarchical search space of the task model, written define-by-run for Optuna.

    family            small_cnn | frozen | resnet18          (``tuning.families``)
    image_size        sizes <= the images' own side (and the configured size)
    standardize       per-channel standardization or the fixed (x - 0.5) / 0.25
    augment           none | shift | shift_crop;  flip (only with ``tuning.flips``)
    loss              cross_entropy | label_smoothing -> epsilon | class_balanced | focal -> gamma
    small_cnn.        width, dropout, lr, weight_decay
    frozen.           features (pca | the pretrained backbone) -> pca_components (8-200: a cap, the PCA
                      keeps at most n - 1 of them on n training images), head (linear | mlp -> head_hidden),
                      dropout, lr, weight_decay
    resnet18.         dropout, lr, weight_decay

A parameter of a family is named ``<family>.<field>``, so a trial's record shows that it holds its own
family's parameters only. Training length is not a parameter: it is the resource the allocator grows.
``recipe`` turns a trial's parameters into ``ModelConfig`` fields; ``params_of`` is its inverse for the
incumbent (whose values are always inside the space: the choices include them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from autoal_engine.config import AUGMENTATIONS, LOSSES, ModelConfig
from autoal_engine.tuning.allocator import OutsideSpace

SIDES = (16, 24, 32, 48, 64)
CONDITIONAL = {"label_smoothing.epsilon": "label_smoothing", "focal.gamma": "focal_gamma"}
RANGES = {  # family -> field -> (low, high, log)
    "small_cnn": {"dropout": (0.05, 0.5, False), "lr": (3e-4, 1e-2, True), "weight_decay": (1e-6, 1e-2, True)},
    "frozen": {"dropout": (0.05, 0.5, False), "lr": (1e-3, 3e-2, True), "weight_decay": (1e-6, 1e-2, True)},
    "resnet18": {"dropout": (0.05, 0.5, False), "lr": (1e-4, 3e-3, True), "weight_decay": (1e-6, 1e-2, True)},
}
WIDTHS = (8, 16, 32)
MIN_COMPONENTS, MAX_COMPONENTS = 8, 200
HIDDEN = (64, 128, 256)


@dataclass(frozen=True)
class SpaceContext:
    """What bounds the space for one tuning."""

    families: tuple[str, ...]  # what trials may draw (tuning.families)
    image_sizes: tuple[int, ...]
    flips: bool
    pretrained: str | None  # the backbone whose weights pretrained_path holds, if any
    incumbent_family: str | None = None  # outside ``families``: in the space for the incumbent only

    @classmethod
    def build(cls, base: ModelConfig, families: tuple[str, ...], native_side: int, flips: bool) -> SpaceContext:
        sizes = {side for side in SIDES if side <= native_side} | {base.image_size}
        if native_side < SIDES[0]:
            sizes.add(max(8, native_side))
        pretrained = base.backbone if base.pretrained_path and base.backbone != "frozen" else None
        if base.backbone == "frozen" and base.features != "pca":
            pretrained = base.features
        extra = None if base.backbone in families else base.backbone
        return cls(tuple(families), tuple(sorted(sizes)), flips, pretrained, extra)


def suggest(trial: optuna.Trial, context: SpaceContext, incumbent: bool = False) -> None:
    """Draw one configuration into ``trial.params``. The incumbent's family is in the space even when
    ``tuning.families`` leaves it out; another trial that draws it raises OutsideSpace (drawn again)."""
    choices = [*context.families, *([context.incumbent_family] if context.incumbent_family else [])]
    family = trial.suggest_categorical("family", choices)
    if family not in context.families and not incumbent:
        raise OutsideSpace(family)
    trial.suggest_categorical("image_size", list(context.image_sizes))
    trial.suggest_categorical("standardize", [False, True])
    trial.suggest_categorical("augment", list(AUGMENTATIONS))
    if context.flips:
        trial.suggest_categorical("flip", [False, True])
    loss = trial.suggest_categorical("loss", list(LOSSES))
    if loss == "label_smoothing":
        trial.suggest_float("label_smoothing.epsilon", 0.02, 0.3)
    elif loss == "focal":
        trial.suggest_float("focal.gamma", 0.5, 4.0)
    if family == "small_cnn":
        trial.suggest_categorical("small_cnn.width", list(WIDTHS))
    elif family == "frozen":
        features = ["pca"] + ([context.pretrained] if context.pretrained else [])
        if trial.suggest_categorical("frozen.features", features) == "pca":
            # a cap, not a count: on n images the PCA keeps min(cap, n - 1) (models.PixelPCA), so a cap chosen
            # on few labels keeps its meaning as the labels grow (a count bounded by the fold size would stay
            # as small as the first tuning's folds)
            trial.suggest_int("frozen.pca_components", MIN_COMPONENTS, MAX_COMPONENTS, log=True)
        if trial.suggest_categorical("frozen.head", ["linear", "mlp"]) == "mlp":
            trial.suggest_categorical("frozen.head_hidden", list(HIDDEN))
    for name, (low, high, log) in RANGES[family].items():
        trial.suggest_float(f"{family}.{name}", low, high, log=log)


def recipe(params: dict[str, Any]) -> dict[str, Any]:
    """ModelConfig fields of a trial's parameters."""
    fields: dict[str, Any] = {}
    for name, value in params.items():
        if name == "family":
            fields["backbone"] = value
        elif name in CONDITIONAL:
            fields[CONDITIONAL[name]] = value
        else:
            fields[name.split(".", 1)[-1]] = value
    return fields


def params_of(config: ModelConfig, context: SpaceContext) -> dict[str, Any]:
    """The space's parameters that describe ``config`` (the incumbent), clipped into the space's ranges."""
    family = config.backbone
    params: dict[str, Any] = {"family": family, "image_size": config.image_size,
                              "standardize": config.standardize, "augment": config.augment, "loss": config.loss}
    if context.flips:
        params["flip"] = config.flip
    if config.loss == "label_smoothing":
        params["label_smoothing.epsilon"] = _clip(config.label_smoothing, 0.02, 0.3)
    elif config.loss == "focal":
        params["focal.gamma"] = _clip(config.focal_gamma, 0.5, 4.0)
    if family == "small_cnn":
        params["small_cnn.width"] = config.width if config.width in WIDTHS else 16
    elif family == "frozen":
        params["frozen.features"] = config.features
        if config.features == "pca":
            params["frozen.pca_components"] = int(_clip(config.pca_components, MIN_COMPONENTS, MAX_COMPONENTS))
        params["frozen.head"] = config.head
        if config.head == "mlp":
            params["frozen.head_hidden"] = config.head_hidden if config.head_hidden in HIDDEN else 128
    for name, (low, high, _) in RANGES[family].items():
        params[f"{family}.{name}"] = _clip(getattr(config, name), low, high)
    return params


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
