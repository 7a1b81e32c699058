"""Futures chain assets: trading_days -> main_schedule -> underlying_ticks -> main_l5 -> day_index."""


import json
import time
from contextlib import closing
from datetime import date

import dagster as dg

from ghtrader_assets.defs import names
from ghtrader_assets.defs.futures.ledger_checks import matches_schedule_evaluation
from ghtrader_assets.defs.futures.partitions import TRADING_DAY, VarietyDay, variety_day_partitions, variety_partitions
from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.defs.run_queue import claim_run_limits
from ghtrader_assets.domain.ledger import DayStats
from ghtrader_assets.domain.schedule import roll_days
from ghtrader_assets.domain.session_evidence import find_evidence, suggested_changes
from ghtrader_assets.domain.symbols import expected_depth, main_symbol
from ghtrader_assets.futures import calendar as calendar_step
from ghtrader_assets.futures import ledger as ledger_step
from ghtrader_assets.futures import pipeline
from ghtrader_assets.futures import schedule as schedule_step
from ghtrader_assets.io import ledger_store as ledger

PROGRESS_EVERY_S = 10.0  # at most one progress line per interval in a range run (failures: always)


class ScheduleConfig(dg.Config):
    rebuild: bool = False  # ask the source again for every day, not only provisional and recent ones
    confirm_revisions: bool = False  # apply revisions of days older than GHTRADER_CONFIRM_REVISIONS_OLDER_THAN


