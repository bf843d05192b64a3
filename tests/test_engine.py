"""The engine facade on real data (digits): ranking, persistence, determinism, input checks."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from autoal_engine.data import ImageSource
from autoal_engine.engine import Engine
from autoal_engine.strategies import percentile_rank
from tests.conftest import fast_config


@pytest.fixture(scope="module")
def split(digits):
    images, labels = digits
    order = np.random.default_rng(0).permutation(len(labels))
    return images[order[:80]], labels[order[:80]], images[order[80:480]], labels[order[80:480]]


@pytest.fixture(scope="module")
def fitted(split):
    x, y, pool, _ = split
    return Engine(fast_config(enabled=True)).fit(x, y, pool_size=len(pool))  # the search is opt-in


def test_rank_returns_aligned_fields_and_uses_the_search(fitted, split):
    _, _, pool, pool_labels = split
    ranking = fitted.rank(pool)
    n, k = len(pool), len(fitted.config.strategies)
    assert ranking.priority.shape == (n,) and ranking.priority.min() >= 0 and ranking.priority.max() == 1
    assert ranking.strategy_weights.shape == (n, k)
    assert np.allclose(ranking.strategy_weights.sum(axis=1), 1.0, atol=1e-5)
    assert ranking.probabilities.shape == (n, 10)
    assert (ranking.informativeness >= 0).all() and (ranking.predicted_cost > 0).all()
    assert abs(sum(ranking.mean_strategy_weights.values()) - 1.0) < 1e-5
    assert fitted.report["search_used"] and fitted.report["holdout_accuracy"] > 0.2
    accuracy = (ranking.predicted_label.astype(int) == pool_labels).mean()
    assert accuracy > 0.5
    # the top of the queue is where the model is wrong more often than on average
    top = ranking.order[:40]
    assert (ranking.predicted_label[top].astype(int) != pool_labels[top]).mean() > 1 - accuracy


def test_save_load_gives_the_identical_ranking(fitted, split, tmp_path):
    pool = split[2]
    fitted.save(tmp_path)
    loaded = Engine.load(tmp_path)
    a, b = fitted.rank(pool), loaded.rank(pool)
    assert loaded.version == fitted.version
    assert np.array_equal(a.priority, b.priority)
    assert np.array_equal(a.strategy_weights, b.strategy_weights)


def test_a_crash_mid_save_leaves_the_previous_state_loadable(fitted, split, tmp_path, monkeypatch):
    x, y, pool, _ = split
    fitted.save(tmp_path)
    newer = Engine(fast_config()).fit(x[:40], y[:40])

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        newer.save(tmp_path)
    monkeypatch.undo()
    assert Engine.load(tmp_path).version == fitted.version
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_same_seed_gives_the_same_ranking(split):
    x, y, pool, _ = split
    first = Engine(fast_config(enabled=True)).fit(x, y).rank(pool)
    second = Engine(fast_config(enabled=True)).fit(x, y).rank(pool)
    assert np.array_equal(first.priority, second.priority)


def test_one_candidate_selects_that_candidates_top_b(split):
    x, y, pool, _ = split
    config = fast_config()
    config.strategies = ("margin",)
    ranking = Engine(config).fit(x, y).rank(pool)
    sorted_probs = np.sort(ranking.probabilities, axis=1)
    margin_score = -(sorted_probs[:, -1] - sorted_probs[:, -2])
    b = 20
    assert set(ranking.order[:b]) == set(np.argsort(-margin_score, kind="stable")[:b])


def test_uniform_mixture_ranks_by_the_rank_average(split):
    """The default: equal weights, and the cross-fitted held-out accuracy all the same."""
    x, y, pool, _ = split
    config = fast_config()
    config.strategies = ("entropy", "margin", "least_confidence")
    config.batch_diversity = "none"  # the mixture's own order, without the diverse head of the queue
    engine = Engine(config).fit(x, y)
    assert not engine.report["search_used"] and engine.search is None
    assert engine.report["holdout_accuracy"] > 0.2  # 10 classes: chance is 0.1
    ranking = engine.rank(pool)
    p = np.sort(ranking.probabilities.astype(np.float64), axis=1)
    ent = -(ranking.probabilities * np.log(np.clip(ranking.probabilities, 1e-12, 1))).sum(1)
    average = (percentile_rank(ent) + percentile_rank(-(p[:, -1] - p[:, -2])) + percentile_rank(1 - p[:, -1])) / 3
    # the priority is the expected loss at that rank average (a ratio scale), in the rank average's order
    assert spearmanr(ranking.priority, average).statistic > 0.9999  # the same order, up to float32 ties
    assert ranking.priority[np.argmax(average)] == pytest.approx(1.0)
    assert np.allclose(ranking.strategy_weights, 1 / 3)


def test_the_head_of_the_queue_is_a_diverse_batch(split):
    """With several candidates the first b items are spread over the embedding space; the rest keep the
    priority order, and the head comes from the top prefilter * b by priority."""
    x, y, pool, _ = split
    config = fast_config(enabled=False)
    plain = Engine(config).fit(x, y)
    config = fast_config(enabled=False)
    config.batch_diversity = "none"
    top = Engine(config).fit(x, y).rank(pool)
    ranking = plain.rank(pool)
    b = config.batch_size
    head = ranking.order[:b]
    assert set(head) <= set(top.order[: b * config.diversity_prefilter])
    assert set(head) != set(top.order[:b])
    _, embeddings = plain.embed(pool)

    def spread(items):
        points = embeddings[items]
        return np.linalg.norm(points[:, None] - points[None], axis=2).sum() / (len(items) * (len(items) - 1))

    assert spread(head) > spread(top.order[:b])
    assert np.array_equal(ranking.order[b:], [i for i in top.order if i not in set(head)])
    assert 0.0 <= ranking.priority.min() and ranking.priority.max() <= 1.0


def test_the_head_draws_from_the_wide_shortlist_only_while_the_model_is_unsure_of_the_pool(split):
    """With ``diversity_prefilter_unsure`` the head comes from the top unsure x b while the pool's mean
    max-probability is below ``regime_confidence``, else from the top prefilter x b; the report says which."""
    x, y, pool, _ = split
    config = fast_config(enabled=False)
    config.batch_size, config.diversity_prefilter, config.diversity_prefilter_unsure = 5, 2, 60
    engine = Engine(config).fit(x, y)
    confidence = float(engine.embed(pool)[0].max(axis=1).mean())
    assert 0.0 < confidence < 1.0
    engine.config.batch_diversity = "none"  # the mixture's own order
    by_priority = engine.rank(pool).order
    engine.config.batch_diversity = "kmeans"
    narrow_top, wide_top = set(by_priority[:2 * 5]), set(by_priority[:60 * 5])

    engine.config.regime_confidence = confidence + 1e-3  # unsure: the wide shortlist
    wide_head = set(engine.rank(pool).order[:5])
    assert engine.report["regime"] == {"pool_confidence": pytest.approx(confidence, abs=1e-6),
                                       "threshold": confidence + 1e-3, "unsure": True, "shortlist": 60 * 5}
    assert wide_head <= wide_top and not wide_head <= narrow_top

    engine.config.regime_confidence = confidence - 1e-3  # sure enough: the default shortlist
    narrow_head = set(engine.rank(pool).order[:5])
    assert (engine.report["regime"]["unsure"], engine.report["regime"]["shortlist"]) == (False, 2 * 5)
    assert narrow_head <= narrow_top

    engine.config.diversity_prefilter_unsure = None  # off: the default shortlist whatever the confidence
    engine.config.regime_confidence = 1.0
    assert set(engine.rank(pool).order[:5]) == narrow_head


def test_costs_change_the_order_only_through_gamma(split):
    x, y, pool, _ = split
    known = np.full(len(pool), 10.0)
    known[:50] = 100.0  # the first 50 pool items are known to be ten times as expensive
    config = fast_config(enabled=False)
    config.batch_diversity = "none"
    config.cost.gamma = 1.0
    costly = Engine(config).fit(x, y).rank(pool, known_costs=known)
    config = fast_config(enabled=False)
    config.batch_diversity = "none"
    config.cost.gamma = 0.0
    blind = Engine(config).fit(x, y).rank(pool, known_costs=known)
    assert np.array_equal(blind.order, np.argsort(-blind.informativeness, kind="stable"))
    assert costly.priority[:50].mean() < blind.priority[:50].mean()
    assert np.array_equal(costly.predicted_cost, known)


def test_a_faded_gamma_lets_the_benefit_order_the_queue_once_the_labels_outnumber_the_halving_labels(split):
    """With ``cost.gamma_halving_labels`` n0 the weight of cost is gamma n0 / (n0 + n) at n labels: known
    costs that favour the least informative items move them up while n0 is large against n, and hardly at all
    once n is a thousand times n0."""
    x, y, pool, _ = split
    config = fast_config(enabled=False)
    config.batch_diversity, config.cost.gamma, config.cost.within_class = "none", 1.0, False
    engine = Engine(config).fit(x, y)
    blind = engine.rank(pool)
    known = np.full(len(pool), 100.0)
    known[blind.order[-50:]] = 1.0  # the 50 least informative items are a hundred times as fast
    engine.config.cost.gamma_halving_labels = 1000.0 * len(y)
    early = engine.rank(pool, known_costs=known)
    engine.config.cost.gamma_halving_labels = len(y) / 1000.0
    late = engine.rank(pool, known_costs=known)
    cheap = blind.order[-50:]
    assert np.isin(early.order[:50], cheap).sum() > 25  # cost decides: mostly the cheap items first
    assert not np.isin(late.order[:50], cheap).any()  # gamma about 0.001: the benefit decides


def test_within_class_cost_keeps_an_expensive_class_in_the_head_of_the_queue(split):
    """Known costs that depend on the class alone (the class the benefit serves most ten times as slow): value
    per raw second keeps that class out of the head of the queue, value per second relative to the class does
    not (every item of a class costs its class's median, so the order is the benefit's)."""
    x, y, pool, _ = split
    config = fast_config(enabled=False)
    config.batch_diversity, config.cost.gamma, config.cost.within_class = "none", 1.0, False
    engine = Engine(config).fit(x, y)
    blind = engine.rank(pool)  # no timed labels: uniform cost, the benefit's order
    predicted = blind.predicted_label
    head_classes, counts = np.unique(predicted[blind.order[:20]], return_counts=True)
    slow = predicted == head_classes[counts.argmax()]
    known = np.where(slow, 100.0, 10.0)
    raw = engine.rank(pool, known_costs=known)
    engine.config.cost.within_class = True
    relative = engine.rank(pool, known_costs=known)
    assert np.array_equal(relative.order, np.argsort(-relative.informativeness, kind="stable"))
    assert np.array_equal(relative.predicted_cost, known)  # the seconds shown stay the predicted seconds
    head = relative.order[:20]
    assert slow[head].sum() > slow[raw.order[:20]].sum()


def test_while_cost_counts_the_head_of_the_queue_keeps_a_cost_blind_exploration_share(split):
    """Value per second avoids slow items; the first ceil(exploration * b) of the head are picked by benefit
    alone (a diverse batch, cost ignored), so slow informative items are still served and timed."""
    x, y, pool, _ = split
    config = fast_config(enabled=False)
    config.batch_size, config.cost.gamma, config.cost.exploration = 20, 1.0, 0.1
    config.cost.gamma_halving_labels = 0.0  # the full value per second at every size
    config.cost.pick_within_regions = False  # the rest of the head: value per second's own regions
    engine = Engine(config).fit(x, y)
    blind = engine.rank(pool)
    known = np.full(len(pool), 5.0)
    known[blind.order[:100]] = 500.0  # the 100 most informative items are a hundred times as slow
    ranking = engine.rank(pool, known_costs=known)
    head = ranking.order[:20]
    assert (known[head[:2]] == 500.0).all()  # the exploration share: 2 of 20, chosen as if cost were uniform
    assert (known[head[2:]] == 5.0).all()  # the rest by value per second
    assert set(head[:2]) <= set(blind.order[:20 * config.diversity_prefilter])
    config.cost.exploration = 0.0
    assert (known[Engine(config).fit(x, y).rank(pool, known_costs=known).order[:20]] == 5.0).all()


def test_picking_within_the_benefits_regions_keeps_the_head_among_the_most_informative_items(split):
    """Value per second shortlists cheap items from anywhere in the pool; with ``cost.pick_within_regions`` the
    head's shortlist and regions are the benefit's (as if cost-blind) and cost only picks each region's item, so
    the head stays among the benefit's shortlist and still takes the cheap members of its regions."""
    x, y, pool, _ = split
    config = fast_config(enabled=False)
    config.batch_size, config.cost.gamma, config.cost.within_class = 20, 1.0, False
    config.cost.pick_within_regions, config.cost.prefilter = False, None  # None: the cost-blind head's shortlist
    engine = Engine(config).fit(x, y)
    blind = engine.rank(pool)
    by_benefit = np.argsort(-blind.informativeness, kind="stable")
    known = np.full(len(pool), 5.0)
    known[by_benefit[:100]] = 500.0  # the 100 most informative items are a hundred times as slow
    aware = engine.rank(pool, known_costs=known)
    engine.config.cost.pick_within_regions = True
    within = engine.rank(pool, known_costs=known)
    shortlist = set(by_benefit[:engine.report["regime"]["shortlist"]])
    assert not set(aware.order[2:20]) <= shortlist  # value per second looks beyond the benefit's shortlist
    assert set(within.order[2:20]) <= shortlist  # picking within regions does not
    assert (known[within.order[2:20]] == 5.0).mean() >= 0.5  # and takes the fast members of its regions
    assert (known[within.order[:2]] == 500.0).all()  # the exploration share is kept
    engine.config.cost.gamma = 0.0  # no cost: the cost-blind head, whatever the flag says
    assert np.array_equal(engine.rank(pool, known_costs=known).order, blind.order)


