"""`ghtrader-assets ibkr ...`: run the stages of the stage table in batches and build rerun universes."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ghtrader_assets.domain.latest_status import read_status, rebuild, stored_symbols
from ghtrader_assets.domain.run_summary import Status, latest_outcomes, read_records, read_stage_records
from ghtrader_assets.domain.stage_table import STAGE_TABLE, STAGES
from ghtrader_assets.domain.universe import (
    UniverseEntry,
    UniverseError,
    format_universe,
    read_universe,
    select_batch,
    select_symbols,
    write_universe,
)
from ghtrader_assets.ibkr_progress import progress_bar
from ghtrader_assets.ibkr_settings import BY_NAME, SETTINGS, IBKRSettings, resolve
from ghtrader_assets.ibkr_stages import OVERLAP_DAYS, BarSpec, RunOptions, StageReport, StageRun, SubsetSpec, new_run_id


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `ibkr` command family to the main CLI."""
    ibkr = subparsers.add_parser("ibkr", help="IBKR option-bar backfill stages")
    commands = ibkr.add_subparsers(dest="ibkr_command", required=True)
    for stage in STAGE_TABLE:
        parser = commands.add_parser(stage.name, help=stage.description or f"run the {stage.name} stage")
        _add_common(parser)
        if stage.spec is not None:
            spec = stage.spec
            parser.add_argument("--bar-size", default=spec.bar_size, help=f"IB bar size (default {spec.bar_size!r})")
            parser.add_argument("--duration", default=spec.duration, help=f"IB duration (default {spec.duration!r})")
            parser.add_argument("--what", default=spec.what, help=f"whatToShow (default {spec.what})")
            parser.add_argument("--all-hours", action="store_true", help="useRTH=false (default: regular hours)")
            parser.add_argument("--no-incremental", action="store_true",
                                help="overwrite Parquet files instead of merging with them")
            parser.add_argument("--overlap-days", type=float, default=OVERLAP_DAYS,
                                help=f"re-fetch this many days before the last stored bar (default {OVERLAP_DAYS:g})")
        if stage.subset == "near_the_money":
            parser.add_argument("--expiries", type=int, default=SubsetSpec.expiries,
                                help=f"E: first E unexpired expiries (default {SubsetSpec.expiries})")
            parser.add_argument("--strikes", type=int, default=SubsetSpec.strikes_per_right,
                                help=f"K: strikes per right nearest the close (default {SubsetSpec.strikes_per_right})")
        parser.set_defaults(func=_run_stage, stage=stage.name)
    rerun = commands.add_parser("rerun-universe",
                                help="universe CSV of the symbols whose latest status is ERR/EMPTY")
    rerun.add_argument("--stage", choices=STAGES, required=True)
    rerun.add_argument("--state-dir", type=Path, default=None, help=BY_NAME["state_dir"].describe())
    rerun.add_argument("--universe", type=Path, default=None,
                       help="universe CSV to take conids from: " + BY_NAME["universe"].describe())
    rerun.add_argument("--status", default="ERR,EMPTY", help="statuses to rerun (default ERR,EMPTY)")
    rerun.add_argument("--out", type=Path, default=None, help="CSV path (default: print to stdout)")
    rerun.set_defaults(func=_rerun_universe)
    rebuild_cmd = commands.add_parser("rebuild-status",
                                      help="rewrite state/latest/<stage>/ from every summary of the stage")
    rebuild_cmd.add_argument("--stage", choices=STAGES, required=True)
    rebuild_cmd.add_argument("--state-dir", type=Path, default=None, help=BY_NAME["state_dir"].describe())
    rebuild_cmd.set_defaults(func=_rebuild_status)


