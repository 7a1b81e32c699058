"""IBKR assets per symbol: contracts discovery, 8-hour bars of every contract, 30-minute bars near the money."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from ghtrader_assets.defs.ibkr.partitions import ibkr_symbol_partitions
from ghtrader_assets.defs.ibkr.resources import IBGatewayResource, IBKRStorageResource
from ghtrader_assets.domain.universe import UniverseEntry, UniverseError, check_symbol, read_universe
from ghtrader_assets.ibkr_stages import (
    HOURS_SPEC,
    MINUTES_SPEC,
    BarSpec,
    RunOptions,
    StageReport,
    SubsetSpec,
    run_bars,
    run_contracts,
)

POOL = "ibkr_gateway"  # one step at a time talks to the gateway: `dagster instance concurrency set ibkr_gateway 1`
GROUP = "ibkr"


class ContractsConfig(dg.Config):
    """force: rediscover even if today's cache exists; end: ISO time standing for "now" (tests, replays)."""

    force: bool = False
    end: str | None = None


class HoursConfig(dg.Config):
    """Bar request of the stage; force: re-request contracts already OK for this window;
    incremental: merge with stored bars, re-fetching `overlap_days` before the last stored bar."""

    bar_size: str = HOURS_SPEC.bar_size
    duration: str = HOURS_SPEC.duration
    what_to_show: str = HOURS_SPEC.what
    use_rth: bool = True
    force: bool = False
    incremental: bool = True
    overlap_days: float = 3.0
    end: str | None = None


class MinutesConfig(HoursConfig):
    """As HoursConfig, plus the subset: first `expiries` expiries, `strikes_per_right` strikes per right."""

    bar_size: str = MINUTES_SPEC.bar_size
    duration: str = MINUTES_SPEC.duration
    expiries: int = 2
    strikes_per_right: int = 5


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
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _options(context: dg.AssetExecutionContext, force: bool, end: str | None, **extra: object) -> RunOptions:
    return RunOptions(run_id=context.run.run_id, end=_end(end), force=force, **extra)  # type: ignore[arg-type]


def _result(context: dg.AssetExecutionContext, report: StageReport) -> dg.MaterializeResult:
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
        "reconnects": report.gateway.reconnects,
        "elapsed_s": round(report.elapsed_s, 3),
    }
    for outcome in report.symbols.values():
        if outcome.cache_path:
            metadata["cache_path"] = dg.MetadataValue.path(outcome.cache_path)
        if outcome.reference_price is not None:
            metadata["reference_price"] = outcome.reference_price
            metadata["reference_source"] = outcome.reference_source
    failed = report.failed_symbols
    if failed:
        errors = "; ".join(f"{s}: {report.symbols[s].error}" for s in failed)
        raise dg.Failure(description=f"{report.stage} failed for {', '.join(failed)}: {errors}",
                         metadata=metadata)  # type: ignore[arg-type]
    return dg.MaterializeResult(metadata=metadata)  # type: ignore[arg-type]


@dg.asset(partitions_def=ibkr_symbol_partitions, pool=POOL, group_name=GROUP, kinds={"ibkr", "json"})
def ibkr_contracts(
    context: dg.AssetExecutionContext,
    config: ContractsConfig,
    ib_gateway: IBGatewayResource,
    ibkr_storage: IBKRStorageResource,
) -> dg.MaterializeResult:
    """The symbol's option contracts (SMART chain, batch-qualified), cached as
    `state/contracts_cache/{SYMBOL}_{YYYY-MM-DD}.json`."""
    report = run_contracts([_entry(context, ibkr_storage)], ib_gateway.settings(), ibkr_storage.paths(),
                           _options(context, config.force, config.end))
    return _result(context, report)


@dg.asset(partitions_def=ibkr_symbol_partitions, pool=POOL, group_name=GROUP, kinds={"ibkr", "parquet"},
          deps=[ibkr_contracts])
def ibkr_hours_bars(
    context: dg.AssetExecutionContext,
    config: HoursConfig,
    ib_gateway: IBGatewayResource,
    ibkr_storage: IBKRStorageResource,
) -> dg.MaterializeResult:
    """8-hour TRADES bars over 6 months (useRTH) of every unexpired contract in the symbol's latest cache."""
    spec = BarSpec(config.bar_size, config.duration, config.what_to_show, config.use_rth)
    options = _options(context, config.force, config.end, incremental=config.incremental,
                       overlap=timedelta(days=config.overlap_days))
    report = run_bars("hours", [_entry(context, ibkr_storage)], ib_gateway.settings(), ibkr_storage.paths(),
                      options, spec)
    return _result(context, report)


@dg.asset(partitions_def=ibkr_symbol_partitions, pool=POOL, group_name=GROUP, kinds={"ibkr", "parquet"},
          deps=[ibkr_contracts])
def ibkr_minutes_bars(
    context: dg.AssetExecutionContext,
    config: MinutesConfig,
    ib_gateway: IBGatewayResource,
    ibkr_storage: IBKRStorageResource,
) -> dg.MaterializeResult:
    """30-minute TRADES bars over 1 month of the near-the-money subset (first E expiries, K strikes
    per right nearest the underlying's latest close)."""
    spec = BarSpec(config.bar_size, config.duration, config.what_to_show, config.use_rth)
    options = _options(context, config.force, config.end, incremental=config.incremental,
                       overlap=timedelta(days=config.overlap_days))
    report = run_bars("minutes", [_entry(context, ibkr_storage)], ib_gateway.settings(), ibkr_storage.paths(),
                      options, spec, SubsetSpec(config.expiries, config.strikes_per_right))
    return _result(context, report)
