"""Engine configuration: sections, round trips, the deprecated old names, and error messages."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from autoal_engine.config import MOVED_FIELDS, EngineConfig, SearchConfig
from autoal_engine.engine import CHECKPOINT, Engine
from tests.conftest import fast_config

# EngineConfig().to_dict() at commit 9b40ab4, before mixture.* and holdout.* existed: what older checkpoints
# and AUTOAL_ENGINE_CONFIG values written against the full default dict hold.
OLD_DEFAULT_DICT = {
    "model": {"backbone": "small_cnn", "image_size": 32, "channels": None, "embedding_dim": 64, "dropout": 0.3,
              "pretrained_path": None, "train_steps": 300, "batch_size": 64, "lr": 0.002, "weight_decay": 0.0005,
              "augment": True, "loss_head": True, "loss_head_weight": 1.0, "loss_head_detach_at": 0.6,
              "inference_batch_size": 512, "mc_samples": 20, "device": "auto", "mixed_precision": True,
              "threads": None},
    "search": {"enabled": False, "candidate_scores": "rank", "searchnet_input": "meta", "weighting": "softmax",
               "threshold": "gmm", "gmm_components": 5, "temperature": None, "rho_start": 0.5, "rho_end": 0.1,
               "count_regularizer": "soft", "regularizer_weight": 1.0, "loss_module": "joint",
               "loss_module_weight": 1.0, "fitnet_steps": 150, "iterations": 200, "fitnet_every": 2, "hidden": 64,
               "lr": 0.01, "fitnet_lr": 0.001, "selection_ratio": None, "min_labels": 8},
    "cost": {"gamma": 0.5, "min_observations": 5, "shrinkage_n0": 100.0, "clip_quantile": 0.95,
             "max_seconds": 3600.0, "ridge_alpha": 1.0, "exploration": 0.1, "min_spearman": 0.2, "features": 8},
    "strategies": ["entropy", "margin", "least_confidence", "bald", "mean_std", "var_ratio", "coreset", "kmeans",
                   "badge", "typiclust", "loss"],
    "batch_size": 20,
    "batch_diversity": "kmeans",
    "diversity_prefilter": 10,
    "seed": 0,
}


def old_layout(config: EngineConfig) -> dict:
    """``config.to_dict()`` as the code before the move wrote it: the moved fields under ``search``, without
    the fields added since (the tuning and pruning sections, the model's new recipe fields, cost.within_class,
    the regime's shortlist) and with the boolean augment."""
    data = config.to_dict()
    for added in ("tuning", "pruning", "regime_confidence", "diversity_prefilter_unsure"):
        data.pop(added)
    data["model"] = {name: value for name, value in data["model"].items() if name in OLD_DEFAULT_DICT["model"]}
    data["model"]["augment"] = data["model"]["augment"] != "none"
    data["cost"] = {name: value for name, value in data["cost"].items() if name in OLD_DEFAULT_DICT["cost"]}
    for old, new in MOVED_FIELDS.items():
        new_section, name = new.split(".")
        data["search"][old.split(".")[1]] = data[new_section].pop(name)
    for section in {new.split(".")[0] for new in MOVED_FIELDS.values()}:
        assert not data.pop(section)
    return data


def defaults_of_the_old_layout() -> EngineConfig:
    """Today's defaults with the defaults that changed since the old layout: cost.gamma was 0.5 (it is 1.0
    with cost.within_class, benchmark.md "Cost relative to the class") and cost.features 8 (16 since session 19,
    benchmark.md "Cost features"). A field the old layout lacks takes today's default when loaded."""
    config = EngineConfig()
    config.cost.gamma, config.cost.features = 0.5, 8
    return config


def test_the_old_default_layout_is_what_old_layout_writes():
    expected = {**OLD_DEFAULT_DICT, "strategies": tuple(OLD_DEFAULT_DICT["strategies"])}
    assert old_layout(defaults_of_the_old_layout()) == expected


def test_sections_round_trip():
    for config in (EngineConfig(), EngineConfig.for_device("cuda"), EngineConfig.paper()):
        assert EngineConfig.from_dict(config.to_dict()) == config
    assert set(EngineConfig().to_dict()) >= {"model", "mixture", "holdout", "search", "cost"}


def test_the_old_default_dict_loads_with_a_deprecation_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="autoal_engine.config"):
        config = EngineConfig.from_dict(OLD_DEFAULT_DICT)
    assert config == defaults_of_the_old_layout()
    for old, new in MOVED_FIELDS.items():
        assert f"config field {old} is deprecated; use {new}" in caplog.text