def test_a_wider_cost_shortlist_gives_each_region_cheaper_members_to_choose_from(split):
    """``cost.prefilter``: the cost-aware part of the head picks within the benefit's regions among the benefit's
    top ``cost.prefilter`` x b items instead of ``diversity_prefilter`` x b. When every item of the narrow
    shortlist is slow, the wider one finds fast members and still stays within the benefit's wider shortlist;
    the exploration share keeps the narrow one."""
    x, y, pool, _ = split
    config = fast_config(enabled=False)
    config.batch_size, config.diversity_prefilter = 10, 10
    config.cost.gamma, config.cost.within_class, config.cost.exploration = 1.0, False, 0.1
    config.cost.prefilter = None  # first the cost-blind head's shortlist
    engine = Engine(config).fit(x, y)
    by_benefit = np.argsort(-engine.rank(pool).informativeness, kind="stable")
    known = np.full(len(pool), 5.0)
    known[by_benefit[:100]] = 500.0  # the narrow shortlist (10 x 10) is a hundred times as slow as the rest
    narrow = engine.rank(pool, known_costs=known).order[:10]
    assert engine.report["cost"]["shortlist"] == 100
    engine.config.cost.prefilter = 30
    wide = engine.rank(pool, known_costs=known).order[:10]
    assert (known[narrow[1:]] == 500.0).all()  # nothing fast to choose from within the top 100
    assert set(wide[1:]) <= set(by_benefit[:300])  # the wider shortlist: the benefit's top 300
    assert (known[wide[1:]] == 5.0).mean() >= 0.5  # where most regions have a fast member
    assert set(wide[:1]) <= set(by_benefit[:100])  # the exploration share: benefit alone, the narrow shortlist
    assert engine.report["cost"]["shortlist"] == 300  # what the status page says cost picked among
    engine.config.cost.gamma = 0.0
    engine.rank(pool, known_costs=known)
    assert engine.report["cost"]["shortlist"] is None  # cost does not count: no shortlist of its own


