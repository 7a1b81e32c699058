"""Universe-file sync: adds and removes `ibkr_symbol` partitions to match the universe CSV."""

import dagster as dg

from ghtrader_assets.defs.ibkr.partitions import ibkr_symbol_partitions
from ghtrader_assets.defs.ibkr.resources import IBKRStorageResource
from ghtrader_assets.domain.universe import UniverseError
from ghtrader_assets.io.ibkr_state import read_universe


@dg.sensor(
    name="ibkr_universe_sync",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps the ibkr_symbol partitions equal to the symbols of the universe CSV.",
)
def ibkr_universe_sync(
    context: dg.SensorEvaluationContext, ibkr_storage: IBKRStorageResource
) -> dg.SensorResult | dg.SkipReason:
    path = ibkr_storage.universe()
    if path is None:
        return dg.SkipReason("no universe CSV configured (GHTRADER_IB_UNIVERSE)")
    try:
        wanted = {entry.symbol for entry in read_universe(path)}
    except UniverseError as exc:
        # An unreadable file must never delete every partition.
        return dg.SkipReason(f"universe not synced: {exc}")
    have = set(context.instance.get_dynamic_partitions(ibkr_symbol_partitions.name or "ibkr_symbol"))
    add, remove = sorted(wanted - have), sorted(have - wanted)
    if not add and not remove:
        return dg.SkipReason(f"{len(have)} partitions already match {path}")
    context.log.info(f"universe {path}: adding {len(add)}, removing {len(remove)} partitions")
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if add:
        requests.append(ibkr_symbol_partitions.build_add_request(add))
    if remove:
        requests.append(ibkr_symbol_partitions.build_delete_request(remove))
    return dg.SensorResult(dynamic_partitions_requests=requests)
