"""Run-level limits that hold however a run starts: every futures run is tagged with its variety and
provider (so dagster.yaml's tag_concurrency_limits apply to UI backfills, sensors and schedules alike),
and a futures step checks the same limits itself before it writes (for runs that bypass the queue,
such as `dagster asset materialize`)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping

import dagster as dg
from dagster import DagsterRun, QueuedRunCoordinator, SubmitRunContext

from ghtrader_assets.defs import names
from ghtrader_assets.defs.names import HOST_TAG, PID_TAG, PROVIDER_TAG, VARIETY_TAG

# The assets whose runs log in to TqSdk, and those partitioned by variety.
TQSDK_ASSETS = frozenset(k.to_user_string() for k in (names.TRADING_DAYS, names.MAIN_SCHEDULE, names.UNDERLYING_TICKS,
                                                        names.ROLL_FACTORS))
VARIETY_ASSETS = frozenset(k.to_user_string() for k in (names.MAIN_SCHEDULE, *names.TICK_ASSETS, names.HISTORY_VERIFICATION,
                                                          names.ROLL_FACTORS))

_PARTITION = names.PARTITION_TAG
_RANGE_START = names.RANGE_START_TAG
_RANGE_END = names.RANGE_END_TAG


def _variety_of(key: str) -> str:
    """`2024-01-02|SHFE.cu` (variety x day) or `SHFE.cu` (variety only) -> `SHFE.cu`."""
    return key.split("|")[-1]


def run_limit_tags(tags: Mapping[str, str], asset_names: Iterable[str] | None) -> dict[str, str]:
    """The tags a run needs for the queue's limits, from its partition tags and selected assets: the
    variety (one value; several varieties in one run are joined, sorted, with commas) and the provider.
    A run that selects no futures asset (IBKR, or an unknown selection) gets none."""
    names = set(asset_names or ())
    out: dict[str, str] = {}
    if names & TQSDK_ASSETS:
        out[PROVIDER_TAG] = "tqsdk"
    if names & VARIETY_ASSETS:
        varieties = set()
        if f"{_PARTITION}/variety" in tags:
            varieties.add(tags[f"{_PARTITION}/variety"])
        elif _PARTITION in tags:
            varieties.add(_variety_of(tags[_PARTITION]))
        elif _RANGE_START in tags and _RANGE_END in tags:
            varieties |= {_variety_of(tags[_RANGE_START]), _variety_of(tags[_RANGE_END])}
        if varieties:
            out[VARIETY_TAG] = ",".join(sorted(varieties))
    return {k: v for k, v in out.items() if k not in tags}


def _asset_names(run: DagsterRun) -> set[str]:
    return {key.to_user_string() for key in (run.asset_selection or ())}


class VarietyRunCoordinator(QueuedRunCoordinator):
    """Dagster's run queue, which tags each submitted futures run with its variety and provider first:
    a backfill launched from the UI carries only Dagster's partition tags, and the queue's
    tag_concurrency_limits read run tags."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        extra = run_limit_tags(run.tags, _asset_names(run))
        if extra:
            self._instance.add_run_tags(run.run_id, extra)
            run = self._instance.get_run_by_id(run.run_id) or run
            context = SubmitRunContext(run, context.workspace)
        return super().submit_run(context)


def claim_run_limits(context: dg.AssetExecutionContext, varieties: Iterable[str], tqsdk: bool) -> None:
    """Apply the queue's limits to this run even when it did not come through the queue (an in-process
    `dagster asset materialize`): tag the run with its varieties, provider and process, then fail before
    writing anything if another live run writes one of its varieties, or if the live TqSdk runs already
    reach dagster.yaml's `ghtrader/provider: tqsdk` limit. Older runs win; a run left STARTED by a
    killed process on this host (its pid is gone) does not count."""
    wanted = sorted(set(varieties))
    instance, me = context.instance, context.run
    if me is None:
        return
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    if wanted:
        tags[VARIETY_TAG] = me.tags.get(VARIETY_TAG) or ",".join(wanted)
    if tqsdk:
        tags[PROVIDER_TAG] = "tqsdk"
    instance.add_run_tags(me.run_id, tags)
    mine = instance.get_run_record_by_id(me.run_id)
    live = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]))
    older = [r for r in live if r.dagster_run.run_id != me.run_id and _alive(r.dagster_run.tags)
             and (mine is None or r.create_timestamp <= mine.create_timestamp)]
    for record in older:
        run = record.dagster_run
        theirs = set(run.tags.get(VARIETY_TAG, "").split(",")) & set(wanted)
        if theirs:
            raise dg.Failure(
                description=f"run {run.run_id} is already writing {', '.join(sorted(theirs))}; two runs of one "
                "variety would fetch and write the same days. Re-run after it finishes.",
                metadata={"running_run_id": run.run_id, "varieties": sorted(theirs)},
            )
    limit = tqsdk_login_limit(instance)
    logins = [r.dagster_run.run_id for r in older if r.dagster_run.tags.get(PROVIDER_TAG) == "tqsdk"]
    if tqsdk and limit is not None and len(logins) >= limit:
        raise dg.Failure(
            description=f"{len(logins)} runs already hold TqSdk logins (limit {limit}, dagster.yaml "
            f"`{PROVIDER_TAG}: tqsdk`): {', '.join(logins)}. Re-run when one finishes, or launch through the queue.",
            metadata={"running_run_ids": logins, "limit": limit},
        )


def tqsdk_login_limit(instance: dg.DagsterInstance) -> int | None:
    """The `ghtrader/provider: tqsdk` run limit of the instance's dagster.yaml, if it sets one.

    `DagsterInstance.get_concurrency_config()` is the one call here outside Dagster's documented API (no
    underscore, but not in the API docs): Dagster has no public accessor for the run queue's limits, and
    reading dagster.yaml again would miss an instance configured elsewhere. A Dagster upgrade that changes it
    fails `defs/test_run_queue.py`."""
    queue = instance.get_concurrency_config().run_queue_config
    for rule in (queue.tag_concurrency_limits if queue else None) or []:
        if rule.get("key") == PROVIDER_TAG and rule.get("value") == "tqsdk":
            return int(rule["limit"])
    return None


def _alive(tags: Mapping[str, str]) -> bool:
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return True  # another machine's run, or one that has not claimed yet: assume it is running
    try:
        os.kill(int(tags[PID_TAG]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