def test_old_names_in_a_partial_dict_set_the_new_fields(caplog):
    old = {"search": {"fitnet_steps": 40, "iterations": 40, "candidate_scores": "vote", "min_labels": 12,
                      "selection_ratio": 0.25}}
    with caplog.at_level(logging.WARNING, logger="autoal_engine.config"):
        config = EngineConfig.from_dict(old)
    assert (config.holdout.fitnet_steps, config.holdout.min_labels) == (40, 12)
    assert (config.mixture.candidate_scores, config.mixture.selection_ratio) == ("vote", 0.25)
    assert config.search.iterations == 40
    assert "search.fitnet_steps is deprecated" in caplog.text
    assert old == {"search": {"fitnet_steps": 40, "iterations": 40, "candidate_scores": "vote", "min_labels": 12,
                              "selection_ratio": 0.25}}  # the caller's dict is left as it was


def test_an_old_name_merged_over_the_new_defaults_wins():
    """The backend deep-merges AUTOAL_ENGINE_CONFIG over the full default dict: an old name is the user's."""
    merged = EngineConfig.for_device("cuda").to_dict()
    merged["search"]["fitnet_steps"] = 40
    assert EngineConfig.from_dict(merged).holdout.fitnet_steps == 40


def test_the_old_attribute_names_still_set_the_moved_fields(caplog):
    config = EngineConfig()
    with caplog.at_level(logging.WARNING, logger="autoal_engine.config"):
        config.search.fitnet_steps = 30
        config.search.candidate_scores = "vote"
    assert config.holdout.fitnet_steps == 30 and config.search.fitnet_steps == 30
    assert config.mixture.candidate_scores == "vote"
    assert "search.fitnet_steps is deprecated; use holdout.fitnet_steps" in caplog.text
    copied = copy.deepcopy(config)
    copied.search.min_labels = 3
    assert (copied.holdout.min_labels, config.holdout.min_labels) == (3, 8)
    config.search = SearchConfig(iterations=5)  # a replaced section is linked again
    config.search.min_labels = 4
    assert config.holdout.min_labels == 4
    with pytest.raises(AttributeError, match="holdout.fitnet_steps"):
        SearchConfig().fitnet_steps  # noqa: B018 - a SearchConfig of its own has no holdout section


def test_a_checkpoint_with_the_old_config_layout_loads_and_ranks_the_same(digits, tmp_path):
    images, labels = digits
    config = fast_config()
    config.holdout.fitnet_steps = 20
    engine = Engine(config).fit(images[:60], labels[:60])
    engine.save(tmp_path)
    state = torch.load(tmp_path / CHECKPOINT, map_location="cpu", weights_only=True)
    state["config"] = old_layout(engine.config)
    assert "holdout" not in state["config"] and state["config"]["search"]["fitnet_steps"] == 20
    torch.save(state, tmp_path / CHECKPOINT)
    loaded = Engine.load(tmp_path)
    assert loaded.config == engine.config
    pool = images[60:120]
    assert np.array_equal(loaded.rank(pool).priority, engine.rank(pool).priority)


