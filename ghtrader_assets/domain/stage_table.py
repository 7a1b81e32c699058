"""The IBKR stages in one table: name, bar request, subset rule and whether a reference price is needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SubsetRule = Literal["every_contract", "near_the_money"]


@dataclass(frozen=True)
class BarSpec:
    """What one bar stage requests: IB bar size, duration (`N S|D|W|M|Y`), whatToShow, useRTH."""

    bar_size: str
    duration: str
    what: str = "TRADES"
    use_rth: bool = True


@dataclass(frozen=True)
class StageDef:
    """One stage. `spec` None is discovery (the contracts stage). `subset`: every unexpired cached
    contract, or the near-the-money subset (first E expiries, K strikes per right nearest the
    reference price); `needs_reference`: the underlying's last completed daily close is fetched first."""

    name: str
    spec: BarSpec | None = None
    subset: SubsetRule = "every_contract"
    needs_reference: bool = False
    description: str = ""

    @property
    def asset_name(self) -> str:
        return "ibkr_contracts" if self.spec is None else f"ibkr_{self.name}_bars"


# Adding a stage (e.g. "5 mins" bars of the subset) is one entry here.
STAGE_TABLE: tuple[StageDef, ...] = (
    StageDef("contracts", description="SMART option chain, bounded and batch-qualified, cached per trade date"),
    StageDef("hours", BarSpec("8 hours", "6 M"), "every_contract", False,
             "8-hour TRADES bars over 6 months (useRTH) of every unexpired contract in the latest cache"),
    StageDef("minutes", BarSpec("30 mins", "1 M"), "near_the_money", True,
             "30-minute TRADES bars over 1 month of the near-the-money subset (first E expiries, K strikes "
             "per right nearest the underlying's last completed close)"),
)
STAGES: tuple[str, ...] = tuple(s.name for s in STAGE_TABLE)
BAR_STAGES: tuple[StageDef, ...] = tuple(s for s in STAGE_TABLE if s.spec is not None)
REFERENCE_SPEC = BarSpec("1 day", "5 D")  # the underlying's daily closes: band centre and subset reference


def stage_def(name: str) -> StageDef:
    """The table entry of `name`; KeyError naming the known stages otherwise."""
    for stage in STAGE_TABLE:
        if stage.name == name:
            return stage
    raise KeyError(f"unknown IBKR stage {name!r}; known: {', '.join(STAGES)}")