def build_futures_assets(varieties: tuple[str, ...]) -> list[dg.AssetsDefinition]:
    day_parts = variety_day_partitions(varieties)

    @dg.asset(key=names.TRADING_DAYS, group_name="futures", kinds={"tqsdk", "questdb"})
    def trading_days(
        context: dg.AssetExecutionContext, tqsdk: TqSdkResource, questdb: QuestDBResource, futures: FuturesSettings
    ) -> dg.MaterializeResult:
        """The exchange calendar and each variety's sessions (quote.trading_time), stored in QuestDB;
        adds one `trading_day` partition per trading day through the current one."""
        claim_run_limits(context, (), tqsdk=True)
        with questdb.client() as qdb:
            result = calendar_step.refresh_calendar(tqsdk.step_login(), qdb, varieties, futures.start(), futures.clock())
        known = list(context.instance.get_dynamic_partitions(TRADING_DAY.name))
        wanted = [d.isoformat() for d in result.trading_days]
        if known != wanted[: len(known)]:
            # Dynamic partitions keep insertion order; re-add them all so key ranges stay in date order.
            for key in known:
                context.instance.delete_dynamic_partition(TRADING_DAY.name, key)
            known = []
        new = wanted[len(known) :]
        if new:
            context.instance.add_dynamic_partitions(TRADING_DAY.name, new)
        context.log.info("calendar %s..%s: %d trading days from %s, %d new partitions, current trading day %s",
                         result.calendar.first, result.calendar.last, len(wanted), futures.start(), len(new), result.current_day)
        return dg.MaterializeResult(
            metadata={
                "trading_days": len(wanted),
                "first_day": wanted[0] if wanted else "",
                "last_day": wanted[-1] if wanted else "",
                "current_trading_day": result.current_day.isoformat(),
                "new_partitions": len(new),
                "calendar_range": f"{result.calendar.first}..{result.calendar.last}",
                "sessions": dg.MetadataValue.json(result.sessions),
            }
        )

    @dg.asset(
        key=names.MAIN_SCHEDULE,
        group_name="futures",
        kinds={"tqsdk", "questdb"},
        partitions_def=variety_partitions(varieties),
        deps=[trading_days],
        check_specs=[dg.AssetCheckSpec(names.AGREES_WITH_CONTINUOUS_TABLE, asset=names.MAIN_SCHEDULE,
                                       description="the schedule equals the vendor's continuous table, day by day, "
                                       "and no revision waits for confirmation")],
    )
    def main_schedule(
        context: dg.AssetExecutionContext,
        config: ScheduleConfig,
        tqsdk: TqSdkResource,
        questdb: QuestDBResource,
        futures: FuturesSettings,
    ) -> dg.MaterializeResult:
        """Which contract is main on each trading day of the variety's window (TqSdk's KQ.m@ mapping by
        default), one row per day in ghtrader_main_schedule_v2; the window starts where the vendor first
        lists the variety (or at the user's start for it). Partitioned by variety only: the mapping is a
        per-variety time series, extended incrementally, not a per-day computation."""
        variety = context.partition_key
        claim_run_limits(context, [variety], tqsdk=True)
        with questdb.client() as qdb:
            calendar = ledger.read_calendar(qdb)
            days = [date.fromisoformat(k) for k in context.instance.get_dynamic_partitions(TRADING_DAY.name)]
            result = schedule_step.refresh_schedule(
                tqsdk.step_login(), qdb, variety, calendar, sorted(days), futures.schedule_source, config.rebuild,
                futures.schedule_rules(config.confirm_revisions, *calendar_step.session_opens(qdb, variety)),
                user_start=futures.variety_start(variety), now=futures.clock(),
            )
            # A revision can make stored days stale: the check on main_l5 says so now, not at the next tick run.
            context.log_event(matches_schedule_evaluation(qdb, varieties, calendar, futures))
        rolls = roll_days(result.rows)
        decided = [r for r in result.rows if not r.provisional]
        disagreements = schedule_step.compare_with_continuous_table(variety, decided) if decided else []
        for r in result.pending:
            context.log.warning("%s: revision NOT applied (older than the confirmation age; rerun with "
                                "confirm_revisions: true): %s", variety, r.describe())
        context.log.info("%s: %d days (%d new) in %d segments from %s, window from %s (%s)", variety, len(result.rows),
                         result.new_days, len(rolls), result.source, result.window.first_day, result.window.window_source)
        return dg.MaterializeResult(
            metadata={
                "days": len(result.rows),
                "new_days": result.new_days,
                "segments": len(rolls),
                "source": result.source,
                "first_day": result.window.first_day.isoformat(),
                "window_source": result.window.window_source,
                "rolls": dg.MetadataValue.md("\n".join(f"- {d}: {c}" for d, c in rolls)),
                "continuous_table_disagreements": len(disagreements),
                "provisional_days": dg.MetadataValue.json([str(d) for d in result.provisional_days]),
                "revisions": dg.MetadataValue.json([r.describe() for r in result.revisions]),
                "revisions_pending_confirmation": dg.MetadataValue.json([r.describe() for r in result.pending]),
                "changed_days": dg.MetadataValue.json([str(d) for d in result.changed_days]),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=names.AGREES_WITH_CONTINUOUS_TABLE,
                    passed=not disagreements and not result.pending,
                    metadata={"disagreements": dg.MetadataValue.json([[str(d), a, b] for d, a, b in disagreements[:50]]),
                              "pending_revisions": dg.MetadataValue.json([r.describe() for r in result.pending[:50]])},
                )
            ],
        )

    @dg.multi_asset(
        name="futures_ticks",
        group_name="futures",
        partitions_def=day_parts,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
        specs=[
            dg.AssetSpec(names.UNDERLYING_TICKS, deps=[main_schedule], skippable=True, kinds={"tqsdk", "questdb"},
                         description="Every tick the vendor served for the scheduled contract's day, flagged by the "
                         "cleaning rule (ghtrader_ticks_raw_v2)."),
            dg.AssetSpec(names.MAIN_L5, deps=[names.UNDERLYING_TICKS], skippable=True, kinds={"questdb"},
                         description="The continuous KQ.m@ series cut inside QuestDB from the kept raw ticks "
                         "(ghtrader_ticks_main_l5_v2)."),
            dg.AssetSpec(names.DAY_INDEX, deps=[names.MAIN_L5], skippable=True, kinds={"questdb"},
                         description="The ledger: per (symbol, day, kind) rows, first/last tick, L5 presence, row-hash "
                         "aggregates and what the day was built for."),
        ],
        check_specs=[
            dg.AssetCheckSpec(names.INDEX_MATCHES_STORED, asset=names.DAY_INDEX,
                              description="index rows equal the stored ticks"),
            dg.AssetCheckSpec(names.DEPTH_AS_EXPECTED, asset=names.UNDERLYING_TICKS, description=(
                "every downloaded day arrived with the depth levels its exchange publishes (5 on SHFE/INE, else 1)")),
            dg.AssetCheckSpec(names.SESSIONS_EXPLAIN_TICKS, asset=names.UNDERLYING_TICKS, description=(
                "no ticks outside the known sessions recur at the same clock times over several days "
                "(evidence of a session change the history lacks)")),
            dg.AssetCheckSpec(names.MATCHES_SCHEDULE, asset=names.MAIN_L5, description=(
                "every stored day was built for the contract, segment and session windows it has now")),
        ],
    )
    def futures_ticks(
        context: dg.AssetExecutionContext, tqsdk: TqSdkResource, questdb: QuestDBResource, futures: FuturesSettings
    ):
        """One step for a whole partition range: a download process of its own (one TqSdk login at a time), one
        QuestDB connection.
        Each finished partition is logged as its own materialization; failures are collected and reported
        at the end."""
        selected = context.selected_asset_keys
        checks = context.selected_asset_check_keys
        parts = sorted(VarietyDay.parse(k) for k in context.partition_keys)
        if not parts:  # e.g. a reversed range: Dagster resolves it to no keys; say so instead of succeeding
            rng = context.partition_key_range
            raise dg.Failure(description=f"the partition range {rng.start}..{rng.end} holds no partitions "
                                         "(reversed, or no trading days of the variety between its ends)")
        run_varieties = sorted({p.variety for p in parts})
        claim_run_limits(context, run_varieties, tqsdk=names.UNDERLYING_TICKS in selected)
        steps = pipeline.ChainSteps(underlying_ticks=names.UNDERLYING_TICKS in selected,
                                    main_l5=names.MAIN_L5 in selected, day_index=names.DAY_INDEX in selected)
        failures: dict[str, str] = {}
        verify_error = ""
        indexed: dict[str, list[date]] = {}  # variety -> days indexed by this run
        depth_mismatches: dict[str, str] = {}  # partition -> "served N, expected M"
        outside: dict[str, dict[date, dict[int, int]]] = {}  # variety -> day -> Beijing minute -> ticks
        started, last_line = time.monotonic(), 0.0
        with questdb.client() as qdb:
            calendar = ledger.read_calendar(qdb)
            histories = calendar_step.session_histories(qdb, run_varieties, futures.session_history_file)
            outcomes = closing(pipeline.run_days(tqsdk.login_factory(), qdb, calendar, [(p.variety, p.trading_day) for p in parts],
                                                 steps, histories, now=futures.clock(),
                                                 max_retries=futures.no_data_max_retries))
            with outcomes as stream:
                for i, (part, outcome) in enumerate(zip(parts, stream), 1):
                    key = str(part.key)
                    if outcome.error:
                        failures[key] = outcome.error
                        context.log.error("[%d/%d] %s %s failed: %s", i, len(parts), part.variety, part.trading_day, outcome.error)
                        continue
                    for event in _materializations(key, outcome, steps):
                        context.log_event(event)
                    if not outcome.listed:
                        continue
                    if steps.day_index:
                        indexed.setdefault(part.variety, []).append(part.trading_day)
                    if outcome.depth_mismatch:
                        depth_mismatches[key] = f"served {outcome.depth} levels, expected {expected_depth(part.variety)}"
                        context.log.warning("%s %s <- %s: the provider served %d depth levels where %s publishes %d; "
                                            "stored as served", part.variety, part.trading_day, outcome.contract,
                                            outcome.depth, part.variety.split(".")[0], expected_depth(part.variety))
                    if outcome.cleaning is not None and outcome.cleaning.outside_minutes:
                        outside.setdefault(part.variety, {})[part.trading_day] = dict(outcome.cleaning.outside_minutes)
                    # Progress: the first and last partition, unfinished days, and otherwise one line every
                    # PROGRESS_EVERY_S (each line is an event in the instance; every partition has its own
                    # materializations already).
                    elapsed = time.monotonic() - started
                    if i in (1, len(parts)) or not outcome.final or elapsed - last_line >= PROGRESS_EVERY_S:
                        last_line = elapsed
                        context.log.info("[%d/%d] %s %s <- %s: %s rows%s (%.0f s elapsed)", i, len(parts), part.variety,
                                         part.trading_day, outcome.contract, outcome.rows,
                                         "" if outcome.final else " (day unfinished: not final)", elapsed)
            try:
                mismatches = [m for variety, days in indexed.items()
                              for m in ledger_step.verify_days(qdb, calendar, variety, days).mismatches]
            except Exception as exc:  # noqa: BLE001 - e.g. QuestDB went away: report it with the failed partitions
                verify_error = f"{type(exc).__name__}: {exc}"
                mismatches = [f"index not verified: {verify_error}"]
                context.log.error("verifying the day index failed: %s", verify_error)
            if dg.AssetCheckKey(names.UNDERLYING_TICKS, names.DEPTH_AS_EXPECTED) in checks:
                yield dg.AssetCheckResult(
                    check_name=names.DEPTH_AS_EXPECTED, asset_key=names.UNDERLYING_TICKS, passed=not depth_mismatches,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"mismatched_partitions": len(depth_mismatches),
                              "mismatches": dg.MetadataValue.json(dict(sorted(depth_mismatches.items())[:50]))})
            if dg.AssetCheckKey(names.UNDERLYING_TICKS, names.SESSIONS_EXPLAIN_TICKS) in checks:
                yield _session_evidence_check(context, outside, histories, calendar, parts)
            if dg.AssetCheckKey(names.MAIN_L5, names.MATCHES_SCHEDULE) in checks and not verify_error:
                evaluation = matches_schedule_evaluation(qdb, varieties, calendar, futures)
                yield dg.AssetCheckResult(check_name=evaluation.check_name, asset_key=names.MAIN_L5,
                                          passed=evaluation.passed, metadata=evaluation.metadata)
        if names.DAY_INDEX in selected:
            yield dg.AssetCheckResult(
                check_name=names.INDEX_MATCHES_STORED, asset_key=names.DAY_INDEX, passed=not mismatches,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"partitions_checked": sum(len(d) for d in indexed.values()),
                          "mismatches": dg.MetadataValue.json(mismatches[:50])},
            )
        if failures or verify_error:
            raise dg.Failure(
                description=f"{len(failures)} of {len(parts)} partitions failed: " + "; ".join(
                    f"{k} ({v})" for k, v in list(failures.items())[:20])
                + (f"; the day index of the finished partitions was not verified: {verify_error}" if verify_error else ""),
                metadata={"failed_partitions": dg.MetadataValue.json(sorted(failures)),
                          "errors": dg.MetadataValue.json(failures)},
            )

    return [trading_days, main_schedule, futures_ticks]