def test_image_features_let_the_cost_model_predict_seconds_that_follow_the_image(split):
    """Seconds that follow the edges of an image within every class (the classifier's embedding learns to ignore
    how thick a stroke is): the cost model with ``cost.image_features`` orders the pool's seconds within each
    predicted class better than the embedding's components alone."""
    from autoal_bench.costs import edge_density

    x, y, pool, _ = split
    edges = edge_density(np.concatenate([x, pool]))
    seconds = 10.0 * np.exp((edges - edges.mean()) / edges.std())
    within = {}
    for k in (0, 16):
        config = fast_config(enabled=False)
        config.cost.image_features = k
        ranking = Engine(config).fit(x, y, costs=seconds[:len(x)]).rank(pool)
        truth, predicted = seconds[len(x):], ranking.predicted_cost
        within[k] = np.mean([spearmanr(predicted[ranking.predicted_label == c],
                                       truth[ranking.predicted_label == c])[0]
                             for c in np.unique(ranking.predicted_label)
                             if (ranking.predicted_label == c).sum() >= 10])
    assert within[16] > within[0] + 0.05, within


def test_a_constant_cost_leaves_the_cost_aware_ranking_exactly_the_cost_blind_one(split):
    """The bench's constant cost model: every label takes 10 s, so the cost model has nothing to predict (no
    rank correlation), gamma falls to 0, and cost-aware AutoAL serves exactly what cost-blind serves."""
    x, y, pool, _ = split
    config = fast_config(enabled=False)
    aware = Engine(config).fit(x, y, costs=np.full(len(y), 10.0))
    assert aware.cost_model.effective_gamma(config.cost.gamma) == 0.0
    blind_config = fast_config(enabled=False)
    blind_config.cost.gamma = 0.0
    blind = Engine(blind_config).fit(x, y)
    assert np.array_equal(aware.rank(pool).order, blind.rank(pool).order)


