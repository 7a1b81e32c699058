"""The ledger's assets: futures_coverage (what is complete, per variety, at a glance; a fill request; snapshot
manifests) and history_verification (stored history re-counted against the index, weekly and on demand)."""


from datetime import date
from pathlib import Path

import dagster as dg

from ghtrader_assets.defs import names
from ghtrader_assets.defs.futures.partitions import variety_partitions
from ghtrader_assets.defs.futures.resources import FuturesSettings
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.defs.run_queue import claim_run_limits
from ghtrader_assets.domain.calendar import CalendarError
from ghtrader_assets.domain.symbols import main_symbol
from ghtrader_assets.futures import calendar as calendar_step
from ghtrader_assets.futures import ledger as ledger_step
from ghtrader_assets.futures.calendar import ChainError
from ghtrader_assets.io import ledger_store as ledger

COMPLETE_CHECK = "nothing_missing_or_stale"
VERIFY_CHECK = "history_matches_index"
TRADING_DAYS_PER_YEAR = 242


class CoverageConfig(dg.Config):
    """Empty dates: from each variety's first day through the last closed trading day."""

    start: str = ""  # YYYY-MM-DD
    end: str = ""  # YYYY-MM-DD
    varieties: list[str] = []  # empty: every configured variety
    fill: bool = False  # request the missing and stale partitions (the sensor futures_gap_fill launches them)
    write_manifests: bool = True  # a manifest for each variety with nothing missing or stale


class VerifyConfig(dg.Config):
    start: str = ""  # YYYY-MM-DD; empty: the variety's first stored day
    end: str = ""  # YYYY-MM-DD; empty: the last closed trading day


