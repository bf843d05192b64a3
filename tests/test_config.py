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
    """``config.to_dict()`` as the code before the move wrote it: the moved fields under ``search``."""
    data = config.to_dict()
    for old, new in MOVED_FIELDS.items():
        new_section, name = new.split(".")
        data["search"][old.split(".")[1]] = data[new_section].pop(name)
    for section in {new.split(".")[0] for new in MOVED_FIELDS.values()}:
        assert not data.pop(section)
    return data


def test_the_old_default_layout_is_what_old_layout_writes():
    assert old_layout(EngineConfig()) == {**OLD_DEFAULT_DICT, "strategies": tuple(OLD_DEFAULT_DICT["strategies"])}


def test_sections_round_trip():
    for config in (EngineConfig(), EngineConfig.for_device("cuda"), EngineConfig.paper()):
        assert EngineConfig.from_dict(config.to_dict()) == config
    assert set(EngineConfig().to_dict()) >= {"model", "mixture", "holdout", "search", "cost"}


def test_the_old_default_dict_loads_with_a_deprecation_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="autoal_engine.config"):
        config = EngineConfig.from_dict(OLD_DEFAULT_DICT)
    assert config == EngineConfig()
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
