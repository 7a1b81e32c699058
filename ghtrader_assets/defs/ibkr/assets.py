"""IBKR assets per symbol, one per entry of stage_table.STAGE_TABLE, each with a blocking outcome check."""

from datetime import datetime, timedelta

import dagster as dg

from ghtrader_assets.defs.ibkr.partitions import ibkr_symbol_partitions
from ghtrader_assets.defs.ibkr.resources import IBGatewayResource, IBKRStorageResource, ibkr_settings
from ghtrader_assets.domain.stage_table import STAGE_TABLE, BarSpec, StageDef
from ghtrader_assets.domain.universe import UniverseEntry, UniverseError, check_symbol
from ghtrader_assets.domain.us_sessions import parse_end
from ghtrader_assets.ibkr_stages import OVERLAP_DAYS, RunOptions, StageReport, StageRun, SubsetSpec
from ghtrader_assets.io.ibkr_state import read_universe

POOL = "ibkr_gateway"  # one step at a time talks to the gateway: `dagster instance concurrency set ibkr_gateway 1`
GROUP = "ibkr"
CHECK = "outcome_shares"
COVERAGE_CHECK = "expiry_coverage"


class ContractsConfig(dg.Config):
    """force: rediscover even if this session's cache exists; end: ISO time standing for "now" (no zone: New
    York; tests, replays)."""

    force: bool = False
    end: str | None = None


class BarsConfig(dg.Config):
    """Bar request (None: the stage's entry in the stage table); force: re-request contracts already
    OK for this window; incremental: merge with stored bars, re-fetching `overlap_days` before the
    last stored bar; expiries / strikes_per_right: the near-the-money subset (subset stages only);
    capture: only the contracts about to expire (the daily capture schedule sets it);
    skip_underlying_close False: no underlying close fails the symbol instead of using the median strike."""

    bar_size: str | None = None
    duration: str | None = None
    what_to_show: str | None = None
    use_rth: bool = BarSpec.use_rth
    force: bool = False
    incremental: bool = True
    overlap_days: float = OVERLAP_DAYS
    end: str | None = None
    expiries: int = SubsetSpec.expiries
    strikes_per_right: int = SubsetSpec.strikes_per_right
    capture: bool = False
    skip_underlying_close: bool = True


def _entry(context: dg.AssetExecutionContext, storage: IBKRStorageResource) -> UniverseEntry:
    symbol = check_symbol(context.partition_key)  # the key names files and directories: no '/' or '..'
    path = storage.universe()
    if path is not None:
        try:
            for entry in read_universe(path):
                if entry.symbol == symbol:
                    return entry
        except UniverseError as exc:
            context.log.warning(f"universe not read, conid unknown: {exc}")
    return UniverseEntry(symbol)


def _end(value: str | None) -> datetime | None:
    return parse_end(value) if value else None


def _result(context: dg.AssetExecutionContext, report: StageReport, asset_name: str) -> dg.MaterializeResult:
    for outcome in report.symbols.values():
        context.log.info(f"{report.stage} {outcome.line()}")
    paths = sorted({p for o in report.symbols.values() for p in o.paths})
    metadata: dict[str, object] = {
        **{f"count_{status.lower()}": n for status, n in report.counts.items()},
        "requests": report.requests,
        "bars": report.bars,
        "files": len(paths),
        "paths_sample": dg.MetadataValue.json(paths[:20]),
        "summary_path": dg.MetadataValue.path(str(report.summary_path)),
        "pacing_violations": report.gateway.pacing_violations,
        "pacing_pauses": report.gateway.pacing_pauses,
        "reconnects": report.gateway.reconnects,
        "elapsed_s": round(report.elapsed_s, 3),
    }
    for outcome in report.symbols.values():
        if outcome.cache_path:
            metadata["cache_path"] = dg.MetadataValue.path(outcome.cache_path)
        if outcome.reference_price is not None:
            metadata["reference_price"] = outcome.reference_price
            metadata["reference_source"] = outcome.reference_source
        if outcome.candidates:
            metadata["discovery_candidates"] = outcome.candidates
            metadata["discovery_requests"] = outcome.discovery_requests
            metadata["discovery_s"] = round(outcome.discovery_s, 3)
        if outcome.latest:
            metadata["latest_status"] = dg.MetadataValue.json(outcome.latest)
    coverage = report.coverage
    if report.stage != "contracts":
        metadata.update({"truncated_by_expiry": coverage.truncated, "expired_contracts": coverage.expired,
                         "lost_sessions": coverage.lost_sessions,
                         "truncated_sample": dg.MetadataValue.json(list(coverage.truncated_conids[:20]))})
    failed = report.failed_symbols
    if failed:
        errors = "; ".join(f"{s}: {report.symbols[s].error}" for s in failed)
        raise dg.Failure(description=f"{report.stage} failed for {', '.join(failed)}: {errors}",
                         metadata=metadata)  # type: ignore[arg-type]
    checks = [o.check for o in report.symbols.values() if o.check is not None]
    passed = all(c.passed for c in checks)
    result = dg.AssetCheckResult(
        check_name=CHECK, asset_key=asset_name, passed=passed, severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(c.message for c in checks) or "nothing to judge",
        metadata={"err_share": max((c.err_share for c in checks), default=0.0),
                  "empty_share": max((c.empty_share for c in checks), default=0.0),
                  "contracts": sum(c.contracts for c in checks)})
    results = [result]
    if report.stage != "contracts":
        results.append(dg.AssetCheckResult(
            check_name=COVERAGE_CHECK, asset_key=asset_name, passed=coverage.truncated == 0,
            severity=dg.AssetCheckSeverity.WARN, description=coverage.text(),
            metadata={"truncated_by_expiry": coverage.truncated, "lost_sessions": coverage.lost_sessions}))
    return dg.MaterializeResult(metadata=metadata, check_results=results)  # type: ignore[arg-type]