def build_ledger_assets(varieties: tuple[str, ...]) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=names.FUTURES_COVERAGE,
        group_name="futures",
        kinds={"questdb"},
        deps=[names.DAY_INDEX],
        check_specs=[dg.AssetCheckSpec(COMPLETE_CHECK, asset=names.FUTURES_COVERAGE,
                                       description="no expected day of any variety is missing or stale")],
    )
    def futures_coverage(context: dg.AssetExecutionContext, config: CoverageConfig, questdb: QuestDBResource,
                         futures: FuturesSettings) -> dg.MaterializeResult:
        """Per variety and trading day, what QuestDB holds against what the calendar, the variety's window and
        its schedule expect: complete, unverified, no-data (retrying, permanent), missing, stale; the session
        evidence in the stored raw days; with `fill`, the request for exactly the missing and stale partitions;
        and a snapshot manifest of each variety with nothing missing or stale."""
        wanted = [v for v in (config.varieties or varieties) if v in varieties]
        unknown = sorted(set(config.varieties) - set(varieties))
        if unknown:
            raise dg.Failure(description=f"unknown varieties {unknown}; configured: {', '.join(varieties)}")
        now = futures.clock()
        with questdb.client() as qdb:
            calendar = ledger.read_calendar(qdb)
            try:
                first = date.fromisoformat(config.start) if config.start else futures.start()
                last = date.fromisoformat(config.end) if config.end else ledger_step.last_final_day(calendar, now)
            except (ValueError, CalendarError) as exc:
                raise dg.Failure(description=f"bad coverage range: {exc}") from exc
            judged = [v for v in wanted if calendar_step.has_sessions(qdb, v)]
            histories = calendar_step.session_histories(qdb, judged, futures.session_history_file)
            results = ledger_step.coverage_report(qdb, wanted, calendar, first, last, now, histories)
            written = []
            if config.write_manifests:
                for r in results:
                    if r.coverage.clean and r.coverage.first_day is not None and r.coverage.statuses:
                        through = r.coverage.statuses[-1].day
                        try:
                            path, _ = ledger_step.write_manifest(qdb, calendar, r.coverage.variety, through, now,
                                                                 Path(futures.manifest_dir), histories)
                            written.append(str(path))
                        except ChainError as exc:
                            context.log.warning("no manifest for %s: %s", r.coverage.variety, exc)
        text = ledger_step.format_report(results)
        context.log.info("coverage %s..%s\n%s", first, last, text)
        bad = [r.coverage.variety for r in results if not r.coverage.clean]
        return dg.MaterializeResult(
            metadata={
                "coverage": dg.MetadataValue.md(_table(results)),
                "varieties": dg.MetadataValue.json([r.as_json() for r in results]),
                "incomplete_varieties": dg.MetadataValue.json(bad),
                "manifests": dg.MetadataValue.json(written),
                "fill_requested": config.fill,
                "fill_from": first.isoformat(),
                "fill_to": last.isoformat(),
                "fill_varieties": dg.MetadataValue.json(wanted),
            },
            check_results=[dg.AssetCheckResult(
                check_name=COMPLETE_CHECK, passed=not bad,
                metadata={"incomplete": dg.MetadataValue.json({r.coverage.variety: {
                    "missing": r.coverage.summary()["missing_days"], "stale": r.coverage.summary()["stale_days"]}
                    for r in results if not r.coverage.clean})})],
        )

    @dg.asset(
        key=names.HISTORY_VERIFICATION,
        group_name="futures",
        kinds={"questdb"},
        deps=[names.DAY_INDEX],
        partitions_def=variety_partitions(varieties),
        check_specs=[dg.AssetCheckSpec(VERIFY_CHECK, asset=names.HISTORY_VERIFICATION,
                                       description="every stored main_l5 day re-counted equals its index row")],
    )
    def history_verification(context: dg.AssetExecutionContext, config: VerifyConfig, questdb: QuestDBResource,
                             futures: FuturesSettings) -> dg.MaterializeResult:
        """Re-count the variety's stored main_l5 days inside QuestDB (rows, first/last tick, L5 presence,
        row-hash aggregates, value checksum) and compare each with its index row; each day's result goes to
        the ledger, where a mismatch makes the day stale until a fill rebuilds it."""
        variety = context.partition_key
        claim_run_limits(context, [variety], tqsdk=False)
        with questdb.client() as qdb:
            calendar = ledger.read_calendar(qdb)
            stored = sorted(ledger.index_entries(qdb, main_symbol(variety)))
            lo = date.fromisoformat(config.start) if config.start else (stored[0] if stored else None)
            hi = date.fromisoformat(config.end) if config.end else ledger_step.last_final_day(calendar, futures.clock())
            days = [d for d in stored if lo is not None and lo <= d <= hi]
            result = ledger_step.verify_days(qdb, calendar, variety, days)
        years = result.days / TRADING_DAYS_PER_YEAR
        for line in result.mismatches[:20]:
            context.log.error("verification: %s", line)
        context.log.info("%s: %d days, %d rows re-counted in %.1f s (%.1f s per variety-year), %d mismatches",
                         variety, result.days, result.rows, result.seconds,
                         result.seconds / years if years else 0.0, result.bad_days)
        return dg.MaterializeResult(
            metadata={"days": result.days, "rows": result.rows, "mismatched_days": result.bad_days,
                      "seconds": round(result.seconds, 2),
                      "seconds_per_variety_year": round(result.seconds / years, 2) if years else None,
                      "range": f"{days[0]}..{days[-1]}" if days else ""},
            check_results=[dg.AssetCheckResult(check_name=VERIFY_CHECK, passed=not result.mismatches,
                                               metadata={"mismatches": dg.MetadataValue.json(result.mismatches[:50])})],
        )

    return [futures_coverage, history_verification]


def _table(results) -> str:
    """The coverage of every variety as a markdown table."""
    head = ("| variety | from | expected | complete | unverified | no data (retrying/permanent) | missing | stale |\n"
            "|---|---|---|---|---|---|---|---|")
    rows = []
    for r in results:
        s = r.coverage.summary()
        missing = ", ".join(s["missing_days"][:5]) + (" ..." if len(s["missing_days"]) > 5 else "")
        stale = ", ".join(s["stale_days"][:5]) + (" ..." if len(s["stale_days"]) > 5 else "")
        rows.append(f"| {s['variety']} | {s['first_day'] or '-'} | {s['expected']} | {s['complete']} | {s['unverified']} | "
                    f"{s['no_data_retrying']}/{s['no_data_permanent']} | {s['missing']} {missing} | {s['stale']} {stale} |")
    return "\n".join([head, *rows])
