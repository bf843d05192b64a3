"""AutoAL engine: task model, candidate strategies, AutoAL search, cost-aware ranking.

The public API, importable from the package itself::

    from autoal_engine import Engine, EngineConfig, NotFittedError, Ranking, __version__

    engine = Engine(EngineConfig()).fit(images, labels)
    ranking = engine.rank(pool)
    serve_first = ranking.top(20)

The names are loaded on first use (PEP 562 ``__getattr__``): ``import autoal_engine`` or
``import autoal_engine.config`` does not import torch.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoal_engine.config import EngineConfig
    from autoal_engine.engine import Engine
    from autoal_engine.errors import NotFittedError
    from autoal_engine.ranking import Ranking

try:
    __version__ = metadata.version("autoal-labelstudio")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS = {
    "Engine": "autoal_engine.engine",
    "EngineConfig": "autoal_engine.config",
    "NotFittedError": "autoal_engine.errors",
    "Ranking": "autoal_engine.ranking",
}

__all__ = ["Engine", "EngineConfig", "NotFittedError", "Ranking", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
