"""Honest stage outcomes: ERR and EMPTY shares of a symbol's contracts against configurable thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class OutcomeThresholds:
    """Largest acceptable shares (0..1) of a symbol's contracts ending ERR / EMPTY in a stage run.
    EMPTY is often legitimate (far out-of-the-money options that never trade), ERR is not."""

    max_err_share: float = 0.02
    max_empty_share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("max_err_share", "max_empty_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class OutcomeCheck:
    """The verdict: shares over `contracts` (OK + EMPTY + ERR + SKIPPED, a skip being an earlier OK)."""

    passed: bool
    contracts: int
    err_share: float
    empty_share: float
    message: str


def check_outcome(counts: Mapping[str, int], thresholds: OutcomeThresholds) -> OutcomeCheck:
    """Pass unless the ERR share or the EMPTY share exceeds its threshold; nothing to judge passes."""
    total = sum(counts.get(s, 0) for s in ("OK", "EMPTY", "ERR", "SKIPPED"))
    err = counts.get("ERR", 0) / total if total else 0.0
    empty = counts.get("EMPTY", 0) / total if total else 0.0
    problems = []
    if err > thresholds.max_err_share:
        problems.append(f"ERR share {err:.1%} > {thresholds.max_err_share:.1%}")
    if empty > thresholds.max_empty_share:
        problems.append(f"EMPTY share {empty:.1%} > {thresholds.max_empty_share:.1%}")
    text = "; ".join(problems) or f"ERR {err:.1%}, EMPTY {empty:.1%} of {total} contracts within thresholds"
    return OutcomeCheck(not problems, total, err, empty, text)