def _session_evidence_check(context: dg.AssetExecutionContext, outside: dict, histories, calendar, parts: list) -> dg.AssetCheckResult:
    """Ticks outside the known sessions at recurring clock times: evidence of a session change, reported with
    the GHTRADER_SESSION_HISTORY entries that would explain it (see domain.session_evidence)."""
    through = {p.variety: p.trading_day for p in parts}
    found, suggestions = [], []
    for variety, days in sorted(outside.items()):
        for evidence in find_evidence(variety, days):
            sessions, _ = histories[variety].windows(evidence.days[0])
            entries = suggested_changes(evidence, sessions, calendar, through[variety])
            found.append(evidence.describe())
            suggestions += entries
            context.log.warning("session evidence: %s. Raw keeps these ticks (flag outside_session); main_l5 leaves "
                                "them out. If the exchange's hours were different then, add to the "
                                "GHTRADER_SESSION_HISTORY file and rebuild main_l5 for those days (no download): %s",
                                evidence.describe(), json.dumps({"changes": entries}))
    return dg.AssetCheckResult(
        check_name=names.SESSIONS_EXPLAIN_TICKS, asset_key=names.UNDERLYING_TICKS, passed=not found,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"evidence": dg.MetadataValue.json(found),
                  "suggested_session_history": dg.MetadataValue.json({"changes": suggestions})})