BAD_VALUES = [
    ({"model": {"backbone": "resnet99"}},
     "model.backbone: 'resnet99' is not one of ['small_cnn', 'resnet18', 'frozen']"),
    ({"model": {"image_size": "32"}}, "model.image_size: expected an integer, got '32' (str)"),
    ({"model": {"image_size": 32.0}}, "model.image_size: expected an integer, got 32.0 (float)"),
    ({"model": {"image_size": True}}, "model.image_size: expected an integer, got True (bool)"),
    ({"model": {"image_size": 4}}, "model.image_size: must be >= 8, got 4"),
    ({"model": {"channels": 2}}, "model.channels: 2 is not one of [1, 3] (or null: from the inputs)"),
    ({"model": {"dropout": 1}}, "model.dropout: must be in (0, 1), got 1"),
    ({"model": {"dropout": "0.3"}}, "model.dropout: expected a number, got '0.3' (str)"),
    ({"model": {"lr": float("nan")}}, "model.lr: expected a finite number, got nan (float)"),
    ({"model": {"augment": 1}}, "model.augment: expected a string, got 1 (int)"),
    ({"model": {"pretrained_path": 5}}, "model.pretrained_path: expected a string, got 5 (int)"),
    ({"model": {"train_steps": 0}}, "model.train_steps: must be >= 1, got 0"),
    ({"model": {"batch_size": 0}}, "model.batch_size: must be >= 1, got 0"),
    ({"model": {"inference_batch_size": 0}}, "model.inference_batch_size: must be >= 1, got 0"),
    ({"model": {"mc_samples": 1}}, "model.mc_samples: must be >= 2, got 1"),
    ({"model": {"device": "gpu"}}, "model.device: 'gpu' is not one of ['auto', 'cpu', 'cuda', 'cuda:N']"),
    ({"model": {"threads": -1}}, "model.threads: must be >= 1 (or 0 or null for torch's default), got -1"),
    ({"model": {"threads": "2"}}, "model.threads: expected an integer, got '2' (str)"),
    ({"mixture": {"candidate_scores": "borda"}}, "mixture.candidate_scores: 'borda' is not one of ['rank', 'vote']"),
    ({"mixture": {"selection_ratio": 0}}, "mixture.selection_ratio: must be in (0, 1], got 0"),
    ({"holdout": {"fitnet_steps": 0}}, "holdout.fitnet_steps: must be >= 1, got 0"),
    ({"search": {"fitnet_steps": 0}}, "holdout.fitnet_steps: must be >= 1, got 0"),  # the old name, moved
    ({"holdout": {"min_labels": 8.5}}, "holdout.min_labels: expected an integer, got 8.5 (float)"),
    ({"search": {"enabled": "yes"}}, "search.enabled: expected true or false, got 'yes' (str)"),
    ({"search": {"enabled": 1}}, "search.enabled: expected true or false, got 1 (int)"),
    ({"search": {"weighting": "sum"}}, "search.weighting: 'sum' is not one of ['softmax', 'logits']"),
    ({"search": {"threshold": None}}, "search.threshold: expected a string, got None (NoneType)"),
    ({"search": {"temperature": 0}}, "search.temperature: must be > 0, got 0"),
    ({"search": {"rho_end": 0.0}}, "search.rho_end: must be > 0, got 0.0"),
    ({"search": {"iterations": 0}}, "search.iterations: must be >= 1, got 0"),
    ({"search": {"fitnet_every": 0}}, "search.fitnet_every: must be >= 1, got 0"),
    ({"cost": {"gamma": -0.5}}, "cost.gamma: must be >= 0, got -0.5"),
    ({"cost": {"exploration": 1}}, "cost.exploration: must be in [0, 1), got 1"),
    ({"cost": {"clip_quantile": 0}}, "cost.clip_quantile: must be in (0, 1], got 0"),
    ({"cost": {"max_seconds": -1}}, "cost.max_seconds: must be > 0, got -1"),
    ({"cost": {"features": -1}}, "cost.features: must be >= 0, got -1"),
    ({"cost": {"gamma_halving_labels": -5}}, "cost.gamma_halving_labels: must be >= 0, got -5"),
    ({"cost": {"image_features": -1}}, "cost.image_features: must be >= 0, got -1"),
    ({"cost": {"prefilter": 0}}, "cost.prefilter: must be >= 1, got 0"),
    ({"cost": {"pick_within_regions": "yes"}}, "cost.pick_within_regions: expected true or false, got 'yes' (str)"),
    ({"strategies": "entropy"}, "strategies: expected a list of strings, got 'entropy' (str)"),
    ({"strategies": ["entropy", 3]}, "strategies: expected a list of strings, got ['entropy', 3] (list)"),
    ({"strategies": []}, "strategies: at least one strategy is needed, got []"),
    ({"batch_size": 0}, "batch_size: must be >= 1, got 0"),
    ({"batch_size": "20"}, "batch_size: expected an integer, got '20' (str)"),
    ({"batch_diversity": "dpp"}, "batch_diversity: 'dpp' is not one of ['kmeans', 'none']"),
    ({"diversity_prefilter": 0}, "diversity_prefilter: must be >= 1, got 0"),
    ({"seed": -1}, "seed: must be >= 0, got -1"),
    ({"model": 3}, "model: expected a mapping, got 3 (int)"),
    ({"model": {"train_stepz": 5}}, "unknown config field model.train_stepz"),
    ({"seeds": 1}, "unknown config field config.seeds"),
]


@pytest.mark.parametrize("data, message", BAD_VALUES, ids=[message.split(":")[0] for _, message in BAD_VALUES])
def test_a_bad_value_names_the_field_the_value_and_what_is_allowed(data, message):
    with pytest.raises(ValueError) as error:
        EngineConfig.from_dict(data)
    assert str(error.value) == message


@pytest.mark.parametrize("data", [
    {"model": {"lr": 1, "dropout": 0.5}},  # an int is a number
    {"model": {"channels": None, "threads": None, "pretrained_path": None}},  # Optional fields accept null
    {"model": {"channels": 3, "threads": 0, "device": "cuda:1"}},
    {"mixture": {"selection_ratio": 1}, "search": {"temperature": 1e-11}},
    {"strategies": ("margin",)},
])
def test_allowed_values_load(data):
    EngineConfig.from_dict(data)


def test_attribute_edits_are_checked_when_the_engine_is_built():
    config = EngineConfig()
    config.model.image_size = "32"
    with pytest.raises(ValueError, match=r"^model\.image_size: expected an integer, got '32' \(str\)$"):
        Engine(config)
    config = EngineConfig()
    config.model = {"image_size": 32}
    with pytest.raises(ValueError, match=r"^model: expected a ModelConfig, got \{'image_size': 32\} \(dict\)$"):
        config.validate()


def test_a_non_mapping_config_names_itself():
    with pytest.raises(ValueError, match=r"^config: expected a mapping, got \[1\] \(list\)$"):
        EngineConfig.from_dict([1])
