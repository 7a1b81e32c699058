"""The check `matches_schedule` of main_l5, evaluated from the ledger wherever its cause can change: when the
tick partitions are materialized (a rebuild fixes it) and when main_schedule runs (a revision opens it)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ghtrader_assets.defs import names
from ghtrader_assets.defs.futures.partitions import VarietyDay
from ghtrader_assets.defs.futures.resources import FuturesSettings
from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.ledger import DayState, classify
from ghtrader_assets.futures import calendar as calendar_step
from ghtrader_assets.futures import ledger as ledger_step
from ghtrader_assets.io.questdb import QuestDBClient

SCHEDULE_CAUSES = ("schedule", "sessions")


def matches_schedule_evaluation(qdb: QuestDBClient, varieties: Sequence[str], calendar: TradingCalendar,
                                futures: FuturesSettings) -> dg.AssetCheckEvaluation:
    """Every stored main_l5 day of every variety, against the contract, segment and session windows the ledger
    assigns it now: the stale partitions (rebuilt by the daily update or `ghtrader-assets coverage --fill`)."""
    judged = [v for v in varieties if calendar_step.has_sessions(qdb, v)]
    histories = calendar_step.session_histories(qdb, judged, futures.session_history_file)
    facts = ledger_step.variety_facts(qdb, judged, calendar, histories)
    now = futures.clock()
    stale = []
    for variety in judged:
        for day in sorted(facts[variety].index):
            if day not in facts[variety].schedule:
                continue
            status = classify(facts[variety], day, calendar, now)
            if status.state == DayState.STALE and status.cause in SCHEDULE_CAUSES:
                stale.append((str(VarietyDay(day, variety).key), status.reason))
    return dg.AssetCheckEvaluation(
        asset_key=names.MAIN_L5, check_name=names.MATCHES_SCHEDULE, passed=not stale,
        metadata={"stale_partitions": len(stale), "stale": dg.MetadataValue.json([list(s) for s in stale[:50]])})
