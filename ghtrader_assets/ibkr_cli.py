"""`ghtrader-assets ibkr ...`: run the stages of the stage table in batches and build rerun universes."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ghtrader_assets.domain.latest_status import rerun_entries
from ghtrader_assets.domain.run_summary import Status
from ghtrader_assets.domain.stage_table import BAR_STAGES, STAGE_TABLE, STAGES, StageDef
from ghtrader_assets.domain.us_sessions import parse_end
from ghtrader_assets.domain.universe import UniverseEntry, UniverseError, format_universe, select_batch, select_symbols
from ghtrader_assets.ibkr_progress import progress_bar
from ghtrader_assets.ibkr_settings import BY_NAME, SETTINGS, IBKRSettings, resolve
from ghtrader_assets.ibkr_plan import SymbolPlan
from ghtrader_assets.io.bar_store import import_legacy
from ghtrader_assets.ibkr_stages import OVERLAP_DAYS, BarSpec, RunOptions, StageReport, StageRun, SubsetSpec, new_run_id
from ghtrader_assets.io.ibkr_state import (
    read_records,
    read_stage_records,
    read_status,
    read_universe,
    rebuild,
    stored_symbols,
    write_universe,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `ibkr` command family to the main CLI."""
    ibkr = subparsers.add_parser("ibkr", help="IBKR option-bar backfill stages")
    commands = ibkr.add_subparsers(dest="ibkr_command", required=True)
    for stage in STAGE_TABLE:
        parser = commands.add_parser(stage.name, help=stage.description or f"run the {stage.name} stage")
        _add_common(parser, stage)
        if stage.spec is not None:
            spec = stage.spec
            parser.add_argument("--bar-size", default=spec.bar_size, help=f"IB bar size (default {spec.bar_size!r})")
            parser.add_argument("--duration", default=spec.duration, help=f"IB duration (default {spec.duration!r})")
            parser.add_argument("--what", default=spec.what, help=f"whatToShow (default {spec.what})")
            parser.add_argument("--all-hours", action="store_true", help="useRTH=false (default: regular hours)")
            parser.add_argument("--incremental", action=argparse.BooleanOptionalAction, default=True,
                                help="merge with stored Parquet files, ours or the earlier system's (default); "
                                     "--no-incremental overwrites them")
            parser.add_argument("--overlap-days", type=float, default=OVERLAP_DAYS,
                                help=f"re-fetch this many days before the last stored bar (default {OVERLAP_DAYS:g})")
            parser.add_argument("--capture", action="store_true",
                                help="the daily capture: only contracts that stop being served before the next "
                                     "weekend run (or within --capture-lead-days)")
        if stage.subset == "near_the_money":
            parser.add_argument("--expiries", type=int, default=SubsetSpec.expiries,
                                help=f"E: first E unexpired expiries (default {SubsetSpec.expiries})")
            parser.add_argument("--strikes", type=int, default=SubsetSpec.strikes_per_right,
                                help=f"K: strikes per right nearest the close (default {SubsetSpec.strikes_per_right})")
        if stage.needs_reference:
            parser.add_argument("--skip-underlying-close", action=argparse.BooleanOptionalAction, default=True,
                                help="without the underlying's close, centre on the median strike (default); "
                                     "--no-skip-underlying-close makes that symbol ERR with the reason")
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
    coverage = commands.add_parser("coverage", help="per symbol: contracts whose data ends before their last "
                                                    "session because they expired (from the latest status)")
    coverage.add_argument("--stage", choices=[s.name for s in BAR_STAGES], default=None,
                          help="one bar stage (default: each)")
    coverage.add_argument("--symbols", default=None, help="comma-separated symbols (default: every stored one)")
    coverage.add_argument("--state-dir", type=Path, default=None, help=BY_NAME["state_dir"].describe())
    coverage.add_argument("--end", default=None, help="ISO time standing for now (no zone: New York)")
    coverage.add_argument("--json", action="store_true", help="print JSON")
    coverage.set_defaults(func=_coverage)
    legacy = commands.add_parser("import-legacy", help="merge the earlier weekend script's Parquet tree into ours "
                                                       "(dry run unless --apply)")
    legacy.add_argument("root", type=Path, help="the earlier tree: historical_bars_<scope>/ or a folder above it")
    legacy.add_argument("--apply", action="store_true", help="write (default: report what would be merged)")
    legacy.add_argument("--data-root", type=Path, default=None, help=BY_NAME["data_root"].describe())
    legacy.add_argument("--scope", default=None, help=BY_NAME["scope"].describe())
    legacy.set_defaults(func=_import_legacy)