def test_accepts_file_paths_rgb_and_other_sizes(tmp_path, split):
    x, y, _, _ = split
    paths = []
    for i, image in enumerate(x[:40]):
        rgb = np.stack([image, image * 0.5, image], axis=-1)
        path = tmp_path / f"{i}.png"
        Image.fromarray((rgb * 255).astype(np.uint8)).resize((24, 20)).save(path)
        paths.append(str(path))
    engine = Engine(fast_config(enabled=False)).fit(paths, [str(v) for v in y[:40]])
    assert engine.channels == 3
    ranking = engine.rank(np.repeat(x[40:60, None], 3, axis=1))
    assert set(ranking.predicted_label) <= {str(v) for v in range(10)}
    labels, probs = engine.predict(paths[:5])
    assert probs.shape == (5, len(engine.classes))


def hidden_red(mode: str) -> Image.Image:
    """An 8 x 8 image: a dark square in its middle, the rest transparent with red kept under the alpha."""
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[2:6, 2:6] = (40, 40, 40, 255)
    image = Image.fromarray(rgba)
    if mode == "P":
        image = image.convert("RGB").quantize(colors=4)
        image.info["transparency"] = image.getpixel((0, 0))
        return image
    return image if mode == "RGBA" else image.convert("LA")


@pytest.mark.parametrize("mode, channels", [("RGBA", 3), ("LA", 1), ("P", 1)])
def test_transparent_pixels_load_white_as_the_annotator_sees_them(tmp_path, mode, channels):
    # a palette of red and gray whose red is the transparent entry shows gray only: one channel
    path = tmp_path / f"icon_{mode}.png"
    hidden_red(mode).save(path)
    source = ImageSource([str(path)])
    assert source.channels() == channels
    image = source.load(0, 1, 8, channels)[0].numpy()
    assert np.allclose(image[:, 0, 0], 1.0)  # white, not the red kept under the alpha
    assert np.all(image[:, 4, 4] < 0.3)  # the square itself stays dark


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda x, y: (x[:0], y[:0]), "inputs"),
        (lambda x, y: (x, np.zeros_like(y)), "labels"),
        (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y), "NaN"),
        (lambda x, y: (x[:, :4, :4], y), "inputs"),
        (lambda x, y: (x[..., None], y), "inputs"),
        (lambda x, y: (x * 255, y), "[0, 1]"),
        (lambda x, y: (x, y[:-1]), "labels"),
    ],
)
def test_bad_fit_input_names_the_problem(split, mutate, field):
    x, y, _, _ = split
    bad_x, bad_y = mutate(x, y)
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Engine(fast_config()).fit(bad_x, bad_y)


