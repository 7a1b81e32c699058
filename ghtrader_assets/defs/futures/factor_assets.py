"""The roll-factor asset: per variety, downstream of main_schedule, the factors an adjusted read applies."""


import dagster as dg

from ghtrader_assets.defs import names
from ghtrader_assets.defs.futures.partitions import variety_partitions
from ghtrader_assets.defs.futures.resources import TqSdkResource
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.defs.run_queue import claim_run_limits
from ghtrader_assets.domain.roll_factors import PREV_CLOSE
from ghtrader_assets.futures import roll_factors as factors_step
from ghtrader_assets.io import ledger_store as ledger


def build_factor_assets(varieties: tuple[str, ...]) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=names.ROLL_FACTORS,
        group_name="futures",
        kinds={"tqsdk", "questdb"},
        partitions_def=variety_partitions(varieties),
        deps=[names.MAIN_SCHEDULE],
        check_specs=[dg.AssetCheckSpec(names.FACTORS_MATCH_SCHEDULE, asset=names.ROLL_FACTORS, description=(
            "every switch day of the stored schedule has a factor row naming the contracts, segments and hashes "
            "the schedule holds, with its reference prices and consistent cumulative factors"))],
    )
    def roll_factors(context: dg.AssetExecutionContext, tqsdk: TqSdkResource, questdb: QuestDBResource) -> dg.MaterializeResult:
        """Roll-adjustment factors of the variety's main schedule (ghtrader_main_roll_factors_v2): per switch
        day, both contracts' closes on the day before (the default reference) and opens on the day, the
        spread and ratio factors and their cumulative values for adjust=pre and adjust=post. Only switches
        a schedule revision changed (or new ones) are fetched again, one daily-kline request per contract."""
        variety = context.partition_key
        claim_run_limits(context, [variety], tqsdk=True)
        with questdb.client() as qdb:
            calendar = ledger.read_calendar(qdb)
            result = factors_step.refresh_roll_factors(tqsdk.step_login(), qdb, variety, calendar)
            problems = factors_step.check_factors(qdb, variety)
        for line in problems[:20]:
            context.log.error("roll factors: %s", line)
        context.log.info("%s: %d switches, %d computed (%d daily-kline requests), %d retired, %d rows written",
                         variety, len(result.switches), len(result.computed), result.kline_requests,
                         len(result.retired), result.written)
        table = "\n".join(["| switch day | from | to | from close | to close | spread | ratio | pre spread | post spread |",
                           "|---|---|---|---|---|---|---|---|---|"] + [
            f"| {f.switch.day} | {f.switch.from_contract} | {f.switch.to_contract} | {f.price_from:g} | {f.price_to:g} | "
            f"{f.spread:g} | {f.ratio:.6f} | {f.pre_spread:g} | {f.post_spread:g} |" for f in result.factors[PREV_CLOSE]])
        return dg.MaterializeResult(
            metadata={
                "switches": len(result.switches),
                "computed": len(result.computed),
                "reused": len(result.switches) - len(result.computed),
                "retired": dg.MetadataValue.json([str(d) for d in result.retired]),
                "kline_requests": result.kline_requests,
                "rows_written": result.written,
                "without_reference_prices": dg.MetadataValue.json(result.without_prices),
                "factors": dg.MetadataValue.md(table),
            },
            check_results=[dg.AssetCheckResult(check_name=names.FACTORS_MATCH_SCHEDULE, passed=not problems,
                                               metadata={"problems": dg.MetadataValue.json(problems[:50])})],
        )

    return [roll_factors]