def _add_common(parser: argparse.ArgumentParser, stage: StageDef) -> None:
    parser.add_argument("--symbols", default=None, help="comma-separated symbols (instead of / within the universe)")
    parser.add_argument("--batch-count", type=int, default=1, help="split the universe into N stable batches")
    parser.add_argument("--batch-index", type=int, default=0, help="which batch to run (0-based)")
    parser.add_argument("--rerun-from", type=Path, default=None,
                        help="a summary JSONL file or run_logs/<stage> directory (rerun its ERR/EMPTY contracts) "
                             "or a rerun universe CSV")
    dry = ("plan only, printed per symbol: no bar request, no writes" +
           (" (asks the gateway for the reference closes only)" if stage.needs_reference else "")
           if stage.spec is not None else "plan only: no gateway, no writes")
    parser.add_argument("--dry-run", action="store_true", help=dry)
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="skip contracts already OK for this window (default); --no-resume is --force")
    parser.add_argument("--force", action="store_true", help="re-request what is already OK for this window")
    parser.add_argument("--end", default=None, help="ISO time standing for now (no zone: New York; default: now)")
    parser.add_argument("--run-id", default=None, help="summary file id (default cli-<UTC time>-<random>)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    for setting in SETTINGS:  # the settings this stage uses, with their environment variables and defaults
        if setting.applies_to(stage.name):
            parser.add_argument(setting.flag, dest=f"setting_{setting.name}", default=None,
                                metavar=setting.name.upper(), type=setting.kind, help=setting.describe())


def _settings(args: argparse.Namespace) -> IBKRSettings:
    return resolve({s.name: getattr(args, f"setting_{s.name}", None) for s in SETTINGS})


def _rerun_source(path: Path, stage: str) -> tuple[tuple[UniverseEntry, ...], dict[str, frozenset[int]]]:
    """Symbols (and, for contract-level failures, the conids) to rerun from a CSV or summaries."""
    if path.suffix == ".csv":
        return read_universe(path), {}
    files = sorted(path.glob("summary_*.jsonl")) if path.is_dir() else [path]
    failing = rerun_entries(r for r in read_records(files) if r.stage == stage)  # the state files' own rule
    conids = {s: frozenset(c) for s, (whole, c) in failing.items() if not whole and c}
    return tuple(UniverseEntry(s) for s in sorted(failing)), conids


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
    try:
        end = parse_end(args.end) if args.end else None
    except ValueError as exc:
        print(f"error: --end: {exc}", file=sys.stderr)
        return 2
    options = RunOptions(run_id=args.run_id or new_run_id(), end=end, force=args.force or not args.resume,
                         dry_run=args.dry_run, incremental=getattr(args, "incremental", True),
                         overlap=timedelta(days=getattr(args, "overlap_days", OVERLAP_DAYS)), only_conids=only,
                         capture=getattr(args, "capture", False),
                         require_close=not getattr(args, "skip_underlying_close", True))
    stage = next(s for s in STAGE_TABLE if s.name == args.stage)
    spec = None if stage.spec is None else BarSpec(args.bar_size, args.duration, args.what, not args.all_hours)
    subset = SubsetSpec(args.expiries, args.strikes) if stage.subset == "near_the_money" else None
    with progress_bar(stage.name) if show_progress(args.json) else nullcontext() as progress:
        report = StageRun(stage, settings.gateway, settings.paths, options, spec, subset, settings.discovery,
                          settings.thresholds, listener=progress, expiry=settings.expiry).run(entries)
    _print_report(report, args.json)
    return 0 if report.ok else 1  # the rule of the assets' outcome check


def show_progress(as_json: bool) -> bool:
    """The bar is drawn only for a person at a terminal: never with --json, nor into a log or a pipe."""
    return not as_json and sys.stdout.isatty() and sys.stderr.isatty()


def _print_report(report: StageReport, as_json: bool) -> None:
    plans = {s: o.plan for s, o in report.symbols.items() if o.plan is not None}
    if as_json:
        cov = report.coverage
        payload: dict[str, Any] = {
            "stage": report.stage, "run_id": report.run_id,
            "summary_path": str(report.summary_path) if report.summary_path else None,
            "dry_run": report.dry_run, "counts": report.counts, "requests": report.requests, "bars": report.bars,
            "planned": sum(o.planned for o in report.symbols.values()),
            "failed_symbols": report.failed_symbols, "failed_checks": report.failed_checks,
            "elapsed_s": round(report.elapsed_s, 3),
            "pacing_violations": report.gateway.pacing_violations, "pacing_pauses": report.gateway.pacing_pauses,
            "reconnects": report.gateway.reconnects,
            "truncated_by_expiry": cov.truncated, "expired_contracts": cov.expired, "lost_sessions": cov.lost_sessions,
            "discovery": {s: {"candidates": o.candidates, "requests": o.discovery_requests,
                              "elapsed_s": round(o.discovery_s, 3)}
                          for s, o in report.symbols.items() if o.candidates},
        }
        if report.dry_run:
            payload["plan"] = {s: p.to_json() for s, p in plans.items()}
        print(json.dumps(payload, indent=1))
        return
    for symbol, outcome in report.symbols.items():
        plan = plans.get(symbol)
        if report.dry_run and plan is not None:
            print(f"{report.stage} {symbol}: {_plan_line(plan)}")
            if plan.error:
                print(f"  error: {plan.error}")
            continue
        planned = f" planned={outcome.planned}" if report.dry_run else ""
        print(f"{report.stage} {outcome.line()}{planned}")
    counts = " ".join(f"{k}={v}" for k, v in report.counts.items())
    where = "dry run, nothing written" if report.dry_run else f"summary {report.summary_path}"
    print(f"{report.stage}: {counts} requests={report.requests} bars={report.bars} "
          f"pacing_violations={report.gateway.pacing_violations} reconnects={report.gateway.reconnects} "
          f"truncated_by_expiry={report.coverage.truncated} elapsed={report.elapsed_s:.1f}s ({where})")


def _plan_line(plan: SymbolPlan) -> str:
    text = f"cache {plan.cache_path} (date {plan.cache_day})"
    if plan.reference_source is not None:
        price = "none" if plan.reference_price is None else f"{plan.reference_price:g}"
        text += f"; reference {price} ({plan.reference_source})"
    text += f"; {len(plan.chosen)} contracts" + (f" ({plan.held} followed from earlier caches)" if plan.held else "")
    text += f"; planned {len(plan.requests)}, skipped {len(plan.skipped)} already OK"
    if plan.reference_source is not None and plan.chosen:
        text += f"; subset {plan.subset_text()}"
    return text


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


def _coverage(args: argparse.Namespace) -> int:
    """Per stage and symbol: contracts followed, expired, truncated by expiry and the sessions lost."""
    try:
        settings = resolve({"state_dir": args.state_dir})
        now = parse_end(args.end) if args.end else datetime.now(UTC)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state_dir = settings.paths.state_dir
    wanted = {s.strip().upper() for s in args.symbols.split(",")} if args.symbols else None
    out: dict[str, dict[str, Any]] = {}
    for stage in [args.stage] if args.stage else [s.name for s in BAR_STAGES]:
        rows = {}
        for symbol in stored_symbols(state_dir, stage):
            if wanted is None or symbol in wanted:
                cov = read_status(state_dir, stage, symbol).coverage(now, settings.expiry)
                rows[symbol] = {"followed": cov.followed, "expired": cov.expired, "truncated_by_expiry": cov.truncated,
                                "lost_sessions": cov.lost_sessions, "truncated_conids": list(cov.truncated_conids)}
        out[stage] = rows
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for stage, rows in out.items():
        total = [sum(r[k] for r in rows.values()) for k in ("followed", "expired", "truncated_by_expiry",
                                                            "lost_sessions")]
        for symbol, r in rows.items():
            print(f"{stage} {symbol}: followed={r['followed']} expired={r['expired']} "
                  f"truncated_by_expiry={r['truncated_by_expiry']} lost_sessions={r['lost_sessions']}")
        print(f"{stage}: {len(rows)} symbols, followed={total[0]} expired={total[1]} "
              f"truncated_by_expiry={total[2]} lost_sessions={total[3]}")
    return 0


def _import_legacy(args: argparse.Namespace) -> int:
    try:
        paths = resolve({"data_root": args.data_root, "scope": args.scope}).paths
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.root.is_dir():
        print(f"error: {args.root}: not a directory", file=sys.stderr)
        return 2
    found = import_legacy(args.root, paths.data_root, paths.scope, apply=args.apply)
    for path, reason in found.left:
        print(f"left alone: {path}: {reason}")
    verb = "merged" if args.apply else "would merge (dry run; --apply writes)"
    print(f"{found.files} bar files, {found.bars_read} bars read; {verb} {found.bars_added} new bars into "
          f"{found.files_merged} files under {paths.data_root / ('historical_bars_' + paths.scope)}; "
          f"{len(found.left)} files left alone")
    return 1 if any("not a bar file" in r or "unreadable" in r for _, r in found.left) else 0


def _rebuild_status(args: argparse.Namespace) -> int:
    state_dir = resolve({"state_dir": args.state_dir}).paths.state_dir
    written = rebuild(state_dir, args.stage, read_stage_records(state_dir, args.stage))
    print(f"{len(written)} symbol state file(s) rewritten under {state_dir / 'latest' / args.stage}")
    return 0