def _add_common(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    for setting in SETTINGS:  # every setting of the family, with its environment variable and default
        parser.add_argument(setting.flag, dest=f"setting_{setting.name}", default=None, metavar=setting.name.upper(),
                            type=setting.kind, help=setting.describe())


def _settings(args: argparse.Namespace) -> IBKRSettings:
    return resolve({s.name: getattr(args, f"setting_{s.name}", None) for s in SETTINGS})


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
    symbols = whole | set(conids)
    return tuple(UniverseEntry(s) for s in sorted(symbols)), {s: frozenset(c) for s, c in conids.items()}


def _entries(args: argparse.Namespace, settings: IBKRSettings
             ) -> tuple[tuple[UniverseEntry, ...], dict[str, frozenset[int]] | None]:
    only: dict[str, frozenset[int]] | None = None
    universe_path = settings.paths.universe
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
        settings = _settings(args)
        entries, only = _entries(args, settings)
    except (UniverseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not entries:
        print("error: no symbols (give --universe, --symbols or --rerun-from)", file=sys.stderr)
        return 2
    end = datetime.fromisoformat(args.end) if args.end else None
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    options = RunOptions(run_id=args.run_id or new_run_id(), end=end, force=args.force, dry_run=args.dry_run,
                         incremental=not getattr(args, "no_incremental", False),
                         overlap=timedelta(days=getattr(args, "overlap_days", OVERLAP_DAYS)), only_conids=only)
    stage = next(s for s in STAGE_TABLE if s.name == args.stage)
    spec = None if stage.spec is None else BarSpec(args.bar_size, args.duration, args.what, not args.all_hours)
    subset = SubsetSpec(args.expiries, args.strikes) if stage.subset == "near_the_money" else None
    with progress_bar(stage.name) if show_progress(args.json) else nullcontext() as progress:
        report = StageRun(stage, settings.gateway, settings.paths, options, spec, subset, settings.discovery,
                          settings.thresholds, listener=progress).run(entries)
    _print_report(report, args.json)
    return 0 if report.ok else 1  # the rule of the assets' outcome check


def show_progress(as_json: bool) -> bool:
    """The bar is drawn only for a person at a terminal: never with --json, nor into a log or a pipe."""
    return not as_json and sys.stdout.isatty() and sys.stderr.isatty()


def _print_report(report: StageReport, as_json: bool) -> None:
    if as_json:
        payload: dict[str, Any] = {
            "stage": report.stage, "run_id": report.run_id, "summary_path": str(report.summary_path),
            "dry_run": report.dry_run, "counts": report.counts, "requests": report.requests, "bars": report.bars,
            "planned": sum(o.planned for o in report.symbols.values()),
            "failed_symbols": report.failed_symbols, "failed_checks": report.failed_checks,
            "elapsed_s": round(report.elapsed_s, 3),
            "pacing_violations": report.gateway.pacing_violations, "pacing_pauses": report.gateway.pacing_pauses,
            "reconnects": report.gateway.reconnects,
            "discovery": {s: {"candidates": o.candidates, "requests": o.discovery_requests,
                              "elapsed_s": round(o.discovery_s, 3)}
                          for s, o in report.symbols.items() if o.candidates},
        }
        print(json.dumps(payload, indent=1))
        return
    for outcome in report.symbols.values():
        planned = f" planned={outcome.planned}" if report.dry_run else ""
        print(f"{report.stage} {outcome.line()}{planned}")
    counts = " ".join(f"{k}={v}" for k, v in report.counts.items())
    where = "dry run, nothing written" if report.dry_run else f"summary {report.summary_path}"
    print(f"{report.stage}: {counts} requests={report.requests} bars={report.bars} "
          f"pacing_violations={report.gateway.pacing_violations} reconnects={report.gateway.reconnects} "
          f"elapsed={report.elapsed_s:.1f}s ({where})")


def rerun_universe(state_dir: Path, stage: str, statuses: list[Status],
                   universe: Path | None = None) -> tuple[UniverseEntry, ...]:
    """Symbols whose latest status (state/latest/<stage>/) has a contract or a symbol-level error in
    `statuses`; conids from the universe CSV, else from the latest discovery of the symbol."""
    known = {e.symbol: e for e in read_universe(universe)} if universe is not None and universe.exists() else {}
    out = []
    for symbol in stored_symbols(state_dir, stage):
        whole, conids = read_status(state_dir, stage, symbol).failing(statuses)
        if whole or conids:
            conid = known[symbol].conid if symbol in known else None
            if conid is None:
                discovered = read_status(state_dir, "contracts", symbol)
                ok = [c for c, e in discovered.contracts.items() if e.status is Status.OK]
                conid = ok[0] if len(ok) == 1 else None
            out.append(UniverseEntry(symbol, conid))
    return tuple(out)


def _rerun_universe(args: argparse.Namespace) -> int:
    try:
        settings = resolve({"state_dir": args.state_dir, "universe": args.universe})
        statuses = [Status(s.strip().upper()) for s in args.status.split(",") if s.strip()]
        entries = rerun_universe(settings.paths.state_dir, args.stage, statuses, settings.paths.universe)
    except (ValueError, UniverseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    comment = f"rerun universe: stage {args.stage}, latest status in {','.join(map(str, statuses))}"
    if args.out is None:
        sys.stdout.write(format_universe(entries, comment))
    else:
        write_universe(args.out, entries, comment)
        print(f"{len(entries)} symbol(s) -> {args.out}", file=sys.stderr)
    return 0


def _rebuild_status(args: argparse.Namespace) -> int:
    state_dir = resolve({"state_dir": args.state_dir}).paths.state_dir
    written = rebuild(state_dir, args.stage, read_stage_records(state_dir, args.stage))
    print(f"{len(written)} symbol state file(s) rewritten under {state_dir / 'latest' / args.stage}")
    return 0