def _materializations(key: str, outcome: pipeline.DayOutcome, steps: pipeline.ChainSteps) -> list[dg.AssetMaterialization]:
    """One materialization per selected asset of a finished (variety, day), with its metadata."""
    if not outcome.listed:  # before the variety's window: nothing to fetch, shown as not listed
        metadata = {"listed": False, "rows": 0, "final": outcome.final}
        return [dg.AssetMaterialization(asset, partition=key, description="not listed yet", metadata=metadata)
                for asset, on in zip(names.TICK_ASSETS, (steps.underlying_ticks, steps.main_l5, steps.day_index)) if on]
    common = {"underlying": outcome.contract, "segment_id": outcome.segment_id, "final": outcome.final}
    events = []
    if steps.underlying_ticks:
        depth = {"depth_levels": outcome.depth, "depth_expected": expected_depth(outcome.variety)} if outcome.depth else {}
        events.append(dg.AssetMaterialization(names.UNDERLYING_TICKS, partition=key, metadata={
            **common, **_tick_metadata(outcome.raw), "no_data": outcome.no_data is not None, **_no_data_metadata(outcome),
            **(outcome.cleaning.as_metadata() if outcome.cleaning else {}), **depth}))
    if steps.main_l5:
        events.append(dg.AssetMaterialization(names.MAIN_L5, partition=key, metadata={
            **common, "symbol": main_symbol(outcome.variety), **_tick_metadata(outcome.main_l5)}))
    if steps.day_index and outcome.index is not None:
        events.append(dg.AssetMaterialization(names.DAY_INDEX, partition=key, metadata={
            **common, **_tick_metadata(outcome.index), "l5_present": outcome.index.l5_present,
            "row_hash_sum": outcome.index.row_hash_sum}))
    return events


def _no_data_metadata(outcome: pipeline.DayOutcome) -> dict:
    """For a provider-empty day: what the provider answered now and when it is asked again."""
    if outcome.no_data is None:
        return {}
    out: dict = {"no_data_status": outcome.no_data.status, "no_data_attempts": outcome.no_data.attempts}
    if outcome.no_data.next_retry is not None:
        out["no_data_next_retry"] = outcome.no_data.next_retry.isoformat()
    return out


def _tick_metadata(stats: DayStats | None) -> dict:
    if stats is None:
        return {"rows": 0}
    out: dict = {"rows": stats.rows_total}
    if stats.first_datetime_ns:
        out["first_tick"] = dg.MetadataValue.timestamp(stats.first_datetime_ns / 1e9)
        out["last_tick"] = dg.MetadataValue.timestamp(stats.last_datetime_ns / 1e9)
    return out
