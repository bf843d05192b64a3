"""The fast path on real data (digits): cached vectors rank like images, refit keeps the backbone, the cache."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from autoal_engine.embedding_cache import EmbeddingCache
from autoal_engine.engine import Engine
from autoal_engine.head import head_cv_accuracy, split_vectors
from tests.conftest import fast_config


@pytest.fixture(scope="module")
def split(digits):
    images, labels = digits
    order = np.random.default_rng(3).permutation(len(labels))
    return images[order[:60]], labels[order[:60]], images[order[60:120]], labels[order[60:120]], images[order[120:520]]


@pytest.fixture(scope="module")
def fitted(split):
    x, y, _, _, pool = split
    return Engine(fast_config()).fit(x, y, pool_size=len(pool))


def test_ranking_from_cached_vectors_equals_the_ranking_from_images(fitted, split):
    pool = split[4]
    from_images = fitted.rank(pool)
    from_vectors = fitted.rank_vectors(fitted.vectors(pool))
    assert np.array_equal(from_images.order, from_vectors.order)
    assert np.allclose(from_images.priority, from_vectors.priority, atol=1e-6)
    assert np.allclose(from_images.candidate_scores, from_vectors.candidate_scores, atol=1e-5)


def test_refit_keeps_the_backbone_and_learns_from_the_new_labels(split):
    x, y, x_new, y_new, pool = split
    engine = Engine(fast_config()).fit(x, y, pool_size=len(pool))
    backbone, version = engine.backbone_version, engine.version
    pool_vectors = engine.vectors(pool)
    before = engine.rank_vectors(pool_vectors)
    labeled = np.concatenate([engine.vectors(x), engine.vectors(x_new)])
    engine.refit(labeled, np.concatenate([y, y_new]), pool_size=len(pool))
    assert engine.backbone_version == backbone and engine.version != version
    assert engine.report["path"] == "fast" and engine.report["n_labeled"] == 120
    assert engine.report["holdout_source"] == "head_cv" and 0.5 < engine.report["holdout_accuracy"] <= 1.0
    after = engine.rank_vectors(pool_vectors)
    assert not np.array_equal(before.order, after.order)  # the new head moved the queue
    # the backbone is unchanged: its embeddings of the pool are what the cache holds
    assert np.allclose(engine.vectors(pool[:50]), pool_vectors[:50], atol=1e-5)


def test_a_refitted_engine_round_trips_through_save_and_load(split, tmp_path):
    x, y, x_new, y_new, pool = split
    engine = Engine(fast_config()).fit(x, y)
    engine.refit(engine.vectors(np.concatenate([x, x_new])), np.concatenate([y, y_new]), pool_size=len(pool))
    engine.save(tmp_path)
    loaded = Engine.load(tmp_path)
    assert loaded.backbone_version == engine.backbone_version and loaded.version == engine.version
    vectors = engine.vectors(pool)
    assert np.array_equal(engine.rank_vectors(vectors).order, loaded.rank_vectors(vectors).order)
    assert np.array_equal(engine.rank(pool).order, loaded.rank_vectors(vectors).order)


def test_refit_refuses_labels_the_backbone_has_no_class_for(fitted, split):
    x, y = split[0], split[1]
    with pytest.raises(ValueError, match="labels:.*full fit"):
        fitted.refit(fitted.vectors(x), np.where(y == 3, 99, y))


def test_rank_vectors_refuses_vectors_of_another_shape_or_with_missing_rows(fitted, split):
    vectors = fitted.vectors(split[4][:20])
    with pytest.raises(ValueError, match="vectors"):
        fitted.rank_vectors(vectors[:, 1:])
    vectors[3] = np.nan
    with pytest.raises(ValueError, match="vectors: must be finite"):
        fitted.rank_vectors(vectors)


def test_the_full_fit_measures_held_out_accuracy_without_extra_networks(fitted):
    assert fitted.report["holdout_source"] == "head_cv"
    assert "simulated_round_seconds" in fitted.report["timings"]
    assert 0.3 < fitted.report["holdout_accuracy"] <= 1.0


def test_head_cv_is_none_without_two_classes_of_two_labels(fitted, split):
    x, y = split[0], split[1]
    embeddings = split_vectors(fitted.vectors(x), fitted.model.head.in_features)[0]
    assert head_cv_accuracy(fitted.model.head, embeddings, np.zeros(len(y), int), fitted.model_config, 20, 0) is None
    assert head_cv_accuracy(fitted.model.head, embeddings, y, fitted.model_config, 60, 0) > 0.5


def _keys(n: int, salt: str = "") -> list[bytes]:
    return [hashlib.sha256(f"{salt}{i}".encode()).digest() for i in range(n)]


@pytest.mark.parametrize("chunk", [50_000, 64])  # 64: lookups and row copies in many chunks, across the gaps
def test_the_cache_returns_what_was_put_across_reopening_and_growth(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr("autoal_engine.embedding_cache.LOOKUP_CHUNK", chunk)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 5)).astype(np.float32)  # beyond the initial capacity: the file grows
    keys = _keys(3000)
    with EmbeddingCache(tmp_path, 5) as cache:
        cache.put(keys[:1000], vectors[:1000])
        cache.put(keys[500:3000], vectors[500:3000])  # half of the first half again: kept once
        assert len(cache) == 3000
    with EmbeddingCache(tmp_path, 5) as cache:
        wanted = [*keys[2500:], *_keys(10, "new"), keys[7]]
        got, found = cache.get(wanted)
        assert found.sum() == 501 and cache.hits == 501 and cache.misses == 10
        assert np.array_equal(got[:500], vectors[2500:]) and np.array_equal(got[-1], vectors[7])
        assert np.isnan(got[500:510]).all()


def test_the_cache_keeps_the_first_vector_of_a_content_key(tmp_path):
    with EmbeddingCache(tmp_path, 2) as cache:
        key = _keys(1)
        cache.put(key, np.ones((1, 2)))
        cache.put(key, np.zeros((1, 2)))
        assert np.array_equal(cache.get(key)[0], np.ones((1, 2)))


def test_the_cache_refuses_bad_input(tmp_path):
    with EmbeddingCache(tmp_path, 3) as cache:
        with pytest.raises(ValueError, match="vectors: expected shape"):
            cache.put(_keys(2), np.zeros((2, 4)))
        with pytest.raises(ValueError, match="vectors: must be finite"):
            cache.put(_keys(1), np.full((1, 3), np.nan))
        with pytest.raises(ValueError, match="keys"):
            cache.get(["not bytes"])
    with pytest.raises(ValueError, match="dim: the cache .* holds 3-d vectors"):
        EmbeddingCache(tmp_path, 4)


def ink_seconds(images: np.ndarray) -> np.ndarray:
    """Seconds that follow how much ink an image holds (its mean intensity): something in the image itself."""
    ink = images.reshape(len(images), -1).mean(axis=1)
    return 10.0 * np.exp(2.0 * (ink - ink.mean()) / ink.std())


def test_without_image_features_a_cached_vector_is_the_embedding_and_the_loss(split):
    """``cost.image_features = 0``: no thumbnails are cached (D + 1 columns) and the cost model reads the embedding
    alone; the ranking from vectors still equals the ranking from images."""
    x, y, _, _, pool = split
    config = fast_config()
    config.cost.image_features = 0
    engine = Engine(config).fit(x, y, costs=ink_seconds(x), pool_size=len(pool))
    vectors = engine.vectors(pool)
    assert vectors.shape == (len(pool), engine.model.head.in_features + 1) == (len(pool), engine.vector_width)
    from_images, from_vectors = engine.rank(pool), engine.rank_vectors(vectors)
    assert np.array_equal(from_images.order, from_vectors.order)
    assert np.allclose(from_images.predicted_cost, from_vectors.predicted_cost, rtol=1e-5)


def test_with_image_features_the_cost_model_reads_the_thumbnails_in_the_full_and_the_fast_path(split, tmp_path):
    """``cost.image_features`` (the default, 16): the cached vectors carry the thumbnails, the cost model reads
    them, and the ranking from vectors equals the ranking from images; the checkpoint keeps the thumbnails' basis;
    vectors cached without thumbnails still rank (their seconds from the embedding's part)."""
    x, y, x_new, y_new, pool = split
    config = fast_config()
    config.cost.image_features = 16
    engine = Engine(config).fit(x, y, costs=ink_seconds(x), pool_size=len(pool))
    width = engine.model.head.in_features
    vectors = engine.vectors(pool)
    assert vectors.shape == (len(pool), width + 16 * 16 + 1) and engine.vector_width == vectors.shape[1]
    assert engine.image_basis[1].shape == (16, 16 * 16)  # 16 components of the 16 x 16 thumbnails
    from_images, from_vectors = engine.rank(pool), engine.rank_vectors(vectors)
    assert np.array_equal(from_images.order, from_vectors.order)
    assert np.allclose(from_images.predicted_cost, from_vectors.predicted_cost, rtol=1e-5)
    both = np.concatenate([x, x_new])
    engine.refit(engine.vectors(both), np.concatenate([y, y_new]), ink_seconds(both), pool_size=len(pool))
    engine.save(tmp_path)
    loaded = Engine.load(tmp_path)
    assert np.allclose(loaded.rank_vectors(vectors).predicted_cost, engine.rank_vectors(vectors).predicted_cost)
    without = np.concatenate([vectors[:, :width], vectors[:, -1:]], axis=1)  # cached before image_features
    assert np.isfinite(engine.rank_vectors(without).predicted_cost).all()
    with pytest.raises(ValueError, match="vectors: shape"):
        engine.rank_vectors(vectors[:, :-5])
