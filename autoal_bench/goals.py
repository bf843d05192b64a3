"""The acceptance goals the report checks AutoAL against: report configuration, not library code.

They are the defaults of `Goals` unless ``autoal bench --goals JSON`` changes some; each results.json records
the goals its report was checked against (``settings.goals``), and a results file without them (written
before they were recorded) is checked against the defaults. Every goal compares normalized AUBC, paired over
the same seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Goals:
    """What AutoAL must reach on a data set for the report to say "met"."""

    best_tolerance: float = 0.002  # mean AUBC >= the best single candidate's (in hindsight) minus this
    best_margin: float = 0.005  # "ahead of the best": mean AUBC >= the best's plus this (wanted on two data sets)
    random_min_difference: float = 0.0  # paired mean difference vs random above this ...
    random_min_win_share: float = 0.9  # ... and AutoAL ahead on at least this share of the seeds (rounded up)
    albl_min_difference: float = 0.0  # paired mean difference vs libact's ALBL above this
    labels_share_max: float = 0.5  # labels to random's final accuracy, at most this share of random's own

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"goal {field.name}: expected a finite number, got {value!r}")
        if not 0.0 <= self.random_min_win_share <= 1.0:
            raise ValueError(f"goal random_min_win_share: must be in [0, 1], got {self.random_min_win_share}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Goals:
        """Goals from a (partial) dict; unknown names are an error, missing ones keep their default."""
        if not isinstance(data, dict):
            raise ValueError(f"goals: expected a JSON object, got {type(data).__name__}")
        known = [field.name for field in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"goals: unknown goal {unknown[0]!r}; known: {', '.join(known)}")
        return cls(**data)

    def wins_needed(self, n: int) -> int:
        """Seeds (of ``n``) on which AutoAL must beat random."""
        return int(math.ceil(self.random_min_win_share * n))


def parse_goals(text: str) -> Goals:
    """``--goals``: a JSON object (``{"best_tolerance": 0.01}``) or the path of a file holding one."""
    source = text
    if not text.lstrip().startswith("{"):
        try:
            source = Path(text).read_text()
        except OSError as error:
            raise ValueError(f"--goals {text}: not a JSON object and not a readable file ({error})") from error
    try:
        data = json.loads(source)
    except json.JSONDecodeError as error:
        raise ValueError(f"--goals {text}: {error}") from error
    return Goals.from_dict(data)
