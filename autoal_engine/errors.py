"""The engine's own exceptions (a module without heavy imports, so callers can catch them cheaply)."""

from __future__ import annotations


class NotFittedError(ValueError):
    """``rank``, ``predict``, ``embed`` or ``save`` was called on an ``Engine`` before ``fit`` (or ``load``).

    A ``ValueError`` subclass, so code that catches ValueError for bad calls keeps working."""
