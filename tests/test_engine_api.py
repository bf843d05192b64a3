"""The public API: what ``autoal_engine`` exports, NotFittedError, Ranking.top."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

import autoal_engine
from autoal_engine.ranking import Ranking
from tests.conftest import fast_config


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.strip()


def test_the_package_exports_the_public_names():
    from autoal_engine import Engine, EngineConfig, NotFittedError, Ranking, __version__
    from autoal_engine.config import EngineConfig as ConfigEngineConfig
    from autoal_engine.engine import Engine as EngineEngine
    from autoal_engine.errors import NotFittedError as ErrorsNotFittedError
    from autoal_engine.ranking import Ranking as RankingRanking

    assert (Engine, EngineConfig, NotFittedError, Ranking) == (
        EngineEngine, ConfigEngineConfig, ErrorsNotFittedError, RankingRanking)
    assert set(autoal_engine.__all__) == {"Engine", "EngineConfig", "NotFittedError", "Ranking", "__version__"}
    assert {"Engine", "EngineConfig", "NotFittedError", "Ranking"} <= set(dir(autoal_engine))
    assert __version__ == metadata.version("autoal-labelstudio")
    with pytest.raises(AttributeError, match="no attribute 'Engin'"):
        autoal_engine.Engin  # noqa: B018


def test_importing_the_package_or_its_config_does_not_import_torch():
    code = ("import sys, autoal_engine, autoal_engine.config, autoal_engine.errors; "
            "print('torch' in sys.modules, 'numpy' in sys.modules); "
            "from autoal_engine import Engine; print('torch' in sys.modules)")
    assert run_python(code).split() == ["False", "False", "True"]


def test_the_version_falls_back_when_the_package_is_not_installed():
    code = ("import importlib.metadata as m\n"
            "def missing(name):\n    raise m.PackageNotFoundError(name)\n"
            "m.version = missing\n"
            "import autoal_engine; print(autoal_engine.__version__)")
    assert run_python(code) == "0+unknown"


def test_an_unfitted_engine_raises_not_fitted_for_every_method_that_needs_a_model(tmp_path):
    from autoal_engine import Engine, NotFittedError

    assert issubclass(NotFittedError, ValueError)
    engine = Engine(fast_config())
    images = np.zeros((3, 16, 16), np.float32)
    for call in (lambda: engine.rank(images), lambda: engine.predict(images), lambda: engine.embed(images),
                 lambda: engine.save(tmp_path)):
        with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
            call()
    assert not list(tmp_path.iterdir())


def ranking(priority: list[float]) -> Ranking:
    n = len(priority)
    return Ranking(priority=np.array(priority), informativeness=np.ones(n), predicted_cost=np.ones(n),
                   predicted_label=np.zeros(n, dtype=object), probabilities=np.full((n, 2), 0.5),
                   strategy_weights=np.ones((n, 1)), strategy_names=("margin",), classes=(0, 1))


def test_top_k_gives_the_first_k_items_to_serve_in_order():
    r = ranking([0.2, 0.9, 0.5, 0.9, 0.0])
    assert r.top(2).tolist() == [1, 3]  # ties keep pool order
    assert r.top(np.int64(3)).tolist() == [1, 3, 2]
    assert r.top(5).tolist() == r.order.tolist() == [1, 3, 2, 0, 4]
    assert r.top(100).tolist() == [1, 3, 2, 0, 4]  # k > n: the whole queue
    assert r.top(0).tolist() == [] and r.top(0).dtype == r.order.dtype


@pytest.mark.parametrize("k, message", [
    (-1, "k: must be >= 0, got -1"),
    (2.0, "k: expected an integer >= 0, got 2.0 (float)"),
    (True, "k: expected an integer >= 0, got True (bool)"),
    ("3", "k: expected an integer >= 0, got '3' (str)"),
])
def test_top_rejects_a_negative_or_non_integer_k(k, message):
    with pytest.raises(ValueError) as error:
        ranking([0.1, 0.2]).top(k)
    assert str(error.value) == message
