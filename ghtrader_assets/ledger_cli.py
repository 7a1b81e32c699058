"""`ghtrader-assets coverage | verify | manifest`: the ledger from the command line.

    ghtrader-assets coverage [VARIETY ...] [--from D] [--to D] [--json] [--fill [--dry-run]]
    ghtrader-assets verify [VARIETY ...] [--from D] [--to D] [--json]
    ghtrader-assets manifest write [VARIETY ...] [--through D]
    ghtrader-assets manifest verify FILE

Exit codes: 0 clean; 1 something missing, stale, mismatched or changed; 2 bad input or unreachable store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

DEFAULT_VARIETIES_NOTE = "default: every variety of GHTRADER_VARIETIES"


def register(subparsers: argparse._SubParsersAction) -> None:
    cov = subparsers.add_parser(
        "coverage", help="per variety: days expected, complete, no-data, missing, stale (the ledger in QuestDB)",
        description="What QuestDB holds against what the calendar, each variety's window and its schedule expect. "
        "Exit code 1 when any day is missing or stale.")
    cov.add_argument("varieties", nargs="*", metavar="VARIETY", help=DEFAULT_VARIETIES_NOTE)
    cov.add_argument("--from", dest="start", type=date.fromisoformat, help="first day (default: GHTRADER_START_DATE)")
    cov.add_argument("--to", dest="end", type=date.fromisoformat, help="last day (default: the last closed trading day)")
    cov.add_argument("--json", action="store_true", help="one JSON document instead of the text report")
    cov.add_argument("--fill", action="store_true", help="materialize exactly the missing and stale days, as one run "
                     "per variety range, in this process (DAGSTER_HOME's instance), then report again")
    cov.add_argument("--dry-run", action="store_true", help="with --fill: list the runs, launch nothing")
    cov.set_defaults(func=_coverage)

    ver = subparsers.add_parser(
        "verify", help="re-count stored main_l5 days inside QuestDB against the day index",
        description="Each stored day's rows, first/last tick, L5 presence, row-hash aggregates and value checksum, "
        "re-counted and compared with its index row; the results go to the ledger (a mismatch makes the day stale).")
    ver.add_argument("varieties", nargs="*", metavar="VARIETY", help=DEFAULT_VARIETIES_NOTE)
    ver.add_argument("--from", dest="start", type=date.fromisoformat)
    ver.add_argument("--to", dest="end", type=date.fromisoformat)
    ver.add_argument("--json", action="store_true")
    ver.set_defaults(func=_verify)

    man = subparsers.add_parser("manifest", help="write or verify snapshot manifests")
    sub = man.add_subparsers(dest="action", required=True)
    write = sub.add_parser("write", help="a manifest per variety with nothing missing or stale through --through")
    write.add_argument("varieties", nargs="*", metavar="VARIETY", help=DEFAULT_VARIETIES_NOTE)
    write.add_argument("--through", type=date.fromisoformat, help="last day (default: the last closed trading day)")
    write.set_defaults(func=_manifest_write)
    check = sub.add_parser("verify", help="recompute a manifest from the store: does the data still match?")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_manifest_verify)


def _context(names: list[str]):
    from ghtrader_assets.defs.futures.resources import futures_settings_from_env
    from ghtrader_assets.definitions import configured_varieties
    from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings

    configured = configured_varieties()
    unknown = [v for v in names if v not in configured]
    if unknown:
        raise SystemExit(_bad(f"unknown varieties {unknown}; GHTRADER_VARIETIES has {', '.join(configured)}"))
    return names or list(configured), futures_settings_from_env(), QuestDBClient(QuestDBSettings.from_env())


def _bad(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _histories(qdb, varieties, settings):
    from ghtrader_assets.futures import calendar as calendar_step

    judged = [v for v in varieties if calendar_step.has_sessions(qdb, v)]
    return calendar_step.session_histories(qdb, judged, settings.session_history_file)


def _coverage(args: argparse.Namespace) -> int:
    from ghtrader_assets.futures import ledger as ledger_step
    from ghtrader_assets.io import ledger_store as ledger
    from ghtrader_assets.io.questdb import QuestDBError

    varieties, settings, client = _context(args.varieties)
    try:
        with client as qdb:
            calendar = ledger.read_calendar(qdb)
            first = args.start or settings.start()
            last = args.end or ledger_step.last_final_day(calendar, settings.clock())
            histories = _histories(qdb, varieties, settings)
            results = ledger_step.coverage_report(qdb, varieties, calendar, first, last, settings.clock(), histories)
            if args.fill:
                _fill(qdb, calendar, varieties, first, last, settings, args.dry_run)
                if not args.dry_run:
                    results = ledger_step.coverage_report(qdb, varieties, calendar, first, last, settings.clock(), histories)
    except (QuestDBError, ValueError) as exc:
        return _bad(str(exc))
    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        print(ledger_step.format_report(results))
    return 0 if all(r.coverage.clean for r in results) else 1


def _fill(qdb, calendar, varieties, first, last, settings, dry_run: bool) -> None:
    """Run exactly the missing and stale ranges here, as `dagster asset materialize --partition-range` would,
    and record the ledger-complete partitions Dagster has no materialization of."""
    import dagster as dg

    from ghtrader_assets.defs.futures.sensors import plan_fill, range_run_request, view_repairs

    plan = plan_fill(qdb, calendar, varieties, first, last, settings)
    for r in plan.requests:
        print(f"fill: {r.variety} {r.first}..{r.last} ({r.days} days): {', '.join(r.assets)}")
    if dry_run:
        print(f"fill: {len(plan.requests)} runs planned (dry run: nothing launched)")
        return
    if not os.environ.get("DAGSTER_HOME"):
        raise ValueError("--fill records its runs in the Dagster instance: set DAGSTER_HOME (e.g. $PWD/.dagster_home)")
    from ghtrader_assets.definitions import defs

    definitions = defs()
    instance = dg.DagsterInstance.get()
    for r in plan.requests:
        request = range_run_request(r)
        result = dg.materialize(list(definitions.assets or []), selection=list(request.asset_selection or []),
                                resources=definitions.resources, instance=instance, tags=request.tags,
                                raise_on_error=False)
        print(f"fill: {r.variety} {r.first}..{r.last}: {'done' if result.success else 'FAILED (see the run in the UI)'}")
    for event in view_repairs(instance, plan.complete):
        instance.report_runless_asset_event(event)


def _verify(args: argparse.Namespace) -> int:
    from ghtrader_assets.domain.symbols import main_symbol
    from ghtrader_assets.futures import ledger as ledger_step
    from ghtrader_assets.io import ledger_store as ledger
    from ghtrader_assets.io.questdb import QuestDBError

    varieties, settings, client = _context(args.varieties)
    out, bad = [], 0
    try:
        with client as qdb:
            calendar = ledger.read_calendar(qdb)
            last = args.end or ledger_step.last_final_day(calendar, settings.clock())
            for variety in varieties:
                days = [d for d in sorted(ledger.index_entries(qdb, main_symbol(variety)))
                        if (args.start is None or d >= args.start) and d <= last]
                result = ledger_step.verify_days(qdb, calendar, variety, days)
                bad += result.bad_days
                years = result.days / 242
                out.append({"variety": variety, "days": result.days, "rows": result.rows,
                            "mismatched_days": result.bad_days, "seconds": round(result.seconds, 2),
                            "seconds_per_variety_year": round(result.seconds / years, 2) if years else None,
                            "mismatches": result.mismatches})
    except (QuestDBError, ValueError) as exc:
        return _bad(str(exc))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for r in out:
            print(f"{r['variety']}: {r['days']} days, {r['rows']:,} rows re-counted in {r['seconds']} s "
                  f"({r['seconds_per_variety_year']} s per variety-year), {r['mismatched_days']} mismatched")
            for line in r["mismatches"][:20]:
                print(f"  {line}")
    return 1 if bad else 0


def _manifest_write(args: argparse.Namespace) -> int:
    from ghtrader_assets.futures import ledger as ledger_step
    from ghtrader_assets.futures.calendar import ChainError
    from ghtrader_assets.io import ledger_store as ledger
    from ghtrader_assets.io.questdb import QuestDBError

    varieties, settings, client = _context(args.varieties)
    status = 0
    try:
        with client as qdb:
            calendar = ledger.read_calendar(qdb)
            through = args.through or ledger_step.last_final_day(calendar, settings.clock())
            histories = _histories(qdb, varieties, settings)
            for variety in varieties:
                try:
                    path, built = ledger_step.write_manifest(qdb, calendar, variety, through, settings.clock(),
                                                             Path(settings.manifest_dir), histories)
                    print(f"{variety}: {path} ({built['days_complete']} days, {built['rows_total']:,} rows, "
                          f"{len(built['no_data_days'])} no-data days)")
                except ChainError as exc:
                    print(f"{variety}: {exc}")
                    status = 1
    except (QuestDBError, ValueError) as exc:
        return _bad(str(exc))
    return status


def _manifest_verify(args: argparse.Namespace) -> int:
    from ghtrader_assets.futures import ledger as ledger_step
    from ghtrader_assets.futures.calendar import ChainError
    from ghtrader_assets.io import ledger_store as ledger
    from ghtrader_assets.io.questdb import QuestDBClient, QuestDBError, QuestDBSettings

    if not args.file.is_file():
        return _bad(f"no manifest file at {args.file}")
    try:
        with QuestDBClient(QuestDBSettings.from_env()) as qdb:
            differences = ledger_step.verify_manifest(qdb, ledger.read_calendar(qdb), args.file)
    except (QuestDBError, ChainError, ValueError) as exc:
        return _bad(str(exc))
    if differences:
        print(f"{args.file}: the store no longer matches")
        for line in differences:
            print(f"  {line}")
        return 1
    print(f"{args.file}: the store matches")
    return 0