def build_stage_asset(stage: StageDef) -> dg.AssetsDefinition:
    """The partitioned asset of one stage table entry; its blocking check fails the partition when
    the ERR or EMPTY share of the symbol's contracts exceeds the threshold (ibkr_storage)."""
    name = stage.asset_name
    deps = [] if stage.spec is None else ["ibkr_contracts"]
    kinds = {"ibkr", "json" if stage.spec is None else "parquet"}
    check = dg.AssetCheckSpec(CHECK, asset=name, blocking=True,
                              description="ERR share <= max_err_share and EMPTY share <= max_empty_share")
    coverage_check = dg.AssetCheckSpec(
        COVERAGE_CHECK, asset=name, blocking=False,
        description="no expired contract whose stored data ends before its last session (warning only: "
                    "IB serves no history for expired options, so what is lost stays lost)")

    if stage.spec is None:
        @dg.asset(name=name, partitions_def=ibkr_symbol_partitions, pool=POOL, group_name=GROUP, kinds=kinds,
                  check_specs=[check], description=stage.description)
        def contracts_asset(context: dg.AssetExecutionContext, config: ContractsConfig,
                            ib_gateway: IBGatewayResource, ibkr_storage: IBKRStorageResource) -> dg.MaterializeResult:
            entry = _entry(context, ibkr_storage)  # an invalid key fails before anything is created
            settings = ibkr_settings(ib_gateway, ibkr_storage)
            options = RunOptions(run_id=context.run.run_id, end=_end(config.end), force=config.force)
            run = StageRun(stage, settings.gateway, settings.paths, options, discovery=settings.discovery,
                           thresholds=settings.thresholds)
            return _result(context, run.run([entry]), name)

        return contracts_asset

    default = stage.spec

    @dg.asset(name=name, partitions_def=ibkr_symbol_partitions, pool=POOL, group_name=GROUP, kinds=kinds,
              deps=deps, check_specs=[check, coverage_check], description=stage.description)
    def bars_asset(context: dg.AssetExecutionContext, config: BarsConfig,
                   ib_gateway: IBGatewayResource, ibkr_storage: IBKRStorageResource) -> dg.MaterializeResult:
        entry = _entry(context, ibkr_storage)  # an invalid key fails before anything is created
        settings = ibkr_settings(ib_gateway, ibkr_storage)
        spec = BarSpec(config.bar_size or default.bar_size, config.duration or default.duration,
                       config.what_to_show or default.what, config.use_rth)
        options = RunOptions(run_id=context.run.run_id, end=_end(config.end), force=config.force,
                             incremental=config.incremental, overlap=timedelta(days=config.overlap_days),
                             capture=config.capture, require_close=not config.skip_underlying_close)
        run = StageRun(stage, settings.gateway, settings.paths, options, spec,
                       SubsetSpec(config.expiries, config.strikes_per_right), settings.discovery,
                       settings.thresholds, expiry=settings.expiry)
        return _result(context, run.run([entry]), name)

    return bars_asset


STAGE_ASSETS: dict[str, dg.AssetsDefinition] = {s.name: build_stage_asset(s) for s in STAGE_TABLE}
ibkr_contracts = STAGE_ASSETS["contracts"]
ibkr_hours_bars = STAGE_ASSETS["hours"]
ibkr_minutes_bars = STAGE_ASSETS["minutes"]
