"""`ghtrader-assets ibkr ...`: run the contracts/hours/minutes stages in batches and build rerun universes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ghtrader_assets.domain.run_summary import (
    STAGES,
    Status,
    SummaryRecord,
    latest_outcomes,
    latest_runs,
    read_records,
    read_stage_records,
    rerun_entries,
)
from ghtrader_assets.domain.universe import (
    UniverseEntry,
    UniverseError,
    format_universe,
    read_universe,
    select_batch,
    select_symbols,
    write_universe,
)
from ghtrader_assets.ibkr_stages import (
    HOURS_SPEC,
    MINUTES_SPEC,
    BarSpec,
    RunOptions,
    StageReport,
    StoragePaths,
    SubsetSpec,
    new_run_id,
    run_bars,
    run_contracts,
)
from ghtrader_assets.io.ib_gateway import GatewaySettings


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `ibkr` command family to the main CLI."""
    ibkr = subparsers.add_parser("ibkr", help="IBKR option-bar backfill stages")
    commands = ibkr.add_subparsers(dest="ibkr_command", required=True)
    for stage in STAGES:
        parser = commands.add_parser(stage, help=f"run the {stage} stage")
        _add_common(parser)
        if stage != "contracts":
            spec = HOURS_SPEC if stage == "hours" else MINUTES_SPEC
            parser.add_argument("--bar-size", default=spec.bar_size, help=f"IB bar size (default {spec.bar_size!r})")
            parser.add_argument("--duration", default=spec.duration, help=f"IB duration (default {spec.duration!r})")
            parser.add_argument("--what", default=spec.what, help="whatToShow (default TRADES)")
            parser.add_argument("--all-hours", action="store_true", help="useRTH=false (default: regular hours)")
            parser.add_argument("--no-incremental", action="store_true",
                                help="overwrite Parquet files instead of merging with them")
            parser.add_argument("--overlap-days", type=float, default=3.0,
                                help="re-fetch this many days before the last stored bar (default 3)")
        if stage == "minutes":
            parser.add_argument("--expiries", type=int, default=2, help="E: first E unexpired expiries")
            parser.add_argument("--strikes", type=int, default=5, help="K: strikes per right nearest the close")
        parser.set_defaults(func=_run_stage, stage=stage)
    rerun = commands.add_parser("rerun-universe", help="universe CSV of the symbols with ERR/EMPTY outcomes")
    rerun.add_argument("--stage", choices=STAGES, required=True)
    rerun.add_argument("--state-dir", type=Path, default=None, help="default $GHTRADER_STATE_DIR or state")
    rerun.add_argument("--latest-runs", type=int, default=0,
                       help="only the N most recent runs (default 0: every run; the latest outcome per contract wins)")
    rerun.add_argument("--status", default="ERR,EMPTY", help="statuses to rerun (default ERR,EMPTY)")
    rerun.add_argument("--out", type=Path, default=None, help="CSV path (default: print to stdout)")
    rerun.set_defaults(func=_rerun_universe)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--universe", type=Path, default=None, help="universe CSV (default $GHTRADER_IB_UNIVERSE)")
    parser.add_argument("--symbols", default=None, help="comma-separated symbols (instead of / within the universe)")
    parser.add_argument("--batch-count", type=int, default=1, help="split the universe into N stable batches")
    parser.add_argument("--batch-index", type=int, default=0, help="which batch to run (0-based)")
    parser.add_argument("--rerun-from", type=Path, default=None,
                        help="a summary JSONL file or run_logs/<stage> directory (rerun its ERR/EMPTY contracts) "
                             "or a rerun universe CSV")
    parser.add_argument("--dry-run", action="store_true", help="plan only: no gateway, no writes")
    parser.add_argument("--force", action="store_true", help="re-request what is already OK for this window")
    parser.add_argument("--end", default=None, help="ISO time standing for now (default: the gateway's now)")
    parser.add_argument("--run-id", default=None, help="summary file id (default cli-<UTC time>-<random>)")
    parser.add_argument("--host", default=None, help="default $IB_HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default $IB_PORT or 4002")
    parser.add_argument("--client-id", type=int, default=None, help="default $IB_CLIENT_ID or 17")
    parser.add_argument("--max-in-flight", type=int, default=40, help="open historical requests, 1..50 (default 40)")
    parser.add_argument("--rate", type=float, default=10.0, help="historical requests per second (default 10)")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds per request (default 60)")
    parser.add_argument("--msg-rate", type=int, default=45,
                        help="ib_insync messages/s throttle, bounds discovery's qualify calls (default 45; 0 = off, "
                             "simulator only)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="default $GHTRADER_IB_DATA_ROOT or data_test/raw/ib")
    parser.add_argument("--scope", default=None, help="historical_bars_<scope> (default $GHTRADER_IB_SCOPE or weekend)")
    parser.add_argument("--state-dir", type=Path, default=None, help="default $GHTRADER_STATE_DIR or state")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _paths(args: argparse.Namespace) -> StoragePaths:
    return StoragePaths(
        data_root=args.data_root or Path(_env("GHTRADER_IB_DATA_ROOT", "data_test/raw/ib")),
        scope=args.scope or _env("GHTRADER_IB_SCOPE", "weekend"),
        state_dir=args.state_dir or Path(_env("GHTRADER_STATE_DIR", "state")),
    )


def _settings(args: argparse.Namespace) -> GatewaySettings:
    return GatewaySettings(
        host=args.host or _env("IB_HOST", "127.0.0.1"),
        port=args.port or int(_env("IB_PORT", "4002")),
        client_id=args.client_id if args.client_id is not None else int(_env("IB_CLIENT_ID", "17")),
        max_in_flight=args.max_in_flight,
        rate_per_s=args.rate,
        request_timeout_s=args.request_timeout,
        client_msg_rate=args.msg_rate,
    )


def _rerun_source(path: Path, stage: str) -> tuple[tuple[UniverseEntry, ...], dict[str, frozenset[int]]]:
    """Symbols (and, for contract-level failures, the conids) to rerun from a CSV or summaries."""
    if path.suffix == ".csv":
        return read_universe(path), {}
    files = sorted(path.glob("summary_*.jsonl")) if path.is_dir() else [path]
    records = [r for r in read_records(files) if r.stage == stage]
    failing = [r for r in latest_outcomes(records).values() if r.status in (Status.ERR, Status.EMPTY)]
    whole = {r.symbol for r in failing if r.conid is None or r.purpose != "bars"}
    conids: dict[str, set[int]] = {}
    for record in failing:
        if record.symbol not in whole and record.conid is not None:
            conids.setdefault(record.symbol, set()).add(record.conid)
    return rerun_entries(records), {s: frozenset(c) for s, c in conids.items()}


def _entries(args: argparse.Namespace) -> tuple[tuple[UniverseEntry, ...], dict[str, frozenset[int]] | None]:
    only: dict[str, frozenset[int]] | None = None
    universe_path = args.universe or (Path(p) if (p := _env("GHTRADER_IB_UNIVERSE", "")) else None)
    if args.rerun_from is not None:
        entries, only = _rerun_source(args.rerun_from, args.stage)
        if universe_path is not None and universe_path.exists():
            known = {e.symbol: e for e in read_universe(universe_path)}
            entries = tuple(known.get(e.symbol, e) for e in entries)
    elif universe_path is not None:
        entries = read_universe(universe_path)
    else:
        entries = ()
    if args.symbols:
        entries = select_symbols(entries, args.symbols.split(","))
    return select_batch(entries, args.batch_count, args.batch_index), only


def _run_stage(args: argparse.Namespace) -> int:
    try:
        entries, only = _entries(args)
    except (UniverseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not entries:
        print("error: no symbols (give --universe, --symbols or --rerun-from)", file=sys.stderr)
        return 2
    end = datetime.fromisoformat(args.end) if args.end else None
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = RunOptions(run_id=args.run_id or new_run_id(), end=end, force=args.force, dry_run=args.dry_run,
                         incremental=not getattr(args, "no_incremental", False),
                         overlap=timedelta(days=getattr(args, "overlap_days", 3.0)), only_conids=only)
    if args.stage == "contracts":
        report = run_contracts(entries, settings, _paths(args), options)
    else:
        spec = BarSpec(args.bar_size, args.duration, args.what, not args.all_hours)
        subset = SubsetSpec(args.expiries, args.strikes) if args.stage == "minutes" else None
        report = run_bars(args.stage, entries, settings, _paths(args), options, spec, subset)
    _print_report(report, args.json)
    return 1 if report.failed_symbols or report.counts["ERR"] else 0


def _print_report(report: StageReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "stage": report.stage, "run_id": report.run_id, "summary_path": str(report.summary_path),
            "dry_run": report.dry_run, "counts": report.counts, "requests": report.requests, "bars": report.bars,
            "planned": sum(o.planned for o in report.symbols.values()),
            "failed_symbols": report.failed_symbols, "elapsed_s": round(report.elapsed_s, 3),
            "pacing_violations": report.gateway.pacing_violations, "reconnects": report.gateway.reconnects,
        }, indent=1))
        return
    for outcome in report.symbols.values():
        planned = f" planned={outcome.planned}" if report.dry_run else ""
        print(f"{report.stage} {outcome.line()}{planned}")
    counts = " ".join(f"{k}={v}" for k, v in report.counts.items())
    where = "dry run, nothing written" if report.dry_run else f"summary {report.summary_path}"
    print(f"{report.stage}: {counts} requests={report.requests} bars={report.bars} "
          f"pacing_violations={report.gateway.pacing_violations} reconnects={report.gateway.reconnects} "
          f"elapsed={report.elapsed_s:.1f}s ({where})")


def _rerun_universe(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or Path(_env("GHTRADER_STATE_DIR", "state"))
    records: list[SummaryRecord] = read_stage_records(state_dir, args.stage)
    if args.latest_runs > 0:
        records = latest_runs(records, args.latest_runs)
    try:
        statuses = [Status(s.strip().upper()) for s in args.status.split(",") if s.strip()]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    entries = rerun_entries(records, statuses)
    runs = sorted({r.run_id for r in records})
    comment = f"rerun universe: stage {args.stage}, statuses {','.join(map(str, statuses))}, {len(runs)} run(s)"
    if args.out is None:
        sys.stdout.write(format_universe(entries, comment))
    else:
        write_universe(args.out, entries, comment)
        print(f"{len(entries)} symbol(s) -> {args.out}", file=sys.stderr)
    return 0
