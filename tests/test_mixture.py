"""The strategy mixture (the default ranking path): candidate normalization, weights, z and the benefit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoal_engine.mixture import (
    equal_weights,
    expected_loss_benefit,
    mixture,
    mixture_scores,
    mixture_weights,
    normalize_candidates,
)


def test_uniform_weights_give_the_rank_average():
    candidates = torch.rand(50, 4, generator=torch.Generator().manual_seed(1))
    uniform = torch.full((50, 4), 0.25)
    assert torch.allclose(mixture_scores(candidates, uniform), candidates.mean(dim=1))


def test_votes_mark_each_strategys_top_share():
    raw = np.array([[0.1, 5.0], [0.9, 1.0], [0.5, 3.0], [0.2, 4.0]])
    votes = normalize_candidates(raw, "vote", ratio=0.5)
    assert votes[:, 0].tolist() == [0, 1, 1, 0]
    assert votes[:, 1].tolist() == [1, 0, 0, 1]
    ranks = normalize_candidates(raw, "rank", ratio=0.5)
    assert np.allclose(ranks[:, 0], [0.0, 1.0, 2 / 3, 1 / 3])


def test_votes_take_at_least_two_and_at_most_all_items():
    raw = np.arange(12, dtype=np.float64).reshape(6, 2)
    assert normalize_candidates(raw, "vote", ratio=0.01).sum(axis=0).tolist() == [2, 2]
    assert normalize_candidates(raw[:1], "vote", ratio=0.5).tolist() == [[1.0, 1.0]]


def test_equal_weights_and_their_mixture_are_the_rank_average():
    rng = np.random.default_rng(0)
    candidates = normalize_candidates(rng.normal(size=(30, 3)), "rank", ratio=0.1)
    weights = equal_weights(30, 3)
    assert weights.shape == (30, 3) and weights.dtype == np.float32 and np.allclose(weights, 1 / 3)
    z = mixture(candidates, weights)
    assert z.dtype == np.float64 and np.allclose(z, candidates.mean(axis=1), atol=1e-6)


def test_softmax_weights_sum_to_one_and_logits_pass_through():
    logits = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
    assert torch.allclose(mixture_weights(logits, "softmax").sum(dim=1), torch.ones(2))
    assert torch.equal(mixture_weights(logits, "logits"), logits)


def test_the_equal_weight_benefit_is_the_expected_loss_at_that_score_and_keeps_the_order_of_z():
    rng = np.random.default_rng(0)
    z = rng.random(500)
    confident = 0.55 + 0.45 * (1 - z) ** 2  # the max probability falls as z grows, with noise around it
    top = np.clip(confident + rng.normal(0, 0.05, 500), 0.1, 1.0)
    probs = np.stack([top, 1 - top], axis=1)
    benefit = expected_loss_benefit(z, probs)
    assert np.array_equal(np.argsort(-benefit, kind="stable"), np.argsort(-z, kind="stable"))
    assert (benefit > 0).all()
    high, low = benefit[z > 0.9].mean(), benefit[z < 0.1].mean()
    assert high == pytest.approx((1 - top[z > 0.9]).mean(), abs=0.03)  # a ratio scale: the expected loss
    assert high > 5 * low
    assert expected_loss_benefit(np.full(3, 0.5), probs[:3]).tolist() == pytest.approx([(1 - top[:3]).mean()] * 3)