def test_bad_rank_input_and_config_name_the_problem(fitted, split):
    with pytest.raises(ValueError, match="pool"):
        fitted.rank(split[2][:0])
    with pytest.raises(ValueError, match="known_costs"):
        fitted.rank(split[2], known_costs=[-1.0] * len(split[2]))
    with pytest.raises(ValueError, match="costs"):
        Engine(fast_config()).fit(split[0], split[1], costs=np.full(len(split[1]), -3.0))
    config = fast_config()
    config.strategies = ("entropy", "nope")
    with pytest.raises(ValueError, match="nope"):
        Engine(config)
    with pytest.raises(ValueError, match="not fitted"):
        Engine(fast_config()).rank(split[2])


def test_paper_configuration_runs_end_to_end(split):
    from autoal_engine.config import EngineConfig

    x, y, pool, _ = split
    config = EngineConfig.paper()
    fast = fast_config()
    config.model, config.holdout.fitnet_steps, config.search.iterations = fast.model, 20, 12
    ranking = Engine(config).fit(x, y, pool_size=len(pool)).rank(pool)
    assert np.isfinite(ranking.priority).all()
    assert set(np.unique(ranking.strategy_weights.round(6))) != {1 / 7}


def test_pretrained_backbone_weights_come_from_a_local_file(tmp_path, split):
    import torch

    from autoal_engine.models import SmallCNN, TaskModel

    donor = SmallCNN(1, 64)
    torch.nn.init.constant_(donor.blocks[0][0].weight, 0.125)
    path = tmp_path / "backbone.pt"
    torch.save(donor.state_dict(), path)
    config = fast_config().model
    config.pretrained_path = str(path)
    model = TaskModel(config, in_channels=1, num_classes=10)
    assert torch.equal(model.backbone.blocks[0][0].weight, donor.blocks[0][0].weight)
    config.pretrained_path = str(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="pretrained_path"):
        TaskModel(config, in_channels=1, num_classes=10)
